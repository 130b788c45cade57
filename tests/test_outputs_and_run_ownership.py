"""Issue 19, items 1-4 and 12 (first part): never replace what is not ours, every input is an input,
one owner per run folder. The mechanism tests run over every command with a file or folder output:
a new command is covered by adding it to FILE_COMMANDS / FOLDER_COMMANDS."""
from __future__ import annotations

import importlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from facenar_runtime.atomic import write_text_atomic
from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import MARKER, check_outputs, is_ours, kind_of, refuse_special
from facenar.checkpoint import save_model
from facenar.rundir import CONFIG_NAME, LOCK_NAME, RunDir, release_ownership, take_ownership
from facenar.space.arch import Arch
from facenar.space.iresnet import build_child
from jpeg_data import jpeg

REPO = Path(__file__).resolve().parents[1]
TRAIN = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "16",
         "--batch-size", "48", "--epochs", "1", "--device", "cpu", "--bench", "", "--lr", "0.05", "--workers", "0"]
SEARCH = ["--backbone", "iresnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "16",
          "--epochs", "2", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "24", "--steps-per-epoch", "1",
          "--controller-steps", "1", "--controller-samples", "2", "--val-batch", "24", "--derive-samples", "1",
          "--random-samples", "1", "--device", "cpu"]

# command -> (module, argv with {out}, the function that starts the work, one file the command reads)
FILE_COMMANDS = {
    "make_bin": ("data_tools.make_bin", ["--images", "{images}", "--pairs", "{pairs}", "--out", "{out}"],
                 "data_tools.make_bin.save_bin", "{images}/x/x_0001.jpg"),
    "verify --json": ("facenar.verify.cli", ["--data", "{demo}", "--bench", "lfw", "--model", "{model}", "--json",
                                             "{out}"], "facenar.verify.cli.load_embedder", "{demo}/lfw.bin"),
    "verify --csv": ("facenar.verify.cli", ["--data", "{demo}", "--bench", "lfw", "--model", "{model}", "--csv",
                                            "{out}"], "facenar.verify.cli.load_embedder", "{model}"),
    "verify --plot": ("facenar.verify.cli", ["--data", "{demo}", "--bench", "lfw", "--model", "{model}", "--plot",
                                             "{out}"], "facenar.verify.cli.load_embedder", "{model}"),
    "verify --embeddings": ("facenar.verify.cli", ["--data", "{demo}", "--bench", "lfw", "--model", "{model}",
                                                   "--embeddings", "{out}"], "facenar.verify.cli.load_embedder",
                            "{demo}/lfw.bin"),
    "export": ("facenar.export", ["--checkpoint", "{model}", "--out", "{out}"], "facenar.export._export", "{model}"),
    "evaluate": ("facenar.evaluate", ["--model", "{cifar_model}", "--json", "{out}", "--workers", "0"],
                 "facenar.evaluate.TopK", "{cifar}/test_batch"),  # --data defaults to the checkpoint's
    "arch latency": ("facenar.arch", ["latency", "--out", "{out}"], "facenar.space.latency.measure_latency", None),
    "fig1 --out": ("facenar.search.fig1", ["{enas_run}", "--out", "{out}"], "facenar.search.fig1.plot_fig1",
                   "{enas_run}/config.json"),
    "fig1 --csv": ("facenar.search.fig1", ["{enas_run}", "--out", "{tmp}/fig1.png", "--csv", "{out}"],
                   "facenar.search.fig1.plot_fig1", "{enas_run}/search.csv"),
    "benchmarks.run": ("benchmarks.run", ["--only", "cost_table", "--out", "{out}"], "benchmarks.run.run_all", None),
    "benchmarks.search_evidence": ("benchmarks.search_evidence", ["--quick", "--out", "{out}"],
                                   "benchmarks.search_evidence.run", None),
}
FOLDER_COMMANDS = {
    "img2rec": ("data_tools.img2rec", ["--images", "{images}", "--out", "{out}"]),
    "rec2img": ("data_tools.rec2img", ["--data", "{demo}", "--out", "{out}"]),
    "align": ("data_tools.align", ["--images", "{images}", "--landmarks", "{landmarks}", "--out", "{out}"]),
    "make_demo": ("data_tools.make_demo", ["--num-ids", "2", "--out", "{out}"]),
    "make_demo_cifar": ("data_tools.make_demo_cifar", ["--out", "{out}"]),
    "prepare_proxy": ("facenar.prepare_proxy", ["--data", "{demo}", "--out", "{out}"]),
    "search": ("facenar.search.cli", ["--data", "{proxy}", *SEARCH, "--out", "{out}"]),
    "train": ("facenar.train.cli", ["--data", "{demo}", *TRAIN, "--out", "{out}"]),
}
RUN_COMMANDS = ["search", "train"]


