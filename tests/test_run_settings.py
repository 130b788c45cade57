"""Search and train settings: every numeric setting is range-checked
(command line, preset, resumed config.json) before any work; --dropout round-trips; --lr-scale; the
headline figures are last.pt's; the demo preset says what it changes."""
from __future__ import annotations

import json
import re
import threading

import pytest
import torch

from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError
from facenar.checkpoint import load_checkpoint, load_model, save_model
from facenar.config import format_differences
from facenar.search import config as search_config
from facenar.search.cli import build_parser as search_parser, main as search_main
from facenar.search.config import SearchConfig
from facenar.space.arch import Arch
from facenar.space.iresnet import build_child
from facenar.train.cli import build_parser as train_parser, main as train_main
from facenar.train.config import TrainConfig, lr_factor, resolve_config

TINY_TRAIN = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "32",
              "--batch-size", "48", "--epochs", "1", "--workers", "0", "--device", "cpu", "--log-every", "2",
              "--bench", "lfw"]


def _exit_of(main, argv, capsys, timeout: float = 60.0) -> tuple[int, str]:
    """run_cli(main, argv) in a thread: (exit code, stderr); fails if it has not ended (a hang)."""
    outcome = {}

    def target():
        try:
            run_cli(main, argv)
        except SystemExit as exc:
            outcome["code"] = exc.code

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{argv} did not end within {timeout} s (hang)"
    return outcome.get("code"), capsys.readouterr().err


