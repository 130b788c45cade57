"""The search's settings: defaults (the paper's), its preset table, validation.

Layering and --resume merging are facenar.config's, shared with training; a config is stored as
the run's config.json and a resume must match it except for RESUMABLE keys.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_tools.cli import UserError, number, probability
from facenar.config import RunConfig, preset_key, task_presets
from facenar.schedule import schedule_problem
from facenar.space.arch import BACKBONES, GRANULARITIES
from facenar.space.ops import OPS, PAPER_OPS
from facenar.tasks import check_task_options, get_task

# Settings that finish on the demo proxy in a few minutes on 2 CPU cores; "paper" = the defaults.
# A net this small does not learn 200 identities with ArcFace s=64, m=0.5 in 360 steps (measured:
# train accuracy ~1%), hence s=16, m=0.1; with only 60 controller steps, Adam's lr is raised to 5e-3
# so the policy visibly moves (entropy 11.1 -> 8.4 nats instead of 11.0).
PRESETS: dict[str, dict] = {
    "paper": {},
    "demo": dict(backbone="iresnet18", width=0.25, input_size=32, embedding_size=64, epochs=6,
                 pretrain_epochs=2, t0=2, t_mult=2, batch_size=64, steps_per_epoch=60, scale=16.0,
                 m2=0.1, controller_steps=15, controller_samples=10, controller_lr=5e-3, val_batch=128,
                 derive_samples=20, random_samples=20, population=20, tournament=5, evolution_cycles=150),
}
# Classification presets (--task cifar10 / imagenet; "paper" = the face defaults where this table is silent).
# cifar10 demo: a width-0.25 ResNet-18 on the demo CIFAR; from the measured 16.8 ms/image training and 5.7 ms/image
# scoring (1 thread, load 8): 7,680 training + ~16,000 scored + ~11,000 derivation images, about 5 minutes.
TASK_PRESETS: dict[str, dict[str, dict]] = {
    "cifar10": {
        "paper": dict(backbone="resnet18", width=1.0, input_size=32, embedding_size=512),
        "demo": dict(backbone="resnet18", width=0.25, input_size=32, embedding_size=128, epochs=4, pretrain_epochs=1,
                     t0=4, t_mult=1, batch_size=64, steps_per_epoch=30, controller_steps=10, controller_samples=8,
                     controller_lr=5e-3, val_batch=64, derive_samples=10, random_samples=10, population=16,
                     tournament=4, evolution_cycles=80),
    },
    "imagenet": {
        "paper": dict(backbone="resnet18", width=1.0, input_size=224, embedding_size=512),
        "demo": dict(backbone="resnet18", width=0.125, input_size=64, embedding_size=64, epochs=2, pretrain_epochs=1,
                     t0=2, t_mult=1, batch_size=16, controller_steps=3, controller_samples=4, controller_lr=5e-3,
                     val_batch=20, derive_samples=4, random_samples=4, population=8, tournament=3,
                     evolution_cycles=12),
    },
}
PRESETS.update(task_presets(TASK_PRESETS))
# options only the face task reads (config key -> flag), refused with another --task
FACE_ONLY = {"scale": "--scale", "m2": "--margin-m2", "augment": "--augment"}
# the search space; on the implicit demo preset (no --data, no --preset) these options are refused
SPACE_KEYS = ("backbone", "width", "input_size", "embedding_size", "ops", "granularity")
_COUNT, _COUNT0 = number(int, min=1), number(int, min=0)
RANGES = dict(width=number(float, gt=0), input_size=_COUNT, embedding_size=_COUNT, epochs=_COUNT,
              pretrain_epochs=_COUNT0, t0=number(float, min=1), t_mult=number(float, min=1),
              lr=number(float, gt=0), lr_min=number(float, min=0), momentum=number(float, gt=0, lt=1),
              weight_decay=number(float, min=0), batch_size=_COUNT, steps_per_epoch=_COUNT0,
              scale=number(float, gt=0), m2=number(float, min=0), controller_steps=_COUNT,
              controller_samples=_COUNT, controller_lr=number(float, gt=0), entropy_weight=number(float, min=0),
              baseline_decay=probability(), tanh_constant=number(float, gt=0), temperature=number(float, gt=0),
              val_batch=_COUNT, derive_samples=_COUNT0, random_samples=_COUNT0, target_macs=number(float, gt=0),
              target_latency=number(float, gt=0), cost_weight=number(float, lt=0), seed=_COUNT0, workers=_COUNT0,
              layers=number(int, min=2), channels=number(int, min=2), skip_weight=number(float, min=0),
              skip_target=number(float, gt=0, lt=1), max_macs=number(float, gt=0), max_params=number(float, gt=0),
              max_latency_ms=number(float, gt=0), population=number(int, min=2), tournament=_COUNT,
              evolution_cycles=_COUNT0)
# where each default comes from: the NAR paper, ArcFace (Deng et al.), ENAS (Pham et al.; the controller
# and shared-weight training NAR builds on), Real (Real et al., 2019: regularized evolution), or ours
SOURCES = dict(backbone="paper", width="ArcFace", input_size="ArcFace", embedding_size="ArcFace", ops="paper",
               granularity="paper", epochs="paper", pretrain_epochs="ours", t0="paper", t_mult="paper",
               lr="paper", lr_min="paper", momentum="ENAS", weight_decay="ArcFace", batch_size="ours",
               steps_per_epoch="ours", augment="ArcFace", scale="ArcFace", m2="ArcFace", controller_steps="ENAS",
               controller_samples="ENAS", controller_lr="ENAS", entropy_weight="ENAS", baseline_decay="ENAS",
               tanh_constant="ENAS", val_batch="ours", reward_bn="ENAS", derive_samples="ours",
               random_samples="ours", space="paper", layers="ENAS", channels="ENAS", skip_weight="ENAS",
               skip_target="ENAS", strategy="paper", population="Real", tournament="Real",
               evolution_cycles="ours", cost="ours", cost_weight="ours", amp="ours", seed="ours", device="ours",
               workers="ours")


@dataclass
class SearchConfig(RunConfig):
    """Every setting of a search (stored as config.json; a resume must match it except RESUMABLE)."""

    PRESETS = PRESETS
    RESUMABLE = ("data", "device", "workers")
    OLD_NAMES = {"lr_max": "lr", "margin_s": "scale", "margin_m": "m2"}
    RANGES, SOURCES, FLAGS = RANGES, SOURCES, {"m2": "--margin-m2"}

    task: str = "face"
    data: str = ""
    backbone: str = "iresnet50"
    width: float = 1.0
    input_size: int = 112
    embedding_size: int = 512
    ops: list[str] = field(default_factory=lambda: list(PAPER_OPS))
    granularity: str = "block"
    space: str = "nar"                   # nar | enas (ENAS's macro space: the options below)
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
    workers: int | None = None           # None: 0 on CPU, 4 on CUDA
    preset: str | None = None

    def differences(self, reference: str = "paper") -> dict:
        """As RunConfig's, less the options of strategies this run does not use (the demo preset sets them)."""
        from facenar.search.strategies import STRATEGIES

        unused = {key for name in STRATEGIES if name != self.strategy for key in STRATEGIES.get(name).OPTIONS}
        return {k: v for k, v in super().differences(reference).items() if k not in unused}

    def check(self) -> None:
        """One clear message for each setting a user can get wrong."""
        unknown = [name for name in self.ops if name not in OPS]
        if unknown:
            raise UserError(f"--ops: unknown operator(s) {', '.join(unknown)}; known: {', '.join(OPS)}")
        if len(self.ops) < 2 or len(set(self.ops)) != len(self.ops):
            raise UserError(f"--ops needs at least two distinct operators, got {','.join(self.ops)}")
        if self.backbone not in BACKBONES or self.granularity not in GRANULARITIES:
            raise UserError(f"unknown backbone {self.backbone!r} or granularity {self.granularity!r}")
        problem = schedule_problem(self.t0, self.t_mult, self.lr, self.lr_min)
        if problem:
            raise UserError(f"--t0/--t-mult/--lr/--lr-min: {problem}")
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
        if self.space not in ("nar", "enas"):
            raise UserError(f"--space must be nar or enas, got {self.space!r}")
        if self.space == "enas":
            self._check_enas()

    def _check_enas(self) -> None:
        if self.channels % 2:
            raise UserError(f"--space enas needs an even --channels (its factorized reductions split them in "
                            f"two), got {self.channels}")
        if self.target_macs or self.cost == "latency" or self.max_latency_ms:
            raise UserError("--target-macs / --cost latency / --max-latency-ms work only with --space nar")


