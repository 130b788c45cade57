"""torchrun entry point for the error-propagation tests: `fail_on_rank.py search|train RANK ARGS...`
runs that command, with a user error raised on RANK alone in the middle of the work (the other rank
is then inside a collective: the broadcast of the epoch's architectures, or the DDP all-reduce)."""
from __future__ import annotations

import os
import sys

from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError


def _raise_on(rank: int, cls, name: str) -> None:
    real = getattr(cls, name)

    def failing(self, *args, **kwargs):
        if int(os.environ["RANK"]) == rank:
            raise UserError(f"injected failure on rank {rank}")
        return real(self, *args, **kwargs)

    setattr(cls, name, failing)


if __name__ == "__main__":
    command, rank, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
    if command == "search":
        from facenar.search.cli import main
        from facenar.search.engine import SearchEngine

        _raise_on(rank, SearchEngine, "_train_shared")
    else:
        from facenar.train.cli import main
        from facenar.train.engine import TrainStep

        _raise_on(rank, TrainStep, "step")
    run_cli(main, argv)
