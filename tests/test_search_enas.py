"""The engine driving ENAS's macro space (--space enas): outputs, child == supernet path, exact resume,
options of the wrong space, and the paper's Fig. 1 from two tiny runs (skip penalty on and off)."""
from __future__ import annotations

import csv
import json

import pytest
import torch

from facenar_runtime.errors import UserError
from facenar.search.cli import main
from facenar.space.macro import ENAS_CANDIDATES, MacroArch
from tests.test_search import arch_without_run_dir

SHARED = ["--input-size", "16", "--epochs", "3", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "16",
          "--steps-per-epoch", "3", "--controller-steps", "2", "--controller-samples", "3", "--val-batch", "24",
          "--derive-samples", "3", "--random-samples", "3", "--margin-s", "16", "--margin-m", "0.1"]
TINY = ["--space", "enas", "--layers", "4", "--channels", "8", *SHARED]


@pytest.fixture(scope="module")
def enas_run(tiny_proxy, tmp_path_factory):
    out = tmp_path_factory.mktemp("enas") / "penalty_on"
    assert main([*TINY, "--data", str(tiny_proxy), "--out", str(out)]) == 0
    return out


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_enas_search_writes_macro_arch_and_skip_record(enas_run):
    arch = MacroArch.load(enas_run / "arch.json")
    assert (arch.num_layers, arch.channels, arch.input_size, arch.num_classes) == (4, 8, 16, 0)
    prov = arch.provenance
    for key in ("reward", "greedy_reward", "baseline_reward", "random_mean_reward", "params", "macs",
                "skip_density", "op_counts", "search"):
        assert key in prov, key
    assert prov["skip_density"] == arch.skip_density and sum(prov["op_counts"].values()) == 4
    assert prov["reward"] >= prov["greedy_reward"]
    rows = _rows(enas_run / "search.csv")
    assert [r["phase"] for r in rows] == ["pretrain", "search", "search"]
    for r in rows:  # the Fig. 1 columns, every epoch (PreTrain: the initial policy on the uniform samples)
        assert 0.18 <= float(r["skip_prob"]) <= 0.82  # the 1.5 tanh cap bounds p
        assert 0.0 <= float(r["skip_kl_half"]) <= 0.22
        assert 1 <= int(r["diversity"]) <= len(ENAS_CANDIDATES)  # distinct ops run, skip bits not counted
    ops = _rows(enas_run / "search_ops.csv")
    assert list(ops[0]) == ["epoch", "layer", *ENAS_CANDIDATES] and len(ops) == 3 * 4  # ops per layer, no skip bits
    for r in ops:
        assert sum(float(r[name]) for name in ENAS_CANDIDATES) == pytest.approx(1.0)
    config = json.loads((enas_run / "config.json").read_text())
    assert (config["space"], config["layers"], config["channels"], config["skip_weight"]) == ("enas", 4, 8, 0.8)
    assert "ENAS macro search: 4 layers" in (enas_run / "run.log").read_text()


def test_skip_columns_reach_tensorboard(enas_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(enas_run / "tensorboard")).Reload()
    rows = _rows(enas_run / "search.csv")
    for key in ("skip_prob", "skip_kl_half"):
        assert [e.value for e in events.Scalars(f"search/{key}")] == pytest.approx([float(r[key]) for r in rows])


def test_child_from_supernet_computes_the_supernet_path(enas_run):
    from facenar.checkpoint import load_checkpoint
    from facenar.space.macro import MacroSupernet, child_from_supernet

    arch = MacroArch.load(enas_run / "arch.json")
    arch.skips[3][0] = 1 - arch.skips[3][0]  # also a path the derivation did not pick
    for candidate in (MacroArch.load(enas_run / "arch.json"), arch):
        supernet = MacroSupernet(4, 8, num_classes=0, input_size=16)
        supernet.load_state_dict(load_checkpoint(enas_run / "last.pt")["supernet"])
        supernet.eval()
        child = child_from_supernet(supernet, candidate)
        images = torch.randn(5, 3, 16, 16, generator=torch.Generator().manual_seed(0))
        with torch.no_grad():
            torch.testing.assert_close(child(images), supernet(images, candidate.codes), atol=1e-5, rtol=1e-5)


