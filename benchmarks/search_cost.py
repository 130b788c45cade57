"""Search cost: seconds per NAR search epoch by phase, and the paper's search extrapolated to hours.

(1) A real search (facenar.search.engine.SearchEngine) on the demo proxy with the `demo` preset, each phase
timed by wrapping the engine's own methods: shared-weight training, controller training (PreTrain
epochs only score one val batch), checkpoint + record, and the final derivation. (2) The per-image
cost of the full-size iresnet50 supernet at 112x112 (train step on uniformly sampled paths, as in
PreTrain, and the reward forward pass), measured here. (3) The paper's search (4,000 ids x 36
train images, 150 epochs, 50 x 20 controller samples on 128-image val batches per epoch) is then
images x measured seconds per image; GPU hours are an ASSUMPTION unless run with --device cuda.

    python -m benchmarks.search_cost [--quick] [--device cpu|cuda]
"""
from __future__ import annotations

import contextlib
import io
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Callable, Sequence

import torch

from benchmarks.common import Section, benchmark_main, interleaved_times, machine_info, median, spread
from benchmarks.workloads import inference_closure, train_step_closure
from facenar_runtime.cli import run_cli

COLUMNS = ["measure", "setting", "images", "median_s", "spread", "ms_per_image", "hours"]
# The paper's proxy task (section 4.1.1); the search schedule comes from facenar's paper defaults.
PAPER_IDS, PAPER_TRAIN_PER_ID, PAPER_VAL_PER_ID = 4000, 36, 4
PAPER_GPU_HOURS = 10.0  # "only need 10 GPU hours for optimizing a ResNet50 with 4 operator candidates"
# Not measured here: a V100-class GPU with fp16 AMP trains an iresnet50 at 112x112 at roughly this
# many images/s (insightface's published training logs are of this order). Replaced by a measurement
# whenever the benchmark runs with --device cuda.
ASSUMED_GPU_TRAIN_IMAGES_PER_S = 800.0


def _settings(quick: bool, device: str) -> dict:
    # quick: one PreTrain + one search epoch, and a derivation scoring 5 sampled + 5 random architectures
    demo = dict(epochs=2, pretrain_epochs=1, derive_samples=5, random_samples=5) if quick else {}
    if device == "cuda":
        return dict(demo=demo, train_batch=128, eval_batch=128, repeats=5 if quick else 10)
    return dict(demo=demo, train_batch=2 if quick else 4, eval_batch=4 if quick else 8, repeats=3 if quick else 5)


