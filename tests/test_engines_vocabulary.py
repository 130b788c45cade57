"""Search and training speak one vocabulary: the same run-folder rule, checkpoint names and option ranges."""
from __future__ import annotations

import pytest

from facenar.checkpoint import BEST, LAST, OLD_SEARCH_LAST, resume_file
from facenar.config import SHARED_RANGES
from facenar.rundir import run_folder
from facenar.search.config import SearchConfig
from facenar.train.config import TrainConfig
from facenar_runtime.errors import UserError


def test_out_and_resume_follow_one_rule(tmp_path):
    assert run_folder(None, None) is None
    assert run_folder("a", None) == "a"
    assert run_folder(None, "b") == "b"
    assert run_folder(str(tmp_path / "r"), str(tmp_path / "x" / ".." / "r")) == str(tmp_path / "x" / ".." / "r")
    with pytest.raises(UserError, match="not both"):
        run_folder("a", "b")


@pytest.mark.parametrize("main", ["facenar.search.cli", "facenar.train.cli"])
def test_both_commands_refuse_out_and_resume_naming_two_folders(main, tmp_path):
    import importlib

    with pytest.raises(UserError, match="not both"):
        importlib.import_module(main).main(["--resume", str(tmp_path / "a"), "--out", str(tmp_path / "b")])


def test_every_shared_option_has_one_range():
    shared = (SearchConfig.names() & TrainConfig.names()) & (set(SearchConfig.RANGES) | set(TrainConfig.RANGES))
    assert shared == set(SHARED_RANGES)
    for name in shared:
        assert SearchConfig.RANGES[name] is TrainConfig.RANGES[name] is SHARED_RANGES[name], name


def test_resume_file_prefers_last_and_upgrades_old_search_folders(tmp_path):
    assert (LAST, BEST) == ("last.pt", "best.pt")
    assert resume_file(tmp_path) == tmp_path / LAST  # nothing there: the name the error message shows
    (tmp_path / OLD_SEARCH_LAST).write_bytes(b"")
    assert resume_file(tmp_path) == tmp_path / OLD_SEARCH_LAST
    (tmp_path / LAST).write_bytes(b"")
    assert resume_file(tmp_path) == tmp_path / LAST
