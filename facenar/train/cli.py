"""python -m facenar.train: train a fixed architecture (baseline or refined) with a margin softmax.

Single process:  python -m facenar.train --preset demo
Many processes:  torchrun --nproc_per_node=8 -m facenar.train --data faces_emore --arch refined.json
Resume:          python -m facenar.train --resume RUN_DIR   (the run keeps its stored options)
"""
from __future__ import annotations

import argparse
import os
from typing import Sequence

from data_tools.cli import UserError
from facenar.rundir import read_run_config
from facenar.train.config import MARGINS, PRESETS, TrainConfig, resolve_config
from facenar.train.engine import train

D = TrainConfig()


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS: only options actually given reach the config, so presets and resumed runs keep theirs
    p = argparse.ArgumentParser(prog="python -m facenar.train", argument_default=argparse.SUPPRESS,
                                description="Train a face-recognition network (ArcFace, Partial FC, DDP).")
    p.add_argument("--arch", dest="arch_file", metavar="FILE.json",
                   help="architecture JSON (e.g. from facenar.search); default: the baseline of --backbone, "
                        "i.e. weights/archs/iresnet50_baseline.json")
    p.add_argument("--backbone", help=f"baseline backbone when no --arch (default {D.backbone})")
    p.add_argument("--data", metavar="DIR", help="emore folder (train.rec/idx, property, *.bin); default: demo data")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/train-<timestamp>)")
    p.add_argument("--force", action="store_true", help="reuse a non-empty --out")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last.pt")
    p.add_argument("--preset", choices=sorted(PRESETS), help="demo: a tiny network for the demo data on a CPU")
    p.add_argument("--epochs", type=int, help=f"default {D.epochs}")
    p.add_argument("--batch-size", type=int, help=f"per process (default {D.batch_size})")
    p.add_argument("--lr", type=float, help=f"peak learning rate (default {D.lr})")
    p.add_argument("--lr-min", type=float, help=f"SGDR floor (default {D.lr_min})")
    p.add_argument("--schedule", choices=["sgdr", "poly"], help="default sgdr (T0 = 5, T_mult = 2)")
    p.add_argument("--t0", type=int, help=f"first SGDR cycle in epochs (default {D.t0})")
    p.add_argument("--t-mult", type=int, help=f"SGDR cycle growth (default {D.t_mult})")
    p.add_argument("--momentum", type=float, help=f"SGD momentum (default {D.momentum})")
    p.add_argument("--weight-decay", type=float, help=f"default {D.weight_decay}")
    p.add_argument("--margin", choices=sorted(MARGINS), help="default arcface (cos(theta + 0.5))")
    p.add_argument("--margin-m1", dest="m1", type=float, help="cos(m1*theta + m2) - m3")
    p.add_argument("--margin-m2", dest="m2", type=float)
    p.add_argument("--margin-m3", dest="m3", type=float)
    p.add_argument("--scale", type=float, help=f"logit scale s (default {D.scale:g})")
    p.add_argument("--embedding-size", type=int, help="default: the architecture's (512)")
    p.add_argument("--width", type=float, help="channel multiplier override (CPU-sized runs)")
    p.add_argument("--input-size", type=int, help="input size override; images are resized")
    p.add_argument("--sample-rate", type=float, help="Partial FC negative-class sampling rate (default 1.0)")
    p.add_argument("--fp16", action="store_true", help="mixed precision on CUDA (ignored on CPU)")
    p.add_argument("--grad-clip", type=float, help=f"backbone gradient norm clip, 0 = off (default {D.grad_clip:g})")
    p.add_argument("--augment", choices=["flip", "strong", "none"], help=f"default {D.augment}")
    p.add_argument("--verify-every", type=int, metavar="N", help="verify every N steps (default: every epoch)")
    p.add_argument("--verify-batch", type=int, help=f"default {D.verify_batch}")
    p.add_argument("--bench", help=f"benchmarks DATA/<name>.bin (default {D.bench})")
    p.add_argument("--checkpoint-every", type=int, metavar="N", help=f"steps between last.pt (default {D.checkpoint_every})")
    p.add_argument("--log-every", type=int, metavar="N", help=f"steps between train.csv rows (default {D.log_every})")
    p.add_argument("--max-steps", type=int, metavar="N", help="stop after N steps (resumable)")
    p.add_argument("--seed", type=int, help=f"default {D.seed}")
    p.add_argument("--workers", type=int, help=f"DataLoader workers per process (default {D.workers})")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], help="default auto")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    force = args.pop("force", False)
    out, resume, preset = args.pop("out", None), args.pop("resume", None), args.pop("preset", None)
    if resume:
        if out or preset:
            raise UserError("--resume continues RUN_DIR with its stored options; drop --out/--preset")
        args.setdefault("max_steps", None)  # a stored --max-steps was the stop just resumed from
        cfg = resolve_config(args, stored=read_run_config(resume))  # changes are checked against the run
    else:
        cfg = resolve_config(args, preset=preset)
    summary = train(cfg, out=resume or out, resume=bool(resume), force=force)
    if os.environ.get("RANK", "0") == "0":
        print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    state = "stopped" if summary["stopped"] else "finished"
    lines = [f"{state} at step {summary['step']} (epoch {summary['epoch']:.2f}); run dir {summary['run_dir']}"]
    for name, metrics in (summary.get("verify") or {}).items():
        lines.append(f"  {name:10s} accuracy {100 * metrics['accuracy']:.2f}% +- {100 * metrics['std']:.2f}")
    if summary.get("best_mean_acc") is not None:
        lines.append(f"  best mean accuracy {summary['best_mean_acc']:.2f}% (best.pt)")
    return "\n".join(lines)

