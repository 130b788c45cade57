"""End-to-end NAR search on a tiny proxy split: outputs, exact resume, PreTrain, bad input."""
from __future__ import annotations

import csv
import json
import re
import shutil
import signal
import subprocess
import sys

import pytest
import torch
from scipy.stats import chisquare

from facenar_runtime.errors import UserError
from facenar.space.arch import Arch
from facenar.search.cli import main

TINY = ["--backbone", "iresnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "32",
        "--epochs", "3", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "24", "--steps-per-epoch", "4",
        "--controller-steps", "2", "--controller-samples", "3", "--val-batch", "24", "--derive-samples", "3",
        "--random-samples", "3", "--margin-s", "16", "--margin-m", "0.1"]


@pytest.fixture(scope="module")
def full_run(tiny_proxy, tmp_path_factory):
    """One uninterrupted tiny search (the reference for the resume tests)."""
    out = tmp_path_factory.mktemp("runs") / "full"
    assert main([*TINY, "--data", str(tiny_proxy), "--out", str(out)]) == 0
    return out


def arch_without_run_dir(run):
    """A search's arch.json less the one field two runs of the same search legitimately differ in."""
    data = json.loads((run / "arch.json").read_text())
    data["provenance"]["search"].pop("run_dir")
    return data


def test_search_writes_arch_record_and_plots(full_run):
    arch = Arch.load(full_run / "arch.json")
    assert arch.backbone == "iresnet18" and arch.num_slots == 8 and arch.width == 0.125
    prov = arch.provenance
    for key in ("reward", "params", "macs", "op_counts", "random_mean_reward", "greedy_reward", "search"):
        assert key in prov
    assert sum(prov["op_counts"].values()) == 8 and prov["search"]["epochs"] == 3
    assert 0.0 <= prov["random_mean_reward"] <= 1.0
    # derivation keeps the best of the sampled + greedy candidates (greedy is one of them)
    assert prov["reward"] >= prov["greedy_reward"]
    rows = list(csv.DictReader(open(full_run / "search.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert [r["phase"] for r in rows] == ["pretrain", "search", "search"]
    assert rows[0]["baseline"] == "" and rows[1]["baseline"] != ""
    assert float(rows[0]["lr"]) == pytest.approx(0.1) and float(rows[1]["lr"]) == pytest.approx(0.1)  # restart
    assert all(1 <= int(r["diversity"]) <= 4 for r in rows)
    ops = list(csv.DictReader(open(full_run / "search_ops.csv")))
    assert len(ops) == 3 * 8
    for r in ops:
        assert sum(float(r[name]) for name in arch.candidates) == pytest.approx(1.0)
    for name in ("search_curves.png", "search_ops.png"):
        assert (full_run / name).read_bytes()[:4] == b"\x89PNG"
    config = json.loads((full_run / "config.json").read_text())
    assert config["epochs"] == 3 and config["backbone"] == "iresnet18" and config["preset"] == "paper"


def test_resume_after_stop_equals_uninterrupted(full_run, tiny_proxy, tmp_path):
    run = tmp_path / "cut"
    main([*TINY, "--data", str(tiny_proxy), "--out", str(run), "--stop-after-epochs", "1"])
    assert (run / "last.pt").is_file() and not (run / "arch.json").exists()
    # a kill between the CSV append and the next checkpoint leaves a row the resume must drop
    with open(run / "search.csv", "a") as handle:
        handle.write("2,search,0.1,9,0,0,0,0,0,0,1,0-0-0-0-0-0-0-0\n")
    main(["--resume", str(run)])  # every other option comes from the stored config
    assert arch_without_run_dir(run) == arch_without_run_dir(full_run)
    for name in ("search.csv", "search_ops.csv"):
        assert (run / name).read_text() == (full_run / name).read_text()


def test_a_run_folder_of_the_previous_version_resumes(full_run, tiny_proxy, tmp_path):
    """Searches used to keep their resume state in checkpoint.pt; such a folder resumes and is upgraded."""
    run = tmp_path / "old"
    main([*TINY, "--data", str(tiny_proxy), "--out", str(run), "--stop-after-epochs", "1"])
    (run / "last.pt").rename(run / "checkpoint.pt")
    main(["--resume", str(run), "--out", str(run)])  # --out naming the same folder is allowed, as for training
    assert (run / "last.pt").is_file() and not (run / "checkpoint.pt").exists()
    assert arch_without_run_dir(run) == arch_without_run_dir(full_run)


def _engine(tiny_proxy, tmp_path, **overrides):
    from facenar.dist import DistContext
    from facenar.search.engine import SearchEngine
    from facenar.rundir import RunDir
    from facenar.search.config import SearchConfig

    values = dict(data=str(tiny_proxy), backbone="iresnet18", width=0.125, input_size=32, embedding_size=32,
                  epochs=3, pretrain_epochs=1, t0=1, batch_size=24, steps_per_epoch=3, controller_steps=2,
                  controller_samples=3, val_batch=24, scale=16.0, m2=0.1)
    cfg = SearchConfig(**{**values, **overrides}).validate()
    run = RunDir.create(tmp_path / "engine", cfg.to_dict())
    return SearchEngine(cfg, run, DistContext(0, 1, 0, torch.device("cpu")))


def test_pretrain_freezes_controller_and_samples_uniformly(tiny_proxy, tmp_path):
    engine = _engine(tiny_proxy, tmp_path)
    before = {k: v.clone() for k, v in engine.strategy.controller.state_dict().items()}
    archs = torch.tensor(engine._epoch_archs(4000))  # PreTrain: uniform over ops at every slot
    for slot in range(archs.shape[1]):
        counts = torch.bincount(archs[:, slot], minlength=4).tolist()
        assert chisquare(counts).pvalue > 1e-4, (slot, counts)
    engine.run(stop_after_epochs=1)  # one PreTrain epoch: shared weights move, the controller does not
    assert all(torch.equal(before[k], v) for k, v in engine.strategy.controller.state_dict().items())
    assert engine.strategy.trainer.baseline is None
    engine.run(stop_after_epochs=1)  # first search epoch: REINFORCE updates the controller
    assert not all(torch.equal(before[k], v) for k, v in engine.strategy.controller.state_dict().items())
    for _ in range(100):  # teach the controller to like op 2: the minibatch architectures follow it
        engine.strategy.trainer.step(lambda batch: [sum(c == 2 for c in codes) / 8 for codes in batch], 20)
    archs = torch.tensor(engine._epoch_archs(4000))
    assert chisquare(torch.bincount(archs[:, 0], minlength=4).tolist()).pvalue < 1e-6
    assert (archs == 2).float().mean() > 0.5


def test_cost_model_and_cost_aware_reward(tiny_proxy, tmp_path):
    from facenar.space.cost import count_cost
    from facenar.search.costs import macs_model

    engine = _engine(tiny_proxy, tmp_path, target_macs=1.0e6, cost_weight=-0.5)
    macs = macs_model(engine.space.template)
    gen = torch.Generator().manual_seed(0)
    for codes in torch.randint(0, 4, (5, 8), generator=gen).tolist():
        assert macs(codes) == count_cost(engine.space.template.with_codes(codes)).macs
    rewards = engine.rewards
    cheap = [2] * 8  # max-pool everywhere: below the target, no penalty
    dear = [0] * 8
    assert macs(cheap) < 1.0e6 < macs(dear)
    assert rewards.shape(0.5, cheap) == 0.5
    assert rewards.shape(0.5, dear) == pytest.approx(0.5 * (macs(dear) / 1.0e6) ** -0.5)


def _write_bad_val(proxy, out, num_ids):
    from data_tools.emore import EmoreDataset, write_emore

    shutil.copytree(proxy, out)
    source = EmoreDataset(proxy, "val")
    for name in ("val.rec", "val.idx"):
        (out / name).unlink()
    images = [source.read_image(k) for k in source.keys_of(0)]
    write_emore(out, [images] * num_ids, prefix="val")


def test_bad_inputs_raise_one_clear_error(tiny_proxy, tmp_path):
    no_val = tmp_path / "no_val"
    shutil.copytree(tiny_proxy, no_val)
    (no_val / "val.rec").unlink()
    with pytest.raises(UserError, match="not a proxy split: val.rec missing"):
        main([*TINY, "--data", str(no_val), "--out", str(tmp_path / "r1")])
    assert not (tmp_path / "r1").exists()  # nothing written for bad data
    bad_labels = tmp_path / "bad_labels"
    _write_bad_val(tiny_proxy, bad_labels, 30)  # labels 0..29, property says 24 identities
    with pytest.raises(UserError, match="label 24 outside 0..23"):
        main([*TINY, "--data", str(bad_labels), "--out", str(tmp_path / "r2")])
    with pytest.raises(UserError, match="unknown operator"):
        main([*TINY, "--data", str(tiny_proxy), "--ops", "conv3x3,sepconv7x7", "--out", str(tmp_path / "r3")])
    with pytest.raises(UserError, match="no config.json"):
        main(["--resume", str(tmp_path)])


def test_resume_refuses_missing_checkpoint_and_other_config(full_run, tiny_proxy, tmp_path):
    run = tmp_path / "zero"
    main([*TINY, "--data", str(tiny_proxy), "--out", str(run), "--stop-after-epochs", "0"])
    with pytest.raises(UserError, match="no last.pt"):
        main(["--resume", str(run)])
    with pytest.raises(UserError, match="configuration differs.*epochs"):
        main(["--resume", str(full_run), "--epochs", "5"])
    with pytest.raises(UserError, match="already exists; pass --force"):
        main([*TINY, "--data", str(tiny_proxy), "--out", str(full_run)])


def test_cli_bad_option_exits_2_with_one_line(tmp_path):
    result = subprocess.run([sys.executable, "-m", "facenar.search", "--data", str(tmp_path / "missing"),
                             "--out", str(tmp_path / "r")], capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: --data") and len(result.stderr.strip().splitlines()) == 1


def _search_cmd(*args) -> list[str]:
    return [sys.executable, "-m", "facenar.search", *args]


def test_sigkill_mid_run_then_resume_equals_uninterrupted(full_run, tiny_proxy, tmp_path):
    run = tmp_path / "killed"
    proc = subprocess.Popen(_search_cmd(*TINY, "--data", str(tiny_proxy), "--out", str(run)),
                            stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    for line in proc.stderr:  # the epoch line is logged after that epoch's checkpoint is saved
        if line.startswith("epoch 1/3"):
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait()
    assert proc.returncode == -signal.SIGKILL and not (run / "arch.json").exists()
    main(["--resume", str(run)])
    assert arch_without_run_dir(run) == arch_without_run_dir(full_run)
    for name in ("search.csv", "search_ops.csv"):
        assert (run / name).read_text() == (full_run / name).read_text()


@pytest.mark.slow
def test_torchrun_two_cpu_processes(tiny_proxy, tmp_path):
    """Data-parallel shared-weight training with gloo: rank 0 samples, both ranks step together."""
    run = tmp_path / "ddp"
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             "-m", "facenar.search", *TINY, "--data", str(tiny_proxy), "--out", str(run),
                             "--lr-scale", "linear"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert Arch.load(run / "arch.json").num_slots == 8
    rows = list(csv.DictReader(open(run / "search.csv")))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["lr"]) == pytest.approx(0.2)  # --lr 0.1 x 2 processes
    assert result.stdout.count("val reward, refined architecture") == 1  # only rank 0 writes the result
    log = (run / "run.log").read_text()
    assert "learning rate: peak 0.2, floor 0.0002 (--lr 0.1 x 2, --lr-scale linear); global batch 48 = 24 x 2" in log
    assert "= one process with --batch-size 48 and lr x 2: 4 shared-weight steps per epoch" in log
    # derivation shared out: the distinct candidates (3 sampled, greedy, 3 random, baseline) split over the ranks
    scored = re.search(r"derive: (\d+) distinct architectures scored on 2 process\(es\), (\d+) on rank 0", log)
    assert scored and int(scored[2]) == (int(scored[1]) + 1) // 2


@pytest.mark.slow
def test_demo_search_with_no_arguments_beats_random(tmp_path):
    """`python -m facenar.search` alone: demo proxy + demo preset; the derived architecture's
    proxy-val reward is at least the mean of 20 random architectures on the same shared weights."""
    run = tmp_path / "demo"
    result = subprocess.run(_search_cmd("--out", str(run)), capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, result.stderr[-2000:]
    prov = Arch.load(run / "arch.json").provenance
    assert prov["random_count"] == 20
    assert prov["reward"] >= prov["random_mean_reward"]
    assert (run / "search_curves.png").is_file() and (run / "search_ops.png").is_file()


def test_latency_cost_reward_and_table_mismatch(tiny_proxy, tmp_path):
    slots = {str(s): {"conv3x3": 2.0, "dwconv3x3": 1.0, "max3x3": 0.5, "avg3x3": 0.5} for s in range(8)}
    table = {"backbone": "iresnet18", "granularity": "block", "width": 0.125, "input_size": 32,
             "candidates": ["conv3x3", "dwconv3x3", "max3x3", "avg3x3"], "fixed_ms": 1.0, "slots": slots}
    path = tmp_path / "lat.json"
    path.write_text(json.dumps(table))
    engine = _engine(tiny_proxy, tmp_path, cost="latency", latency_table=str(path), target_latency=10.0,
                     cost_weight=-1.0)
    assert engine.rewards.cost(tuple([0] * 8)) == pytest.approx(17.0)
    assert engine.rewards.shape(0.4, [0] * 8) == pytest.approx(0.4 * 10.0 / 17.0)
    assert engine.rewards.shape(0.4, [1] * 8) == 0.4  # 9 ms: within the target
    path.write_text(json.dumps({**table, "width": 0.25}))
    with pytest.raises(UserError, match="latency table was measured for"):
        main([*TINY, "--data", str(tiny_proxy), "--cost", "latency", "--latency-table", str(path),
              "--target-latency", "10", "--out", str(tmp_path / "r")])
    assert not (tmp_path / "r").exists()


def test_cosine_head_runs_in_fp32_under_autocast(tiny_proxy, tmp_path):
    """bf16 cosines are off by up to 2e-3, +-0.12 on an s=64 logit: the head stays out of autocast."""
    engine = _engine(tiny_proxy, tmp_path, steps_per_epoch=1)
    engine.amp_dtype = torch.bfloat16  # the CPU's autocast stands in for CUDA's
    seen = []
    engine.head.register_forward_hook(lambda module, inputs, out: seen.append((inputs[0].dtype, out.dtype)))
    engine._train_shared()
    images, labels = engine.data.val_batch(8, torch.Generator().manual_seed(0), engine.device)
    engine.rewards.accuracy([0] * 8, images, labels)
    assert len(seen) == 2 and set(seen) == {(torch.float32, torch.float32)}
