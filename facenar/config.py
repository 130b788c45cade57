"""One way to settle a run's settings, for search and training alike.

A config is a dataclass (subclass of RunConfig) stored as RUN_DIR/config.json. Its values are
layered defaults < preset < options given; `--resume RUN_DIR` starts from the stored config
instead (old key names mapped through OLD_NAMES, missing keys taking today's defaults), and only
the keys in RESUMABLE may then differ from it. Presets are data: one table per pipeline, next to
its config, with "paper" = the dataclass defaults.
"""
from __future__ import annotations

import dataclasses
import types
import typing
from typing import ClassVar

from data_tools.cli import UserError


class RunConfig:
    """Mixin for the config dataclasses: resolve, validate (returns self), diff against a preset."""

    PRESETS: ClassVar[dict[str, dict]] = {"paper": {}}
    RESUMABLE: ClassVar[tuple[str, ...]] = ()     # may change on --resume (they do not change the result)
    OLD_NAMES: ClassVar[dict[str, str]] = {}      # key in an older config.json -> today's key

    def check(self) -> None:
        """Raise UserError for a setting a user got wrong (per pipeline)."""

    def validate(self):
        self.check()
        return self

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
            return cls(**{**base, **explicit}).validate()
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
        """Settings that differ from a preset (for the run log)."""
        base = type(self)(**type(self).PRESETS[reference]).to_dict()
        return {k: v for k, v in self.to_dict().items() if base.get(k) != v and k not in ("preset", "data")}


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
    diff = cfg.differences()
    return "settings that differ from the paper preset: " + (
        ", ".join(f"{k}={v}" for k, v in diff.items()) if diff else "none")


def help_default(cls, name: str, text: str = "") -> str:
    """An option's help with its default read from the dataclass (never a hand-written copy)."""
    value = next(f for f in dataclasses.fields(cls) if f.name == name)
    default = value.default if value.default is not dataclasses.MISSING else value.default_factory()
    shown = ",".join(default) if isinstance(default, list) else default
    return f"{text} (default {shown})".strip() if default not in (None, "") else text
