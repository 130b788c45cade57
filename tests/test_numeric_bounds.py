"""Issue 19, items 5-11, 15, 16: one error line instead of a traceback, no wrong result reported as success."""
from __future__ import annotations

import argparse
import json
import math
import re
import warnings

import pytest
import torch

from data_tools import inspect as inspect_cli
from data_tools import rec2img
from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json
from data_tools.emore import write_property
from data_tools.recordio import IRHeader, RecordWriter, pack_record
from facenar import prepare_proxy
from facenar.data import open_train_data
from facenar.dist import device_option, resolve_device
from tests.jpeg_data import jpeg
from tests.test_runtime_cli import CLI_MODULES, parser_of
from tests.test_data_tool_errors import one_line_exit


# -- 5: float labels that are no labels ------------------------------------------------------------
def _dataset(folder, where: str, bad: float):
    """An emore (header layout) or im2rec dataset whose `where` record carries the label `bad`."""
    folder.mkdir()
    image = jpeg(seed=1)
    with RecordWriter(folder / "train.rec") as writer:
        if where == "im2rec":
            writer.write(1, pack_record(IRHeader(0, 0.0, 1, 0), image))
            writer.write(2, pack_record(IRHeader(0, bad, 2, 0), image))
        else:
            header = (bad, 4.0) if where == "header" else (3.0, 4.0)
            writer.write(0, pack_record(IRHeader(2, header, 0, 0), b""))
            writer.write(1, pack_record(IRHeader(0, 0.0, 1, 0), image))
            writer.write(2, pack_record(IRHeader(0, 0.0, 2, 0), image))
            ident = (1.0, bad) if where == "identity" else (1.0, 3.0)
            writer.write(3, pack_record(IRHeader(2, ident, 3, 0), b""))
    write_property(folder, 1)
    return {"header": 0, "identity": 3, "im2rec": 2}[where]


LABEL_COMMANDS = {
    "inspect": lambda data, out: (inspect_cli.main, [data]),
    "prepare_proxy": lambda data, out: (prepare_proxy.main, ["--data", data, "--out", out]),
    "rec2img": lambda data, out: (rec2img.main, ["--data", data, "--out", out]),
}


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0, 1e30, 2.5])
@pytest.mark.parametrize("where", ["header", "identity", "im2rec"])
@pytest.mark.parametrize("command", sorted(LABEL_COMMANDS))
def test_5_non_labels_in_records_are_one_line_naming_file_and_record(command, where, bad, tmp_path, capsys):
    key = _dataset(tmp_path / "data", where, bad)
    main, argv = LABEL_COMMANDS[command](tmp_path / "data", tmp_path / "out")
    code, err = one_line_exit(main, argv, capsys)
    assert code == 2 and f"train.rec key {key}: label" in err and "the dataset is corrupt" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["header", "identity", "im2rec"])
def test_5_training_reader_refuses_a_nan_label(where, tmp_path):
    key = _dataset(tmp_path / "data", where, math.nan)
    with pytest.raises(UserError, match=f"train.rec key {key}: label nan"):
        open_train_data(tmp_path / "data", 32, "none")


# -- 7: JSON that json.loads cannot turn into values ---------------------------------------------
@pytest.mark.parametrize("text, message", [
    ('{"input_size": ' + "9" * 5000 + "}", "4300"),
    ("[\n" * 20_000 + "]\n" * 20_000, "nests arrays or objects too deeply"),
])
def test_7_read_json_turns_huge_integers_and_deep_nesting_into_one_error(text, message, tmp_path):
    path = tmp_path / "arch.json"
    path.write_text(text)
    with pytest.raises(UserError, match=message) as info:
        read_json(path, "architecture file")
    assert str(path) in str(info.value) and "\n" not in str(info.value)


# -- 6: numbers from JSON files get the command line's maxima ---------------------------------------
@pytest.mark.parametrize("field, value, message", [
    ("input_size", 10**12, "input_size: must be <= 4096"), ("embedding_size", 10**15, "embedding_size: must be <= 65536"),
    ("width", 1e300, "width: must be <= 16"), ("width", 10**400, "width: expected a finite number"),
    ("input_size", 112.0, "input_size: expected an integer"), ("width", True, "width: expected a number"),
])
def test_6_architecture_json_numbers_are_bounded(field, value, message, tmp_path):
    from facenar.space.arch import Arch

    data = {"backbone": "iresnet18", "codes": [0] * 8, field: value}
    path = tmp_path / "arch.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message):
        Arch.load(path)


@pytest.mark.parametrize("config", ["search", "train"])
@pytest.mark.parametrize("setting, value", [("seed", 2**64), ("batch_size", 10**12), ("lr", 1e30)])
def test_6_stored_config_numbers_are_bounded(config, setting, value):
    from facenar.search.config import SearchConfig
    from facenar.train.config import TrainConfig

    cls = SearchConfig if config == "search" else TrainConfig
    with pytest.raises(UserError, match=f"--resume R: --{setting.replace('_', '-')}: must be <="):
        cls.resolve({}, stored={**cls().to_dict(), setting: value}, where="R")