@pytest.fixture(scope="module")
def world(tiny_demo, tiny_proxy, tmp_path_factory) -> dict:
    """Every input the commands above need, tiny."""
    from data_tools.cifar_demo import make_demo_cifar

    root = tmp_path_factory.mktemp("world")
    arch = Arch("iresnet18", [0] * 8, width=0.0625, input_size=32, embedding_size=8)
    torch.manual_seed(0)
    (root / "run").mkdir()
    save_model(root / "run" / "best.pt", arch, build_child(arch))
    cifar = make_demo_cifar(root / "cifar", 1, 1)
    save_model(root / "cifar_run.pt", arch, build_child(arch), extra={"config": {"task": "cifar10", "data": str(cifar)}})
    (root / "images" / "x").mkdir(parents=True)
    (root / "images" / "x" / "x_0001.jpg").write_bytes(jpeg(0))
    (root / "pairs.txt").write_text("x 1 1\n")
    (root / "landmarks.txt").write_text("x/x_0001.jpg 38 52 74 52 56 72 42 92 70 92\n")
    enas = root / "enas_run"
    enas.mkdir()
    (enas / "config.json").write_text(json.dumps({"space": "enas", "skip_weight": 0.0}))
    (enas / "search.csv").write_text("epoch,skip_prob,skip_kl_half\n1,0.5,0.0\n")
    return {"demo": tiny_demo, "proxy": tiny_proxy, "model": root / "run" / "best.pt", "cifar": cifar,
            "cifar_model": root / "cifar_run.pt", "images": root / "images", "pairs": root / "pairs.txt",
            "landmarks": root / "landmarks.txt", "enas_run": enas}


def _argv(template: list[str], world: dict, out, tmp_path) -> list[str]:
    return [arg.format(**world, out=out, tmp=tmp_path) for arg in template]


