"""Search strategies (every registered one), hard budgets, the Pareto front and `derive RUN_DIR`."""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import torch

from facenar_runtime.errors import UserError
from facenar.search.cli import main
from facenar.search.strategies import STRATEGIES

TINY = ["--backbone", "iresnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "32",
        "--epochs", "3", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "24", "--steps-per-epoch", "2",
        "--controller-samples", "3", "--val-batch", "24", "--derive-samples", "3", "--random-samples", "3",
        "--margin-s", "16", "--margin-m", "0.1"]
OWN = {"enas": ["--controller-steps", "2"], "random": [],
       "evolution": ["--population", "4", "--tournament", "2", "--evolution-cycles", "3"]}


def search(proxy, out, strategy, *extra):
    return main([*TINY, *OWN[strategy], "--strategy", strategy, *extra, "--data", str(proxy), "--out", str(out)])


def test_registry_lists_every_strategy_with_its_options():
    from facenar.search.config import SearchConfig

    assert STRATEGIES.names()[:3] == ("enas", "random", "evolution")
    for name in STRATEGIES.names():
        entry = STRATEGIES.get(name)
        assert entry.name == name and STRATEGIES.summaries()[name]
        assert set(entry.OPTIONS) <= SearchConfig.names()


@pytest.fixture(scope="module")
def runs(tiny_proxy, tmp_path_factory):
    """Each strategy: one uninterrupted tiny search, and one stopped after 2 epochs then resumed."""
    base = tmp_path_factory.mktemp("strategies")
    for name in STRATEGIES.names():
        assert search(tiny_proxy, base / name, name) == 0
        assert search(tiny_proxy, base / f"{name}-resumed", name, "--stop-after-epochs", "2") == 0
        assert main(["--resume", str(base / f"{name}-resumed")]) == 0
    return base


@pytest.mark.parametrize("name", ["enas", "random", "evolution"])
def test_every_strategy_resumes_exactly_and_writes_its_pareto_front(runs, name):
    full, resumed = runs / name, runs / f"{name}-resumed"
    assert (full / "search.csv").read_text() == (resumed / "search.csv").read_text()
    arch, again = (json.loads((d / "arch.json").read_text()) for d in (full, resumed))
    assert arch["codes"] == again["codes"] and arch["provenance"]["strategy"] == name
    pareto = json.loads((full / "pareto.json").read_text())
    pick = pareto["points"][pareto["pick"]]
    assert pick["codes"] == arch["codes"] and pick["macs"] == arch["provenance"]["macs"]
    assert {p["source"] for p in pareto["points"]} >= {name, "baseline"}
    assert any(p["front"] for p in pareto["points"]) and (full / "pareto.png").stat().st_size > 0
    header = (full / "search.csv").read_text().splitlines()[0]
    assert ("population_best" in header) == (name == "evolution")  # what evolution learns is recorded


