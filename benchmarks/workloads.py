"""The timed workloads the network benchmarks share: one SGD step, one inference batch, a calibrated child.

benchmarks.networks (speed against a plain iresnet50, Ours-2 vs baseline) and benchmarks.speed (eager vs
compiled vs channels_last) time the same closures, so the two tables measure the same work.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from facenar.space.arch import Arch
from facenar.space.networks import build_child
from facenar.tasks.heads import CosineClassifier, MarginSoftmax

CALIBRATION_BATCH = 8


def train_step_closure(model: nn.Module, forward: Callable, batch: int, size: int, classes: int,
                       device: str, features: int = 512, wrap_loss: Callable = lambda fn: fn) -> Callable[[], None]:
    """One closure = one SGD step on a fixed random batch (synchronised on CUDA); `features` = the
    network's embedding length (512: iresnet's); `wrap_loss` wraps the head + loss (torch.compile: the
    search's --compile compiles them as one graph)."""
    head = CosineClassifier(features, classes).to(device)
    margin = MarginSoftmax("arcface")
    params = [p for p in list(model.parameters()) + list(head.parameters()) if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=5e-4)
    x = torch.randn(batch, 3, size, size, device=device)
    labels = torch.randint(0, classes, (batch,), device=device)
    cuda = device == "cuda"
    head_loss = wrap_loss(lambda embedding: F.cross_entropy(margin(head(embedding), labels), labels))

    def step():
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            loss = head_loss(forward(x))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if cuda:
            torch.cuda.synchronize()
    return step



def inference_closure(forward: Callable, batch: int, size: int, device: str) -> Callable[[], None]:
    """One closure = one batch of inference (no autograd; synchronised on CUDA)."""
    x = torch.randn(batch, 3, size, size, device=device)
    cuda = device == "cuda"

    def run():
        with torch.inference_mode(), torch.autocast("cuda", dtype=torch.bfloat16, enabled=cuda):
            forward(x)
        if cuda:
            torch.cuda.synchronize()
    return run



def calibrated_child(arch: Arch) -> nn.Module:
    """The child in eval mode with BN statistics from one random batch. At random init the
    activations of a 50-layer residual net grow to ~1e26, where neither a timing nor the export's
    ONNX-vs-PyTorch check means anything; calibrated, they stay O(10) like a trained network's."""
    model = build_child(arch)
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.momentum = None                  # plain average: this batch's statistics
    with torch.no_grad():
        model.train()(torch.randn(CALIBRATION_BATCH, 3, arch.input_size, arch.input_size))
    return model.eval()
