"""benchmarks.search_evidence: ranking statistics, MAC-spread selection, the report, and a tiny real run."""
import math
from pathlib import Path

import pytest
import torch

from benchmarks import evidence_tools, search_evidence
from benchmarks.evidence_tools import Budget, rank_agreement, spread_indices
from facenar_runtime.errors import UserError


def test_rank_agreement_of_known_rankings():
    same = rank_agreement([0.1, 0.2, 0.3, 0.4], [10, 20, 30, 40])
    assert same["kendall_tau"] == pytest.approx(1) and same["spearman_rho"] == pytest.approx(1)
    reverse = rank_agreement([0.1, 0.2, 0.3, 0.4], [4, 3, 2, 1])
    assert reverse["kendall_tau"] == pytest.approx(-1) and reverse["spearman_rho"] == pytest.approx(-1)
    one_swap = rank_agreement([1, 2, 3, 4], [1, 3, 2, 4])  # 5 concordant, 1 discordant pair; sum d^2 = 2
    assert one_swap["kendall_tau"] == pytest.approx(4 / 6)
    assert one_swap["spearman_rho"] == pytest.approx(1 - 6 * 2 / (4 * 15))
    assert one_swap["n"] == 4 and 0 < one_swap["kendall_p"] <= 1


def test_rank_agreement_without_a_ranking_is_nan_and_bad_input_raises():
    flat = rank_agreement([0.5, 0.5, 0.5], [1, 2, 3])
    assert math.isnan(flat["kendall_tau"]) and math.isnan(flat["spearman_rho"])
    with pytest.raises(ValueError):
        rank_agreement([1, 2], [1, 2, 3])
    with pytest.raises(ValueError):
        rank_agreement([1], [1])


def test_spread_indices_cover_the_range():
    values = [5, 1, 9, 3, 7, 2]
    assert spread_indices(values, 3) == [1, 0, 2]  # targets 1, 5, 9
    assert spread_indices(values, 10) == [1, 5, 3, 0, 4, 2]  # all, cheapest first
    assert spread_indices(values, 0) == []
    assert spread_indices([1, 1, 1, 10], 3) == [0, 1, 3]  # distinct indices even on ties


