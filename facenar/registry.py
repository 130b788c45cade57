"""Named registries where the project grows (tasks, search spaces, operators, search strategies, report metrics).

Each entry registers itself, by name and with a one-line summary, in the module that defines it:

    STRATEGIES = Registry("strategy", modules=("facenar.search.strategies.enas", ...))

    @STRATEGIES.register("enas", summary="LSTM controller trained with REINFORCE (the paper)")
    class EnasStrategy: ...

A registry knows the modules that hold its entries and imports them on the first lookup, so the CLI
choices, `--help` texts and the docs' tables (all generated from `names()` / `summaries()`) list every
entry without the caller importing anything; adding an entry is one new module plus its name in
`modules`. Torch-free: the CLIs build their parsers from registries before torch is needed.
"""
from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from typing import Generic, TypeVar

T = TypeVar("T")


class UnknownEntry(KeyError):
    """A name no entry of the registry has; the message lists the choices (the CLIs show it as is)."""

    def __str__(self) -> str:
        return str(self.args[0])


class Registry(Generic[T]):
    """Name -> entry (a class, a factory, a value), in registration order, filled by the defining modules."""

    def __init__(self, kind: str, modules: Iterable[str] = ()):
        self.kind = kind
        self._modules = tuple(modules)
        self._entries: dict[str, T] = {}
        self._summaries: dict[str, str] = {}
        self._loaded = False

    def register(self, name: str, *, summary: str) -> Callable[[T], T]:
        """Decorator (or call with the entry) that adds `name`; a second entry under one name is a bug."""

        def add(entry: T) -> T:
            if name in self._entries and self._entries[name] is not entry:
                raise ValueError(f"{self.kind} {name!r} is registered twice")
            self._entries[name] = entry
            self._summaries[name] = summary
            return entry

        return add

    def _load(self) -> None:
        """Import the defining modules once; the order is theirs in `modules` (not whichever was imported
        first), so the choices and tables read the same however the entries were reached."""
        if not self._loaded:
            self._loaded = True
            for module in self._modules:
                importlib.import_module(module)
            rank = {module: index for index, module in enumerate(self._modules)}
            order = sorted(self._entries, key=lambda name: rank.get(getattr(self._entries[name], "__module__", None),
                                                                   len(rank)))
            self._entries = {name: self._entries[name] for name in order}

    def get(self, name: str) -> T:
        self._load()
        try:
            return self._entries[name]
        except KeyError:
            raise UnknownEntry(f"unknown {self.kind} {name!r}; choose one of {', '.join(self._entries)}") from None

    def names(self) -> tuple[str, ...]:
        self._load()
        return tuple(self._entries)

    def summaries(self) -> dict[str, str]:
        """name -> one-line summary, for `--help` texts and the docs' tables."""
        self._load()
        return dict(self._summaries)

    def __contains__(self, name: object) -> bool:
        self._load()
        return name in self._entries

    def __iter__(self):
        return iter(self.names())