def _refused(module: str, argv: list[str], capsys) -> str:
    """Run the command; it must end with one error line and exit 2; returns that line."""
    with pytest.raises(SystemExit) as info:
        run_cli(importlib.import_module(module).main, argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err, err
    last = err.splitlines()[-1]
    assert info.value.code == 2 and last.startswith("error: "), err
    return last


def _no_work(monkeypatch, target: str | None) -> None:
    if target:
        module, name = target.rsplit(".", 1)
        monkeypatch.setattr(importlib.import_module(module), name, lambda *a, **k: pytest.fail("work started"))


def _special_outputs(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    link = tmp_path / "null_link"
    link.symlink_to(os.devnull)
    loop = tmp_path / "loop"
    loop.symlink_to(tmp_path / "loop2")
    (tmp_path / "loop2").symlink_to(loop)
    return {"a FIFO": fifo, "a symbolic link": link, "loop": loop, "inside a loop": loop / "x" / "out"}


# -- 1 and 12: only a regular file (or a folder facenar wrote) is ever replaced --------------------------
@pytest.mark.parametrize("command", FILE_COMMANDS)
def test_1_no_file_output_replaces_a_fifo_a_link_or_a_loop(command, world, tmp_path, monkeypatch, capsys):
    module, template, work, _ = FILE_COMMANDS[command]
    _no_work(monkeypatch, work)
    for what, out in _special_outputs(tmp_path).items():
        err = _refused(module, _argv(template, world, out, tmp_path) + ["--force"], capsys)
        expected = "loop of symbolic links" if what == "inside a loop" else (
            "is a symbolic link" if what == "loop" else f"is {what}")
        assert expected in err, (what, err)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and os.readlink(tmp_path / "null_link") == os.devnull


@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_1_no_folder_output_replaces_a_fifo_a_link_or_a_loop(command, world, tmp_path, capsys):
    module, template = FOLDER_COMMANDS[command]
    for what, out in _special_outputs(tmp_path).items():
        err = _refused(module, _argv(template, world, out, tmp_path) + ["--force"], capsys)
        assert ("loop of symbolic links" if what == "inside a loop" else "not a regular file") in err, (what, err)
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode)


def test_1_the_atomic_layer_refuses_special_files_too(tmp_path):
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(UserError, match="is a FIFO, not a regular file"):
        write_text_atomic(tmp_path / "fifo", "x")   # a caller that skipped the guard
    assert stat.S_ISFIFO(os.lstat(tmp_path / "fifo").st_mode) and os.listdir(tmp_path) == ["fifo"]
    assert kind_of(os.devnull) == "a device node"   # what `--json /dev/null --force` would have replaced
    with pytest.raises(UserError, match="is a device node"):
        refuse_special("--json", os.devnull)
    with pytest.raises(UserError, match="is a device node"):
        check_outputs(True, files={"--json": os.devnull})


# -- 3: every file a command reads, defaults included, is an input ----------------------------------------
@pytest.mark.parametrize("command", [name for name, entry in FILE_COMMANDS.items() if entry[3]])
def test_3_no_output_replaces_a_file_the_command_reads(command, world, tmp_path, monkeypatch, capsys):
    module, template, work, read = FILE_COMMANDS[command]
    _no_work(monkeypatch, work)
    target = Path(read.format(**world))
    before = target.read_bytes()
    err = _refused(module, _argv(template, world, target, tmp_path) + ["--force"], capsys)
    assert "would replace" in err and target.read_bytes() == before


def test_3_fig1_default_csv_is_checked_against_the_run_it_reads(world, monkeypatch, capsys):
    _no_work(monkeypatch, "facenar.search.fig1.plot_fig1")
    run = world["enas_run"]
    err = _refused("facenar.search.fig1", [str(run), "--out", str(run / "search.png"), "--force"], capsys)
    assert f"--csv {run / 'search.csv'} would replace the input" in err


def test_3_an_output_inside_an_input_folder_replaces_nothing_there(tmp_path):
    data = tmp_path / "data"
    (data / "aligned").mkdir(parents=True)
    (data / "test_batch").write_bytes(b"x")
    with pytest.raises(UserError, match="would replace what is inside the input --data"):
        check_outputs(True, files={"--json": data / "test_batch"}, inputs={"--data": data})
    (data / "notes").mkdir()
    (data / "notes" / "mine.txt").write_text("x")
    with pytest.raises(UserError, match="would replace what is inside the input --data"):
        check_outputs(True, folders={"--out": data / "notes"}, inputs={"--data": data})
    (data / "aligned" / MARKER).touch()   # a folder facenar wrote there earlier: replaced as usual
    check_outputs(True, folders={"--out": data / "aligned"}, inputs={"--data": data})
    check_outputs(True, files={"--json": data / "new.json"}, inputs={"--data": data})
    with pytest.raises(UserError, match="would replace the input --images"):   # a list of inputs
        check_outputs(True, files={"--out": tmp_path / "b.jpg"}, inputs={"--images": [tmp_path / "a.jpg",
                                                                                      tmp_path / "b.jpg"]})


# -- 4: only the marker facenar writes makes a folder replaceable -----------------------------------------
@pytest.mark.parametrize("command", FOLDER_COMMANDS)
def test_4_a_copied_record_file_does_not_make_a_folder_ours(command, world, tmp_path, user_folder, capsys):
    module, template = FOLDER_COMMANDS[command]
    (user_folder / "demo.json").write_text(json.dumps({"format": "facenar-demo"}))
    (user_folder / "proxy.json").write_text(json.dumps({"format": "facenar-proxy-v1"}))
    (user_folder / CONFIG_NAME).write_text("{}")
    assert not is_ours(user_folder)
    err = _refused(module, _argv(template, world, user_folder, tmp_path) + ["--force"], capsys)
    assert "facenar did not write" in err
    assert sorted(p.name for p in user_folder.iterdir()) == [CONFIG_NAME, "demo.json", "keep.txt", "proxy.json"]


# -- 2: run folders: reused only when nothing is there to lose, one owner at a time -----------------------
@pytest.mark.parametrize("left", ["notes.txt", "arch.json", "model.onnx"])
@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_2_a_run_folder_with_anything_beyond_its_start_files_needs_force(command, left, world, tmp_path, capsys):
    module, template = FOLDER_COMMANDS[command]
    run = tmp_path / "run"
    run.mkdir()
    for name in (MARKER, CONFIG_NAME, "run.log", left):
        (run / name).write_text("{}")
    err = _refused(module, _argv(template, world, run, tmp_path), capsys)
    assert "already exists; pass --force" in err and (run / left).read_text() == "{}"


def test_2_a_folder_holding_only_start_files_is_reused(tmp_path):
    run = RunDir.create(tmp_path / "r", {"a": 1})
    (run.path / "run.log").write_text("an early error\n")
    RunDir.check(run.path, force=False)
    assert sorted(os.listdir(RunDir.create(run.path, {"a": 2}).path)) == [MARKER, LOCK_NAME, CONFIG_NAME]
    release_ownership(run.path)


@pytest.fixture()
def owned(tmp_path):
    """owned(folder) -> a separate process that owns the run folder until the test ends (then is killed -9)."""
    holders = []

    def hold(folder: Path) -> subprocess.Popen:
        script = ("import sys\nfrom facenar.rundir import take_ownership\ntake_ownership(sys.argv[1])\n"
                  "print('owner', flush=True)\nsys.stdin.read()\n")
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        holder = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, env=env, text=True)
        holders.append(holder)
        assert holder.stdout.readline().strip() == "owner"
        return holder

    yield hold
    for holder in holders:
        holder.kill()
        holder.wait()


