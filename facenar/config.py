"""One way to settle a run's settings, for search and training alike.

A config is a dataclass (subclass of RunConfig) stored as RUN_DIR/config.json. Its values are
layered defaults < preset < options given; `--resume RUN_DIR` starts from the stored config
instead (old key names mapped through OLD_NAMES, missing keys taking today's defaults), and only
the keys in RESUMABLE may then differ from it. Presets are data: one table per pipeline, next to
its config, with "paper" = the dataclass defaults.

Every numeric setting has its range declared once, in RANGES (facenar_runtime.cli `number(...)` types):
the command line parses with it, and validate() applies the same range to values that came from a
preset or a stored config.json, so nothing unchecked reaches the work.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import Callable, ClassVar

from facenar_runtime import limits
from facenar_runtime.cli import checked_value, number
from facenar_runtime.errors import UserError


# the range of every setting that search and training both have: declared once, the same in both
SHARED_RANGES = dict(width=number(float, gt=0, max=limits.WIDTH), input_size=number(int, min=1, max=limits.INPUT_SIDE),
                     embedding_size=number(int, min=1, max=limits.EMBEDDING), epochs=number(int, min=1, max=limits.EPOCHS),
                     batch_size=number(int, min=1, max=limits.BATCH), lr=number(float, gt=0, max=limits.LEARNING_RATE),
                     lr_min=number(float, min=0, max=limits.LEARNING_RATE), t0=number(float, min=1, max=limits.EPOCHS),
                     t_mult=number(float, min=1, max=limits.SCHEDULE), momentum=number(float, min=0, lt=1),
                     weight_decay=number(float, min=0, max=limits.WEIGHT_DECAY),
                     scale=number(float, gt=0, max=limits.LOGIT_SCALE), m2=number(float, min=0, max=limits.MARGIN_ANGLE),
                     seed=number(int, min=0, max=limits.SEED), workers=number(int, min=0, max=limits.WORKERS))
DEFAULT_TASK = "face"  # a config without `task` (every run written before tasks existed) is a face run


class RunConfig:
    """Mixin for the config dataclasses: resolve, validate (returns self), diff against a preset."""

    PRESETS: ClassVar[dict[str, dict]] = {"paper": {}}
    RESUMABLE: ClassVar[tuple[str, ...]] = ()     # may change on --resume (they do not change the result)
    OLD_NAMES: ClassVar[dict[str, str]] = {}      # key in an older config.json -> today's key
    RANGES: ClassVar[dict[str, Callable]] = {}    # setting -> its number(...) type (command line and check)
    SOURCES: ClassVar[dict[str, str]] = {}        # setting -> where its default comes from (shown in --help)
    FLAGS: ClassVar[dict[str, str]] = {}          # setting -> its option when not --<name-with-dashes>

    def check(self) -> None:
        """Raise UserError for a setting a user got wrong (per pipeline)."""

    def validate(self):
        self.check_ranges()
        self.check()
        return self

    @classmethod
    def flag(cls, name: str) -> str:
        return cls.FLAGS.get(name, "--" + name.replace("_", "-"))

    def check_ranges(self) -> None:
        """The declared range of every numeric setting, whatever the value came from (None = unset)."""
        for name, parse in self.RANGES.items():
            if getattr(self, name) is not None:
                checked_value(parse, getattr(self, name), self.flag(name))

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def names(cls) -> set[str]:
        return {f.name for f in dataclasses.fields(cls)}

    @classmethod
    def upgrade(cls, stored: dict) -> dict:
        """A stored config.json under today's key names, settings added since taking their defaults."""
        defaults = {f.name: f.default for f in dataclasses.fields(cls) if f.default is not dataclasses.MISSING}
        return {**defaults, **{cls.OLD_NAMES.get(key, key): value for key, value in stored.items()}}

    @classmethod
    def resolve(cls, explicit: dict, preset: str | None = None, stored: dict | None = None, where: str = ""):
        """defaults < preset < explicit; on resume: stored (upgraded) < explicit (RunDir.open_resume then
        refuses any change outside RESUMABLE, with the stored and the new value)."""
        unknown = sorted(set(explicit) - cls.names())
        if unknown:
            raise ValueError(f"unknown {cls.__name__} option(s) {unknown}")
        if stored is not None:
            if preset is not None:
                raise UserError("--resume continues RUN_DIR with its stored options; drop --preset")
            if not set(stored) & cls.names():
                raise UserError(f"--resume {where}: its config.json is not a {cls.__name__} run configuration")
            base = {k: v for k, v in cls.upgrade(stored).items() if k in cls.names()}
            cls.check_types(base, f"{where}/config.json")
            try:
                return cls(**{**base, **explicit}).validate()
            except UserError as exc:
                raise UserError(f"--resume {where}: {exc} (stored in its config.json or given now)") from None
        if preset is not None and preset not in cls.PRESETS:
            raise UserError(f"unknown --preset {preset!r}; choose one of {', '.join(cls.PRESETS)}")
        values = {**cls.PRESETS.get(preset or "paper", {}), **explicit}
        if preset is not None and "preset" in cls.names():
            values["preset"] = preset
        return cls(**values).validate()

    @classmethod
    def check_types(cls, values: dict, source: str) -> None:
        """A hand-edited or damaged config.json ({"epochs": "many"}) fails here, naming the key, not in a
        comparison deep inside a run."""
        hints = typing.get_type_hints(cls)
        for key, value in values.items():
            if key in hints and not _matches(value, hints[key]):
                raise UserError(f"{source}: {key} is {value!r}"[:200] + f", expected {_type_name(hints[key])}; "
                                "fix the file or start a new run")

    def differences(self, reference: str = "paper") -> dict:
        """Settings that differ from a preset of the run's task (for the run log)."""
        base = type(self)(**type(self).PRESETS[preset_key(getattr(self, "task", DEFAULT_TASK), reference)]).to_dict()
        return {k: v for k, v in self.to_dict().items() if base.get(k) != v and k not in ("preset", "data")}

    def preset_settings(self) -> dict:
        """What this run's preset sets (a pipeline may drop settings that do not apply to a run)."""
        return type(self).PRESETS.get(getattr(self, "preset", None) or "paper", {})

    def overrides(self) -> dict:
        """Settings of a non-paper preset that options replaced: {name: (preset's value, value used)}."""
        return {k: (v, getattr(self, k)) for k, v in self.preset_settings().items() if getattr(self, k) != v}


