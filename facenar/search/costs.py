"""What an architecture costs, from its codes alone: multiply-adds, parameters, predicted latency.

Budgets (facenar.search.budget), the cost-aware reward and the Pareto front all ask these models
thousands of times, so none builds a network per call: in NAR's space an operator keeps its slot's
shapes, so costs add up slot by slot (a fixed part plus one table entry per slot) and the cheapest
architecture is the per-slot minimum; the ENAS macro space is counted per architecture and cached.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Callable, Sequence

from facenar_runtime.errors import UserError

CostFn = Callable[[Sequence[int]], float]


class SlotCosts:
    """fixed + sum of per_slot[slot][code]: one NAR cost (MACs, parameters or milliseconds)."""

    def __init__(self, fixed: float, per_slot: list[list[float]]):
        self.fixed, self.per_slot = fixed, per_slot

    def __call__(self, codes: Sequence[int]) -> float:
        return self.fixed + sum(self.per_slot[slot][code] for slot, code in enumerate(codes))

    def cheapest_codes(self) -> list[int]:
        return [min(range(len(row)), key=row.__getitem__) for row in self.per_slot]


def slot_costs(space, key: str) -> SlotCosts:
    """MACs ("macs") or parameters ("params") of a NAR Arch template's architectures, per slot."""
    fixed, per_slot = _slot_table(space.backbone, tuple(space.candidates), space.width, space.input_size,
                                  space.embedding_size, space.granularity)[key]
    return SlotCosts(fixed, [list(row) for row in per_slot])


@lru_cache(maxsize=64)
def _slot_table(backbone: str, candidates: tuple[str, ...], width: float, input_size: int, embedding_size: int,
                granularity: str) -> dict:
    """{key: (fixed, per-slot costs of each candidate)}: the network is counted once (meta device, the
    slow part: a search and each `derive` build budgets and rewards from it several times), each
    operator at each site once (facenar.space.cost.op_cost, itself cached)."""
    from facenar.space.arch import Arch, num_slots
    from facenar.space.cost import count_cost, op_cost
    from facenar.space.networks import conv_sites

    report = count_cost(Arch(backbone, [0] * num_slots(backbone, granularity), list(candidates), width, input_size,
                             embedding_size, granularity))
    table = {}
    for index, key in enumerate(("params", "macs")):
        per_slot = [[0] * len(candidates) for _ in report.per_slot]
        for site in conv_sites(backbone, width, input_size, granularity):
            for code, name in enumerate(candidates):
                per_slot[site.slot][code] += op_cost(name, site.cin, site.cout, site.stride, site.in_size)[index]
        fixed = getattr(report, key) - sum(row[key] for row in report.per_slot)
        table[key] = (fixed, tuple(tuple(row) for row in per_slot))
    return table


def macs_model(space) -> SlotCosts:
    """codes -> multiply-adds without building a network: slot costs add up (ops keep shapes)."""
    return slot_costs(space, "macs")


def latency_model(table_path: str, space, flag: str = "--latency-table") -> SlotCosts:
    """codes -> predicted milliseconds from a latency table measured for this search space."""
    from facenar.space.latency import latency_cost, load_latency_table

    table = load_latency_table(table_path)
    try:
        latency_cost(table, space)
    except ValueError as exc:
        raise UserError(f"{flag} {table_path}: {exc}; measure one for this search space with "
                        "python -m facenar.arch latency") from None
    slots = table["slots"]
    return SlotCosts(table["fixed_ms"], [[slots[str(slot)][name] for name in space.candidates]
                                         for slot in range(space.num_slots)])


class MacroCosts:
    """ENAS macro space: {"params", "macs"} of each architecture, counted once (meta device) and cached."""

    def __init__(self, cfg):
        self.cfg = cfg
        self._cost = lru_cache(maxsize=None)(self._count)

    def _count(self, codes: tuple[int, ...]) -> dict:
        from facenar.space.macro import MacroArch, macro_cost

        cfg = self.cfg
        return macro_cost(MacroArch.from_codes(list(codes), cfg.layers, channels=cfg.channels,
                                               input_size=cfg.input_size, num_classes=0))

    def model(self, key: str) -> CostFn:
        return lambda codes: self._cost(tuple(codes))[key]

    def cheapest_codes(self, key: str) -> list[int]:
        """The cheapest plain network (one op everywhere, no skips: a skip only adds a concatenation)."""
        from facenar.space.macro import MACRO_OPS, join_codes

        layers = self.cfg.layers
        plain = [join_codes([op] * layers, [[0] * k for k in range(layers)]) for op in range(len(MACRO_OPS))]
        return min(plain, key=self.model(key))
