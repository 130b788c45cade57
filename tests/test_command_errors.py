"""The facenar commands' user errors (verify, export, arch, train, search): one line, exit 2, outputs guarded."""
from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
import torch

from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError
from data_tools.emore import write_emore, write_property
from facenar_runtime.outputs import MARKER
from facenar import arch as arch_cli
from facenar import export
from facenar.checkpoint import load_checkpoint, save_model
from facenar.rundir import RunDir
from facenar.space.arch import Arch
from facenar.space.iresnet import build_child
from facenar.verify import cli as verify_cli
from jpeg_data import jpeg

TRAIN = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "16",
         "--batch-size", "48", "--epochs", "1", "--device", "cpu", "--bench", "", "--lr", "0.05"]
SEARCH = ["--backbone", "iresnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "16",
          "--epochs", "2", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "24", "--steps-per-epoch", "1",
          "--controller-steps", "1", "--controller-samples", "2", "--val-batch", "24", "--derive-samples", "1",
          "--random-samples", "1", "--device", "cpu"]


def one_line_exit(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.endswith("\n"), err
    last = err.splitlines()[-1]                                # after the run's own log lines, if any
    assert last.startswith("error: ") and all(not line.startswith("error") for line in err.splitlines()[:-1])
    return info.value.code, last


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    """A tiny facenar model file inside its own run folder (RUN/best.pt)."""
    arch = Arch("iresnet18", [0] * 8, width=0.0625, input_size=32, embedding_size=8)
    path = tmp_path_factory.mktemp("run") / "best.pt"
    torch.manual_seed(0)
    save_model(path, arch, build_child(arch))
    return path


@pytest.fixture(scope="module")
def train_run(tiny_demo, tmp_path_factory):
    from facenar.train.cli import main

    run = tmp_path_factory.mktemp("train") / "run"
    assert main(["--data", str(tiny_demo), "--out", str(run), *TRAIN, "--max-steps", "1", "--workers", "0"]) == 0
    return run


def _copy(run, tmp_path):
    return shutil.copytree(run, tmp_path / "copy")


# -- 5: numeric options of verify/export/arch (the CLI_MODULES test covers every option) --------------
@pytest.mark.parametrize("main, argv, message", [
    (verify_cli.main, ["--batch-size", "0"], "--batch-size: must be >= 1"),
    (verify_cli.main, ["--workers", "-1"], "--workers: must be >= 1"),
    (export.main, ["--checkpoint", "x.pt", "--out", "x.onnx", "--opset", "99"], "--opset: must be <="),
    (arch_cli.main, ["latency", "--width", "nan"], "expected a finite number"),
])
def test_5_numeric_options_are_checked(main, argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


# -- 2, 3, 16: outputs are checked before any work ------------------------------------------------------
def test_2_verify_json_folder_and_same_path_outputs_are_refused(tiny_demo, model_file, user_folder, tmp_path,
                                                                 monkeypatch, capsys):
    monkeypatch.setattr(verify_cli, "load_embedder", lambda *a: pytest.fail("work started"))
    base = ["--data", tiny_demo, "--bench", "lfw", "--model", model_file]
    code, err = one_line_exit(verify_cli.main, [*base, "--json", user_folder, "--force"], capsys)
    assert code == 2 and "is a folder" in err and (user_folder / "keep.txt").exists()
    code, err = one_line_exit(verify_cli.main, [*base, "--json", tmp_path / "m", "--csv", tmp_path / "m"], capsys)
    assert code == 2 and "--json and --csv are the same path" in err
    (tmp_path / "afile").write_text("x")
    code, err = one_line_exit(verify_cli.main, [*base, "--plot", tmp_path / "afile" / "roc.png"], capsys)
    assert code == 2 and "is not a folder" in err
    code, err = one_line_exit(verify_cli.main, [*base, "--json", tiny_demo / "lfw.bin", "--force"], capsys)
    assert code == 2 and "would replace the input" in err


def test_2_export_never_replaces_the_folder_holding_the_checkpoint(model_file, capsys):
    code, err = one_line_exit(export.main, ["--checkpoint", model_file, "--out", model_file.parent, "--force"],
                              capsys)
    assert code == 2 and "would replace the input" in err and model_file.exists()


def test_2_arch_latency_out_folder_is_refused_before_measuring(user_folder, monkeypatch, capsys):
    import facenar.space.latency as latency

    monkeypatch.setattr(latency, "measure_latency", lambda *a, **k: pytest.fail("work started"))
    code, err = one_line_exit(arch_cli.main, ["latency", "--out", user_folder, "--force"], capsys)
    assert code == 2 and "is a folder" in err and (user_folder / "keep.txt").exists()


# -- 6: run folders ---------------------------------------------------------------------------------------
def test_6_run_folder_marker_reuse_and_force(tmp_path, user_folder):
    run = RunDir.create(tmp_path / "r", {"a": 1})
    assert (run.path / MARKER).is_file()
    (run.path / "run.log").write_text("an early error\n")
    RunDir.check(run.path, force=False)                      # no checkpoint yet: reused without --force
    assert not (RunDir.create(run.path, {"a": 2}).path / "run.log").exists()
    (run.path / "last.pt").write_bytes(b"x")
    with pytest.raises(UserError, match="already exists; pass --force"):
        RunDir.check(run.path, force=False)
    RunDir.create(run.path, {"a": 3}, force=True)
    assert not (run.path / "last.pt").exists()
    for force in (False, True):
        with pytest.raises(UserError, match="already exists|did not write"):
            RunDir.create(user_folder, {"a": 1}, force=force)
    assert (user_folder / "keep.txt").exists()
    with pytest.raises(UserError, match="would replace the input"):
        RunDir.check(tmp_path, force=True, inputs={"--data": tmp_path / "r"})


def test_6_train_validation_leaves_no_run_folder(tiny_demo, tmp_path, capsys):
    from facenar.train.cli import main

    out = tmp_path / "p1"
    code, err = one_line_exit(main, ["--data", tiny_demo, "--out", out, *TRAIN, "--batch-size", "1000"], capsys)
    assert code == 2 and "lower --batch-size" in err and not out.exists()


def test_6_search_validation_leaves_no_run_folder(tiny_demo, tmp_path, capsys):
    from data_tools.proxy import build_proxy
    from facenar.search.cli import main

    out = tmp_path / "s1"
    code, err = one_line_exit(main, ["--data", tmp_path / "missing", "--out", out, *SEARCH], capsys)
    assert code == 2 and not out.exists()
    build_proxy(tiny_demo, tmp_path / "proxy", num_ids=8, per_id=8, val_per_id=2, seed=0)
    code, err = one_line_exit(main, ["--data", tmp_path / "proxy", "--out", out, *SEARCH, "--batch-size", "1000"],
                              capsys)
    assert code == 2 and "lower --batch-size" in err and not out.exists()


# -- 7: foreign ONNX models -------------------------------------------------------------------------------
def _onnx(path, nodes, inputs, output, initializers=()):
    import onnx
    from onnx import helper

    graph = helper.make_graph(nodes, "g", inputs, [output], initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(path))
    return path


def _foreign_models(tmp_path):
    from onnx import TensorProto, helper

    def tensor(name, kind, shape):
        return helper.make_tensor_value_info(name, kind, shape)

    F, U8 = TensorProto.FLOAT, TensorProto.UINT8
    uint8 = _onnx(tmp_path / "uint8.onnx", [helper.make_node("Cast", ["x"], ["c"], to=F),
                                            helper.make_node("Flatten", ["c"], ["y"])],
                  [tensor("x", U8, ["N", 3, 8, 8])], tensor("y", F, ["N", 192]))
    two = _onnx(tmp_path / "two.onnx", [helper.make_node("Add", ["x", "z"], ["s"]),
                                        helper.make_node("Flatten", ["s"], ["y"])],
                [tensor("x", F, ["N", 3, 8, 8]), tensor("z", F, ["N", 3, 8, 8])], tensor("y", F, ["N", 192]))
    def reshape(name, columns):
        shape = helper.make_tensor("shape", TensorProto.INT64, [2], [-1, columns])
        return _onnx(tmp_path / name, [helper.make_node("Reshape", ["x", "shape"], ["y"])],
                     [tensor("x", F, ["N", 3, 8, 8])], tensor("y", F, ["N", columns]), [shape])

    return uint8, two, reshape("reshape.onnx", 7), reshape("rows.onnx", 64)


def test_7_foreign_onnx_models_say_what_they_have(tmp_path):
    pytest.importorskip("onnx")
    from facenar.verify.embed import OnnxEmbedder

    uint8, two, reshape, rows = _foreign_models(tmp_path)
    with pytest.raises(UserError, match=r"uint8.onnx: the model has input 'x' of type tensor\(uint8\); verify needs"):
        OnnxEmbedder(uint8)
    with pytest.raises(UserError, match=r"two.onnx: the model has 2 inputs \('x', 'z'\)"):
        OnnxEmbedder(two)
    embedder = OnnxEmbedder(reshape)
    with pytest.raises(UserError, match=r"reshape.onnx: the ONNX model failed to run .*Reshape") as info:
        embedder(np.zeros((2, 8, 8, 3), np.uint8))
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match=r"rows.onnx: the ONNX model returned shape \[6, 64\] for a batch of 2"):
        OnnxEmbedder(rows)(np.zeros((2, 8, 8, 3), np.uint8))


# -- 8: damaged or mismatched run state on --resume -------------------------------------------------------
def test_8_train_resume_with_damaged_state(train_run, tmp_path, model_file, capsys):
    from facenar.train.cli import main

    run = _copy(train_run, tmp_path)
    shutil.copy(model_file, run / "last.pt")                  # another architecture's model file
    code, err = one_line_exit(main, ["--resume", run], capsys)
    assert code == 2 and "last.pt does not hold this run's state" in err
    payload = load_checkpoint(train_run / "last.pt")
    torch.save({k: v for k, v in payload.items() if k != "step"}, run / "last.pt")
    code, err = one_line_exit(main, ["--resume", run], capsys)
    assert code == 2 and "missing entry 'step'" in err
    shutil.copy(train_run / "last.pt", run / "last.pt")
    (run / "train.csv").write_bytes(b"step,epoch\n1,\x00\x00\n")
    code, err = one_line_exit(main, ["--resume", run], capsys)
    assert code == 2 and "train.csv contains NUL bytes" in err
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "epochs": "many"}))
    code, err = one_line_exit(main, ["--resume", run], capsys)
    assert code == 2 and "config.json: epochs is 'many', expected int" in err


