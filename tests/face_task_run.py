"""The face task's recorded runs: a tiny fixed-seed search and a tiny training, on pinned kernels.

Run by tests/test_face_task_unchanged.py as `python tests/face_task_run.py OUT_DIR` in a subprocess
whose environment fixes the kernels (tests/pinned_kernels.py); writes OUT_DIR/search and OUT_DIR/train.
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

SEARCH = ["--backbone", "iresnet18", "--width", "0.125", "--input-size", "32", "--embedding-size", "32",
          "--epochs", "3", "--pretrain-epochs", "1", "--t0", "1", "--batch-size", "24", "--steps-per-epoch", "4",
          "--controller-steps", "2", "--controller-samples", "3", "--val-batch", "24", "--derive-samples", "3",
          "--random-samples", "3", "--margin-s", "16", "--margin-m", "0.1", "--seed", "3"]
TRAIN = ["--backbone", "iresnet18", "--width", "0.0625", "--input-size", "32", "--embedding-size", "32",
         "--batch-size", "48", "--epochs", "1", "--workers", "0", "--device", "cpu", "--log-every", "2",
         "--checkpoint-every", "4", "--lr", "0.05", "--seed", "3", "--bench", "lfw",
         "--dropout", "0"]  # recorded before --dropout existed (then always 0); the paper default is now 0.4


def record(out: Path) -> None:
    from pinned_kernels import pin_in_process

    pin_in_process()
    from data_tools.demo import make_demo
    from data_tools.proxy import build_proxy
    from facenar.search.cli import main as search
    from facenar.train.cli import main as train

    demo, proxy = out / "demo", out / "proxy"
    make_demo(demo, num_ids=24, images_per_id=12, pairs_per_bench=20, seed=0)
    build_proxy(demo, proxy, num_ids=24, per_id=12, val_per_id=3, seed=0)
    assert search([*SEARCH, "--data", str(proxy), "--out", str(out / "search")]) == 0
    assert train([*TRAIN, "--data", str(demo), "--out", str(out / "train")]) == 0


if __name__ == "__main__":
    record(Path(sys.argv[1]))