@pytest.fixture(scope="module")
def finished_runs(world, tmp_path_factory) -> dict[str, Path]:
    """A tiny finished train run and a search run stopped after one epoch (what --resume continues)."""
    from facenar.search.cli import main as search
    from facenar.train.cli import main as train

    root = tmp_path_factory.mktemp("runs")
    assert train(["--data", str(world["demo"]), *TRAIN, "--max-steps", "1", "--out", str(root / "train")]) == 0
    assert search(["--data", str(world["proxy"]), *SEARCH, "--out", str(root / "search"),
                   "--stop-after-epochs", "1"]) == 0
    return {"train": root / "train", "search": root / "search"}


def _contents(run: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in run.iterdir() if p.is_file() and p.name != LOCK_NAME}


@pytest.mark.parametrize("resume", [False, True], ids=["new --force", "--resume"])
@pytest.mark.parametrize("command", RUN_COMMANDS)
def test_2_a_run_folder_in_use_is_refused_and_left_alone(command, resume, world, finished_runs, tmp_path, owned,
                                                         capsys):
    import shutil

    module, template = FOLDER_COMMANDS[command]
    run = Path(shutil.copytree(finished_runs[command], tmp_path / "run"))
    before = _contents(run)
    holder = owned(run)
    argv = _argv(template, world, run, tmp_path)
    argv = argv[:-2] + ["--resume", str(run)] if resume else argv + ["--force"]
    err = _refused(module, argv, capsys)
    assert f"is in use by another facenar process (pid {holder.pid})" in err
    assert _contents(run) == before
    holder.kill()                                 # the owner dies without cleaning up: nothing stale is left
    holder.wait()
    take_ownership(run)
    release_ownership(run)


def test_2_the_lock_is_per_process_and_follows_a_remade_folder(tmp_path, owned):
    run = tmp_path / "r"
    run.mkdir()
    take_ownership(run)
    take_ownership(run)                           # the same process again: fine
    release_ownership(run)
    owned(run)
    with pytest.raises(UserError, match="in use by another facenar process"):
        take_ownership(run)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    take_ownership(fresh)
    (fresh / LOCK_NAME).unlink()                  # a folder deleted and made again is locked anew
    take_ownership(fresh)
    assert (fresh / LOCK_NAME).read_text().strip() == str(os.getpid())
    release_ownership(fresh)


def test_2_a_forked_child_does_not_keep_a_killed_owners_lock(tmp_path):
    """DataLoader workers are forked children: orphaned by kill -9 they live on for seconds, and must not
    hold the run folder's lock meanwhile (a --resume right after the kill is refused otherwise)."""
    from facenar.rundir import release_ownership, take_ownership

    folder = tmp_path / "run"
    folder.mkdir()
    script = ("import os, sys\nfrom facenar.rundir import take_ownership\ntake_ownership(sys.argv[1])\n"
              "if os.fork() == 0:\n    sys.stdin.read()\n    os._exit(0)\n"
              "print(1, flush=True)\nos.kill(os.getpid(), 9)\n")
    owner = subprocess.Popen([sys.executable, "-c", script, str(folder)], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout.readline().strip() == "1"
        assert owner.wait(timeout=60) == -9       # the owner is gone; its child still waits on stdin
        take_ownership(folder)
        release_ownership(folder)
    finally:
        owner.stdin.close()