def test_8_search_resume_with_another_configurations_checkpoint(tiny_demo, tmp_path, capsys):
    from data_tools.proxy import build_proxy
    from facenar.search.cli import main

    proxy = tmp_path / "proxy"
    build_proxy(tiny_demo, proxy, num_ids=8, per_id=8, val_per_id=2, seed=0)
    main([*SEARCH, "--data", str(proxy), "--out", str(tmp_path / "a"), "--stop-after-epochs", "1"])
    main([*SEARCH, "--data", str(proxy), "--out", str(tmp_path / "b"), "--ops", "conv3x3,conv5x5",
          "--stop-after-epochs", "0"])
    shutil.copy(tmp_path / "a" / "last.pt", tmp_path / "b" / "last.pt")
    code, err = one_line_exit(main, ["--resume", tmp_path / "b"], capsys)
    assert code == 2 and "last.pt does not hold this run's state" in err


def test_8_config_types_are_checked_against_the_dataclass():
    from facenar.search.config import SearchConfig
    from facenar.train.config import TrainConfig

    TrainConfig.check_types({"epochs": 3, "lr": 1, "data": None}, "c.json")
    for cls, values in ((TrainConfig, {"lr": "0.1"}), (TrainConfig, {"epochs": True}),
                        (SearchConfig, {"ops": "conv3x3"}), (SearchConfig, {"ops": [1]})):
        with pytest.raises(UserError, match="c.json: .* expected"):
            cls.check_types(values, "c.json")


