"""ONNX export of a trained model, in the form insightface's recognition model zoo loads.

The graph takes N x 3 x S x S RGB float32 (S = the architecture's input size, 112 normally) that
the CALLER has normalised with (x - 127.5) / 127.5, exactly what insightface's ArcFaceONNX does
for models without built-in Sub/Mul nodes, and returns N x embedding_size raw embeddings.
insightface.model_zoo.get_model routes a file to ArcFaceONNX when its input is square, at least
112 and a multiple of 16; other sizes export fine but are noted as not loadable there.

CLI: python -m facenar.export --checkpoint RUN/best.pt --out model.onnx [--force] [--opset 17]
"""
from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

from facenar_runtime.atomic import atomic_path
from facenar_runtime.cli import number, run_cli
from facenar_runtime.errors import machine_fault
from facenar_runtime.errors import UserError, EnvironmentFault
from facenar_runtime.outputs import check_outputs

INPUT_NAME, OUTPUT_NAME = "input.1", "embedding"
TOLERANCE = 1e-4
MAX_OPSET = 23  # newest opset checked to export and run here (torch 2.13, onnxruntime); older than 13 is refused


def insightface_loadable(input_size: int) -> bool:
    """insightface model_zoo's rule for recognising a recognition (ArcFaceONNX) model."""
    return input_size >= 112 and input_size % 16 == 0


def export_onnx(checkpoint: str | Path, out: str | Path, force: bool = False, opset: int = 17,
                check_batch: int = 4) -> dict:
    """Write `out` (atomically) and check it against PyTorch with onnxruntime; returns a summary.

    Raises UserError when the ONNX outputs differ from PyTorch's by more than 1e-4.
    """
    from facenar.checkpoint import load_model

    # the guard also refuses a folder holding an input: --out RUN_DIR --force must not replace the run
    check_outputs(force, files={"--out": out}, inputs={"--checkpoint": checkpoint})
    model, arch, _ = load_model(checkpoint)
    model = model.float().eval()
    size = arch.input_size
    example = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(0))
    with atomic_path(out) as tmp:
        _export(model, example, tmp, opset)
        probe = np.random.default_rng(0).uniform(-1, 1, (check_batch, 3, size, size)).astype(np.float32)
        diff = max_abs_difference(model, tmp, probe)
        if not diff <= TOLERANCE:
            raise UserError(f"exported graph differs from PyTorch by {diff:.3g} (> {TOLERANCE}); "
                            f"{out} not written. Try another --opset")
    return {"path": str(out), "input_size": size, "embedding_size": arch.embedding_size, "opset": graph_opset(out),
            "max_abs_diff": diff, "insightface_loadable": insightface_loadable(size),
            "size_mb": os.path.getsize(out) / 2**20}


def _export(model: torch.nn.Module, example: torch.Tensor, path: Path, opset: int) -> None:
    batch = torch.export.Dim("batch")
    # the exporter narrates every stage (stdout, warnings, onnxscript's logger); keep the CLI's output ours
    loggers = [logging.getLogger(name) for name in ("onnxscript", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        for logger in loggers:
            logger.setLevel(logging.ERROR)
        try:
            torch.onnx.export(model, (example,), str(path), input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              opset_version=opset, dynamic_shapes=({0: batch},), external_data=False,
                              dynamo=True, verbose=False)
        except Exception as exc:  # the exporter raises many types (unsupported op, bad opset, ...)
            fault = machine_fault(exc)  # a full disk is the machine's fault (exit 1), whatever the opset
            if fault is not None:
                raise EnvironmentFault(f"cannot write {path}: {fault}") from None
            raise UserError(f"ONNX export failed at opset {opset}: {type(exc).__name__}: {exc}"[:500]) from None
        finally:
            for logger, level in zip(loggers, levels):
                logger.setLevel(level)


def graph_opset(path: str | Path) -> int:
    """The default-domain opset the file declares (the exporter may keep a newer one than asked)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(entry.version for entry in model.opset_import if entry.domain in ("", "ai.onnx"))


def max_abs_difference(model: torch.nn.Module, onnx_path: str | Path, images: np.ndarray) -> float:
    """Largest |ONNX - PyTorch| over the embeddings of `images` (normalised NCHW float32)."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    got = session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]
    with torch.no_grad():
        want = model(torch.from_numpy(images)).numpy()
    return float(np.abs(got - want).max())


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facenar.export",
                                     description="Export a facenar checkpoint to ONNX (insightface model-zoo layout).")
    parser.add_argument("--checkpoint", required=True, help="RUN_DIR/best.pt or last.pt")
    parser.add_argument("--out", required=True, help="output .onnx file")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
    parser.add_argument("--opset", type=number(int, min=13, max=MAX_OPSET), default=17,
                        help=f"ONNX opset, 13..{MAX_OPSET} (default 17)")
    args = parser.parse_args(argv)
    info = export_onnx(args.checkpoint, args.out, force=args.force, opset=args.opset)
    size = info["input_size"]
    print(f"wrote {info['path']} ({info['size_mb']:.1f} MB, opset {info['opset']}): input N x 3 x {size} x {size} "
          f"RGB, (x - 127.5) / 127.5; output N x {info['embedding_size']}")
    print(f"onnxruntime vs PyTorch: max abs difference {info['max_abs_diff']:.2e}")
    if info["opset"] != args.opset:
        print(f"note: the exporter could not convert the graph to opset {args.opset}; it uses opset {info['opset']}")
    if not info["insightface_loadable"]:
        print(f"note: insightface.model_zoo.get_model only loads square inputs >= 112 that are multiples of 16; "
              f"this model's input is {size}")
    return 0


if __name__ == "__main__":
    run_cli(main)
