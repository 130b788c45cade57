"""The runtime's output guard and atomic writes: no-replace renames, stale temp folders,
and write faults on real read-only / full filesystems (tmpfs mounts where the machine allows them)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from facenar_runtime import atomic
from facenar_runtime.atomic import MARKER, atomic_open, atomic_path, remove_stale_temps, write_text_atomic
from facenar_runtime.errors import EnvironmentFault, UserError
from facenar_runtime.outputs import check_outputs


@pytest.fixture()
def mount(tmp_path):
    """mount(name, options) -> a fresh tmpfs folder; skipped where this machine does not allow mounting."""
    mounted = []

    def make(name: str, options: str) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], capture_output=True)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here (needs root): {done.stderr.decode().strip()}")
        mounted.append(folder)
        return folder

    yield make
    for folder in mounted:
        subprocess.run(["umount", str(folder)], check=True)


# -- the guard ----------------------------------------------------------------------------------------
def test_force_replaces_a_file_but_never_a_folder_for_a_file_output(tmp_path):
    (tmp_path / "report.md").write_text("old")
    with pytest.raises(UserError, match="already exists; pass --force"):
        check_outputs(False, files={"--out": tmp_path / "report.md"})
    check_outputs(True, files={"--out": tmp_path / "report.md"})
    (tmp_path / "dir").mkdir()
    with pytest.raises(UserError, match="is a folder; the output is a file"):
        check_outputs(True, files={"--out": tmp_path / "dir"})


def test_force_replaces_only_folders_facenar_wrote(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    with pytest.raises(UserError, match="facenar did not write"):
        check_outputs(True, folders={"--out": mine})
    (mine / MARKER).touch()
    check_outputs(True, folders={"--out": mine})
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file, not an output folder"):
        check_outputs(True, folders={"--out": tmp_path / "file"})


def test_inputs_are_never_outputs(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    with pytest.raises(UserError, match="would replace the input --data"):
        check_outputs(True, folders={"--out": tmp_path / "data" / ".." / "data"}, inputs={"--data": data})
    with pytest.raises(UserError, match="would replace the input --model"):  # a folder holding an input
        check_outputs(True, folders={"--out": tmp_path}, inputs={"--model": data / "m.onnx"})
    check_outputs(True, folders={"--out": data / "aligned"}, inputs={"--data": data})  # output inside input: fine


def test_two_outputs_may_not_share_a_path(tmp_path):
    with pytest.raises(UserError, match="--json and --csv are the same path"):
        check_outputs(True, files={"--json": tmp_path / "x", "--csv": tmp_path / "." / "x"})


def test_output_under_a_file_or_with_a_too_long_name_is_refused_up_front(tmp_path):
    (tmp_path / "afile").write_text("x")
    with pytest.raises(UserError, match="afile is not a folder"):
        check_outputs(False, files={"--out": tmp_path / "afile" / "sub" / "out.bin"})
    with pytest.raises(UserError, match="longer than"):
        check_outputs(False, files={"--out": tmp_path / ("n" * 300)})


def test_read_only_folder_is_refused_before_any_work(mount):
    read_only = mount("ro", "ro,size=64k")
    with pytest.raises(UserError, match=r"cannot write in .*ro \(read-only file system\)"):
        check_outputs(False, files={"--json": read_only / "sub" / "r.json"})
    with pytest.raises(UserError, match=r"ro/x.txt: Read-only file system"):
        write_text_atomic(read_only / "x.txt", "data")
    assert os.listdir(read_only) == []


# -- atomic writes ------------------------------------------------------------------------------------
def test_disk_full_leaves_no_temp_and_names_the_output(mount):
    full = mount("full", "size=64k")
    with pytest.raises(EnvironmentFault, match=r"full/big.bin: No space left on device"):
        with atomic_open(full / "big.bin") as handle:
            handle.write(b"x" * (1 << 20))
    with pytest.raises(EnvironmentFault, match=r"full/run/train.rec: No space left on device"):
        with atomic_path(full / "run") as tmp:  # a folder output whose inner file fills the disk
            tmp.mkdir()
            with atomic_open(tmp / "train.rec") as handle:
                handle.write(b"x" * (1 << 20))
    assert os.listdir(full) == []


def test_torch_save_on_a_full_disk_is_one_line_naming_the_file(mount):
    torch = pytest.importorskip("torch")
    full = mount("full", "size=64k")
    with pytest.raises(EnvironmentFault, match=r"cannot write .*full/last.pt: write failed \(disk full"):
        with atomic_path(full / "last.pt") as tmp:
            torch.save({"w": torch.zeros(100_000)}, tmp)
    assert os.listdir(full) == []


def test_replacing_a_user_folder_is_refused_even_when_the_caller_skipped_the_guard(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    with pytest.raises(UserError, match="is a folder; the output is a file"):
        write_text_atomic(out, "report")  # what `export --out DIR --force` did: the folder is kept
    with pytest.raises(UserError, match="facenar did not write"):
        with atomic_path(out) as tmp:
            tmp.mkdir()
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def test_folder_outputs_carry_the_marker_and_replace_each_other(tmp_path):
    for text in ("one", "two"):
        with atomic_path(tmp_path / "out") as tmp:
            tmp.mkdir()
            (tmp / "f").write_text(text)
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [MARKER, "f"]
    assert (tmp_path / "out" / "f").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


@pytest.mark.parametrize("native", [True, False], ids=["renameat2", "fallback"])
@pytest.mark.parametrize("folder", [True, False], ids=["folder", "file"])
def test_an_output_that_appeared_meanwhile_is_not_replaced(tmp_path, monkeypatch, native, folder):
    if not native:
        monkeypatch.setattr(atomic, "_renameat2", lambda source, target: False)
    out = tmp_path / "out"
    with pytest.raises(UserError, match="appeared while this command was writing it"):
        with atomic_path(out) as tmp:
            if folder:
                tmp.mkdir()
                (tmp / "f").write_text("second run")
                out.mkdir()
                (out / "f").write_text("first run")
            else:
                tmp.write_text("second run")
                out.write_text("first run")
    assert (out / "f" if folder else out).read_text() == "first run"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_stale_temps_of_dead_writers_are_removed_live_and_foreign_ones_kept(tmp_path):
    target = tmp_path / "proxy"
    stale = tmp_path / f".proxy.{_dead_pid()}.abc123.tmp"
    live = tmp_path / f".proxy.{os.getpid()}.def456.tmp"
    foreign = [tmp_path / ".proxy.backup", tmp_path / f".other.{_dead_pid()}.abc.tmp", tmp_path / "proxy.1.x.tmp"]
    for folder in (stale, live, *foreign):
        folder.mkdir()
        (folder / "data").write_text("x")
    assert remove_stale_temps(target) == [stale]
    assert not stale.exists() and live.exists() and all(f.exists() for f in foreign)


def test_a_killed_writer_leaves_a_temp_that_the_next_write_removes(tmp_path):
    out = tmp_path / "proxy"
    script = ("import os, signal, sys\nfrom facenar_runtime.atomic import atomic_path\n"
              "with atomic_path(sys.argv[1]) as tmp:\n    tmp.mkdir()\n    (tmp / 'big').write_bytes(b'x' * 1000)\n"
              "    os.kill(os.getpid(), signal.SIGKILL)\n")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    assert subprocess.run([sys.executable, "-c", script, str(out)], env=env).returncode == -9
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".proxy.") and leftovers[0].endswith(".tmp")
    write_text_atomic(tmp_path / "proxy", "next run")
    assert [p.name for p in tmp_path.iterdir()] == ["proxy"]
