"""The search spaces the engine can drive: what differs between NAR's and ENAS's, behind one interface.

The engine (facenar.search.engine) trains shared weights, runs REINFORCE, derives and resumes the
same way for every space; a space supplies its supernet and controller, uniform codes (PreTrain
and the random comparison), the baseline, per-epoch op frequencies and extra search.csv columns,
and turns the derived codes into its architecture file (arch.json) and final table.

- NarSpace: one operator per slot of an iresnet (facenar.space.supernet, the paper's NAR).
- EnasSpace: ENAS's macro space, per layer one of six ops plus searchable skips to every
  earlier node (facenar.space.macro, facenar.search.macro_controller); its controller's
  skip statistics feed the paper's Fig. 1 (skip_prob, skip_kl_half per epoch).
"""
from __future__ import annotations

import torch

from facenar_runtime.errors import UserError
from facenar.search.config import SPACES, SearchConfig, search_space
from facenar.search.controller import Controller, uniform_entropy

SKIP_COLUMNS = ("skip_prob", "skip_kl_half")  # mean over the epoch's controller steps (Fig. 1)


@SPACES.register("nar", summary="one op per iresnet slot (the paper's NAR)")
class NarSpace:
    """NAR: a fixed iresnet whose slots each pick one candidate operator (skips fixed by the backbone)."""

    name = "nar"
    slot_name = "slot"
    extra_columns: tuple[str, ...] = ()
    options = ("backbone", "width", "embedding_size", "ops", "granularity")  # settings only this space reads

    @staticmethod
    def check_config(cfg: SearchConfig) -> None:
        """The space's own checks of a search config (the shared ones are SearchConfig.check)."""

    def __init__(self, cfg: SearchConfig):
        self.cfg = cfg
        self.template = search_space(cfg)  # the Arch (codes all 0): also the cost models' space
        self.num_slots, self.candidates = self.template.num_slots, list(cfg.ops)
        self.feature_size = cfg.embedding_size

    def supernet(self):
        from facenar.space.supernet import Supernet

        cfg = self.cfg
        return Supernet(cfg.backbone, candidates=cfg.ops, width=cfg.width, granularity=cfg.granularity,
                        input_size=cfg.input_size, embedding_size=cfg.embedding_size)

    def controller(self):
        return Controller(self.num_slots, len(self.candidates), tanh_constant=self.cfg.tanh_constant,
                          temperature=self.cfg.temperature)

    def random_codes(self, count: int, generator: torch.Generator) -> list[list[int]]:
        return torch.randint(0, len(self.candidates), (count, self.num_slots), generator=generator).tolist()

    def uniform_entropy(self) -> float:
        return uniform_entropy(self.num_slots, len(self.candidates))

    def code_choices(self) -> list[int]:
        """How many values each code position takes (what a one-slot mutation may change it to)."""
        return [len(self.candidates)] * self.num_slots

    def baseline_codes(self) -> list[int] | None:
        """Every slot keeps its 3x3 conv (the hand-made network), if conv3x3 is a candidate."""
        return [self.candidates.index("conv3x3")] * self.num_slots if "conv3x3" in self.candidates else None

    def op_freq(self, archs: list[list[int]]) -> list[list[float]]:
        """Fraction of this epoch's minibatches that ran each op, per slot."""
        freq = torch.zeros(self.num_slots, len(self.candidates), dtype=torch.float64)
        freq.scatter_add_(1, torch.tensor(archs).t(), torch.ones(self.num_slots, len(archs), dtype=torch.float64))
        return (freq / len(archs)).tolist()

    def policy_stats(self, controller, codes) -> dict:
        return {}

    def describe(self) -> str:
        cfg = self.cfg
        return (f"NAR search: {cfg.backbone} width {cfg.width} input {cfg.input_size}, "
                f"{self.num_slots} slots x {len(cfg.ops)} ops ({','.join(cfg.ops)})")

    def make_arch(self, codes: list[int], provenance: dict):
        """The derived Arch with its cost in the provenance, and the per-slot table for people."""
        from facenar.space.cost import arch_stats, count_cost, format_stats

        arch = self.template.with_codes(codes)
        cost = count_cost(arch)
        arch.provenance = {**provenance, "params": cost.params, "macs": cost.macs,
                           "op_counts": {name: arch.ops.count(name) for name in arch.candidates}}
        return arch, format_stats(arch_stats(arch))


