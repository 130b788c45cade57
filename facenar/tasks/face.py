"""The face task: emore data, ArcFace-style heads, closed-set reward, verification benches.

Search: a proxy split (facenar.data.ProxyData), cosine logits + additive-margin softmax, reward =
identification accuracy on proxy-val. Training: the emore train split, Partial FC (sharded
centres + margin softmax), evaluation = 10-fold verification on the folder's .bin benches.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch.nn.functional as F

from facenar_runtime.errors import UserError
from data_tools.demo import ensure_demo
from facenar.data import ProxyData, open_train_data
from facenar.dist import barrier
from facenar.tasks.base import TASKS, Task
from facenar.tasks.heads import CosineClassifier, MarginSoftmax
from facenar.tasks.partial_fc import PartialFC

# the benches training verifies on by default (ArcFace's); a data folder may lack some of them
DEFAULT_BENCHES = ("lfw", "cfp_fp", "agedb_30")


@TASKS.register("face", summary="face recognition: emore data, ArcFace margin softmax, verification on .bin pairs")
class FaceTask(Task):
    name = "face"
    title = "face-recognition"
    scored_by = "python -m facenar.verify"
    search_options = ("scale", "m2", "augment")
    train_options = ("margin", "m1", "m2", "m3", "scale", "sample_rate", "bench", "augment")
    # Search settings that finish on the demo proxy in a few minutes on 2 CPU cores; "paper" = the defaults.
    # A net this small does not learn 200 identities with ArcFace s=64, m=0.5 in 360 steps (measured:
    # train accuracy ~1%), hence s=16, m=0.1; with only 60 controller steps, Adam's lr is raised to 5e-3
    # so the policy visibly moves (entropy 11.1 -> 8.4 nats instead of 11.0).
    search_presets = {
        "paper": {},
        "demo": dict(backbone="iresnet18", width=0.25, input_size=32, embedding_size=64, epochs=6,
                     pretrain_epochs=2, t0=2, t_mult=2, batch_size=64, steps_per_epoch=60, scale=16.0,
                     m2=0.1, controller_steps=15, controller_samples=10, controller_lr=5e-3, val_batch=128,
                     derive_samples=20, random_samples=20, population=20, tournament=5, evolution_cycles=150),
    }
    # A tiny CPU-sized network and schedule that learns the demo data in a few minutes; "paper" = the defaults.
    # No dropout there: a net this small on 2 epochs underfits, and the demo runs stay as they were.
    train_presets = {
        "paper": {},
        "demo": dict(backbone="iresnet18", width=0.125, input_size=56, embedding_size=128, epochs=2,
                     batch_size=64, t0=2, log_every=20, checkpoint_every=200, workers=1, dropout=0.0),
    }
    train_demo_by_default = False  # without --data: the demo data, trained with the paper's settings
    search_data_help = "a proxy split folder (python -m facenar.prepare_proxy)"
    train_data_help = "an emore folder (train.rec/idx, property, *.bin)"

    @staticmethod
    def default_data() -> Path:
        return ensure_demo()

    @staticmethod
    def default_search_data() -> Path:
        from data_tools.proxy import ensure_demo_proxy

        return ensure_demo_proxy()

    # ----- search
    @staticmethod
    def search_data(cfg) -> ProxyData:
        return ProxyData(cfg.data, cfg.input_size, cfg.augment)

    @staticmethod
    def search_head(cfg, num_classes: int) -> CosineClassifier:
        return CosineClassifier(cfg.embedding_size, num_classes)

    @staticmethod
    def search_loss(cfg):
        margin = MarginSoftmax("arcface", s=cfg.scale, m2=cfg.m2)
        return lambda cosine, labels: F.cross_entropy(margin(cosine, labels), labels)

    # ----- training
    @staticmethod
    def train_data(cfg, input_size: int, ctx):
        if cfg.data is None:
            if ctx.is_main:
                ensure_demo()
            barrier(ctx)  # one rank generates the demo data, the others then find it
        folder = Path(cfg.data) if cfg.data else ensure_demo()
        dataset, num_classes = open_train_data(folder, input_size, cfg.augment)
        return folder, dataset, num_classes

    @staticmethod
    def train_head(cfg, embedding_size: int, num_classes: int, ctx) -> PartialFC:
        return PartialFC(embedding_size, num_classes, cfg.make_margin(), ctx, cfg.sample_rate, cfg.seed)

    @staticmethod
    def evaluation(cfg, folder: Path) -> "Verification":
        return Verification(cfg.benches, folder, required=cfg.benches != list(DEFAULT_BENCHES))


class Verification:
    """10-fold verification on FOLDER/<bench>.bin; score = mean accuracy in percent (as insightface)."""

    score_name = "mean accuracy"

    def __init__(self, names: list[str], folder: Path, required: bool = True):
        """`required`: a named .bin that is missing is an error before training (as in verify), not a
        run without verification and without best.pt; only the default list may be partly absent."""
        self.benches = {n: folder / f"{n}.bin" for n in names if (folder / f"{n}.bin").is_file()}
        self.columns = [*(f"{n}_acc" for n in names), "mean_acc"]
        self.available = bool(self.benches)
        missing = [n for n in names if n not in self.benches]
        if missing and required:
            present = sorted(path.stem for path in folder.glob("*.bin"))
            raise UserError(f"--bench {','.join(names)}: {folder / (missing[0] + '.bin')} not found; name the "
                            f".bin files of {folder} ({', '.join(present) or 'it has none'}), or --bench '' "
                            "to train without verification")
        self.missing = f"no {', '.join(missing)} .bin in {folder}; not verified" if missing else None

    def run(self, model, device: str, input_size: int, batch_size: int) -> tuple[dict, dict, float]:
        from facenar.verify.benches import verify_model

        with warnings.catch_warnings():  # CPU-sized inputs: resizing the 112x112 pairs is intended
            warnings.filterwarnings("ignore", message=".*resized with cv2.resize")
            results = verify_model(model, {n: str(p) for n, p in self.benches.items()}, batch_size=batch_size,
                                   flip=True, device=device, input_size=input_size)
        row = {f"{n}_acc": round(100 * r["accuracy"], 4) for n, r in results.items()}  # percent
        score = round(float(np.mean(list(row.values()))), 4)
        return results, {**row, "mean_acc": score}, score

    @staticmethod
    def describe(results: dict, score: float) -> str:
        return "verification (%): " + ", ".join(
            f"{n} {100 * r['accuracy']:.2f}+-{100 * r['std']:.2f}" for n, r in results.items()) + f" (mean {score:.2f})"
