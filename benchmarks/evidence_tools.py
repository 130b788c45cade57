"""Building blocks of the search-evidence benchmark: run a search in memory, pick architectures spread
over the MAC range, train one child from scratch on a fixed budget, and compare two rankings.

Kept apart from benchmarks/search_evidence.py (which decides what to run and how to report it) so the
statistics and the fixed-budget trainer can be tested on their own with known inputs.
"""
from __future__ import annotations

import contextlib
import io
import math
import time
from dataclasses import dataclass, replace
from itertools import islice
from pathlib import Path

import torch


@dataclass(frozen=True)
class Budget:
    """The one stand-alone training budget every compared architecture gets (same seed, same steps)."""

    steps: int
    batch_size: int = 64
    lr: float = 0.1
    seed: int = 0


def rank_agreement(shared: list[float], standalone: list[float]) -> dict:
    """Kendall tau and Spearman rho (scipy.stats) between two scorings of the same architectures.

    nan when either scoring is constant (no ranking to agree with), which the report shows as is.
    """
    from scipy import stats

    if len(shared) != len(standalone) or len(shared) < 2:
        raise ValueError(f"need two scorings of the same >= 2 architectures, got {len(shared)} and {len(standalone)}")
    if len(set(shared)) < 2 or len(set(standalone)) < 2:
        return {"n": len(shared), "kendall_tau": math.nan, "kendall_p": math.nan,
                "spearman_rho": math.nan, "spearman_p": math.nan}
    tau = stats.kendalltau(shared, standalone)
    rho = stats.spearmanr(shared, standalone)
    return {"n": len(shared), "kendall_tau": float(tau.statistic), "kendall_p": float(tau.pvalue),
            "spearman_rho": float(rho.statistic), "spearman_p": float(rho.pvalue)}


def spread_indices(values: list[float], k: int) -> list[int]:
    """k distinct indices whose values cover [min, max] evenly (the nearest unused value to each of k
    evenly spaced targets), so random architectures span the cost range instead of clustering at its mean."""
    if k <= 0:
        return []
    if k >= len(values):
        return sorted(range(len(values)), key=lambda i: (values[i], i))
    low, high = min(values), max(values)
    targets = [low + (high - low) * i / (k - 1) for i in range(k)] if k > 1 else [(low + high) / 2]
    chosen: list[int] = []
    for target in targets:
        chosen.append(min((i for i in range(len(values)) if i not in chosen),
                          key=lambda i: (abs(values[i] - target), i)))
    return chosen


def search_config(task: str, space: str, seed: int, data: str | None, preset: str, overrides: dict):
    """The search's config as the CLI would resolve it; task/space keys only when not the defaults, so
    this works before the engine knows other tasks or spaces."""
    from facenar.search.config import resolve_config

    explicit = {"preset": preset, "seed": seed, **overrides}
    if data:
        explicit["data"] = data
    if task != "face":
        explicit["task"] = task
    if space != "nar":
        explicit["space"] = space
    return resolve_config(explicit, None)


def cpu_context(device: str):
    from facenar.dist import DistContext

    return DistContext(rank=0, world_size=1, local_rank=0, device=torch.device(device))


def run_search(cfg, folder: Path, device: str = "cpu"):
    """A whole search (facenar.search.engine.SearchEngine) in `folder`; the engine after derivation, whose
    supernet holds the final shared weights and whose RewardModel scores any architecture with them."""
    from facenar.rundir import RunDir
    from facenar.search.engine import SearchEngine

    engine = SearchEngine(cfg, RunDir.create(folder, cfg.to_dict()), cpu_context(device), workers=0)
    start = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # derive() prints its final table
        engine.derived = engine.run()
    engine.seconds = time.perf_counter() - start
    return engine


def shared_images(engine) -> int:
    """Images the search's shared weights trained on (its engine: one process, drop_last batches)."""
    cfg = engine.cfg
    per_epoch = len(engine.data.train) // cfg.batch_size
    return cfg.epochs * (min(per_epoch, cfg.steps_per_epoch) if cfg.steps_per_epoch else per_epoch) * cfg.batch_size


def child_network(arch) -> tuple[torch.nn.Module, int]:
    """The stand-alone network of a derived architecture (NAR's Arch or ENAS's MacroArch) and its
    feature size, which the task's head maps to logits."""
    from facenar.space.macro import MacroArch, MacroChild

    if isinstance(arch, MacroArch):
        return MacroChild(arch), arch.channels
    from facenar.space.cost import build_child  # the builder whose networks the cost model counts

    return build_child(arch), arch.embedding_size