# -- 10, 15: architecture types, unsafe or foreign .pt -----------------------------------------------------
@pytest.mark.parametrize("data, message", [
    ({"backbone": ["iresnet50"], "codes": [0]}, "backbone must be a string"),
    ({"backbone": "iresnet18", "codes": [0] * 8, "granularity": {"a": 1}}, "granularity must be a string"),
    ({"backbone": "iresnet18", "codes": [0] * 8, "width": "1"}, "width: expected a number"),
    ({"backbone": "iresnet18", "codes": [0] * 8, "width": True}, "width: expected a number"),
    ({"backbone": "iresnet18", "codes": 3}, "'codes' must be a list"),
    ({"backbone": "iresnet18", "codes": 3, "ops": ["conv3x3"] * 8}, "'codes' must be a list"),
])
def test_10_arch_from_dict_checks_types(data, message):
    with pytest.raises(UserError, match=message):
        Arch.from_dict(data)


def test_15_an_unsafe_pt_is_one_line_without_weights_only_advice(tmp_path, capsys):
    import os
    import pickle

    class Payload:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    torch.save({"x": Payload()}, evil)
    (tmp_path / "junk.pt").write_bytes(pickle.dumps([1, 2]))
    for path in (evil, tmp_path / "junk.pt"):
        code, err = one_line_exit(export.main, ["--checkpoint", path, "--out", tmp_path / "m.onnx"], capsys)
        assert code == 2 and "is not a facenar checkpoint or is not safe to load" in err
        assert "weights_only" not in err and "pwned" not in err