# -- 11: one device resolution for every command -------------------------------------------------
def _device_actions(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield from _device_actions(sub)
        elif "--device" in action.option_strings:
            yield action


@pytest.mark.parametrize("module_name", CLI_MODULES)
def test_11_every_device_option_is_the_one_checked_device(module_name, monkeypatch):
    parser = parser_of(module_name, monkeypatch)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for action in _device_actions(parser):
        assert action.type is device_option, f"{module_name}: --device must use facenar.dist.device_option"
        for bad in ("foo", "meta", "cuda", "cuda:0", "cpu:0"):
            with pytest.raises(argparse.ArgumentTypeError):
                action.type(bad)
        if action.default != argparse.SUPPRESS:  # search and train: the config's default, "auto"
            assert action.type(action.default) == action.default


def test_11_device_resolution(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == "cuda" and resolve_device("cuda:1") == "cuda:1"
    with pytest.raises(UserError, match=r"--device cuda:2: this machine has 2 CUDA device\(s\)"):
        resolve_device("cuda:2")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    with pytest.raises(UserError, match="--device meta: unknown device 'meta'"):
        resolve_device("meta")  # a stored config.json that says so gets the same check as the option


@pytest.mark.parametrize("device", ["meta", "foo", "cuda"])
def test_11_arch_latency_refuses_a_device_it_cannot_time_on(device, tmp_path, capsys, monkeypatch):
    from facenar import arch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as info:
        arch.main(["latency", "--backbone", "iresnet18", "--device", device, "--out", str(tmp_path / "t.json")])
    assert info.value.code == 2 and "argument --device" in capsys.readouterr().err
    assert not (tmp_path / "t.json").exists()


# -- 8: the search stops on a non-finite loss or controller, before anything of it is saved ----------
def _search_engine(tiny_proxy, tmp_path, **overrides):
    from facenar.dist import DistContext
    from facenar.rundir import RunDir
    from facenar.search.config import SearchConfig
    from facenar.search.engine import SearchEngine

    values = dict(data=str(tiny_proxy), backbone="iresnet18", width=0.125, input_size=32, embedding_size=32,
                  epochs=2, pretrain_epochs=1, t0=1, batch_size=24, steps_per_epoch=2, controller_steps=3,
                  controller_samples=3, val_batch=24, scale=16.0, m2=0.1, derive_samples=2, random_samples=0)
    cfg = SearchConfig(**{**values, **overrides}).validate()
    run = RunDir.create(tmp_path / "run", cfg.to_dict())
    return SearchEngine(cfg, run, DistContext(0, 1, 0, torch.device("cpu"))), run.path


def test_8_search_stops_when_the_shared_weights_turn_nan(tiny_proxy, tmp_path):
    engine, run = _search_engine(tiny_proxy, tmp_path)
    with torch.no_grad():
        next(engine.supernet.parameters()).fill_(math.nan)  # what --lr 1e30 did within a few steps
    with pytest.raises(UserError, match="search stopped in epoch 1: shared-weight loss became nan; lower --lr"):
        engine.run()
    assert not (run / "arch.json").exists() and not (run / "last.pt").exists()


def test_8_search_stops_when_the_controller_diverges(tiny_proxy, tmp_path):
    engine, run = _search_engine(tiny_proxy, tmp_path, pretrain_epochs=0)
    for group in engine.strategy.trainer.optimizer.param_groups:
        group["lr"] = 1e38  # past any --controller-lr: the first Adam step overflows the LSTM's weights
    with pytest.raises(UserError, match="search stopped in epoch 1: controller .* lower --controller-lr"):
        engine.run()
    assert not (run / "arch.json").exists() and not (run / "last.pt").exists()


@pytest.mark.parametrize("space", ["nar", "enas"])
def test_8_every_controller_refuses_a_diverged_policy(space):
    from facenar.search.controller import Controller, Reinforce
    from facenar.search.macro_controller import MacroController

    controller = Controller(8, 4) if space == "nar" else MacroController(4)
    trainer = Reinforce(controller, lr=1e38)
    with pytest.raises(FloatingPointError, match="controller .* lower --controller-lr"):
        for _ in range(3):
            trainer.step(lambda batch: [float(i % 2) for i in range(len(batch))], 4)


# -- 15: degenerate embeddings are an error, not "50.00 +- 0.00" ----------------------------------
class _Constant(torch.nn.Module):
    """An embedding network whose every output is `value` (what a broken ONNX model gives)."""

    def __init__(self, value: float):
        super().__init__()
        self.value = value

    def forward(self, x):
        return x.flatten(1)[:, :16] * 0 + self.value


def _degenerate_model(kind: str, path):
    from facenar.checkpoint import save_model
    from facenar.space.arch import Arch
    from facenar.space.iresnet import build_child

    if kind == "nan-checkpoint":  # all-NaN weights: a diverged training run
        arch = Arch.baseline("iresnet18", width=0.125, input_size=112, embedding_size=32)
        model = build_child(arch)
        with torch.no_grad():
            for param in model.parameters():
                param.fill_(math.nan)
        save_model(path.with_suffix(".pt"), arch, model)
        return path.with_suffix(".pt")
    with warnings.catch_warnings():  # the legacy exporter: fast, and enough for a constant graph
        warnings.simplefilter("ignore")
        torch.onnx.export(_Constant(0.0 if kind == "zero-onnx" else math.nan), (torch.zeros(2, 3, 112, 112),),
                          str(path.with_suffix(".onnx")), input_names=["data"], output_names=["fc1"],
                          opset_version=17, dynamo=False, dynamic_axes={"data": {0: "batch"}})
    return path.with_suffix(".onnx")


@pytest.mark.parametrize("kind, message", [("nan-checkpoint", "80 non-finite"), ("nan-onnx", "80 non-finite"),
                                           ("zero-onnx", "80 of zero length")])
def test_15_verify_refuses_degenerate_embeddings(kind, message, tiny_demo, tmp_path, capsys):
    from facenar.verify import cli as verify_cli

    model = _degenerate_model(kind, tmp_path / "model")
    code, err = one_line_exit(verify_cli.main, ["--data", tiny_demo, "--bench", "lfw", "--model", model,
                                                "--device", "cpu", "--json", tmp_path / "r.json"], capsys)
    assert code == 2 and message in err
    assert "of 80 embeddings" in err and "lfw" in err and not (tmp_path / "r.json").exists()


# -- 9: evaluate checks the checkpoint's classifier entry ------------------------------------------
@pytest.mark.parametrize("entry, message", [
    ({"weight": torch.zeros(10, 7), "bias": torch.zeros(10)}, r"expected weight \(10, 64\)"),
    ({"weight": torch.zeros(3, 64), "bias": torch.zeros(3)}, "the test split's 10 classes"),
    ({"weight": torch.zeros(10, 64), "bias": torch.zeros(9)}, r"'bias': \(9,\)"),
    ({"weight": torch.zeros(10, 64), "bias": "x"}, "'bias': 'str'"),
    ({"weight": torch.zeros(10, 64), "bias": torch.zeros(10), "extra": 1}, "'extra'"),
    ({"weight": torch.full((10, 64), math.nan), "bias": torch.zeros(10)}, "not finite"),
])
def test_9_evaluate_checks_the_classifier_entry(entry, message, tmp_path, capsys):
    from data_tools.cifar_demo import make_demo_cifar
    from facenar import evaluate
    from facenar.checkpoint import save_model
    from facenar.space.arch import Arch
    from facenar.space.networks import build_child

    data = make_demo_cifar(tmp_path / "cifar", 1, 1)
    arch = Arch.baseline("resnet18", width=0.125, input_size=32)
    save_model(tmp_path / "m.pt", arch, build_child(arch),
               extra={"config": {"task": "cifar10", "data": str(data)}, "classifier": entry})
    code, err = one_line_exit(evaluate.main, ["--model", tmp_path / "m.pt", "--workers", "0", "--device", "cpu"],
                              capsys)
    assert code == 2 and "m.pt" in err and "classifier" in err and re.search(message, err), err


# -- 10: latency tables are checked for types and finite non-negative timings ----------------------
@pytest.fixture(scope="module")
def latency_table():
    from facenar.space.latency import measure_latency

    return measure_latency("iresnet18", width=0.125, input_size=16, embedding_size=8, repeats=1, warmup=0)


def _set(table, path, value):
    table = json.loads(json.dumps(table))
    *parents, last = path
    node = table
    for key in parents:
        node = node[key]
    node[last] = value
    return table


@pytest.mark.parametrize("path, value, message", [
    (("slots", "0", "conv3x3"), "NaN", "slot 0 conv3x3 \\(ms\\): expected a finite number"),
    (("slots", "3", "max3x3"), -1.0, "slot 3 max3x3 \\(ms\\): must be >= 0"),
    (("slots", "3", "max3x3"), "1.0", "slot 3 max3x3 \\(ms\\): expected a number"),
    (("fixed_ms", ), "Infinity", "fixed_ms: expected a finite number"),
    (("slots", ), [1, 2], "slots must be an object"),
    (("slots", "0"), 5, "slot 0 must hold a timing"),
    (("candidates", ), "conv3x3", "candidates must be a list"),
    (("width", ), "wide", "width: expected a number"),
    (("input_size", ), 10**12, "input_size: must be <= 4096"),
    (("backbone", ), ["iresnet18"], "backbone must be a string"),
])
def test_10_latency_table_types_and_timings(latency_table, path, value, message, tmp_path):
    from facenar.space.latency import load_latency_table

    file = tmp_path / "lat.json"
    text = json.dumps(_set(latency_table, path, value))
    file.write_text(text.replace('"NaN"', "NaN").replace('"Infinity"', "Infinity"))
    with pytest.raises(UserError, match=f"lat.json: {message}.*measure it again"):
        load_latency_table(file)
    file.write_text(json.dumps(latency_table))
    assert load_latency_table(file) == latency_table


# -- 16: img2rec decodes every image; align refuses absurd landmarks --------------------------------
@pytest.mark.parametrize("position", ["first", "later"])
def test_16_img2rec_checks_every_image_in_the_writer_loop(position, tmp_path, capsys):
    from data_tools import img2rec

    for name in ("a", "b"):
        (tmp_path / "images" / name).mkdir(parents=True)
        for i in range(2):
            (tmp_path / "images" / name / f"{i}.jpg").write_bytes(jpeg(i, (64, 64)))
    bad = tmp_path / "images" / ("a" if position == "first" else "b") / ("0.jpg" if position == "first" else "1.jpg")
    bad.write_text("<html><body>404 Not Found</body></html>")
    code, err = one_line_exit(img2rec.main, ["--images", tmp_path / "images", "--out", tmp_path / "out"], capsys)
    assert code == 2 and f"{bad}: cannot decode this image" in err and not (tmp_path / "out").exists()


@pytest.mark.parametrize("numbers, message", [
    ("1e300 " * 10, "within \\+-1e\\+06 pixels"),
    ("38 51 73 51 56 71 41 92 70 1e300", "within \\+-1e\\+06 pixels"),
    ("38 51 73 51 56 71 41 92 70 50000", "far outside the 100x120 image"),
    ("-500 51 73 51 56 71 41 92 70 92", "far outside the 100x120 image"),
])
def test_16_align_refuses_absurd_landmarks(numbers, message, tmp_path, capsys):
    import cv2
    import numpy as np

    from data_tools import align

    cv2.imwrite(str(tmp_path / "a.png"), np.zeros((120, 100, 3), np.uint8))
    (tmp_path / "marks.txt").write_text(f"a.png {numbers}\n")
    code, err = one_line_exit(align.main, ["--images", tmp_path, "--landmarks", tmp_path / "marks.txt",
                                           "--out", tmp_path / "o"], capsys)
    assert code == 2 and re.search(message, err) and "marks.txt" in err and not (tmp_path / "o").exists()


# -- 16: train --bench is checked up front; a finished run resumed verifies nothing twice ---------------
TRAIN = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "16",
         "--batch-size", "48", "--epochs", "1", "--device", "cpu", "--lr", "0.05", "--workers", "0"]


@pytest.mark.parametrize("bench, message", [("nope", "nope.bin not found"), ("lfw,nope", "nope.bin not found"),
                                            ("lfw,lfw", "--bench names 'lfw' twice")])
def test_16_train_refuses_a_bench_it_cannot_verify_on(bench, message, tiny_demo, tmp_path, capsys):
    from facenar.train.cli import main

    code, err = one_line_exit(main, ["--data", tiny_demo, "--out", tmp_path / "run", *TRAIN, "--bench", bench], capsys)
    assert code == 2 and message in err and not (tmp_path / "run").exists()


def test_16_resuming_a_finished_run_adds_no_verification_row(tiny_demo, tmp_path):
    import csv

    from facenar.train.cli import main

    run = tmp_path / "run"
    assert main(["--data", str(tiny_demo), "--out", str(run), *TRAIN, "--bench", "lfw"]) == 0
    rows = (run / "train.csv").read_text()
    assert sum(1 for row in csv.DictReader(rows.splitlines()) if row["lfw_acc"]) == 1

    def final_figures():
        """The log's final-figures lines without their timestamps (a resume may start in the next second)."""
        lines = (run / "run.log").read_text().splitlines()
        return [line.split(" ", 2)[2] for line in lines if "final figures" in line]

    final = final_figures()
    assert final  # the finished run reports its final figures once, then each resume repeats them
    for _ in range(2):
        assert main(["--resume", str(run)]) == 0
        assert (run / "train.csv").read_text() == rows
    assert final_figures() == final * 3


def test_6_the_largest_seed_still_seeds_every_generator_a_run_derives():
    from facenar_runtime import limits
    from facenar.checkpoint import seed_everything

    for offset in (0, 1 + limits.WORKERS, 3):  # train: seed + 1 + rank; search: seed + 3
        seed_everything(limits.SEED + offset)
        torch.Generator().manual_seed(limits.SEED + offset)