def search_space(cfg: SearchConfig):
    """The Arch template of this search (codes all 0): backbone, size and candidates."""
    from facenar.space.arch import Arch, num_slots

    return Arch(cfg.backbone, [0] * num_slots(cfg.backbone, cfg.granularity), cfg.ops, cfg.width,
                cfg.input_size, cfg.embedding_size, cfg.granularity)


# options that belong to one search space only: giving one with the other space is an error
SPACE_OPTIONS = {"nar": ("backbone", "width", "embedding_size", "ops", "granularity"),
                 "enas": ("layers", "channels", "skip_weight", "skip_target")}


def check_space_options(explicit: dict, cfg: SearchConfig) -> SearchConfig:
    """Refuse options of the other search space (they would silently do nothing)."""
    for space, names in SPACE_OPTIONS.items():
        given = [f"--{name.replace('_', '-')}" for name in names if name in explicit]
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
        check_task_options(explicit.get("task") or stored.get("task", "face"), explicit, FACE_ONLY)
        return check_options(explicit, SearchConfig.resolve(explicit, preset, stored, where=resume))
    task = explicit.get("task") or PRESETS.get(preset or "", {}).get("task", "face")
    check_task_options(task, explicit, FACE_ONLY)
    if not preset and not explicit.get("data"):
        given = [SearchConfig.flag(k) for k in SPACE_KEYS if k in explicit]
        if given:
            demo = ", ".join(f"{k}={v}" for k, v in PRESETS[preset_key(task, "demo")].items() if k in SPACE_KEYS)
            raise UserError(f"{', '.join(given)}: without --data the demo preset is active and sets its own search "
                            f"space ({demo}); choose the preset explicitly: --preset demo to change the demo's "
                            "space, or --preset paper for the paper's settings")
    preset = preset_key(task, preset or ("paper" if explicit.get("data") else "demo"))
    if PRESETS.get(preset, {}).get("task", "face") != task:
        raise UserError(f"--preset {preset} is a preset of another task than --task {task}")
    if not explicit.get("data") and task == "face":
        from data_tools.proxy import ensure_demo_proxy

        explicit["data"] = str(Path(ensure_demo_proxy()).resolve())
    elif not explicit.get("data"):
        explicit["data"] = str(Path(get_task(task).default_data()).resolve())
    return check_options(explicit, SearchConfig.resolve(explicit, preset))