def arch_cost(arch) -> tuple[int, int]:
    """(parameters, multiply-adds) of the stand-alone network, without the task's head."""
    from facenar.space.macro import MacroArch, macro_cost

    if isinstance(arch, MacroArch):
        cost = macro_cost(arch)
        return cost["params"], cost["macs"]
    from facenar.space.cost import count_cost

    cost = count_cost(arch)
    return cost.params, cost.macs


def at_macs(template, backbone: str, target_macs: float, widest: float = 4.0):
    """The all-conv3x3 `backbone` network of the template's space (input, candidates, granularity),
    uniformly width-scaled to the MAC count nearest `target_macs` (cheaper first on ties): what a
    practitioner builds by hand instead of searching. Widths are tried in steps of 1/256 up to
    `widest` x the template's; each distinct channel plan is counted once (scale_channels rounds to 8)."""
    from facenar.space.arch import STAGE_WIDTHS, Arch, family, num_slots, scale_channels

    slots = num_slots(backbone, template.granularity)
    baseline = [template.candidates.index("conv3x3")] * slots
    embedding = None if family(backbone) == "resnet" else template.embedding_size  # a ResNet's = its features
    plans = {}
    for step in range(1, int(widest * template.width * 256) + 1):
        plans.setdefault(tuple(scale_channels(c, step / 256) for c in STAGE_WIDTHS), step / 256)
    widths = sorted(plans.values())

    def build(width: float):
        arch = Arch(backbone, baseline, template.candidates, width, template.input_size, embedding,
                    template.granularity)
        return arch, arch_cost(arch)[1]

    low, high = 0, len(widths) - 1  # MACs grow with width: bisect for the first plan at or over the target
    while low < high:
        middle = (low + high) // 2
        low, high = (middle + 1, high) if build(widths[middle])[1] < target_macs else (low, middle)
    near = [build(widths[i]) for i in (low - 1, low) if i >= 0]
    return min(near, key=lambda pair: abs(pair[1] - target_macs))[0]


def handmade_alternatives(template, target_macs: float) -> list[tuple[str, object]]:
    """The two networks a practitioner would train instead of searching, at the pick's MAC count: the
    baseline (all conv3x3) width-scaled, and the next shallower backbone of its family width-scaled."""
    from facenar.space.arch import shallower

    scaled = at_macs(template, template.backbone, target_macs)
    shallow = at_macs(template, shallower(template.backbone), target_macs)
    return [(f"{template.backbone} baseline x{scaled.width:.3g} width", scaled),
            (f"{shallow.backbone} x{shallow.width:.3g} width", shallow)]


def train_from_scratch(arch, cfg, data, budget: Budget, device: str = "cpu") -> dict:
    """Train the child with the task's search head + loss on the train split for budget.steps SGD steps
    (one cosine cycle), then top-1 with the task's metric on the whole val split (BN in eval mode)."""
    from facenar.checkpoint import seed_everything
    from facenar.data import device_input
    from facenar.schedule import set_lr, sgdr_lr
    from facenar.tasks import get_task

    task = get_task(cfg.task)
    seed_everything(budget.seed)
    net, features = child_network(arch)
    net, head = net.to(device), task.search_head(replace(cfg, embedding_size=features), data.num_classes).to(device)
    loss_fn = task.search_loss(cfg)
    params = [p for m in (net, head) for p in m.parameters()]
    optimizer = torch.optim.SGD(params, lr=budget.lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    ctx, step, epoch = cpu_context(device), 0, 0
    start = time.perf_counter()
    net.train()
    head.train()
    while step < budget.steps:
        loader = data.train_loader(budget.batch_size, budget.seed, epoch, ctx, 0, pin=False)
        for images, labels in islice(loader, budget.steps - step):
            set_lr(optimizer, sgdr_lr(step / budget.steps, 1, 1, budget.lr, budget.lr * 1e-3))
            loss = loss_fn(head(net(device_input(images, torch.device(device)))).float(), labels.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        epoch += 1
    return {"top1": evaluate(net, head, data, task.reward_correct, device),
            "seconds": time.perf_counter() - start}


@torch.no_grad()
def evaluate(net, head, data, correct, device: str, chunk: int = 256) -> float:
    """Top-1 (the task's correct-count metric) over the whole val split."""
    net.eval()
    head.eval()
    images, labels = data.val_set(torch.device(device))
    hits = sum(correct(head(net(data.to_input(images[i:i + chunk]))), labels[i:i + chunk])
               for i in range(0, len(labels), chunk))
    return hits / len(labels)
