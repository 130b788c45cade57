"""Training options: defaults (the paper's final-training setting), its preset table, schedule.

Layering (defaults < --preset < options given) and --resume merging (stored config.json, only
RESUMABLE options may change) are facenar.config's, shared with the search.
"""
from __future__ import annotations

from dataclasses import dataclass

from facenar_runtime.cli import number
from facenar_runtime.errors import UserError
from facenar.config import DEFAULT_TASK, SHARED_RANGES, RunConfig, preset_key
from facenar.space.arch import Arch
from facenar.tasks.base import TASKS, check_task_options, task_presets
from facenar_runtime import limits
from facenar.tasks.face import DEFAULT_BENCHES
from facenar.tasks.heads import MarginSoftmax
from facenar.schedule import poly_lr, schedule_problem, sgdr_lr, LR_SCALES, lr_scale_factor
from facenar.speed import COMPILE_MODES

# (m1, m2, m3) of the combined margin cos(m1*theta + m2) - m3 for each --margin kind
MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.4), "combined": (1.0, 0.3, 0.2)}
# architecture choices a preset makes for its own baseline network
ARCH_KEYS = ("backbone", "width", "input_size", "embedding_size")
# every task's training presets: the face task's "paper" / "demo", others' "<task>-paper" / "<task>-demo"
PRESETS = task_presets("train")
# --lr-scale linear: lr x global batch / this (ArcFace's batch: 4 GPUs x 128)
REFERENCE_BATCH = 512
_COUNT = number(int, min=1, max=limits.STEPS)
RANGES = dict(SHARED_RANGES, m1=number(float, gt=0, max=limits.MARGIN_MULTIPLIER),
              m3=number(float, min=0, max=limits.MARGIN_COSINE), sample_rate=number(float, gt=0, max=1),
              dropout=number(float, min=0, lt=1), grad_clip=number(float, min=0, max=limits.CLIP_NORM),
              verify_every=number(int, min=0, max=limits.STEPS), verify_batch=number(int, min=1, max=limits.BATCH),
              checkpoint_every=_COUNT, log_every=_COUNT, max_steps=_COUNT)
# where each default comes from: the NAR paper, ArcFace (Deng et al., LResNet50E-IR on MS1M), insightface's
# arcface_torch (its training scripts), or ours (engineering choices the papers do not make)
SOURCES = dict(backbone="paper", embedding_size="ArcFace", epochs="paper", batch_size="ArcFace", lr="paper",
               lr_min="paper", lr_scale="ours", schedule="paper", t0="paper", t_mult="paper", momentum="ArcFace",
               weight_decay="ArcFace", margin="ArcFace", scale="ArcFace", dropout="ArcFace",
               sample_rate="arcface_torch", amp="ours", grad_clip="arcface_torch", augment="ArcFace", seed="ours",
               workers="ours", device="ours", verify_every="ours", verify_batch="ours", bench="ArcFace",
               checkpoint_every="ours", log_every="ours", compile="ours", channels_last="ours")
