"""One config vocabulary for search and training (facenar.config): layering, old run directories,
aliases, --help defaults from the dataclasses, and the log of settings that differ from the paper."""
from __future__ import annotations

import json

import pytest

from facenar_runtime.errors import UserError
from facenar.config import format_differences
from facenar.rundir import RunDir
from facenar.search.cli import build_parser as search_parser
from facenar.search.config import SearchConfig
from facenar.train.cli import build_parser as train_parser
from facenar.train.config import TrainConfig


@pytest.mark.parametrize("cls", [SearchConfig, TrainConfig])
def test_layers_and_validate_behave_alike(cls):
    cfg = cls.resolve({"epochs": 4}, preset="demo")
    assert cfg.epochs == 4 and cfg.backbone == "iresnet18" and isinstance(cfg, cls)  # validate() returns self
    assert cls.resolve({}).to_dict() == cls().to_dict() | ({"preset": None} if cls is SearchConfig else {})
    assert cls.resolve({}, stored={**cls().to_dict(), "epochs": 17}, where="R").epochs == 17
    with pytest.raises(UserError, match="preset"):
        cls.resolve({}, preset="nope")
    with pytest.raises(UserError, match="not a"):
        cls.resolve({}, stored={"something": 1}, where="R")


def test_old_search_run_directory_resumes(tmp_path):
    cfg = SearchConfig(data="/p", lr=0.2, scale=16.0, m2=0.1)
    old = {k: v for k, v in cfg.to_dict().items() if k not in ("lr", "scale", "m2", "task", "device", "workers")}
    old.update(lr_max=0.2, margin_s=16.0, margin_m=0.1)
    (tmp_path / "config.json").write_text(json.dumps(old))
    resumed = SearchConfig.resolve({}, stored=old, where=str(tmp_path))
    assert (resumed.lr, resumed.scale, resumed.m2) == (0.2, 16.0, 0.1)
    RunDir.open_resume(tmp_path, resumed.to_dict(), SearchConfig.RESUMABLE, SearchConfig.upgrade)
    with pytest.raises(UserError, match="lr: 0.2 -> 0.3"):
        RunDir.open_resume(tmp_path, {**resumed.to_dict(), "lr": 0.3}, SearchConfig.RESUMABLE, SearchConfig.upgrade)


def test_old_train_fp16_key_becomes_amp():
    stored = {k: v for k, v in TrainConfig().to_dict().items() if k != "amp"}
    assert TrainConfig.resolve({}, stored={**stored, "fp16": True}).amp == "fp16"
    assert TrainConfig.resolve({}, stored={**stored, "fp16": False}).amp == "off"


def test_same_names_and_aliases_in_both_command_lines():
    for parser in (search_parser(), train_parser()):
        for argv, key, value in ((["--lr-max", "0.2"], "lr", 0.2), (["--lr", "0.2"], "lr", 0.2),
                                 (["--margin-s", "8"], "scale", 8.0), (["--scale", "8"], "scale", 8.0),
                                 (["--margin-m", "0.3"], "m2", 0.3), (["--amp", "bf16"], "amp", "bf16"),
                                 (["--workers", "3"], "workers", 3), (["--device", "cpu"], "device", "cpu")):
            assert vars(parser.parse_args(argv)) == {key: value}, argv
    assert vars(train_parser().parse_args(["--fp16"])) == {"amp": "fp16"}


@pytest.mark.parametrize("parser,cls", [(search_parser, SearchConfig), (train_parser, TrainConfig)])
def test_help_defaults_come_from_the_dataclass(parser, cls, monkeypatch):
    text = " ".join(parser().format_help().split())
    demo_epochs = cls.PRESETS["demo"]["epochs"]
    cifar_epochs = cls.PRESETS["cifar10-demo"]["epochs"]
    assert f"(default {cls().epochs} [paper]; demo: {demo_epochs};" in text
    assert f"cifar10-demo: {cifar_epochs};" in text  # every preset's value is named
    assert f"(default {cls().weight_decay} [ArcFace]" in text
    monkeypatch.setattr(cls.__dataclass_fields__["weight_decay"], "default", 0.123)
    assert "(default 0.123 [ArcFace]" in " ".join(parser().format_help().split())


def test_run_log_lists_what_differs_from_the_paper():
    assert format_differences(SearchConfig()) == "preset paper; settings that differ from the paper preset: none"
    line = format_differences(TrainConfig.resolve({"epochs": 3}, preset="demo"))
    assert "epochs=3" in line and "backbone=iresnet18" in line and "lr=" not in line
