"""python -m facenar.train: train a fixed architecture (baseline or refined) with a margin softmax.

Single process:  python -m facenar.train --preset demo
Many processes:  torchrun --nproc_per_node=8 -m facenar.train --data faces_emore --arch refined.json
Resume:          python -m facenar.train --resume RUN_DIR   (the run keeps its stored options)
"""
from __future__ import annotations

import argparse
import functools
import os
from typing import Sequence

from facenar.rundir import read_run_config, run_folder
from facenar.config import HELP_EPILOG, add_option, help_default
from facenar.tasks.base import TASKS, task_help
from facenar.dist import device_option
from facenar.speed import COMPILE_MODES
from facenar.train.config import MARGINS, PRESETS, REFERENCE_BATCH, TrainConfig, resolve_config
from facenar.train.engine import final_figures, train


def build_parser() -> argparse.ArgumentParser:
    # SUPPRESS: only options actually given reach the config, so presets and resumed runs keep theirs
    p = argparse.ArgumentParser(prog="python -m facenar.train", argument_default=argparse.SUPPRESS,
                                description="Train a face-recognition network (ArcFace, Partial FC, DDP).",
                                epilog=HELP_EPILOG)

    add = functools.partial(add_option, p, config=TrainConfig)

    add("--arch", "architecture JSON (e.g. from facenar.search); default: the baseline of --backbone, "
                  "i.e. weights/archs/iresnet50_baseline.json", dest="arch_file", metavar="FILE.json")
    add("--backbone", "baseline backbone when no --arch")
    add("--task", task_help(), choices=TASKS.names())
    add("--data", f"{task_help('train_data_help')}; default: the task's demo data", metavar="DIR")
    p.add_argument("--out", metavar="RUN_DIR", help="run directory (default runs/train-<timestamp>)")
    p.add_argument("--force", action="store_true", help="replace a finished run in --out (only a folder facenar wrote)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last.pt")
    p.add_argument("--preset", choices=sorted(PRESETS), help="demo: a tiny network for the demo data on a CPU "
                   "(options given with it override it, and run.log names them; with --task T: T's demo/paper, "
                   "T's demo being the default without --data); default: paper")
    add("--epochs", "")
    add("--batch-size", "per process")
    add("--lr", "peak learning rate (alias --lr-max)", "--lr-max")
    add("--lr-min", "SGDR floor")
    add("--lr-scale", f"linear: lr and lr-min x global batch / {REFERENCE_BATCH}", choices=["linear", "none"])
    add("--schedule", "sgdr (T0, T_mult) or poly", choices=["sgdr", "poly"])
    add("--t0", "first SGDR cycle in epochs")
    add("--t-mult", "SGDR cycle growth")
    add("--momentum", "SGD momentum")
    add("--weight-decay", "")
    add("--margin", "cos(m1*theta + m2) - m3 with the kind's m1..m3", choices=sorted(MARGINS))
    add("--margin-m1", "cos(m1*theta + m2) - m3", dest="m1")
    add("--margin-m2", "(alias --margin-m)", "--margin-m", dest="m2")
    add("--margin-m3", "", dest="m3")
    add("--scale", "logit scale s (alias --margin-s)", "--margin-s")
    add("--dropout", "dropout of the 'E' output head (BN-Dropout-FC-BN)")
    add("--embedding-size", "default: the architecture's (512)")
    add("--width", "channel multiplier override (CPU-sized runs)")
    add("--input-size", "input size override; images are resized")
    add("--sample-rate", "Partial FC negative-class sampling rate")
    add("--amp", "CUDA autocast, ignored on CPU (auto = bf16 where native, Ampere on; else fp16)",
        choices=["auto", "bf16", "fp16", "off"])
    p.add_argument("--fp16", dest="amp", action="store_const", const="fp16", help="alias of --amp fp16")
    add("--grad-clip", "backbone gradient norm clip, 0 = off")
    add("--augment", "", choices=["flip", "strong", "none"])
    add("--verify-every", "verify every N steps (0 = every epoch)", metavar="N")
    add("--verify-batch", "")
    add("--bench", "benchmarks DATA/<name>.bin")
    add("--checkpoint-every", "steps between last.pt", metavar="N")
    add("--log-every", "steps between train.csv rows", metavar="N")
    add("--max-steps", "stop after N steps (resumable)", metavar="N")
    add("--seed", "")
    add("--workers", "DataLoader workers per process (default 2 on CPU; on CUDA the cores per GPU process less one, "
                     "at most 8)")
    add("--device", "auto, cpu, cuda or cuda:N", type=device_option)
    add("--compile", "torch.compile network + head with this mode (alone: default); may change on --resume",
        nargs="?", const="default", choices=COMPILE_MODES, metavar="MODE")
    p.add_argument("--channels-last", action="store_true", help=help_default(
        TrainConfig, "channels_last", "channels_last memory for the network; may change on --resume"))
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = vars(build_parser().parse_args(argv))
    force = args.pop("force", False)
    out, resume, preset = args.pop("out", None), args.pop("resume", None), args.pop("preset", None)
    out = run_folder(out, resume)
    if resume:
        args.setdefault("max_steps", None)  # a stored --max-steps was the stop just resumed from
        cfg = resolve_config(args, preset, stored=read_run_config(resume), where=resume)
    else:
        cfg = resolve_config(args, preset=preset)
    summary = train(cfg, out=out, resume=bool(resume), force=force)
    if os.environ.get("RANK", "0") == "0":
        print(format_summary(summary))
    return 0


def format_summary(summary: dict) -> str:
    state = "stopped" if summary["stopped"] else "finished"
    lines = [f"{state} at step {summary['step']} (epoch {summary['epoch']:.2f}); run dir {summary['run_dir']}"]
    return "\n".join(lines + final_figures(summary))