@pytest.mark.parametrize("main, argv, message", [
    (train_main, ["--t0", "0"], "argument --t0: must be >= 1, got 0"),
    (train_main, ["--t-mult", "0.5"], "argument --t-mult: must be >= 1, got 0.5"),  # one range for both commands
    (train_main, ["--t-mult", "0"], "argument --t-mult: must be >= 1, got 0"),
    (train_main, ["--lr", "nan"], "argument --lr/--lr-max: expected a finite number, got 'nan'"),
    (train_main, ["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (train_main, ["--momentum", "-1"], "argument --momentum: must be >= 0, got -1"),
    (train_main, ["--weight-decay", "-1"], "argument --weight-decay: must be >= 0, got -1"),
    (train_main, ["--dropout", "1"], "argument --dropout: must be < 1, got 1"),
    (search_main, ["--t0", "0"], "argument --t0: must be >= 1, got 0"),
    (search_main, ["--t-mult", "0.5"], "argument --t-mult: must be >= 1, got 0.5"),
    (search_main, ["--lr", "nan"], "argument --lr/--lr-max: expected a finite number, got 'nan'"),
    (search_main, ["--seed", "-1"], "argument --seed: must be >= 0, got -1"),
    (search_main, ["--momentum", "-1"], "argument --momentum: must be >= 0, got -1"),
    (search_main, ["--momentum", "1"], "argument --momentum: must be < 1, got 1"),
    (search_main, ["--weight-decay", "-1"], "argument --weight-decay: must be >= 0, got -1"),
    (search_main, ["--controller-lr", "-1"], "argument --controller-lr: must be > 0, got -1"),
])
def test_bad_numeric_option_is_one_line_before_any_work(main, argv, message, capsys, tmp_path):
    code, err = _exit_of(main, [*argv, "--out", str(tmp_path / "run")], capsys)
    assert code == 2 and err.splitlines()[-1].endswith(f"error: {message}")
    assert "Traceback" not in err and not (tmp_path / "run").exists()


@pytest.mark.parametrize("cls, stored, message", [
    (TrainConfig, {"t0": 0}, "--resume R: --t0: must be >= 1, got 0"),
    (TrainConfig, {"epochs": "many"}, "R/config.json: epochs is 'many', expected int"),
    (TrainConfig, {"epochs": 2.5}, "R/config.json: epochs is 2.5, expected int"),
    (SearchConfig, {"lr": "0.1"}, "R/config.json: lr is '0.1', expected float"),
    (TrainConfig, {"lr": float("nan")}, "--resume R: --lr: expected a finite number"),
    (TrainConfig, {"lr": 0.01, "lr_min": 0.1}, "--resume R: .*lr_min <= lr_max"),
    (TrainConfig, {"m2": [0.5]}, "R/config.json: m2 is [0.5], expected"),
    (TrainConfig, {"dropout": True}, "R/config.json: dropout is True, expected float"),
    (SearchConfig, {"t_mult": 0.5}, "--resume R: --t-mult: must be >= 1, got 0.5"),
    (SearchConfig, {"momentum": 1}, "--resume R: --momentum: must be < 1"),
    (SearchConfig, {"controller_lr": -1}, "--resume R: --controller-lr: must be > 0"),
    (SearchConfig, {"seed": -1}, "--resume R: --seed: must be >= 0"),
])
def test_resumed_config_is_checked_like_the_command_line(cls, stored, message):
    """Stored values get the command line's ranges; a value of the wrong type names the file and key."""
    with pytest.raises(UserError, match="^" + message.replace("(", r"\(").replace("[", r"\[")):
        cls.resolve({}, stored={**cls().to_dict(), **stored}, where="R")


def test_resume_of_a_damaged_run_config_is_one_line(tmp_path, capsys):
    (tmp_path / "config.json").write_text(json.dumps({**TrainConfig().to_dict(), "t_mult": 0}))
    code, err = _exit_of(train_main, ["--resume", str(tmp_path)], capsys)
    assert (code, err.count("\n")) == (2, 1) and "--t-mult: must be >= 1, got 0" in err


@pytest.mark.parametrize("cls", [SearchConfig, TrainConfig])
def test_preset_values_are_checked_too(cls, monkeypatch):
    monkeypatch.setitem(cls.PRESETS, "demo", {**cls.PRESETS["demo"], "t0": 0})
    with pytest.raises(UserError, match="--t0: must be >= 1"):
        cls.resolve({}, preset="demo")


@pytest.mark.parametrize("parser, cls", [(search_parser, SearchConfig), (train_parser, TrainConfig)])
def test_every_declared_range_has_its_option(parser, cls):
    flags = {flag for action in parser()._actions for flag in action.option_strings}
    assert {cls.flag(name) for name in cls.RANGES} <= flags  # no range for a setting the CLI lacks


# -- dropout (issue 11 part 2) ---------------------------------------------------------------------
def test_dropout_round_trips_through_the_checkpoint(tmp_path):
    arch = Arch.baseline("iresnet18", width=0.0625, input_size=32, embedding_size=16)
    save_model(tmp_path / "m.pt", arch, build_child(arch, dropout=0.4))
    model, _, payload = load_model(tmp_path / "m.pt")
    assert model.dropout.p == 0.4 and payload["dropout"] == 0.4
    old = {k: v for k, v in payload.items() if k != "dropout"}  # written before dropout was stored
    torch.save(old, tmp_path / "old.pt")
    assert load_model(tmp_path / "old.pt")[0].dropout.p == 0.0
    torch.save({**old, "dropout": "lots"}, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="stored dropout 'lots' is not a rate"):
        load_model(tmp_path / "bad.pt")


def test_dropout_defaults_paper_demo_and_old_runs():
    assert TrainConfig().dropout == 0.4 and resolve_config({}, preset="demo").dropout == 0.0
    old = {k: v for k, v in TrainConfig().to_dict().items() if k != "dropout"}
    assert TrainConfig.resolve({}, stored=old, where="R").dropout == 0.0  # trained without: stays without
    assert TrainConfig.resolve({}, stored={**old, "dropout": 0.4}, where="R").dropout == 0.4


def test_lr_scale_factor():
    assert lr_factor(TrainConfig(lr_scale="linear"), 128) == 0.25 and lr_factor(TrainConfig(), 128) == 1.0
    with pytest.raises(UserError, match="--lr-scale"):
        TrainConfig.resolve({"lr_scale": "sqrt"})


# -- the demo preset says what it changes (issue 11 part 4) -------------------------------------------
def test_search_space_option_on_the_implicit_demo_preset_is_refused(monkeypatch):
    def no_proxy():
        raise AssertionError("the demo proxy was built before the options were checked")

    monkeypatch.setattr("data_tools.proxy.ensure_demo_proxy", no_proxy)
    with pytest.raises(UserError, match=r"--backbone, --width: without --data the demo preset is active .*"
                                        r"backbone=iresnet18.*--preset demo .* or --preset paper"):
        search_main(["--backbone", "iresnet50", "--width", "1.0"])


def test_explicit_demo_preset_logs_what_options_override(monkeypatch, tmp_path):
    monkeypatch.setattr("data_tools.proxy.ensure_demo_proxy", lambda: tmp_path)
    cfg = search_config.resolve_config({"preset": "demo", "backbone": "iresnet50"}, None)
    line = format_differences(cfg)
    assert line.startswith("preset demo; settings that differ from the paper preset: ")
    assert "width=0.25" in line and "scale=16.0" in line and "controller_lr=0.005" in line
    assert line.endswith("options given over the demo preset: backbone=iresnet50 (preset: iresnet18)")
    # a given --arch keeps its own size: the preset's architecture settings are not "overridden"
    assert "given over" not in format_differences(resolve_config({"arch_file": "a.json"}, preset="demo"))


def test_demo_search_differences_name_every_preset_setting(monkeypatch, tmp_path):
    monkeypatch.setattr("data_tools.proxy.ensure_demo_proxy", lambda: tmp_path)
    line = format_differences(search_config.resolve_config({}, None))
    from facenar.search.strategies import STRATEGIES

    other = {key for name in STRATEGIES if name != "enas" for key in STRATEGIES.get(name).OPTIONS}  # not read
    changed = [key for key, value in SearchConfig.PRESETS["demo"].items()
               if getattr(SearchConfig(), key) != value and key not in other]
    assert len(changed) > 10 and all(f" {key}=" in line for key in changed)
    assert not any(f" {key}=" in line for key in other)


def test_demo_training_run_log_and_summary(tiny_demo, tmp_path, capsys):
    run = tmp_path / "run"
    assert train_main(["--preset", "demo", "--data", str(tiny_demo), "--out", str(run), *TINY_TRAIN,
                       "--dropout", "0.2", "--lr-scale", "linear"]) == 0
    out = capsys.readouterr().out
    log = [line.split(" ", 2)[2] for line in (run / "run.log").read_text().splitlines()]
    assert log[0].startswith("preset demo; settings that differ from the paper preset: backbone=iresnet18")
    assert "dropout=0.2" in log[0] and "over the demo preset: width=0.0625 (preset: 0.125)" in log[0]
    assert any("peak 0.009375, floor 9.375e-06 (--lr 0.1 x 0.09375, --lr-scale linear); global batch 48 = 48 x 1"
               in line for line in log)
    assert "final figures (last.pt, step 6):" in out and "selected on the benchmarks (optimistic" in out
    assert out.splitlines()[1:] == log[-len(out.splitlines()) + 1:]  # the log ends with the same figures
    assert all(0 <= float(value) <= 100 for value in re.findall(r"([\d.]+)%", "\n".join(log)))  # not 100x
    config = json.loads((run / "config.json").read_text())
    assert (config["dropout"], config["lr_scale"], config["preset"]) == (0.2, "linear", "demo")
    assert load_model(run / "last.pt")[0].dropout.p == 0.2 and load_checkpoint(run / "best.pt")["best_step"] == 6


@pytest.mark.parametrize("cls", [SearchConfig, TrainConfig])
def test_every_default_names_its_source(cls):
    unset = {"task", "data", "preset"}  # not options with a default of their own
    fields = [f for f in cls.__dataclass_fields__.values() if f.name not in unset and f.default is not None]
    assert [f.name for f in fields if f.name not in cls.SOURCES] == []
    assert set(cls.SOURCES.values()) <= {"paper", "ArcFace", "ENAS", "Real", "arcface_torch", "ours"}