def _shown(value) -> str:
    return ",".join(map(str, value)) if isinstance(value, list) else str(value)


def preset_key(task: str, name: str) -> str:
    """The PRESETS entry of a task's preset: the default task's are "paper"/"demo", others' "<task>-<name>"."""
    return name if task == DEFAULT_TASK or name.startswith(f"{task}-") else f"{task}-{name}"


def _matches(value, hint) -> bool:
    """isinstance for the annotations config fields use (int, float, str, bool, X | None, list[str])."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in args)
    if hint is type(None):
        return value is None
    if hint is float:  # JSON writes 2.0 as 2
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if origin is list:
        return isinstance(value, list) and (not args or all(_matches(item, args[0]) for item in value))
    return isinstance(value, origin or hint) if isinstance(origin or hint, type) else True


def _type_name(hint) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("NoneType", "None")


def format_differences(cfg: RunConfig) -> str:
    """The run log's first line: every setting that differs from the paper preset, and which preset
    values options replaced (so a demo run can never be mistaken for the paper's)."""
    diff = cfg.differences()
    preset = getattr(cfg, "preset", None) or "paper"
    line = f"preset {preset}; settings that differ from the paper preset: " + (
        ", ".join(f"{k}={_shown(v)}" for k, v in diff.items()) if diff else "none")
    replaced = cfg.overrides() if preset != "paper" else {}
    if replaced:
        line += f"; options given over the {preset} preset: " + ", ".join(
            f"{k}={_shown(new)} (preset: {_shown(old)})" for k, (old, new) in replaced.items())
    return line


HELP_EPILOG = ("Defaults are marked by source: [paper] the NAR paper, [ArcFace] the ArcFace paper, [ENAS] ENAS, "
               "[Real] regularized evolution (Real et al., 2019), [arcface_torch] insightface's training code, [ours] chosen here; 'demo: X' is the demo preset's value.")


def add_option(group, flag: str, text: str = "", *aliases: str, config: type[RunConfig], **kw) -> None:
    """Add a setting's option to a parser or group: its dest from the flag, its numeric range from the config's
    RANGES (declared once), its help with the default and where that comes from. Both engines' CLIs use it."""
    name = kw.pop("dest", flag.lstrip("-").replace("-", "_"))
    kw.setdefault("type", config.RANGES.get(name))
    group.add_argument(flag, *aliases, dest=name, help=help_default(config, name, text), **kw)


def help_default(cls, name: str, text: str = "") -> str:
    """An option's help with its default read from the dataclass (never a hand-written copy), where
    that default comes from, and what each other preset sets instead."""
    value = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = value.default if value.default is not dataclasses.MISSING else value.default_factory()
    parts = [] if default in (None, "") else [f"default {_shown(default)}"]
    if parts and name in cls.SOURCES:
        parts[0] += f" [{cls.SOURCES[name]}]"
    parts += [f"{preset}: {_shown(values[name])}" for preset, values in cls.PRESETS.items()
              if name in values and values[name] != default]
    return f"{text} ({'; '.join(parts)})".strip() if parts else text
