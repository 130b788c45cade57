"""facenar.verify end to end: CLI on the demo .bin files, torch vs ONNX, real small_lfw.bin, errors."""
from __future__ import annotations

import csv
import json
import math
import os
import pickle

import cv2
import numpy as np
import pytest
import torch

from data_tools.binfile import load_bin, save_bin
from facenar_runtime.cli import run_cli
from facenar.verify import benches as bench_lib, cli as verify_cli
from facenar.space.arch import Arch
from facenar.space.iresnet import build_child
from facenar.checkpoint import save_model
from facenar.verify.eer import equal_error_rate
from facenar.verify.embed import decode_images
from facenar.verify.metrics import evaluate_distances
from facenar.verify.metrics_reference import reference_evaluate

KEYS = {"accuracy", "std", "threshold", "val", "val_std", "far", "xnorm", "auc", "pairs", "eer"}
BENCHES = ("lfw", "cfp_fp", "agedb_30")


def tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    arch = Arch.baseline("iresnet18", width=0.125, input_size=112, embedding_size=64)
    return arch, build_child(arch).eval()


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    arch, model = tiny_model()
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, arch, model)
    return path


def oracle_embeddings(model, bin_path, flip=True):
    """Straightforward embedding: decode with cv2, one forward of everything, flip with torch.flip."""
    blobs, issame = load_bin(bin_path)
    images = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR),
                                    cv2.COLOR_BGR2RGB) for b in blobs])
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255 - 0.5) / 0.5
    with torch.no_grad():
        raw = [model(x).double().numpy()] + ([model(torch.flip(x, [3])).double().numpy()] if flip else [])
    summed = sum(raw)
    xnorm = float(np.mean([np.linalg.norm(e, axis=1) for e in raw]))
    return summed / np.linalg.norm(summed, axis=1, keepdims=True), issame, xnorm


def run_exit(argv, capsys) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        run_cli(verify_cli.main, argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def test_cli_table_json_csv_plot_embeddings(tiny_demo, checkpoint, tmp_path, capsys):
    out = {k: tmp_path / f"out.{k}" for k in ("json", "csv", "png", "npz")}
    code, stdout, _ = run_exit(["--data", str(tiny_demo), "--model", str(checkpoint), "--device", "cpu",
                                "--batch-size", "16", "--workers", "2",
                                "--json", str(out["json"]), "--csv", str(out["csv"]),
                                "--plot", str(out["png"]), "--embeddings", str(out["npz"])], capsys)
    assert code == 0
    lines = stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["bench", "pairs", "accuracy"]
    assert [line.split()[0] for line in lines[1:]] == list(BENCHES)
    assert lines[0].split()[-2:] == ["EER", "%"]

    report = json.loads(out["json"].read_text())
    assert list(report) == list(BENCHES)
    _, model = tiny_model()
    saved = np.load(out["npz"])
    for name in BENCHES:
        got = report[name]
        assert set(got) == KEYS and isinstance(got["pairs"], int)
        assert 0.0 <= got["accuracy"] <= 1.0
        # the same numbers from an independent embedding + the protocol (plain loops once: slow)
        emb, issame, xnorm = oracle_embeddings(model, tiny_demo / f"{name}.bin")
        dist = np.sum((emb[0::2] - emb[1::2]) ** 2, 1)
        want = (reference_evaluate if name == "lfw" else evaluate_distances)(dist, issame)
        for key in KEYS - {"xnorm", "eer"}:
            assert got[key] == pytest.approx(want[key], abs=1e-6), (name, key)
        assert got["eer"] == pytest.approx(equal_error_rate(dist, issame), abs=1e-6)
        assert got["xnorm"] == pytest.approx(xnorm, rel=1e-5)
        np.testing.assert_allclose(saved[f"{name}_embeddings"], emb, atol=1e-5)
        np.testing.assert_array_equal(saved[f"{name}_issame"], issame)

    with open(out["csv"], newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["bench"] for row in rows] == list(BENCHES)
    assert float(rows[0]["accuracy"]) == report["lfw"]["accuracy"] and int(rows[0]["pairs"]) == report["lfw"]["pairs"]
    assert float(rows[0]["eer"]) == report["lfw"]["eer"]
    assert out["png"].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # outputs exist now: without --force nothing is overwritten
    code, _, err = run_exit(["--data", str(tiny_demo), "--model", str(checkpoint), "--json", str(out["json"])], capsys)
    assert code == 2 and "--force" in err


def test_verify_model_is_batch_independent_and_restores_train_mode(tiny_demo):
    _, model = tiny_model()
    model.train()
    stats = model.bn1.running_mean.clone()
    benches = {"lfw": tiny_demo / "lfw.bin"}
    small = bench_lib.verify_model(model, benches, batch_size=7)["lfw"]
    large = bench_lib.verify_model(model, benches, batch_size=256)["lfw"]
    assert model.training and torch.equal(model.bn1.running_mean, stats)
    for key in KEYS:
        assert small[key] == pytest.approx(large[key], rel=1e-6, abs=1e-9)
    plain = bench_lib.verify_model(model, benches, flip=False)["lfw"]
    model.eval()
    emb, issame, xnorm = oracle_embeddings(model, tiny_demo / "lfw.bin", flip=False)
    assert plain["xnorm"] == pytest.approx(xnorm, rel=1e-5)
    want = reference_evaluate(np.sum((emb[0::2] - emb[1::2]) ** 2, 1), issame)
    assert plain["accuracy"] == pytest.approx(want["accuracy"], abs=1e-9)


def export_onnx(model, path, batch):
    """Legacy exporter: fast, and can write both a dynamic and a fixed batch dimension."""
    import warnings

    kwargs = {"dynamic_axes": {"data": {0: "batch"}}} if batch is None else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.zeros(batch or 2, 3, 112, 112),), str(path), input_names=["data"],
                          output_names=["fc1"], opset_version=17, dynamo=False, **kwargs)