@SPACES.register("enas", summary="ENAS's macro space with searchable skips")
class EnasSpace:
    """ENAS's macro space (L layers, C channels): codes are ENAS's flat arc format (ops and skip bits)."""

    name = "enas"
    slot_name = "layer"
    extra_columns = SKIP_COLUMNS
    options = ("layers", "channels", "skip_weight", "skip_target")

    @staticmethod
    def check_config(cfg: SearchConfig) -> None:
        if cfg.channels % 2:
            raise UserError(f"--space enas needs an even --channels (its factorized reductions split them in "
                            f"two), got {cfg.channels}")
        if cfg.target_macs or cfg.cost == "latency" or cfg.max_latency_ms:
            raise UserError("--target-macs / --cost latency / --max-latency-ms work only with --space nar")

    def __init__(self, cfg: SearchConfig):
        from facenar.space.macro import ENAS_CANDIDATES, num_codes

        self.cfg = cfg
        self.template = None  # no cost-aware reward in this space (SearchConfig.check refuses it)
        self.num_slots, self.candidates = num_codes(cfg.layers), list(ENAS_CANDIDATES)
        self.feature_size = cfg.channels

    def supernet(self):
        from facenar.space.macro import MacroSupernet

        return MacroSupernet(self.cfg.layers, self.cfg.channels, num_classes=0, input_size=self.cfg.input_size)

    def controller(self):
        from facenar.search.macro_controller import MacroController

        cfg = self.cfg
        return MacroController(cfg.layers, tanh_constant=cfg.tanh_constant, temperature=cfg.temperature,
                               skip_target=cfg.skip_target, skip_weight=cfg.skip_weight)

    def random_codes(self, count: int, generator: torch.Generator) -> list[list[int]]:
        from facenar.space.macro import random_codes

        return random_codes(self.cfg.layers, count, generator)

    def uniform_entropy(self) -> float:
        """L uniform 6-way op choices plus L(L-1)/2 fair coins."""
        return uniform_entropy(self.cfg.layers, len(self.candidates)) + uniform_entropy(
            self.num_slots - self.cfg.layers, 2)

    def baseline_codes(self) -> list[int]:
        """conv3x3 everywhere, no skips: the plain network."""
        from facenar.space.macro import join_codes

        return join_codes([self.candidates.index("conv3x3")] * self.cfg.layers,
                          [[0] * k for k in range(self.cfg.layers)])

    def code_choices(self) -> list[int]:
        """Per layer: its op (one of the candidates), then one bit per earlier layer (skip or not)."""
        return [count for layer in range(self.cfg.layers) for count in [len(self.candidates)] + [2] * layer]

    def op_freq(self, archs: list[list[int]]) -> list[list[float]]:
        """Fraction of this epoch's minibatches that ran each op, per layer (skip bits left out)."""
        from facenar.space.macro import split_codes

        freq = torch.zeros(self.cfg.layers, len(self.candidates), dtype=torch.float64)
        for codes in archs:
            ops, _ = split_codes(codes, self.cfg.layers)
            freq[torch.arange(self.cfg.layers), ops] += 1
        return (freq / len(archs)).tolist()

    @torch.no_grad()
    def policy_stats(self, controller, codes) -> dict:
        """Mean skip probability and KL(p || 0.5) the policy gives these architectures' skips; without a
        controller (random, evolution) the skip density of the architectures themselves (no KL)."""
        if controller is None:
            from facenar.space.macro import split_codes

            skips = [bit for c in codes for row in split_codes(c, self.cfg.layers)[1] for bit in row]
            return {"skip_prob": sum(skips) / max(1, len(skips)), "skip_kl_half": None}
        stats = controller.log_prob_of(codes).stats
        return {name: float(stats[name].mean()) for name in SKIP_COLUMNS}

    def describe(self) -> str:
        cfg = self.cfg
        penalty = (f"skip penalty {cfg.skip_weight} x KL(p || {cfg.skip_target})" if cfg.skip_weight
                   else "no skip penalty")
        return (f"ENAS macro search: {cfg.layers} layers x {len(self.candidates)} ops + skips, {cfg.channels} "
                f"channels, input {cfg.input_size}, {self.num_slots} codes, {penalty}")

    def make_arch(self, codes: list[int], provenance: dict):
        """The derived MacroArch (features only: the task's head is not part of it) and a per-layer table."""
        from facenar.space.macro import MacroArch, macro_cost

        cfg = self.cfg
        arch = MacroArch.from_codes(codes, cfg.layers, channels=cfg.channels, input_size=cfg.input_size,
                                    num_classes=0)
        cost = macro_cost(arch)
        arch.provenance = {**provenance, **cost, "skip_density": arch.skip_density,
                           "op_counts": {name: arch.ops.count(name) for name in self.candidates}}
        lines = [f"ENAS macro architecture: {cfg.layers} layers, {cfg.channels} channels, input {cfg.input_size}",
                 f"{'layer':>5}  {'op':<11} skips from nodes"]
        for layer, (op, row) in enumerate(zip(arch.ops, arch.skips)):
            lines.append(f"{layer:>5}  {op:<11} {','.join(str(j) for j, bit in enumerate(row) if bit) or '-'}")
        lines.append(f"skip density {arch.skip_density:.3f}; params {cost['params']:,}; MACs {cost['macs']:,}")
        return arch, "\n".join(lines)


def make_space(cfg: SearchConfig):
    return SPACES.get(cfg.space)(cfg)