class PhaseTimer:
    """Replaces bound methods of one object by timed wrappers; wall seconds per call land in `times`."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.times: dict[str, list[float]] = defaultdict(list)

    def wrap(self, owner, method: str, phase: str, bucket: Callable[[], int] | None = None) -> None:
        """One entry per call, or with `bucket`, calls summed into entry bucket() (e.g. the epoch)."""
        original = getattr(owner, method)

        def timed(*args, **kwargs):
            self._sync()
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self._sync()
                self._add(phase, time.perf_counter() - start, bucket)
        setattr(owner, method, timed)

    def _add(self, phase: str, seconds: float, bucket: Callable[[], int] | None) -> None:
        values = self.times[phase]
        if bucket is None:
            values.append(seconds)
            return
        index = bucket()
        values.extend([0.0] * (index + 1 - len(values)))
        values[index] += seconds

    def _sync(self) -> None:
        if self.cuda:
            torch.cuda.synchronize()


def time_demo_search(device: str, overrides: dict) -> tuple[dict[str, list[float]], object]:
    """Run a whole demo search in a temporary folder; per-phase seconds (one entry per call) and its config."""
    from facenar.dist import DistContext
    from facenar.search.engine import SearchEngine
    from facenar.rundir import RunDir
    from facenar.search.config import resolve_config

    cfg = resolve_config({"preset": "demo", **overrides}, None)
    ctx = DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))
    with tempfile.TemporaryDirectory(prefix="facenar-search-cost-") as tmp:
        workers = 4 if device == "cuda" else 0  # facenar.search's defaults
        engine = SearchEngine(cfg, RunDir.create(Path(tmp) / "run", cfg.to_dict()), ctx, workers=workers)
        timer = PhaseTimer(engine.device)
        start = time.perf_counter()
        engine.data.val_set(engine.device)  # decoded once per run; kept out of epoch 1's controller time
        timer.times["decode"].append(time.perf_counter() - start)
        timer.wrap(engine, "_train_shared", "shared")
        timer.wrap(engine, "_learn", "controller")
        timer.wrap(engine, "derive", "derive")
        finished_epoch = lambda: engine.epoch - 1  # the record is written after the epoch counter moves on
        for owner, method in ((engine, "save"), (engine.record, "add_epoch"), (engine.record, "plot")):
            timer.wrap(owner, method, "record", bucket=finished_epoch)
        with contextlib.redirect_stdout(io.StringIO()):  # derive() prints its final table
            engine.run()
    return timer.times, cfg


def demo_rows(device: str, overrides: dict) -> tuple[list[dict], object]:
    times, cfg = time_demo_search(device, overrides)
    setting = f"demo preset, {device}"
    pre = cfg.pretrain_epochs
    record = times["record"]
    search_epochs = [times["shared"][e] + times["controller"][e] + record[e] for e in range(pre, cfg.epochs)]
    entries = [
        ("shared-weight training, per epoch", times["shared"], cfg.steps_per_epoch * cfg.batch_size),
        ("controller, PreTrain epoch (scores one val batch)", times["controller"][:pre],
         cfg.controller_samples * cfg.val_batch),
        ("controller training (REINFORCE), per search epoch", times["controller"][pre:],
         cfg.controller_steps * cfg.controller_samples * cfg.val_batch),
        ("checkpoint + search record, per epoch", record, ""),
        ("whole search epoch (sum of the three)", search_epochs, ""),
        ("decode proxy-val into memory, once", times["decode"], ""),
        ("derivation (score sampled + greedy + random on all of proxy-val), once", times["derive"], ""),
    ]
    rows = [_row(label, setting, values, images) for label, values, images in entries if values]
    return rows, cfg


def _row(measure: str, setting: str, seconds: list[float], images) -> dict:
    mid = median(seconds)
    return {"measure": measure, "setting": setting, "images": images, "median_s": round(mid, 3),
            "spread": f"±{100 * spread(seconds):.0f}%" if len(seconds) > 1 else "n=1",
            "ms_per_image": round(1000 * mid / images, 3) if images else "", "hours": ""}


def per_image_costs(device: str, s: dict, classes: int) -> dict[str, list[float]]:
    """Seconds per image of the full-size supernet: train step (baseline path, uniform paths) and reward forward."""
    from facenar.space.supernet import Supernet

    torch.manual_seed(0)
    if device == "cuda":
        torch.backends.cudnn.benchmark = True
    supernet = Supernet("iresnet50", input_size=112).to(device).train()
    gen = torch.Generator().manual_seed(0)

    def uniform_codes() -> list[int]:
        return torch.randint(0, supernet.num_ops, (supernet.num_slots,), generator=gen).tolist()

    def reward_forward(x):
        supernet.eval()
        try:
            return supernet(x, uniform_codes())
        finally:
            supernet.train()

    baseline = [0] * supernet.num_slots
    candidates: dict[str, Callable[[], None]] = {
        "train_baseline": train_step_closure(supernet, lambda x: supernet(x, baseline), s["train_batch"], 112,
                                             classes, device),
        "train_uniform": train_step_closure(supernet, lambda x: supernet(x, uniform_codes()), s["train_batch"], 112,
                                            classes, device),
        "reward_forward": inference_closure(reward_forward, s["eval_batch"], 112, device),
    }
    times = interleaved_times(candidates, s["repeats"])
    batches = {"train_baseline": s["train_batch"], "train_uniform": s["train_batch"],
               "reward_forward": s["eval_batch"]}
    return {name: [t / batches[name] for t in values] for name, values in times.items()}


def paper_images(cfg) -> dict[str, int]:
    """Images the paper's search pushes through training steps and reward forwards (facenar's engine)."""
    train = cfg.epochs * PAPER_IDS * PAPER_TRAIN_PER_ID
    search_epochs = cfg.epochs - cfg.pretrain_epochs
    reward = (search_epochs * cfg.controller_steps + cfg.pretrain_epochs) * cfg.controller_samples * cfg.val_batch
    # derive: sampled + greedy + random + baseline rewards, and the winner's accuracy, on all of proxy-val
    derive = (cfg.derive_samples + cfg.random_samples + 3) * PAPER_IDS * PAPER_VAL_PER_ID
    return {"train": train, "reward": reward + derive}


def extrapolation_rows(device: str, per_image: dict[str, list[float]], s: dict) -> tuple[list[dict], list[str]]:
    from facenar.search.config import SearchConfig

    cfg = SearchConfig()  # the paper's schedule (facenar's defaults)
    images = paper_images(cfg)
    amp = " bf16 AMP" if device == "cuda" else ""
    setting = f"full iresnet50 supernet, 112px, {device}{amp}, {PAPER_IDS} classes"
    rows = [_row("train step, all-conv3x3 path", f"{setting}, batch {s['train_batch']}",
                 [t * s["train_batch"] for t in per_image["train_baseline"]], s["train_batch"]),
            _row("train step, uniformly sampled paths (PreTrain)", f"{setting}, batch {s['train_batch']}",
                 [t * s["train_batch"] for t in per_image["train_uniform"]], s["train_batch"]),
            _row("reward forward (eval), sampled paths", f"{setting}, batch {s['eval_batch']}",
                 [t * s["eval_batch"] for t in per_image["reward_forward"]], s["eval_batch"])]
    train_s, reward_s = median(per_image["train_uniform"]), median(per_image["reward_forward"])
    seconds = images["train"] * train_s + images["reward"] * reward_s
    schedule = (f"{cfg.epochs} epochs x {PAPER_IDS} ids x {PAPER_TRAIN_PER_ID} img; "
                f"{cfg.controller_steps} x {cfg.controller_samples} x {cfg.val_batch} val img per epoch")
    total_images = images["train"] + images["reward"]
    if device == "cuda":
        rows.append({"measure": "paper's search, estimated GPU-hours (MEASURED per-image cost)",
                     "setting": schedule, "images": total_images, "hours": round(seconds / 3600, 1)})
    else:
        rows.append({"measure": "paper's search, estimated CPU-hours (MEASURED per-image cost)",
                     "setting": f"{schedule}; torch threads {torch.get_num_threads()}", "images": total_images,
                     "hours": round(seconds / 3600)})
        gpu_train_s = 1 / ASSUMED_GPU_TRAIN_IMAGES_PER_S
        gpu_seconds = images["train"] * gpu_train_s + images["reward"] * gpu_train_s * reward_s / train_s
        rows.append({"measure": "paper's search, GPU-hours (ASSUMPTION, not measured)",
                     "setting": f"assumed {ASSUMED_GPU_TRAIN_IMAGES_PER_S:.0f} train img/s (V100-class, AMP); "
                                "reward/train cost ratio as measured on CPU",
                     "images": total_images, "hours": round(gpu_seconds / 3600, 1)})
    rows.append({"measure": "paper's search, as reported", "setting": "ResNet50, 4 operators (paper, section 1)",
                 "hours": PAPER_GPU_HOURS})
    implied = (images["train"] + images["reward"] * reward_s / train_s) / (PAPER_GPU_HOURS * 3600)
    notes = [f"extrapolation: hours = {images['train']:,} train images x median s/image of the uniform-path train "
             f"step + {images['reward']:,} reward-forward images (controller: "
             f"{cfg.epochs - cfg.pretrain_epochs} search epochs x {cfg.controller_steps} steps x "
             f"{cfg.controller_samples} samples x {cfg.val_batch}, PreTrain scoring, derivation: "
             f"{cfg.derive_samples + cfg.random_samples + 3} passes over {PAPER_IDS * PAPER_VAL_PER_ID:,} val images) "
             "x median s/image of the reward forward; data loading, checkpoints and the controller's own LSTM are "
             "left out (small next to the network, see the demo rows)",
             f"the paper's 10 GPU-hours imply about {implied:.0f} supernet train images/s on its GPU under this model; "
             f"the all-conv3x3 path costs {median(per_image['train_baseline']) / train_s:.2f}x the uniform paths "
             "per image (an upper bound if the controller converged on conv3x3 everywhere)"]
    return rows, notes


def run(quick: bool = False, device: str = "cpu") -> Section:
    s = _settings(quick, device)
    demo, demo_cfg = demo_rows(device, s["demo"])
    per_image = per_image_costs(device, s, PAPER_IDS)
    extrapolated, notes = extrapolation_rows(device, per_image, s)
    title = "Search cost: seconds per search epoch (demo) and the paper's search extrapolated"
    result = Section(title + (" [cuda]" if device == "cuda" else ""), COLUMNS, demo + extrapolated)
    c = demo_cfg
    result.notes.append(f"demo rows: one real search on {c.data} ({c.backbone} width {c.width} at {c.input_size}px, "
                        f"{c.epochs} epochs of which {c.pretrain_epochs} PreTrain, {c.steps_per_epoch} x "
                        f"{c.batch_size} images per epoch, controller {c.controller_steps} x {c.controller_samples} "
                        f"samples on {c.val_batch}-image val batches, derivation {c.derive_samples} sampled + "
                        f"{c.random_samples} random); phases timed around facenar.search.engine.SearchEngine's own methods "
                        "(_train_shared, _learn, save + record, derive)")
    if quick:
        from facenar.search.config import PRESETS

        preset = PRESETS["demo"]
        result.notes.append(f"quick mode: the demo search runs {c.epochs} epochs ({c.pretrain_epochs} PreTrain) "
                            f"instead of the preset's {preset.get('epochs')} and derives from {c.derive_samples} + "
                            f"{c.random_samples} architectures instead of {preset.get('derive_samples')} + "
                            f"{preset.get('random_samples')}; full-size costs use a tiny batch and few repeats")
    result.notes.extend(notes)
    if device != "cuda":
        result.notes.append("GPU figures not measured in this run (no GPU here); the GPU-hours row is an "
                            "assumption. `python -m benchmarks.search_cost --device cuda` measures them")
    result.notes.append("no pass/fail target: the paper gives only its ~10 GPU-hours; see the rows above")
    result.notes.append(", ".join(f"{k}: {v}" for k, v in machine_info().items()))
    return result


def main(argv: Sequence[str] | None = None) -> int:
    return benchmark_main(argv, "benchmarks.search_cost", __doc__, lambda quick, device: run(quick, device),
                          quick_help="2-epoch demo search, tiny full-size batches", with_device=True)


if __name__ == "__main__":
    run_cli(main)