@pytest.mark.parametrize("batch", [None, 1])
def test_onnx_model_matches_torch(tiny_demo, checkpoint, tmp_path, capsys, batch):
    _, model = tiny_model()
    onnx_path = tmp_path / "tiny.onnx"
    export_onnx(model, onnx_path, batch)
    reports = {}
    for kind, path in (("torch", checkpoint), ("onnx", onnx_path)):
        out = tmp_path / f"{kind}.json"
        code, _, _ = run_exit(["--data", str(tiny_demo), "--bench", "lfw", "--model", str(path),
                               "--batch-size", "8", "--json", str(out)], capsys)
        assert code == 0
        reports[kind] = json.loads(out.read_text())["lfw"]
    assert reports["onnx"]["accuracy"] == reports["torch"]["accuracy"]
    for key in ("threshold", "auc", "xnorm"):
        assert reports["onnx"][key] == pytest.approx(reports["torch"][key], rel=1e-4), key


def test_real_small_lfw_bin_all_positive(realdata, checkpoint, tmp_path, capsys):
    out = tmp_path / "small.json"
    code, stdout, err = run_exit(["--bench", str(realdata / "insightface_small_lfw" / "small_lfw.bin"),
                                  "--model", str(checkpoint), "--json", str(out)], capsys)
    assert code == 0, err
    assert "no different-identity pairs" in err
    got = json.loads(out.read_text())["small_lfw"]
    assert got["pairs"] == 10 and 0.0 <= got["accuracy"] <= 1.0
    assert got["val"] is None and got["far"] is None and got["auc"] is None and got["eer"] is None
    assert "small_lfw" in stdout and "n/a" in stdout and "EER %" in stdout


def test_other_image_sizes_are_resized_with_a_warning(tiny_demo, tmp_path):
    blobs, issame = load_bin(tiny_demo / "lfw.bin")
    decoded = decode_images(blobs, 112)
    big = [cv2.imencode(".png", cv2.cvtColor(cv2.resize(img, (128, 128)), cv2.COLOR_RGB2BGR))[1].tobytes()
           for img in decoded]
    with pytest.warns(UserWarning, match=r"80 of 80 images are 128x128, not 112x112"):
        resized = decode_images(big, 112, workers=2)
    want = cv2.resize(cv2.resize(decoded[5], (128, 128)), (112, 112))
    np.testing.assert_array_equal(resized[5], want)
    path = tmp_path / "big.bin"
    save_bin(path, big, issame)
    _, model = tiny_model()
    with pytest.warns(UserWarning, match="resized"):
        got = bench_lib.verify_model(model, {"big": path})["big"]
    assert got["pairs"] == len(issame)


