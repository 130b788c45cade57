"""Training options: defaults (the paper's final-training setting), its preset table, schedule.

Layering (defaults < --preset < options given) and --resume merging (stored config.json, only
RESUMABLE options may change) are facenar.config's, shared with the search.
"""
from __future__ import annotations

from dataclasses import dataclass

from data_tools.cli import UserError, number
from facenar.config import RunConfig, preset_key, task_presets
from facenar.space.arch import Arch
from facenar.tasks import check_task_options
from facenar.tasks.heads import MarginSoftmax
from facenar.schedule import LR_SCALES, lr_scale_factor, poly_lr, schedule_problem, sgdr_lr

# (m1, m2, m3) of the combined margin cos(m1*theta + m2) - m3 for each --margin kind
MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.4), "combined": (1.0, 0.3, 0.2)}
# architecture choices a preset makes for its own baseline network
ARCH_KEYS = ("backbone", "width", "input_size", "embedding_size")
# A tiny CPU-sized network and schedule that learns the demo data in a few minutes; "paper" = the defaults.
# No dropout there: a net this small on 2 epochs underfits, and the demo runs stay as they were.
PRESETS = {
    "paper": {},
    "demo": dict(backbone="iresnet18", width=0.125, input_size=56, embedding_size=128, epochs=2,
                 batch_size=64, t0=2, log_every=20, checkpoint_every=200, workers=1, dropout=0.0),
}
# --lr-scale linear: lr x global batch / this (ArcFace's batch: 4 GPUs x 128)
REFERENCE_BATCH = 512
_COUNT, _COUNT0 = number(int, min=1), number(int, min=0)
RANGES = dict(width=number(float, gt=0), input_size=_COUNT, embedding_size=_COUNT, epochs=_COUNT,
              batch_size=_COUNT, lr=number(float, gt=0), lr_min=number(float, min=0), t0=_COUNT, t_mult=_COUNT,
              momentum=number(float, min=0, lt=1), weight_decay=number(float, min=0), m1=number(float, gt=0),
              m2=number(float), m3=number(float), scale=number(float, gt=0), sample_rate=number(float, gt=0, max=1),
              dropout=number(float, min=0, lt=1), grad_clip=number(float, min=0), seed=_COUNT0,
              workers=_COUNT0, verify_every=_COUNT0, verify_batch=_COUNT, checkpoint_every=_COUNT,
              log_every=_COUNT, max_steps=_COUNT)
# where each default comes from: the NAR paper, ArcFace (Deng et al., LResNet50E-IR on MS1M), insightface's
# arcface_torch (its training scripts), or ours (engineering choices the papers do not make)
SOURCES = dict(backbone="paper", embedding_size="ArcFace", epochs="paper", batch_size="ArcFace", lr="paper",
               lr_min="paper", lr_scale="ours", schedule="paper", t0="paper", t_mult="paper", momentum="ArcFace",
               weight_decay="ArcFace", margin="ArcFace", scale="ArcFace", dropout="ArcFace",
               sample_rate="arcface_torch", amp="ours", grad_clip="arcface_torch", augment="ArcFace", seed="ours",
               workers="ours", device="ours", verify_every="ours", verify_batch="ours", bench="ArcFace",
               checkpoint_every="ours", log_every="ours")
# Classification presets (--task cifar10 / imagenet). cifar10 paper: SGD 0.9, wd 5e-4, batch 128, SGDR
# T0=10, T_mult=2 over 150 epochs (cycles 10+20+40+80 end together). imagenet paper: the standard
# ResNet-18 recipe with one 90-epoch cosine (SGDR T0=90, no restart) instead of step decay; batch 256
# per process, i.e. pass --batch-size 256/N to N processes. Demo: CPU-sized, a few minutes on 2 cores;
# embedding_size = ResNet-18's feature length, 512 x width.
CLASSIFICATION = dict(grad_clip=0.0, lr_min=0.0)
TASK_PRESETS = {
    "cifar10": {
        "paper": dict(CLASSIFICATION, backbone="resnet18", width=1.0, input_size=32, epochs=150, batch_size=128,
                      lr=0.1, t0=10, t_mult=2, momentum=0.9, weight_decay=5e-4),
        "demo": dict(CLASSIFICATION, backbone="resnet18", width=0.25, input_size=32, embedding_size=128, epochs=3,
                     batch_size=64, lr=0.05, t0=3, t_mult=1, log_every=10, checkpoint_every=200, workers=1),
    },
    "imagenet": {
        "paper": dict(CLASSIFICATION, backbone="resnet18", width=1.0, input_size=224, epochs=90, batch_size=256,
                      lr=0.1, t0=90, t_mult=1, momentum=0.9, weight_decay=1e-4, workers=8),
        "demo": dict(CLASSIFICATION, backbone="resnet18", width=0.125, input_size=64, embedding_size=64, epochs=2,
                     batch_size=16, lr=0.05, t0=2, t_mult=1, log_every=4, workers=1),
    },
}
PRESETS.update(task_presets(TASK_PRESETS))
# options only the face task reads (config key -> flag), refused with another --task
FACE_ONLY = {"margin": "--margin", "m1": "--margin-m1", "m2": "--margin-m2", "m3": "--margin-m3",
             "scale": "--scale", "sample_rate": "--sample-rate", "bench": "--bench", "augment": "--augment"}


@dataclass
class TrainConfig(RunConfig):
    """Every option of a training run; stored as RUN_DIR/config.json (plus the resolved architecture)."""

    PRESETS = PRESETS
    # may change when a run is resumed (they do not change what is being trained)
    RESUMABLE = ("data", "max_steps", "workers", "device", "verify_every", "checkpoint_every", "log_every",
                 "verify_batch")
    RANGES, SOURCES = RANGES, SOURCES
    FLAGS = {"m1": "--margin-m1", "m2": "--margin-m2", "m3": "--margin-m3", "arch_file": "--arch"}

    task: str = "face"
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
    t0: int = 5
    t_mult: int = 2
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
    bench: str = "lfw,cfp_fp,agedb_30"
    checkpoint_every: int = 1000         # steps (and always at the end of an epoch)
    log_every: int = 50
    max_steps: int | None = None
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
        if self.margin not in MARGINS:
            raise UserError(f"--margin must be one of {', '.join(MARGINS)}, got {self.margin!r}")
        if self.schedule not in ("sgdr", "poly"):
            raise UserError(f"--schedule must be sgdr or poly, got {self.schedule!r}")
        if self.lr_scale not in LR_SCALES:
            raise UserError(f"--lr-scale must be linear or none, got {self.lr_scale!r}")
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
    task = explicit.get("task") or (stored or {}).get("task") or PRESETS.get(preset or "", {}).get("task", "face")
    check_task_options(task, explicit, FACE_ONLY)
    if stored is None and (task != "face" or preset is not None):
        preset = preset_key(task, preset or ("paper" if explicit.get("data") else "demo"))
        if PRESETS.get(preset, {}).get("task", "face") != task:
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
