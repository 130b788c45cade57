"""The search's settings: defaults (the paper's), its preset table, validation.

Layering and --resume merging are facenar.config's, shared with training; a config is stored as
the run's config.json and a resume must match it except for RESUMABLE keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from facenar_runtime.cli import number, probability
from facenar_runtime.errors import UserError
from facenar.config import DEFAULT_TASK, SHARED_RANGES, RunConfig, preset_key
from facenar.speed import COMPILE_MODES
from facenar.schedule import schedule_problem, LR_SCALES
from facenar.space.arch import BACKBONES, GRANULARITIES
from facenar.registry import Registry
from facenar.space.ops import PAPER_OPS, space_ops
from facenar.tasks.base import check_task_options, get_task, task_presets
from facenar_runtime import limits

# the search spaces, each registered in facenar.search.spaces with the options only it reads
SPACES = Registry("search space", modules=("facenar.search.spaces",))
# every task's search presets: the face task's "paper" / "demo", others' "<task>-paper" / "<task>-demo"
PRESETS: dict[str, dict] = task_presets("search")
# the search space; on the implicit demo preset (no --data, no --preset) these options are refused
SPACE_KEYS = ("backbone", "width", "input_size", "embedding_size", "ops", "granularity")
_COUNT = number(int, min=1, max=limits.SAMPLES)
RANGES = dict(SHARED_RANGES, pretrain_epochs=number(int, min=0, max=limits.EPOCHS),
              steps_per_epoch=number(int, min=0, max=limits.STEPS), controller_steps=_COUNT, controller_samples=_COUNT,
              controller_lr=number(float, gt=0, max=limits.LEARNING_RATE),
              entropy_weight=number(float, min=0, max=limits.CONTROLLER_WEIGHT), baseline_decay=probability(),
              tanh_constant=number(float, gt=0, max=limits.LOGIT_RANGE),
              temperature=number(float, gt=0, max=limits.LOGIT_RANGE), val_batch=number(int, min=1, max=limits.BATCH),
              derive_samples=number(int, min=0, max=limits.SAMPLES), random_samples=number(int, min=0, max=limits.SAMPLES),
              target_macs=number(float, gt=0, max=limits.MACS), target_latency=number(float, gt=0, max=limits.MILLISECONDS),
              cost_weight=number(float, min=-limits.COST_EXPONENT, lt=0), layers=number(int, min=2, max=limits.LAYERS),
              channels=number(int, min=2, max=limits.CHANNELS),
              skip_weight=number(float, min=0, max=limits.CONTROLLER_WEIGHT), skip_target=number(float, gt=0, lt=1),
              max_macs=number(float, gt=0, max=limits.MACS), max_params=number(float, gt=0, max=limits.MACS),
              max_latency_ms=number(float, gt=0, max=limits.MILLISECONDS),
              population=number(int, min=2, max=limits.SAMPLES), tournament=_COUNT,
              evolution_cycles=number(int, min=0, max=limits.SAMPLES))
# where each default comes from: the NAR paper, ArcFace (Deng et al.), ENAS (Pham et al.; the controller
# and shared-weight training NAR builds on), Real (Real et al., 2019: regularized evolution), or ours
SOURCES = dict(backbone="paper", width="ArcFace", input_size="ArcFace", embedding_size="ArcFace", ops="paper",
               granularity="paper", epochs="paper", pretrain_epochs="ours", t0="paper", t_mult="paper",
               lr="paper", lr_min="paper", lr_scale="ours", momentum="ENAS", weight_decay="ArcFace", batch_size="ours",
               steps_per_epoch="ours", augment="ArcFace", scale="ArcFace", m2="ArcFace", controller_steps="ENAS",
               controller_samples="ENAS", controller_lr="ENAS", entropy_weight="ENAS", baseline_decay="ENAS",
               tanh_constant="ENAS", val_batch="ours", reward_bn="ENAS", derive_samples="ours",
               random_samples="ours", space="paper", layers="ENAS", channels="ENAS", skip_weight="ENAS",
               skip_target="ENAS", strategy="paper", population="Real", tournament="Real",
               evolution_cycles="ours", cost="ours", cost_weight="ours", amp="ours", seed="ours", device="ours",
               compile="ours",
               workers="ours")


@dataclass
class SearchConfig(RunConfig):
    """Every setting of a search (stored as config.json; a resume must match it except RESUMABLE)."""

    PRESETS = PRESETS
    RESUMABLE = ("data", "device", "workers", "compile")
    OLD_NAMES = {"lr_max": "lr", "margin_s": "scale", "margin_m": "m2"}
    RANGES, SOURCES, FLAGS = RANGES, SOURCES, {"m2": "--margin-m2"}

    task: str = DEFAULT_TASK
    data: str = ""
    backbone: str = "iresnet50"
    width: float = 1.0
    input_size: int = 112
    embedding_size: int = 512
    ops: list[str] = field(default_factory=lambda: list(PAPER_OPS))
    granularity: str = "block"
    space: str = "nar"                   # a registered search space (SPACES); enas reads the options below
    layers: int = 12                     # enas: layers L
    channels: int = 36                   # enas: channels C
    skip_weight: float = 0.8             # enas: ENAS's skip penalty weight, 0 = off (the paper's Fig. 1)
    skip_target: float = 0.4             # enas: the penalty's target skip probability
    epochs: int = 150
    pretrain_epochs: int = 10
    t0: float = 10
    t_mult: float = 2
    lr: float = 0.1                      # SGDR peak
    lr_min: float = 1e-4
    lr_scale: str = "none"               # linear: lr and lr_min x the number of processes (global batch / batch)
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    steps_per_epoch: int = 0  # 0 = one full pass over the proxy train split
    augment: str = "flip"
    scale: float = 64.0                  # ArcFace logit scale s
    m2: float = 0.5                      # ArcFace angular margin
    strategy: str = "enas"               # facenar.search.strategies: enas | random | evolution
    population: int = 100                # evolution: population size P (Real et al.'s AmoebaNet search)
    tournament: int = 25                 # evolution: sample size S of each tournament (ibid.)
    evolution_cycles: int = 1000         # evolution: cycles per epoch = enas's 50 x 20 reward evaluations
    controller_steps: int = 50
    controller_samples: int = 20
    controller_lr: float = 1e-3
    entropy_weight: float = 1e-4
    baseline_decay: float = 0.99
    tanh_constant: float = 1.5
    temperature: float | None = None
    val_batch: int = 128
    reward_bn: str = "batch"  # see facenar.search.reward.RewardModel.accuracy
    derive_samples: int = 100
    random_samples: int = 20
    cost: str = "macs"
    target_macs: float | None = None
    target_latency: float | None = None
    latency_table: str | None = None
    cost_weight: float = -0.5
    max_macs: float | None = None        # hard budgets (facenar.search.budget)
    max_params: float | None = None
    max_latency_ms: float | None = None  # needs --latency-table
    amp: str = "auto"
    seed: int = 0
    device: str = "auto"
    workers: int | None = None           # None: 0 on CPU; on CUDA the cores per GPU process, less one
    compile: str = "off"                 # torch.compile mode of the supernet's parts (facenar.speed); off = eager
    preset: str | None = None

    def differences(self, reference: str = "paper") -> dict:
        """As RunConfig's, less the options of strategies this run does not use (the demo preset sets them)."""
        from facenar.search.strategies import STRATEGIES

        unused = {key for name in STRATEGIES if name != self.strategy for key in STRATEGIES.get(name).OPTIONS}
        return {k: v for k, v in super().differences(reference).items() if k not in unused}

    def check(self) -> None:
        """One clear message for each setting a user can get wrong."""
        if self.compile not in COMPILE_MODES:
            raise UserError(f"--compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        unknown = [name for name in self.ops if name not in space_ops("nar")]
        if unknown:
            raise UserError(f"--ops: unknown operator(s) {', '.join(unknown)}; known: {', '.join(space_ops('nar'))}")
        if len(self.ops) < 2 or len(set(self.ops)) != len(self.ops):
            raise UserError(f"--ops needs at least two distinct operators, got {','.join(self.ops)}")
        if self.backbone not in BACKBONES or self.granularity not in GRANULARITIES:
            raise UserError(f"unknown backbone {self.backbone!r} or granularity {self.granularity!r}")
        problem = schedule_problem(self.t0, self.t_mult, self.lr, self.lr_min)
        if problem:
            raise UserError(f"--t0/--t-mult/--lr/--lr-min: {problem}")
        if self.lr_scale not in LR_SCALES:
            raise UserError(f"--lr-scale must be linear or none, got {self.lr_scale!r}")
        if self.pretrain_epochs > self.epochs:
            raise UserError(f"--pretrain-epochs {self.pretrain_epochs} exceeds --epochs {self.epochs}")
        if self.reward_bn not in ("batch", "eval"):
            raise UserError(f"--reward-bn must be batch or eval, got {self.reward_bn!r}")
        if self.cost == "latency" and not (self.latency_table and self.target_latency):
            raise UserError("--cost latency needs --latency-table FILE and --target-latency MS")
        if self.cost == "macs" and (self.target_latency or (self.latency_table and not self.max_latency_ms)):
            raise UserError("--target-latency / --latency-table need --cost latency (or --max-latency-ms)")
        if self.max_latency_ms and not self.latency_table:
            raise UserError("--max-latency-ms needs --latency-table FILE (per-operator times on your runtime: "
                            "python -m facenar.arch latency --out FILE)")
        from facenar.search.strategies import STRATEGIES

        if self.strategy not in STRATEGIES:
            raise UserError(f"--strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}")
        if self.strategy == "evolution" and self.tournament > self.population:
            raise UserError(f"--tournament {self.tournament} exceeds --population {self.population}")
        if self.space not in SPACES:
            raise UserError(f"--space must be {' or '.join(SPACES)}, got {self.space!r}")
        SPACES.get(self.space).check_config(self)


def search_space(cfg: SearchConfig):
    """The Arch template of this search (codes all 0): backbone, size and candidates."""
    from facenar.space.arch import Arch, num_slots

    return Arch(cfg.backbone, [0] * num_slots(cfg.backbone, cfg.granularity), cfg.ops, cfg.width,
                cfg.input_size, cfg.embedding_size, cfg.granularity)


def check_space_options(explicit: dict, cfg: SearchConfig) -> SearchConfig:
    """Refuse options of another search space (they would silently do nothing)."""
    for space in SPACES:
        given = [f"--{name.replace('_', '-')}" for name in SPACES.get(space).options if name in explicit]
        if space != cfg.space and given:
            raise UserError(f"{', '.join(given)}: only for --space {space}, but this search uses --space "
                            f"{cfg.space}; drop the option or pass --space {space}")
    return cfg


def check_strategy_options(explicit: dict, cfg: SearchConfig) -> SearchConfig:
    """Refuse options that only another search strategy reads (they would silently do nothing)."""
    from facenar.search.strategies import STRATEGIES

    mine = set(STRATEGIES.get(cfg.strategy).OPTIONS)
    for name in STRATEGIES:
        given = [cfg.flag(key) for key in STRATEGIES.get(name).OPTIONS if key in explicit and key not in mine]
        if given:
            raise UserError(f"{', '.join(given)}: only for --strategy {name}, but this search uses --strategy "
                            f"{cfg.strategy}; drop the option or pass --strategy {name}")
    return cfg


def check_options(explicit: dict, cfg: SearchConfig) -> SearchConfig:
    return check_strategy_options(explicit, check_space_options(explicit, cfg))


def resolve_config(explicit: dict, resume: str | None) -> SearchConfig:
    """RunConfig.resolve, plus the search's own rule: without --data, the demo proxy and demo preset."""
    if explicit.get("data"):
        explicit = {**explicit, "data": str(Path(explicit["data"]).resolve())}
    preset = explicit.pop("preset", None)
    if resume:
        from facenar.rundir import read_run_config

        stored = read_run_config(resume)
        check_task_options(explicit.get("task") or stored.get("task", DEFAULT_TASK), explicit, "search",
                           SearchConfig.flag)
        return check_options(explicit, SearchConfig.resolve(explicit, preset, stored, where=resume))
    task = explicit.get("task") or PRESETS.get(preset or "", {}).get("task", DEFAULT_TASK)
    check_task_options(task, explicit, "search", SearchConfig.flag)
    if not preset and not explicit.get("data"):
        given = [SearchConfig.flag(k) for k in SPACE_KEYS if k in explicit]
        if given:
            demo = ", ".join(f"{k}={v}" for k, v in PRESETS[preset_key(task, "demo")].items() if k in SPACE_KEYS)
            raise UserError(f"{', '.join(given)}: without --data the demo preset is active and sets its own search "
                            f"space ({demo}); choose the preset explicitly: --preset demo to change the demo's "
                            "space, or --preset paper for the paper's settings")
    preset = preset_key(task, preset or ("paper" if explicit.get("data") else "demo"))
    if PRESETS.get(preset, {}).get("task", DEFAULT_TASK) != task:
        raise UserError(f"--preset {preset} is a preset of another task than --task {task}")
    if not explicit.get("data"):
        explicit["data"] = str(Path(get_task(task).default_search_data()).resolve())
    return check_options(explicit, SearchConfig.resolve(explicit, preset))
