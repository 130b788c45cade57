"""Parameters and multiply-adds of an architecture, total and per slot, at its input size.

Multiply-adds are what torch.utils.flop_counter.FlopCounterMode counts (convolutions and the
embedding FC, 2 FLOPs per MAC) halved; BN, PReLU, pooling and additions count zero. That is
the convention behind the paper's "FLOPS" (iresnet50: 4.35e7 params / 6.32e9): we get 43.59M /
6.31G. Parameters include BN and PReLU. Everything runs on the meta device (no memory, no math),
so counting a full iresnet100 takes well under a second.

A ResNet (classification) child ends in its pooled feature; its classifier belongs to the task.
Published ResNet figures (the paper's Table 4, torchvision's 1.8 GFLOPs) include a
Linear(512 -> 1000) ImageNet classifier, so `count_cost(arch, num_classes=1000)` adds one:
resnet18 at 224 px then counts 11,689,512 params / 1,814,073,344 MACs (Table 4: 1.17e7 / 1.76e9;
no counting convention lands on Table 4's MACs, see facenar.space.resnet.CONVENTIONS).
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

from facenar.space.arch import Arch
from facenar.space.counting import CostReport, count_macs, count_params
from facenar.space.networks import build_child, conv_sites
from facenar.space.ops import build_op


@lru_cache(maxsize=4096)
def op_cost(name: str, cin: int, cout: int, stride: int, size: int) -> tuple[int, int]:
    """(params, MACs) of one operator at one site shape."""
    with torch.device("meta"):
        op = build_op(name, cin, cout, stride)
    return count_params(op), count_macs(op, (1, cin, size, size))


def count_cost(arch: Arch, num_classes: int = 0) -> CostReport:
    """Whole-network and per-slot cost; `num_classes` > 0 appends a Linear(embedding -> num_classes)."""
    with torch.device("meta"):
        model = build_child(arch)
        if num_classes:
            model = nn.Sequential(model, nn.Linear(arch.embedding_size, num_classes))
    report = CostReport(count_params(model), count_macs(model, (1, 3, arch.input_size, arch.input_size)))
    ops = arch.ops
    rows: dict[int, dict] = {}
    for site in conv_sites(arch.backbone, arch.width, arch.input_size, arch.granularity):
        params, macs = op_cost(ops[site.slot], site.cin, site.cout, site.stride, site.in_size)
        out = (site.in_size - 1) // site.stride + 1
        row = rows.setdefault(site.slot, {"slot": site.slot, "stage": site.stage + 1, "op": ops[site.slot],
                                          "in": f"{site.cin}x{site.in_size}x{site.in_size}",
                                          "params": 0, "macs": 0})
        row["out"] = f"{site.cout}x{out}x{out}"
        row["params"] += params
        row["macs"] += macs
    report.per_slot = [rows[slot] for slot in sorted(rows)]
    return report


def arch_stats(arch: Arch, num_classes: int = 0) -> dict:
    """Cost of `arch` next to the all-conv3x3 baseline of the same backbone and size."""
    cost = count_cost(arch, num_classes)
    base = count_cost(Arch.baseline(arch.backbone, width=arch.width, input_size=arch.input_size,
                                    embedding_size=arch.embedding_size, granularity=arch.granularity),
                      num_classes)
    per_slot = []
    for row, base_row in zip(cost.per_slot, base.per_slot):
        per_slot.append({**row, "shape": f"{row['in']} -> {row['out']}",
                         "baseline_params": base_row["params"], "baseline_macs": base_row["macs"]})
    return {"backbone": arch.backbone, "width": arch.width, "input_size": arch.input_size,
            "granularity": arch.granularity, "num_classes": num_classes, "codes": list(arch.codes), "ops": arch.ops,
            "replaced": sum(op != "conv3x3" for op in arch.ops),
            "params": cost.params, "macs": cost.macs,
            "baseline_params": base.params, "baseline_macs": base.macs,
            "params_ratio": cost.params / base.params, "macs_ratio": cost.macs / base.macs,
            "per_slot": per_slot}


def _millions(value: int) -> str:
    return f"{value / 1e6:.3f}M"


def format_stats(stats: dict) -> str:
    """Per-slot table plus totals against the baseline, for people."""
    classifier = f", + Linear -> {stats['num_classes']} classes" if stats.get("num_classes") else ""
    lines = [f"{stats['backbone']} width {stats['width']} input {stats['input_size']} "
             f"({stats['granularity']} granularity, {stats['replaced']} of {len(stats['ops'])} slots replaced"
             f"{classifier})",
             f"{'slot':>4} {'stage':>5}  {'shape':<26} {'op':<10} {'params':>10} {'MACs':>10}"]
    for row in stats["per_slot"]:
        lines.append(f"{row['slot']:>4} {row['stage']:>5}  {row['shape']:<26} {row['op']:<10} "
                     f"{_millions(row['params']):>10} {_millions(row['macs']):>10}")
    for name, key, unit, scale in (("params", "params", "M", 1e6), ("MACs", "macs", "G", 1e9)):
        value, base = stats[key], stats[f"baseline_{key}"]
        lines.append(f"total {name}: {value:,} ({value / scale:.2f}{unit}) vs baseline {base:,} "
                     f"({base / scale:.2f}{unit}): {value - base:+,} ({100 * (value / base - 1):+.1f}%)")
    return "\n".join(lines)