@dataclass
class TrainConfig(RunConfig):
    """Every option of a training run; stored as RUN_DIR/config.json (plus the resolved architecture)."""

    PRESETS = PRESETS
    # may change when a run is resumed (they do not change what is being trained)
    RESUMABLE = ("data", "max_steps", "workers", "device", "verify_every", "checkpoint_every", "log_every",
                 "verify_batch", "compile", "channels_last")
    RANGES, SOURCES = RANGES, SOURCES
    FLAGS = {"m1": "--margin-m1", "m2": "--margin-m2", "m3": "--margin-m3", "arch_file": "--arch"}

    task: str = DEFAULT_TASK
    data: str | None = None              # emore folder; None = the built-in demo data
    arch_file: str | None = None         # architecture JSON; None = the baseline of `backbone`
    backbone: str = "iresnet50"
    width: float | None = None           # overrides of the architecture (CPU-sized runs)
    input_size: int | None = None
    embedding_size: int | None = None
    epochs: int = 35
    batch_size: int = 128                # per process
    lr: float = 0.1
    lr_min: float = 1e-4
    lr_scale: str = "none"               # linear: lr and lr_min x global batch / REFERENCE_BATCH
    schedule: str = "sgdr"
    t0: float = 5
    t_mult: float = 2
    momentum: float = 0.9
    weight_decay: float = 5e-4
    margin: str = "arcface"
    m1: float | None = None              # None = the kind's default (MARGINS)
    m2: float | None = None
    m3: float | None = None
    scale: float = 64.0
    dropout: float = 0.4                 # the "E" head's BN-Dropout-FC-BN (0.4: ArcFace on MS1M)
    sample_rate: float = 1.0
    amp: str = "off"                     # CUDA autocast: auto (= bf16), bf16, fp16, off
    grad_clip: float = 5.0
    augment: str = "flip"
    seed: int = 0
    workers: int | None = None           # None: 2 on a CPU; on CUDA the cores per GPU process, less one
    device: str = "auto"
    verify_every: int = 0                # steps; 0 = at the end of every epoch
    verify_batch: int = 256
    bench: str = ",".join(DEFAULT_BENCHES)
    checkpoint_every: int = 1000         # steps (and always at the end of an epoch)
    log_every: int = 50
    max_steps: int | None = None
    compile: str = "off"                 # torch.compile mode of network + head (facenar.speed); off = eager
    channels_last: bool = False          # channels_last memory for the network (docs/guides/speed.md)
    preset: str | None = None

    @property
    def margins(self) -> tuple[float, float, float]:
        defaults = MARGINS[self.margin]
        given = (self.m1, self.m2, self.m3)
        return tuple(d if g is None else float(g) for g, d in zip(given, defaults))

    @property
    def benches(self) -> list[str]:
        return [name.strip() for name in self.bench.split(",") if name.strip()]

    @classmethod
    def upgrade(cls, stored: dict) -> dict:
        """Runs stored before --amp had `fp16: true/false`; runs stored before --dropout trained without."""
        stored = {"dropout": 0.0, **stored}
        if "fp16" in stored:
            stored["amp"] = "fp16" if stored.pop("fp16") else "off"
        return super().upgrade(stored)

    def check(self) -> None:
        if self.amp not in ("auto", "bf16", "fp16", "off"):
            raise UserError(f"--amp must be auto, bf16, fp16 or off, got {self.amp!r}")
        if self.compile not in COMPILE_MODES:
            raise UserError(f"--compile must be one of {', '.join(COMPILE_MODES)}, got {self.compile!r}")
        if self.margin not in MARGINS:
            raise UserError(f"--margin must be one of {', '.join(MARGINS)}, got {self.margin!r}")
        if self.schedule not in ("sgdr", "poly"):
            raise UserError(f"--schedule must be sgdr or poly, got {self.schedule!r}")
        if self.lr_scale not in LR_SCALES:
            raise UserError(f"--lr-scale must be linear or none, got {self.lr_scale!r}")
        repeated = sorted({name for name in self.benches if self.benches.count(name) > 1})
        if repeated:
            raise UserError(f"--bench names {repeated[0]!r} twice")
        problem = schedule_problem(self.t0, self.t_mult, self.lr, self.lr_min)
        if problem:
            raise UserError(f"--t0/--t-mult/--lr/--lr-min: {problem}")
        try:
            self.make_margin()
        except ValueError as exc:
            raise UserError(f"--margin {self.margin}: {exc}") from None

    def preset_settings(self) -> dict:
        """A given --arch keeps its own size: the preset's architecture settings do not apply to it."""
        settings = super().preset_settings()
        return {k: v for k, v in settings.items() if k not in ARCH_KEYS} if self.arch_file else settings

    def differences(self, reference: str = "paper") -> dict:
        """With --arch the network comes from the file (named by arch_file), not from backbone/width/..."""
        diff = super().differences(reference)
        return {k: v for k, v in diff.items() if k not in ARCH_KEYS} if self.arch_file else diff

    def make_margin(self) -> MarginSoftmax:
        return MarginSoftmax(self.margin, self.scale, *self.margins)


def resolve_config(explicit: dict, preset: str | None = None, stored: dict | None = None,
                   where: str = "") -> TrainConfig:
    """RunConfig.resolve, plus: a given --arch keeps its own size (a preset's is for its baseline); another
    task than face takes its own presets (demo without --data) and refuses the face task's options."""
    task = (explicit.get("task") or (stored or {}).get("task")
            or PRESETS.get(preset or "", {}).get("task", DEFAULT_TASK))
    check_task_options(task, explicit, "train", TrainConfig.flag)
    demo_by_default = task in TASKS and TASKS.get(task).train_demo_by_default
    if stored is None and (demo_by_default or preset is not None):
        preset = preset_key(task, preset or ("paper" if explicit.get("data") else "demo"))
        if PRESETS.get(preset, {}).get("task", DEFAULT_TASK) != task:
            raise UserError(f"--preset {preset} is a preset of another task than --task {task}")
    if stored is None and explicit.get("arch_file") and preset in PRESETS:
        base = {k: v for k, v in PRESETS[preset].items() if k not in ARCH_KEYS}
        return TrainConfig.resolve({**base, **explicit, "preset": preset})
    return TrainConfig.resolve(explicit, preset, stored, where)


def lr_factor(cfg: TrainConfig, global_batch: int) -> float:
    """What --lr-scale multiplies the whole schedule by (both SGDR and poly are linear in the lrs)."""
    return lr_scale_factor(cfg.lr_scale, global_batch, REFERENCE_BATCH)


def resolve_arch(cfg: TrainConfig) -> Arch:
    arch = Arch.load(cfg.arch_file) if cfg.arch_file else Arch.baseline(cfg.backbone)
    changes = {k: getattr(cfg, k) for k in ("width", "input_size", "embedding_size") if getattr(cfg, k) is not None}
    return Arch.from_dict({**arch.to_dict(), **changes}) if changes else arch


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """The schedule as a pure function of fractional epoch (so a resumed run continues it exactly)."""
    if cfg.schedule == "poly":
        return poly_lr(epoch, cfg.epochs, cfg.lr)
    return sgdr_lr(epoch, cfg.t0, cfg.t_mult, cfg.lr, cfg.lr_min)