def test_random_architectures_spread_over_the_mac_range():
    from facenar.search.costs import macs_model
    from facenar.space.arch import Arch, num_slots

    space = Arch("iresnet18", [0] * num_slots("iresnet18"), ["conv3x3", "dwconv3x3", "max3x3"], 0.25, 32, 64)
    macs = macs_model(space)
    pool = torch.randint(0, 3, (40, space.num_slots), generator=torch.Generator().manual_seed(0)).tolist()
    costs = [macs(tuple(c)) for c in pool]
    picked = [costs[i] for i in spread_indices(costs, 5)]
    assert picked[0] == min(costs) and picked[-1] == max(costs)
    middle = sorted(costs)[len(costs) // 2]
    assert min(picked) < middle < max(picked) and len(set(spread_indices(costs, 5))) == 5


def test_missing_names_what_the_engine_lacks():
    assert search_evidence.missing("face", "nar") is None
    assert search_evidence.missing("nosuch", "nar") == "needs --task nosuch"


def test_enas_row_waits_for_the_space_option():
    from dataclasses import fields

    from facenar.search.config import SearchConfig

    has_space = "space" in {f.name for f in fields(SearchConfig)}
    assert search_evidence.missing("face", "enas") == (None if has_space else "needs --space enas")


def test_children_of_both_spaces_give_features_and_costs():
    from facenar.space.arch import Arch, num_slots
    from facenar.space.macro import MacroArch

    nar = Arch("iresnet18", [0] * num_slots("iresnet18"), ["conv3x3", "max3x3"], 0.25, 32, 16)
    enas = MacroArch(["conv3x3", "maxpool3x3", "sepconv5x5"], [[], [1], [0, 1]], channels=8, input_size=16,
                     num_classes=0)
    for arch, size in ((nar, 32), (enas, 16)):
        net, features = evidence_tools.child_network(arch)
        assert net.eval()(torch.zeros(2, 3, size, size)).shape == (2, features)
        params, macs = evidence_tools.arch_cost(arch)
        assert params == sum(p.numel() for p in net.parameters()) and macs > 0


def test_section_renders_every_table():
    section = search_evidence.EvidenceSection("T", ["a"], [{"a": 1}], [("second", ["b"], [{"b": 2}])])
    section.notes.append("a note")
    text = section.markdown()
    assert text.index("| a |") < text.index("**second**") < text.index("| b |") < text.index("- a note")


def test_fig1_table_puts_both_runs_side_by_side_per_epoch(tmp_path):
    stored = [{"run": "on", "skip_weight": 0.8, "epoch": e, "skip_prob": p, "skip_kl_half": kl}
              for e, p, kl in ((1, 0.5, 0.0), (2, 0.41, 0.0163))]
    stored += [{"run": "off", "skip_weight": 0.0, "epoch": e, "skip_prob": p, "skip_kl_half": kl}
               for e, p, kl in ((1, 0.5, 0.0), (2, 0.82, 0.2132))]
    table = search_evidence.fig1_table(stored, "cifar10", pretrain_epochs=1)
    assert [row["phase"] for row in table] == ["PreTrain", "search"]
    assert table[1] == {"task": "cifar10", "epoch": 2, "phase": "search", "skip_prob (penalty on)": 0.41,
                        "KL (penalty on)": 0.0163, "skip_prob (penalty off)": 0.82, "KL (penalty off)": 0.2132}
    assert set(table[0]) == set(search_evidence.FIG1_COLUMNS)


def test_fig1_is_not_run_without_the_cifar10_task(monkeypatch):
    monkeypatch.setattr(search_evidence.Evidence, "fidelity", lambda self, task: ([], [], {}))
    monkeypatch.setattr(search_evidence.Evidence, "method_rows", lambda self, task, method, space, strategy: [])
    monkeypatch.setattr(search_evidence.Evidence, "fig1", lambda *a: pytest.fail("Fig. 1 needs cifar10"))
    monkeypatch.setattr(search_evidence, "full_mode_estimate", lambda images, full, tasks: 0.0)
    text = search_evidence.run(quick=True, tasks=["face"]).markdown()
    assert "| cifar10 | not run: needs --task cifar10 |" in text


def test_cli_refuses_bad_options_before_any_work(tmp_path):
    with pytest.raises(UserError, match="--data needs --task"):
        search_evidence.main(["--data", str(tmp_path)])
    mine = tmp_path / "notes.md"
    mine.write_text("my own notes\n")
    with pytest.raises(UserError):
        search_evidence.main(["--out", str(mine)])
    assert mine.read_text() == "my own notes\n"


TINY = dict(search=dict(epochs=2, pretrain_epochs=1, steps_per_epoch=2, batch_size=16, controller_steps=1,
                        controller_samples=2, val_batch=16, derive_samples=1, random_samples=0, population=3,
                        tournament=2, evolution_cycles=2),
            spaces=dict(enas=dict(layers=3, channels=8)), fig1={}, k=5, pool=12, seeds=(0,),
            budget=dict(face=Budget(steps=2, batch_size=16), cifar10=Budget(steps=2, batch_size=16)))


@pytest.mark.slow
def test_tiny_end_to_end_run(tiny_demo, tmp_path, monkeypatch, capsys):
    from data_tools.proxy import build_proxy

    proxy = tmp_path / "proxy"
    build_proxy(tiny_demo, proxy, num_ids=12, per_id=10, val_per_id=3, seed=0)
    monkeypatch.setitem(search_evidence.SETTINGS, True, TINY)
    trained = []
    real_train = evidence_tools.train_from_scratch
    monkeypatch.setattr(search_evidence, "train_from_scratch",  # (arch, cfg, data, budget, device)
                        lambda arch, *a, **k: trained.append((repr(arch.to_dict()), a[2].seed))
                        or real_train(arch, *a, **k))
    out = tmp_path / "evidence.md"
    assert search_evidence.main(["--quick", "--data", str(proxy), "--task", "face", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith(f"## {search_evidence.TITLE}")
    assert "| face | with PreTrain | 5 |" in text or "| face | with PreTrain | 4 |" in text  # greedy may = derived
    assert "| face | no PreTrain |" in text
    for method in ("enas (controller)", "random (weight sharing)", "evolution"):
        assert f"| face | NAR + {method} | 1 |" in text
        assert f"at the {method.split()[0]} pick's MACs) | 1 |" in text  # its two hand-made networks
    assert "| face | iresnet10 x" in text and "| 64 |" in text  # the shallower backbone; 2 epochs x 2 x 16 images
    assert "on the stand-alone Pareto front" in text
    assert (tmp_path / search_evidence.PARETO_NAME).stat().st_size > 0
    if search_evidence.missing("face", "enas") is None:  # once the engine has --space enas
        assert "| face | ENAS, searchable skips | 1 |" in text
    assert (tmp_path / search_evidence.PLOT_NAME).stat().st_size > 0
    assert len(trained) == len(set(trained))  # every architecture trained once, shared between both parts
    assert search_evidence._earlier_report(out)  # a rerun may replace it without --force
    log = capsys.readouterr().err.splitlines()  # one progress line per search and per stand-alone training
    assert sum(line.startswith("search_evidence: search") for line in log) >= 4  # PreTrain, none, random, evolution
    assert sum(line.startswith("search_evidence: stand-alone") for line in log) == len(trained)


def test_shared_images_count_full_passes_and_capped_epochs():
    from types import SimpleNamespace

    def engine(steps):
        return SimpleNamespace(cfg=SimpleNamespace(epochs=2, steps_per_epoch=steps, batch_size=16),
                               data=SimpleNamespace(train=range(100)))

    assert evidence_tools.shared_images(engine(0)) == 2 * 6 * 16  # full passes, last partial batch dropped
    assert evidence_tools.shared_images(engine(3)) == 2 * 3 * 16
    assert evidence_tools.shared_images(engine(10)) == 2 * 6 * 16  # capped by the data, as the engine does


@pytest.mark.slow
def test_tiny_cifar10_run_draws_fig1_from_two_enas_searches(tmp_path, monkeypatch):
    from data_tools.cifar_demo import make_demo_cifar

    cifar = tmp_path / "cifar"
    make_demo_cifar(cifar, train_per_class=12, test_per_class=4, seed=0)
    monkeypatch.setitem(search_evidence.SETTINGS, True, {**TINY, "search": {**TINY["search"], "epochs": 3}})
    searches = []
    real_search = evidence_tools.run_search
    monkeypatch.setattr(search_evidence, "run_search",
                        lambda cfg, *a, **k: searches.append((cfg.space, cfg.skip_weight)) or real_search(cfg, *a, **k))
    out = tmp_path / "evidence.md"
    assert search_evidence.main(["--quick", "--data", str(cifar), "--task", "cifar10", "--out", str(out)]) == 0
    assert sorted(s for s in searches if s[0] == "enas") == [("enas", 0.0), ("enas", 0.8)]  # penalty-on one reused
    assert (tmp_path / search_evidence.FIG1_NAME).stat().st_size > 0
    text = out.read_text()
    assert "| cifar10 | ENAS, searchable skips | 1 |" in text
    head = "| " + " | ".join(search_evidence.FIG1_COLUMNS) + " |"
    lines = text[text.index(head):].split("\n")[2:]
    rows = [line.split(" | ") for line in lines[:lines.index("")]]
    assert [row[1:3] for row in rows] == [["1", "PreTrain"], ["2", "search"], ["3", "search"]]
    for row in rows:
        for kl in (float(row[4]), float(row[6].rstrip(" |"))):
            assert 0 <= kl <= math.log(2)
        assert 0 < float(row[3]) < 1 and 0 < float(row[5]) < 1


def test_reading_states_chance_significance_and_seed_spread():
    per_arch = [{"task": "cifar10", "standalone_top1": v} for v in (0.7, 0.95)]
    fidelity = [{"task": "cifar10", "search": "with PreTrain", "kendall_tau": 0.6, "kendall_p": 0.01},
                {"task": "cifar10", "search": "no PreTrain", "kendall_tau": 0.1, "kendall_p": 0.7}]
    methods = [{"task": "cifar10", "method": "A", "standalone_top1": 0.80, "sd": 0.05},
               {"task": "cifar10", "method": "B", "standalone_top1": 0.90, "sd": 0.02},
               {"task": "cifar10", "method": "C", "seeds": "not run: needs --space enas"}]
    text = search_evidence.reading(fidelity, methods, per_arch, {"cifar10": 10})
    assert text.startswith("cifar10: stand-alone top-1 0.700-0.950 (chance 0.100)")
    assert "with PreTrain: tau 0.60 (p 0.01, significant)" in text
    assert "no PreTrain: tau 0.10 (p 0.70, not told apart from no agreement)" in text
    assert "best search method B leads A by 0.100, more than one seed sd (0.050)" in text
    methods[0]["standalone_top1"] = 0.87
    assert "leads A by 0.030, within one seed sd (0.050)" in search_evidence.reading(fidelity, methods, per_arch,
                                                                                     {"cifar10": 10})
    one_seed = [{**row, "sd": None} for row in methods]
    assert "one seed: no spread" in search_evidence.reading(fidelity, one_seed, per_arch, {"cifar10": 10})


def test_full_mode_reports_named_in_quick_notes_exist():
    repo = Path(search_evidence.__file__).resolve().parent.parent
    for report in search_evidence.FULL_REPORTS.split(", "):
        assert (repo / report).read_text().startswith(f"## {search_evidence.TITLE}\n")


def test_hand_made_alternatives_match_the_pick_macs_on_the_baseline_and_the_next_shallower_backbone():
    from facenar.space.arch import Arch, feature_size, shallower

    assert (shallower("iresnet50"), shallower("iresnet18"), shallower("resnet18")) == ("iresnet34", "iresnet10",
                                                                                       "resnet10")
    with pytest.raises(UserError, match="shallowest"):
        shallower("iresnet10")
    template = Arch("iresnet18", [1, 2, 3, 0, 1, 2, 3, 0], ["conv3x3", "dwconv3x3", "max3x3", "avg3x3"], 0.25, 32, 64)
    target = 5.36e6
    (scaled_name, scaled), (shallow_name, shallow) = evidence_tools.handmade_alternatives(template, target)
    assert (scaled.backbone, shallow.backbone) == ("iresnet18", "iresnet10")
    for arch in (scaled, shallow):
        assert set(arch.codes) == {0} and arch.embedding_size == 64 and arch.input_size == 32  # all conv3x3
        macs = evidence_tools.arch_cost(arch)[1]
        for step in (-1, 1):  # no neighbouring channel plan comes nearer the target
            other = evidence_tools.at_macs(template, arch.backbone, macs + step * 1.0)
            assert abs(evidence_tools.arch_cost(other)[1] - target) >= abs(macs - target) or other == arch
    assert abs(evidence_tools.arch_cost(scaled)[1] - target) / target < 0.05
    assert scaled_name.startswith("iresnet18 baseline x") and shallow_name.startswith("iresnet10 x")
    resnet = evidence_tools.at_macs(Arch("resnet18", [0] * 8, width=0.25, input_size=32), "resnet10", 2e7)
    assert resnet.embedding_size == feature_size(resnet.width) != 128  # a ResNet's embedding: its pooled features


def test_pareto_reading_says_which_picks_are_on_the_front_and_compares_each_with_its_hand_made_networks():
    row = search_evidence.summary_row
    methods = [row("face", "NAR + enas (controller)", [0.50, 0.56], [(1, 5_000_000)] * 2, 10),
               row("face", "iresnet18 baseline x0.17 width (hand-made, at the enas pick's MACs)", [0.40, 0.42],
                   [(1, 5_100_000)] * 2, 0),
               row("face", "iresnet10 x0.19 width (hand-made, at the enas pick's MACs)", [0.60, 0.61],
                   [(1, 4_000_000)] * 2, 0),
               row("face", "NAR + random (weight sharing)", [0.3, 0.4], [(1, 4_500_000)] * 2, 10),
               row("face", "iresnet10 x0.19 width (hand-made, at the random pick's MACs)", [0.60, 0.61],
                   [(1, 4_000_000)] * 2, 0),  # the same network as the enas pick's: one point
               row("face", "ENAS, searchable skips", [0.1, 0.2], [(1, 8_000_000)] * 2, 10)]
    per_arch = [{"task": "face", "arch": "baseline", "codes": "0000", "standalone_top1": 0.7, "MMACs": 13.6}]
    points = search_evidence.pareto_points(methods, per_arch, "face")
    assert [p["front"] for p in points] == [False, False, True, False, False, True]  # iresnet10 dominates the picks
    assert points[2]["label"] == "iresnet10 x0.19 width (hand-made, at the picks' MACs of: enas, random)"
    text = search_evidence.pareto_reading(methods, per_arch)
    assert "face: on the stand-alone Pareto front (top-1 vs MACs over 6 networks trained here): " \
           "NAR + enas (controller) no, NAR + random (weight sharing) no, ENAS, searchable skips no" in text
    assert "NAR + random (weight sharing) trails iresnet10 x0.19 width by 0.255" in text
    assert "NAR + enas (controller) leads iresnet18 baseline x0.17 width by 0.120, more than one seed sd" in text
    assert "NAR + enas (controller) trails iresnet10 x0.19 width by 0.075, more than one seed sd (0.042)" in text
    methods[2]["standalone_top1"] = 0.55
    assert "trails iresnet10 x0.19 width by 0.020, within one seed sd" in search_evidence.pareto_reading(methods,
                                                                                                          per_arch)


@pytest.mark.parametrize("command", [["benchmarks.search_evidence", "--quick"], ["benchmarks.run", "--quick"]])
def test_a_fifo_as_out_is_refused_without_waiting_for_a_writer(command, tmp_path):
    import os
    import subprocess
    import sys

    fifo = tmp_path / "report.md"
    os.mkfifo(fifo)
    done = subprocess.run([sys.executable, "-m", *command, "--out", str(fifo)], capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parent.parent)  # the old peek blocked forever
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1].startswith("error: --out")
    assert fifo.is_fifo()