# -- 16: the best-accuracy log line ----------------------------------------------------------------------
def test_16_best_mean_accuracy_is_logged_in_percent(tiny_demo, tmp_path):
    from facenar.train.cli import main

    run = tmp_path / "run"
    assert main(["--data", str(tiny_demo), "--out", str(run), *TRAIN[:-4], "--bench", "lfw", "--max-steps", "1",
                 "--verify-every", "1", "--workers", "0"]) == 0
    best = load_checkpoint(run / "best.pt")["best_mean_acc"]
    assert 0 <= best <= 100 and f"best mean accuracy so far {best:.2f}% ->" in (run / "run.log").read_text()


# -- 4: a DataLoader worker error prints the line of --workers 0 ------------------------------------------
@pytest.mark.parametrize("command", ["train", "search"])
def test_4_corrupt_jpeg_prints_the_same_line_with_and_without_workers(command, tmp_path, capsys):
    from data_tools.proxy import build_proxy
    from facenar.search.cli import main as search
    from facenar.train.cli import main as train

    data = tmp_path / "data"
    identities = [[jpeg(100 * i + j, (32, 32)) for j in range(12)] for i in range(4)]
    identities[0] = [b"\xff\xd8 not really a jpeg"] * 12
    write_emore(data, identities)
    write_property(data, 4, (32, 32))
    if command == "search":
        build_proxy(data, tmp_path / "proxy", num_ids=4, per_id=12, val_per_id=2, seed=0)
    main, argv = (train, ["--data", data, *TRAIN, "--batch-size", "16"]) if command == "train" else \
        (search, ["--data", tmp_path / "proxy", *SEARCH])
    lines = []
    for workers in ("0", "1"):
        code, err = one_line_exit(main, [*argv, "--out", tmp_path / f"w{workers}", "--workers", workers], capsys)
        lines.append(err.replace(f"w{workers}", "w"))
    assert code == 2 and lines[0] == lines[1] and ".rec key" in lines[0]
