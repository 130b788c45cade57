"""benchmarks.gpu_check on a CPU machine: one error line without CUDA; with CUDA mocked (for the argument
handling and the report writing only), the JSON names the GPU and RESULTS.md gets one GPU check section."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks import gpu_check
from facenar_runtime.errors import UserError

REPO = Path(__file__).resolve().parents[1]


def fake_report(quick: bool, budget_s: float) -> dict:
    rows = [{"step": "train", "network": "baseline iresnet50", "variant": "compiled", "per_s": 900.0,
             "unit": "img/s", "ratio": 1.4, "compile_s": 61.0, "peak_gib": 12.5, "setting": "cuda bf16 AMP"}]
    return {"gpu": "NVIDIA Fake 80GB", "torch": "2.x", "cuda": "12.x", "machine": {}, "quick": quick, "rows": rows,
            "failed": {"search": f"skipped: the {budget_s:.0f} s budget was spent"}, "seconds": {"training": 200.0}}


def test_without_cuda_one_error_line_and_exit_2(tmp_path):
    env = {"PYTHONPATH": str(REPO), "CUDA_VISIBLE_DEVICES": "", "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-m", "benchmarks.gpu_check", "--json", str(tmp_path / "g.json"),
                           "--results", str(tmp_path / "R.md")], capture_output=True, text=True, env=env, cwd=REPO,
                          timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [done.stderr.strip()]
    assert done.stderr.startswith("error: benchmarks.gpu_check needs a CUDA GPU")
    assert not (tmp_path / "g.json").exists() and not (tmp_path / "R.md").exists()


def test_report_writing_with_cuda_mocked(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(gpu_check.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(gpu_check, "measure", fake_report)
    results = tmp_path / "RESULTS.md"
    results.write_text("# facenar benchmark results\n\n## Networks\n\nkept\n\n## GPU check: old\n\nstale\n\n"
                       "## Cost table\n\nkept too\n")
    out = tmp_path / "gpu.json"
    assert gpu_check.main(["--json", str(out), "--results", str(results), "--quick", "--budget", "0.5"]) == 0
    report = json.loads(out.read_text())
    assert report["gpu"] == "NVIDIA Fake 80GB" and report["quick"] is True
    assert report["failed"]["search"] == "skipped: the 30 s budget was spent"
    text = results.read_text()
    assert text.count("## GPU check") == 1 and "stale" not in text
    assert "## GPU check: NVIDIA Fake 80GB" in text and "| train | baseline iresnet50 | compiled | 900 |" in text
    assert "kept" in text and "kept too" in text and "search: failed (skipped" in text
    with pytest.raises(UserError, match="--force"):
        gpu_check.main(["--json", str(out), "--results", str(results)])
    assert gpu_check.main(["--json", str(out), "--results", str(results), "--force"]) == 0
    assert results.read_text().count("## GPU check") == 1
    with pytest.raises(SystemExit):
        gpu_check.main(["--budget", "0"])
    assert "GPU check" in capsys.readouterr().out
