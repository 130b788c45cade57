"""Hard budgets (--max-macs, --max-params, --max-latency-ms) beside the soft cost term of the reward.

A user wants the best network under their budget, not the argmax of a reward: derivation keeps only
candidates within every limit, evolution never admits one over it, and a budget that not even the
cheapest architecture of the space meets is refused before any training.
"""
from __future__ import annotations

from typing import Sequence

from facenar_runtime.errors import UserError
from facenar.search.costs import MacroCosts, latency_model, slot_costs

# config key -> (cost name in pareto.json and the logs, flag, unit shown)
LIMITS = {"max_macs": ("macs", "--max-macs", "MACs"), "max_params": ("params", "--max-params", "parameters"),
          "max_latency_ms": ("latency_ms", "--max-latency-ms", "ms")}


def format_count(value: float) -> str:
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:.3g}{suffix}"
    return f"{value:.4g}"


class Budget:
    """The search space's cost models plus the user's limits (None = no limit)."""

    def __init__(self, space, cfg, latency_table: str | None = None):
        self.limits = {LIMITS[key][0]: getattr(cfg, key) for key in LIMITS if getattr(cfg, key) is not None}
        table = latency_table if latency_table is not None else cfg.latency_table
        if "latency_ms" in self.limits and not table:
            raise UserError("--max-latency-ms needs --latency-table FILE (per-operator times on your runtime: "
                            "python -m facenar.arch latency --out FILE)")
        if space.template is not None:  # NAR: additive per-slot tables
            self.models = {"macs": slot_costs(space.template, "macs"), "params": slot_costs(space.template, "params")}
            if table:
                self.models["latency_ms"] = latency_model(table, space.template)
            self._cheapest = lambda key: self.models[key].cheapest_codes()
        else:
            if "latency_ms" in self.limits:
                raise UserError("--max-latency-ms works only with --space nar (latency tables are per NAR slot)")
            macro = MacroCosts(cfg)
            self.models = {key: macro.model(key) for key in ("macs", "params")}
            self._cheapest = macro.cheapest_codes

    @property
    def active(self) -> bool:
        return bool(self.limits)

    def costs(self, codes: Sequence[int]) -> dict[str, float]:
        return {key: model(codes) for key, model in self.models.items()}

    def fits(self, codes: Sequence[int]) -> bool:
        return all(self.models[key](codes) <= limit for key, limit in self.limits.items())

    def check_feasible(self) -> None:
        """Refuse a limit below the cheapest architecture's cost (one error line, before any work)."""
        for key, limit in self.limits.items():
            cheapest = self.models[key](self._cheapest(key))
            if cheapest > limit:
                flag = next(f for name, f, _ in LIMITS.values() if name == key)
                raise UserError(f"{flag} {format_count(limit)}: no architecture of this search space meets it "
                                f"(the cheapest costs {format_count(cheapest)}); raise the budget or pick a "
                                "smaller backbone or --width")

    def cheapest_codes(self) -> list[int]:
        """An architecture within every limit (the cheapest by the first limit), to start evolution from."""
        key = next(iter(self.limits), "macs")
        return self._cheapest(key)

    def describe(self, codes: Sequence[int]) -> str:
        """'4.1G MACs (87% of --max-macs 4.7G), ...': how close an architecture is to each limit."""
        costs = self.costs(codes)
        parts = []
        for key, (name, flag, unit) in LIMITS.items():
            if name in costs:
                text = f"{format_count(costs[name])} {unit}"
                if name in self.limits:
                    text += f" ({100 * costs[name] / self.limits[name]:.0f}% of {flag} {format_count(self.limits[name])})"
                parts.append(text)
        return ", ".join(parts)