def test_budget_is_a_hard_constraint_and_an_impossible_one_is_refused(runs, tiny_proxy, tmp_path):
    from facenar.search.config import SearchConfig

    points = json.loads((runs / "evolution" / "pareto.json").read_text())["points"]
    limit = sorted(p["macs"] for p in points)[len(points) // 2]  # about half the scored ones fit
    assert search(tiny_proxy, tmp_path / "budget", "evolution", "--max-macs", str(limit)) == 0
    arch = json.loads((tmp_path / "budget" / "arch.json").read_text())
    assert arch["provenance"]["macs"] <= limit and arch["provenance"]["budget"] == {"macs": limit}
    state = torch.load(tmp_path / "budget" / "last.pt", weights_only=True)["strategy"]
    from facenar.search.budget import Budget
    from facenar.search.spaces import make_space

    cfg = SearchConfig(**json.loads((tmp_path / "budget" / "config.json").read_text()))
    budget = Budget(make_space(cfg), cfg)
    assert state["population"] and all(budget.fits(codes) for codes, _ in state["population"] + state["seen"])
    with pytest.raises(UserError, match="no architecture of this search space meets it"):
        search(tiny_proxy, tmp_path / "never", "enas", "--max-macs", "1K")
    assert not (tmp_path / "never").exists()
    with pytest.raises(UserError, match="--max-latency-ms needs --latency-table"):
        search(tiny_proxy, tmp_path / "never", "random", "--max-latency-ms", "2")
    with pytest.raises(UserError, match="only for --strategy evolution"):
        search(tiny_proxy, tmp_path / "never", "random", "--population", "5")
    with pytest.raises(UserError, match="only for --strategy enas"):
        search(tiny_proxy, tmp_path / "never", "evolution", "--controller-lr", "0.01")
    assert not (tmp_path / "never").exists()


def test_derive_again_reproduces_the_pick_and_honours_a_new_budget(runs, tmp_path):
    run = runs / "enas"
    assert main(["derive", str(run), "--out", str(tmp_path / "same.json")]) == 0
    same = json.loads((tmp_path / "same.json").read_text())
    assert same["codes"] == json.loads((run / "arch.json").read_text())["codes"]
    points = json.loads((run / "pareto.json").read_text())["points"]
    limit = min(p["macs"] for p in points if p["source"] == "enas")  # only the cheapest enas candidate fits
    before = sorted(p.name for p in run.iterdir())
    assert main(["derive", str(run), "--max-macs", str(limit), "--out", str(tmp_path / "cheap.json")]) == 0
    cheap = json.loads((tmp_path / "cheap.json").read_text())
    assert cheap["provenance"]["macs"] <= limit and (tmp_path / "cheap.pareto.json").is_file()
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written into the run folder
    assert main(["derive", str(runs / "random"), "--strategy", "evolution", "--evolution-cycles", "2",
                 "--population", "3", "--tournament", "2", "--max-macs", str(limit),
                 "--out", str(tmp_path / "evo.json")]) == 0
    assert json.loads((tmp_path / "evo.json").read_text())["provenance"]["macs"] <= limit


def test_derive_reuses_the_runs_own_scores_only_for_the_same_weights(runs, tmp_path, monkeypatch, capsys):
    from facenar.search.reward import RewardModel

    run = runs / "enas"
    stamp = json.loads((run / "pareto.json").read_text())["scored_with"]
    assert set(stamp) == {"weights_sha256", "device", "data", "reward_bn", "amp"}
    scored = []
    real = RewardModel.accuracy_full
    monkeypatch.setattr(RewardModel, "accuracy_full", lambda self, codes: scored.append(codes) or real(self, codes))
    assert main(["derive", str(run), "--out", str(tmp_path / "reused.json")]) == 0
    assert scored == [] and "accuracies reused" in capsys.readouterr().out  # every candidate was scored by the search
    assert main(["derive", str(run), "--rescore", "--out", str(tmp_path / "rescored.json")]) == 0
    reused, rescored = (json.loads((tmp_path / f"{name}.pareto.json").read_text()) for name in ("reused", "rescored"))
    assert scored and reused["points"] == rescored["points"]  # scoring again gives the very same numbers
    other = tmp_path / "other-weights"
    shutil.copytree(runs / "enas-resumed", other)  # the same search resumed: equal weights, so reused too
    pareto = json.loads((other / "pareto.json").read_text())
    pareto["scored_with"]["weights_sha256"] = "0" * 64  # as if scored with other weights
    (other / "pareto.json").write_text(json.dumps(pareto))
    scored.clear()
    assert main(["derive", str(other), "--out", str(tmp_path / "other.json")]) == 0
    assert len(scored) == len(pareto["points"])  # nothing reused


def test_derive_bad_input_one_error_nothing_written(runs, tmp_path):
    out = tmp_path / "x.json"
    cases = [([str(tmp_path)], "not a search run folder"),
             ([str(runs / "random"), "--strategy", "enas"], "needs the run's trained controller"),
             ([str(runs / "enas"), "--max-macs", "1K"], "no architecture of this search space meets it"),
             ([str(runs / "enas"), "--max-latency-ms", "3"], "needs --latency-table"),
             ([str(runs / "enas"), "--population", "3"], "only for --strategy evolution")]
    for args, message in cases:
        with pytest.raises(UserError, match=message):
            main(["derive", *args, "--out", str(out)])
    # a search still writing the run holds its folder's lock: another process does here, until its stdin closes
    script = ("import sys; from facenar.rundir import take_ownership; take_ownership(sys.argv[1]); "
              "print(1, flush=True); sys.stdin.read()")
    holder = subprocess.Popen([sys.executable, "-c", script, str(runs / "enas")], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "1"
        with pytest.raises(UserError, match="in use by another facenar process .*derive when the search has finished"):
            main(["derive", str(runs / "enas"), "--out", str(out)])
    finally:
        holder.communicate("", timeout=60)
    other = tmp_path / "other"
    other.mkdir()
    for name in ("config.json", "last.pt"):
        (other / name).write_bytes((runs / "enas" / name).read_bytes())
    state = torch.load(other / "last.pt", weights_only=True)
    torch.save({**state, "format": "facenar-search-v0"}, other / "last.pt")
    with pytest.raises(UserError, match="not a facenar search checkpoint"):
        main(["derive", str(other), "--out", str(out)])
    assert not out.exists() and not (tmp_path / "x.pareto.json").exists()
    result = subprocess.run([sys.executable, "-m", "facenar.search", "derive", str(tmp_path), "--out", str(out)],
                            capture_output=True, text=True)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and result.stderr.startswith("error:")


def test_pareto_front_keeps_only_non_dominated_points():
    from facenar.search.pareto import front, mark_fronts

    points = [{"accuracy": a, "macs": m} for a, m in [(0.5, 10), (0.4, 12), (0.6, 20), (0.6, 25), (0.2, 5)]]
    assert front(points, "macs") == [4, 0, 2]
    assert [p["front"] for p in mark_fronts(points)] == [["macs"], [], ["macs"], [], ["macs"]]


def test_evolution_mutates_one_position_within_the_budget():
    from facenar.search.strategies.evolution import EvolutionStrategy

    class Space:
        def code_choices(self):
            return [4, 4, 2, 2]

    class Budget:
        def fits(self, codes):
            return sum(codes) <= 4

    gen = torch.Generator().manual_seed(0)
    evo = EvolutionStrategy(Space(), None, Budget(), gen)
    for _ in range(200):
        parent = [1, 1, 0, 1]
        child = evo._mutate(parent)
        assert child is not None and Budget().fits(child)
        assert sum(a != b for a, b in zip(parent, child)) == 1
        assert all(0 <= c < n for c, n in zip(child, Space().code_choices()))
