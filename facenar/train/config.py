"""Training options: defaults (the paper's final-training setting), its preset table, schedule.

Layering (defaults < --preset < options given) and --resume merging (stored config.json, only
RESUMABLE options may change) are facenar.config's, shared with the search.
"""
from __future__ import annotations

from dataclasses import dataclass

from data_tools.cli import UserError
from facenar.config import RunConfig
from facenar.space.arch import Arch
from facenar.tasks.heads import MarginSoftmax
from facenar.schedule import poly_lr, sgdr_lr

# (m1, m2, m3) of the combined margin cos(m1*theta + m2) - m3 for each --margin kind
MARGINS = {"arcface": (1.0, 0.5, 0.0), "cosface": (1.0, 0.0, 0.4), "combined": (1.0, 0.3, 0.2)}
# architecture choices a preset makes for its own baseline network
ARCH_KEYS = ("backbone", "width", "input_size", "embedding_size")
# A tiny CPU-sized network and schedule that learns the demo data in a few minutes; "paper" = the defaults.
PRESETS = {
    "paper": {},
    "demo": dict(backbone="iresnet18", width=0.125, input_size=56, embedding_size=128, epochs=2,
                 batch_size=64, t0=2, log_every=20, checkpoint_every=200, workers=1),
}


@dataclass
class TrainConfig(RunConfig):
    """Every option of a training run; stored as RUN_DIR/config.json (plus the resolved architecture)."""

    PRESETS = PRESETS
    # may change when a run is resumed (they do not change what is being trained)
    RESUMABLE = ("data", "max_steps", "workers", "device", "verify_every", "checkpoint_every", "log_every",
                 "verify_batch")

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
    sample_rate: float = 1.0
    amp: str = "off"                     # CUDA autocast: auto (= bf16), bf16, fp16, off
    grad_clip: float = 5.0
    augment: str = "flip"
    seed: int = 0
    workers: int = 2
    device: str = "auto"
    verify_every: int = 0                # steps; 0 = at the end of every epoch
    verify_batch: int = 256
    bench: str = "lfw,cfp_fp,agedb_30"
    checkpoint_every: int = 1000         # steps (and always at the end of an epoch)
    log_every: int = 50
    max_steps: int | None = None

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
        """Runs stored before --amp had `fp16: true/false`."""
        stored = dict(stored)
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
        for name in ("epochs", "batch_size", "log_every", "checkpoint_every", "verify_batch"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0.0 < self.sample_rate <= 1.0:
            raise UserError(f"--sample-rate must be in (0, 1], got {self.sample_rate}")
        if self.lr <= 0 or self.workers < 0 or self.verify_every < 0:
            raise UserError("--lr must be positive, --workers and --verify-every not negative")
        try:
            self.make_margin()
        except ValueError as exc:
            raise UserError(f"--margin {self.margin}: {exc}") from None

    def make_margin(self) -> MarginSoftmax:
        return MarginSoftmax(self.margin, self.scale, *self.margins)


def resolve_config(explicit: dict, preset: str | None = None, stored: dict | None = None,
                   where: str = "") -> TrainConfig:
    """RunConfig.resolve, plus: a given --arch keeps its own size (a preset's is for its baseline)."""
    if stored is None and explicit.get("arch_file") and preset in PRESETS:
        base = {k: v for k, v in PRESETS[preset].items() if k not in ARCH_KEYS}
        return TrainConfig.resolve({**base, **explicit})
    return TrainConfig.resolve(explicit, preset, stored, where)


def resolve_arch(cfg: TrainConfig) -> Arch:
    arch = Arch.load(cfg.arch_file) if cfg.arch_file else Arch.baseline(cfg.backbone)
    changes = {k: getattr(cfg, k) for k in ("width", "input_size", "embedding_size") if getattr(cfg, k) is not None}
    return Arch.from_dict({**arch.to_dict(), **changes}) if changes else arch


def lr_at(cfg: TrainConfig, epoch: float) -> float:
    """The schedule as a pure function of fractional epoch (so a resumed run continues it exactly)."""
    if cfg.schedule == "poly":
        return poly_lr(epoch, cfg.epochs, cfg.lr)
    return sgdr_lr(epoch, cfg.t0, cfg.t_mult, cfg.lr, cfg.lr_min)