def test_resume_after_stop_equals_uninterrupted(enas_run, tiny_proxy, tmp_path):
    run = tmp_path / "cut"
    main([*TINY, "--data", str(tiny_proxy), "--out", str(run), "--stop-after-epochs", "2"])
    assert not (run / "arch.json").exists() and len(_rows(run / "search.csv")) == 2
    main(["--resume", str(run)])
    assert arch_without_run_dir(run) == arch_without_run_dir(enas_run)
    for name in ("search.csv", "search_ops.csv"):
        assert (run / name).read_text() == (enas_run / name).read_text()


@pytest.mark.parametrize("extra,message", [
    (["--layers", "4"], "--layers: only for --space enas, but this search uses --space nar"),
    (["--space", "nar", "--skip-weight", "0", "--channels", "8"], "--channels, --skip-weight: only for --space enas"),
    (["--space", "enas", "--ops", "conv3x3,max3x3"], "--ops: only for --space nar"),
    (["--space", "enas", "--backbone", "iresnet18"], "--backbone: only for --space nar"),
    (["--space", "enas", "--channels", "7"], "even --channels"),
    (["--space", "enas", "--target-macs", "1M"], "only with --space nar"),
])
def test_options_of_the_other_space_are_refused(tiny_proxy, tmp_path, extra, message):
    with pytest.raises(UserError, match=message):
        main([*SHARED, *extra, "--data", str(tiny_proxy), "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("extra", [["--layers", "1"], ["--skip-target", "1.5"], ["--skip-weight", "-1"]])
def test_out_of_range_enas_options_exit_2(tiny_proxy, tmp_path, extra, capsys):
    with pytest.raises(SystemExit) as exited:
        main([*TINY, *extra, "--data", str(tiny_proxy), "--out", str(tmp_path / "r")])
    assert exited.value.code == 2 and f"{extra[0]}: must be" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_config_checks_enas_settings_given_from_python():
    from facenar.search.config import SearchConfig

    for bad, message in (({"layers": 1}, "--layers.*>= 2"), ({"skip_target": 1.0}, "--skip-target.*< 1"),
                         ({"skip_weight": -0.1}, "--skip-weight.*>= 0"), ({"channels": 7}, "even --channels")):
        with pytest.raises(UserError, match=message):
            SearchConfig(space="enas", **bad).validate()
    SearchConfig(space="nar", channels=7).validate()  # the other space's rules are not its concern


def test_fig1_plots_penalty_on_and_off(enas_run, tiny_proxy, tmp_path, monkeypatch):
    import matplotlib.pyplot as plt

    from facenar.search.fig1 import main as fig1

    off = tmp_path / "penalty_off"
    main([*TINY, "--skip-weight", "0", "--epochs", "2", "--data", str(tiny_proxy), "--out", str(off)])
    drawn = []
    close = plt.close
    monkeypatch.setattr(plt, "close", lambda fig=None: (drawn.append(fig), close(fig)))
    assert fig1([str(enas_run), str(off), "--out", str(tmp_path / "fig1.png")]) == 0
    kl_panel, prob_panel = drawn[-1].axes
    assert kl_panel.get_title().startswith("KL") and prob_panel.get_title() == "mean skip probability"
    assert [line.get_label() for line in kl_panel.lines] == ["penalty_on: skip penalty on (weight 0.8)",
                                                            "penalty_off: skip penalty off"]
    on = _rows(enas_run / "search.csv")
    assert list(kl_panel.lines[0].get_ydata()) == pytest.approx([float(r["skip_kl_half"]) for r in on])
    assert list(prob_panel.lines[0].get_ydata()) == pytest.approx([float(r["skip_prob"]) for r in on])
    assert (tmp_path / "fig1.png").read_bytes()[:4] == b"\x89PNG"
    rows = _rows(tmp_path / "fig1.csv")
    assert [(r["run"], r["skip_weight"], r["epoch"]) for r in rows] == [
        ("penalty_on", "0.8", "1"), ("penalty_on", "0.8", "2"), ("penalty_on", "0.8", "3"),
        ("penalty_off", "0.0", "1"), ("penalty_off", "0.0", "2")]
    assert [float(r["skip_kl_half"]) for r in rows[:3]] == pytest.approx(
        [float(r["skip_kl_half"]) for r in _rows(enas_run / "search.csv")])
    with pytest.raises(UserError, match="already exists"):
        fig1([str(enas_run), "--out", str(tmp_path / "fig1.png")])
    with pytest.raises(UserError, match="not a search run directory"):
        fig1([str(tmp_path), "--out", str(tmp_path / "other.png")])