class _Evil:
    def __reduce__(self):
        return (os.getcwd, ())


def _bad_bins(tiny_demo, tmp_path):
    blobs, issame = load_bin(tiny_demo / "lfw.bin")
    cases = {
        "evil": (pickle.dumps((_Evil(), [True])), "forbidden global"),
        "odd": (pickle.dumps((blobs[:3], [True])), "odd number of images"),
        "mismatch": (pickle.dumps((blobs[:4], [True])), "4 images but 1 issame"),
        "few": (pickle.dumps((blobs[:8], list(issame[:4]))), "only 4 pairs"),
        "broken": (pickle.dumps((blobs[:3] + [b"not an image"] + blobs[4:], list(issame))), "image 3"),
    }
    for name, (payload, _) in cases.items():
        (tmp_path / f"{name}.bin").write_bytes(payload)
    return {name: message for name, (_, message) in cases.items()}


def test_bad_inputs_exit_2_with_one_line(tiny_demo, checkpoint, tmp_path, capsys):
    for name, message in _bad_bins(tiny_demo, tmp_path).items():
        code, _, err = run_exit(["--bench", str(tmp_path / f"{name}.bin"), "--model", str(checkpoint)], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (name, err)
        assert f"{name}.bin" in err
    for argv, message in ((["--data", str(tmp_path), "--bench", "lfw"], "lfw.bin not found"),
                          (["--data", str(tiny_demo), "--model", str(tmp_path / "none.pt")], "none.pt not found"),
                          (["--data", str(tiny_demo), "--device", "tpu"], "unknown device")):
        argv = argv if "--model" in argv else [*argv, "--model", str(checkpoint)]
        code, _, err = run_exit(argv, capsys)
        assert code == 2 and message in err, err


def test_default_model_is_the_newest_trained_checkpoint(tiny_demo, checkpoint, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code, _, err = run_exit(["--data", str(tiny_demo), "--bench", "lfw"], capsys)
    assert code == 2 and "no --model given and no trained checkpoint found" in err
    assert "python -m facenar.train --preset demo" in err
    for run, name, stamp in (("a", "best.pt", 100), ("b", "best.pt", 200), ("c", "last.pt", 300)):
        (tmp_path / "runs" / run).mkdir(parents=True)
        target = tmp_path / "runs" / run / name
        target.write_bytes(checkpoint.read_bytes())
        os.utime(target, (stamp, stamp))
    assert bench_lib.find_default_model() == tmp_path / "runs" / "b" / "best.pt"
    code, stdout, err = run_exit(["--data", str(tiny_demo), "--bench", "lfw"], capsys)
    assert code == 0 and str(tmp_path / "runs" / "b" / "best.pt") in err and "lfw" in stdout


def test_nan_metrics_serialise_as_null(tmp_path):
    nan = float("nan")
    row = {"accuracy": 1.0, "std": 0.0, "threshold": 1.0, "val": nan, "val_std": nan, "far": nan,
           "xnorm": 3.0, "auc": nan, "pairs": 10}
    verify_cli.write_json(tmp_path / "m.json", {"x": row})
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text and json.loads(text)["x"]["auc"] is None
    assert math.isnan(row["auc"])          # the caller's dict is left alone


@pytest.mark.slow
def test_benchmark_quick_meets_the_speed_target():
    from benchmarks.verification import TARGET_SPEED_UP, run

    rows = run(quick=True)
    vectorised = next(row for row in rows if row["task"].startswith("protocol, vectorised"))
    assert vectorised["speed_up"] >= TARGET_SPEED_UP
    assert any("images/s" in row["rate"] for row in rows if row["task"].startswith("embed"))
