"""`python -m facenar.search derive RUN_DIR ...`: derive again for a new budget, without retraining.

The supernet of a finished (or stopped) search already ranks every architecture; a new budget only
changes which candidates count. So this loads the run's last checkpoint, builds its strategy (or
another: random, or evolution, which evolves within the new budget), and runs derivation into --out:
minutes, never a new supernet training, and nothing written into the run folder.
"""
from __future__ import annotations

import time
from pathlib import Path

from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json
from facenar_runtime.outputs import check_outputs
from facenar.dist import DistContext, pick_device
from facenar.rundir import CONFIG_NAME, RunDir, release_ownership, take_ownership
from facenar.search.config import SearchConfig, check_strategy_options
from facenar.search.derivation import derive, pareto_paths
from facenar.search.spaces import SPACES
from facenar.search.strategies import STRATEGIES

BUDGET_KEYS = ("max_macs", "max_params", "max_latency_ms")
SEARCH_KEYS = {"derive_samples", "random_samples", "controller_steps", "pretrain_epochs"}  # a search's config.json


def stored_search_config(run: Path) -> dict:
    """The run's config.json under today's names; refuses a folder that is not a finished or stopped search."""
    from facenar.checkpoint import resume_file

    if not (run / CONFIG_NAME).is_file():
        raise UserError(f"{run} is not a search run folder (no {CONFIG_NAME}); give the --out folder of "
                        "python -m facenar.search")
    stored = read_json(run / CONFIG_NAME, "run configuration")
    if not isinstance(stored, dict) or not SEARCH_KEYS <= set(stored):
        raise UserError(f"{run}/{CONFIG_NAME} is not a search configuration (a training run?); give the --out "
                        "folder of python -m facenar.search")
    if stored.get("space", "nar") not in SPACES:
        raise UserError(f"{run}: search space {stored.get('space')!r} is unknown to this facenar version "
                        f"(known: {', '.join(SPACES)})")
    state = resume_file(run)
    if not state.is_file():
        raise UserError(f"{run}: no {state.name} (the search stopped before its first epoch ended); nothing to "
                        "derive from")
    return SearchConfig.upgrade(stored)


def derive_again(run_dir: str | Path, out: Path, force: bool = False, overrides: dict | None = None,
                 rescore: bool = False):
    """Derive RUN_DIR's supernet into `out` under the budget in `overrides` (replacing the run's budget).
    The run folder's lock is held meanwhile: a search still writing it is refused, and none can start.
    Unless `rescore`, the accuracies in RUN_DIR/pareto.json are reused where they were scored with the
    very weights loaded here (RewardModel.stamp)."""
    run = Path(run_dir)
    stored = stored_search_config(run)
    take_ownership(run, advice="derive when the search has finished or stopped")
    try:
        return _derive(run, stored, out, force, dict(overrides or {}), rescore)
    finally:
        release_ownership(run)


def earlier_scores(run: Path) -> dict:
    """The run's own pareto.json (its derivation's scores), or {} where there is none or it is unreadable:
    then everything is scored again, which is only slower."""
    from facenar.search.engine import PARETO_JSON

    path = run / PARETO_JSON
    try:
        scored = read_json(path, "Pareto front") if path.is_file() else {}
        points = scored.get("points", []) if isinstance(scored, dict) else []
        if all(isinstance(p, dict) and isinstance(p.get("accuracy"), float) and isinstance(p.get("codes"), list)
               and all(isinstance(c, int) for c in p["codes"]) for p in points):
            return scored
    except UserError:
        pass
    return {}


def _derive(run: Path, stored: dict, out: Path, force: bool, overrides: dict, rescore: bool):
    from facenar.search.budget import Budget
    from facenar.search.engine import SearchEngine
    from facenar.search.spaces import make_space

    SearchConfig.check_types({k: v for k, v in stored.items() if k in SearchConfig.names()}, f"{run}/{CONFIG_NAME}")
    trained_by = stored.get("strategy", "enas")
    wanted = overrides.pop("strategy", trained_by)
    if wanted == "enas" and trained_by != "enas":
        raise UserError(f"--strategy enas needs the run's trained controller, but {run} was searched with "
                        f"--strategy {trained_by}; derive with --strategy random or evolution")
    if any(key in overrides for key in BUDGET_KEYS):  # a new budget replaces the run's whole budget
        stored.update({key: None for key in BUDGET_KEYS})
    values = {k: v for k, v in {**stored, **overrides}.items() if k in SearchConfig.names()}
    try:
        cfg = SearchConfig(**{**values, "strategy": wanted}).validate()
    except UserError as exc:
        raise UserError(f"derive {run}: {exc}") from None
    check_strategy_options(overrides, cfg)
    Budget(make_space(cfg), cfg).check_feasible()  # before the weights are loaded
    json_path, png_path = pareto_paths(out)
    check_outputs(force, files={"--out": out, "--out's Pareto front": json_path, "--out's Pareto plot": png_path},
                  inputs={"RUN_DIR": run, "--latency-table": cfg.latency_table})
    started = time.perf_counter()
    engine = SearchEngine(SearchConfig(**{**cfg.to_dict(), "strategy": trained_by}),
                       RunDir(run), DistContext(0, 1, 0, pick_device(cfg.device)))
    engine.load()  # another version's or a foreign checkpoint: one error line
    reused = 0 if rescore else engine.rewards.reuse(earlier_scores(run))
    strategy = engine.strategy
    if wanted != trained_by:
        strategy = STRATEGIES.get(wanted)(engine.space, cfg, engine.budget, engine.arch_gen)
    derived = derive(engine, out, strategy=strategy,
                     provenance={"search": {"run_dir": str(run.resolve()), "data": cfg.data, "seed": cfg.seed,
                                            "epochs_trained": engine.epoch, "derived_again": True}})
    print(derived.table, flush=True)
    reuse_note = (f"; {reused} accuracies reused from {run}'s pareto.json (same weights; --rescore scores them "
                  "again)" if reused else "")
    print(f"derived from {run} (epoch {engine.epoch}) in {time.perf_counter() - started:.1f} s: {derived.closeness}; "
          f"wrote {out}, {json_path.name}, {png_path.name}{reuse_note}", flush=True)
    return derived.arch
