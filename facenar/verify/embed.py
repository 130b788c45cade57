"""Images -> embeddings for verification: decode once in parallel, then batch through a model.

Two backends share one interface (`input_size`, `__call__(uint8 NHWC RGB batch) -> float32 [B, D]`):
a facenar/PyTorch network, normalised (x/255 - 0.5) / 0.5 as in training, and an ONNX file laid
out like insightface's model-zoo recognition models, normalised (x - 127.5) / 127.5 as their
ArcFaceONNX does, so third-party models are measured the way their authors measure them.
"""
from __future__ import annotations

import os
import warnings
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch

from facenar_runtime.cli import progress
from facenar_runtime.errors import UserError
from facenar.data import decode_image
from facenar.speed import Fast

DEFAULT_INPUT_SIZE = 112


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def decode_images(blobs: Sequence[bytes], size: int, where: str = "images",
                  workers: int | None = None) -> np.ndarray:
    """Decode encoded images into one [N, size, size, 3] uint8 RGB array, in threads.

    cv2 releases the GIL while decoding, so threads scale. Images of another size are resized
    with cv2.resize (bilinear, as insightface's model zoo does) and one warning says how many.
    """
    out = np.empty((len(blobs), size, size, 3), dtype=np.uint8)

    def decode(index: int) -> tuple[int, int] | None:
        image = decode_image(blobs[index], where=f"{where}: image {index}")
        if image.shape[:2] == (size, size):
            out[index] = image
            return None
        out[index] = cv2.resize(image, (size, size))
        return image.shape[:2]

    with ThreadPoolExecutor(max_workers=workers or default_workers()) as pool:
        resized = [shape for shape in pool.map(decode, range(len(blobs))) if shape is not None]
    if resized:
        shapes = ", ".join(sorted({f"{h}x{w}" for h, w in resized}))
        warnings.warn(f"{where}: {len(resized)} of {len(blobs)} images are {shapes}, not {size}x{size} "
                      "(the model's input); resized with cv2.resize", stacklevel=2)
    return out


class TorchEmbedder:
    """A PyTorch face network; runs in eval mode under inference_mode on `device`, optionally compiled
    (`compile`: a facenar.speed mode) and in channels_last memory (it changes the model's weights' layout)."""

    def __init__(self, model: torch.nn.Module, device: str = "cpu", input_size: int | None = None,
                 compile: str = "off", channels_last: bool = False):
        self.model, self.device = model, torch.device(device)
        self.input_size = int(input_size or getattr(model, "input_size", DEFAULT_INPUT_SIZE))
        self.forward = Fast(model, compile, channels_last, self.device, label="embedding network")

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device, non_blocking=True)
        x = x.permute(0, 3, 1, 2).float().div_(255.0).sub_(0.5).div_(0.5)
        with torch.inference_mode():
            return self.forward(x).float().cpu().numpy()


class OnnxEmbedder:
    """An insightface-layout ONNX recognition model: NCHW 3xSxS RGB input, first output = embedding.

    Input name and size come from the graph; a fixed batch dimension (often 1 in the model zoo)
    is honoured by feeding chunks of that size, padding the last one.
    """

    def __init__(self, path: str | Path, device: str = "cpu"):
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        try:
            self.session = ort.InferenceSession(str(path), providers=providers)
        except Exception as exc:  # onnxruntime raises its own error types for bad/unsupported files
            raise UserError(f"{path}: cannot load the ONNX model ({type(exc).__name__}: {exc})"[:400]) from None
        self.path = path
        spec, output = self._check_layout()
        shape = list(spec.shape)
        height, width = (d if isinstance(d, int) else DEFAULT_INPUT_SIZE for d in shape[2:])
        if height != width:
            raise UserError(f"{path}: input is {height}x{width}; only square face crops are supported")
        if height < 1:
            raise UserError(f"{path}: input is {height}x{width}; a face crop needs at least one pixel")
        self.input_name, self.input_size = spec.name, int(height)
        self.fixed_batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else None
        self.output_name = output.name

    def _check_layout(self):
        """The one input and one output verify can use, or one line saying what the model has instead."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        need = "verify needs one float32 input N x 3 x S x S and one 2-D output N x D (insightface recognition layout)"
        found = None
        if len(inputs) != 1:
            found = f"{len(inputs)} inputs ({', '.join(repr(i.name) for i in inputs)})"
        elif inputs[0].type != "tensor(float)":
            found = f"input {inputs[0].name!r} of type {inputs[0].type}"
        elif len(inputs[0].shape) != 4 or inputs[0].shape[1] != 3:
            found = f"input {inputs[0].name!r} of shape {list(inputs[0].shape)}"
        elif len(outputs) != 1:
            found = f"{len(outputs)} outputs ({', '.join(repr(o.name) for o in outputs)})"
        elif outputs[0].shape is not None and len(outputs[0].shape) != 2:
            found = f"output {outputs[0].name!r} of shape {list(outputs[0].shape)}"
        if found:
            raise UserError(f"{self.path}: the model has {found}; {need}")
        return inputs[0], outputs[0]

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = ((batch.astype(np.float32) - 127.5) / 127.5).transpose(0, 3, 1, 2)
        x = np.ascontiguousarray(x)
        step = self.fixed_batch or len(x)
        outputs = []
        for start in range(0, len(x), step):
            chunk = x[start:start + step]
            missing = step - len(chunk)
            if missing:
                chunk = np.concatenate([chunk, np.zeros((missing, *chunk.shape[1:]), np.float32)])
            try:
                out = self.session.run([self.output_name], {self.input_name: chunk})[0]
            except Exception as exc:  # onnxruntime's own error types; the first line says which node failed
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise UserError(f"{self.path}: the ONNX model failed to run on a batch of {len(chunk)} "
                                f"({first})"[:400]) from None
            if out.ndim != 2 or len(out) != len(chunk):
                raise UserError(f"{self.path}: the ONNX model returned shape {list(out.shape)} for a batch of "
                                f"{len(chunk)}; verify needs one embedding row per image")
            outputs.append(out[:len(chunk) - missing])
        return np.concatenate(outputs).astype(np.float32, copy=False)


def embed_images(embedder, images: np.ndarray, batch_size: int = 256, flip: bool = True,
                 desc: str = "embedding") -> tuple[np.ndarray, np.ndarray | None]:
    """Raw float32 embeddings of the images and (with flip) of their horizontal mirrors."""
    if batch_size < 1:
        raise UserError(f"--batch-size must be at least 1 (got {batch_size})")
    plain, mirrored = [], []
    for start in progress(range(0, len(images), batch_size), total=-(-len(images) // batch_size), desc=desc):
        batch = images[start:start + batch_size]
        plain.append(embedder(batch))
        if flip:
            mirrored.append(embedder(batch[:, :, ::-1]))
    return np.concatenate(plain), (np.concatenate(mirrored) if flip else None)
