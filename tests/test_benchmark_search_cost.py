"""benchmarks.search_cost: phase timing around the engine's methods and the paper-scale image counts."""
import pytest
import torch

from benchmarks import search_cost
from facenar.search.config import SearchConfig


class Worker:
    def __init__(self):
        self.epoch = 0
        self.calls = []

    def step(self, value):
        self.calls.append(value)
        return value * 2


def test_phase_timer_keeps_behaviour_and_buckets_calls():
    worker = Worker()
    timer = search_cost.PhaseTimer(torch.device("cpu"))
    timer.wrap(worker, "step", "plain")
    assert worker.step(3) == 6 and worker.step(4) == 8 and worker.calls == [3, 4]
    assert len(timer.times["plain"]) == 2 and all(t >= 0 for t in timer.times["plain"])
    other = Worker()
    timer.wrap(other, "step", "bucketed", bucket=lambda: other.epoch)
    other.step(1)
    other.step(1)  # two calls in epoch 0 -> one entry
    other.epoch = 2
    other.step(1)
    assert len(timer.times["bucketed"]) == 3 and timer.times["bucketed"][1] == 0.0


def test_phase_timer_records_failing_calls():
    worker = Worker()
    timer = search_cost.PhaseTimer(torch.device("cpu"))
    timer.wrap(worker, "step", "phase")
    with pytest.raises(TypeError):
        worker.step(None)
    assert len(timer.times["phase"]) == 1


def test_paper_image_counts():
    images = search_cost.paper_images(SearchConfig())
    assert images["train"] == 150 * 4000 * 36
    controller = (140 * 50 + 10) * 20 * 128  # REINFORCE epochs + PreTrain scoring, 128-image val batches
    derive = (100 + 20 + 3) * 4000 * 4  # sampled + random + greedy/baseline/accuracy over all of proxy-val
    assert images["reward"] == controller + derive


@pytest.mark.slow
def test_quick_run_times_every_phase():
    section = search_cost.run(quick=True, device="cpu")
    measures = [row["measure"] for row in section.rows]
    assert measures[0] == "shared-weight training, per epoch"
    assert any(m.startswith("controller training (REINFORCE)") for m in measures)
    assert any(m.startswith("derivation") for m in measures)
    by_measure = {row["measure"]: row for row in section.rows}
    assert by_measure["paper's search, estimated CPU-hours (MEASURED per-image cost)"]["hours"] > 0
    assert by_measure["paper's search, as reported"]["hours"] == 10.0
    assert "GPU figures not measured" in section.markdown()
