"""facenar.space.pooling: the pool operators' compiled forms compute pooling's values and gradients.

torch.compile runs here with a graph-recording backend (no C++ built): the graph dynamo hands a backend is
what inductor would compile, so it shows which form each stride takes.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facenar.space.pooling import AvgPool3x3, MaxPool3x3

REFERENCE = {MaxPool3x3: lambda x, stride: F.max_pool2d(x, 3, stride, 1),
             AvgPool3x3: lambda x, stride: F.avg_pool2d(x, 3, stride, 1, count_include_pad=False)}


def _compiled(module: nn.Module, graphs: list) -> nn.Module:
    def recording(graph, inputs):
        graphs.append(graph)
        return graph.forward
    return torch.compile(module, backend=recording)


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("pool", [MaxPool3x3, AvgPool3x3])
def test_compiled_forms_give_the_values_and_gradients_of_pooling(pool, stride):
    graphs = []
    compiled = _compiled(pool(stride), graphs)
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)  # odd and even sizes: every kind of border window
    grad_out = torch.randn_like(REFERENCE[pool](x, stride))
    mine, reference = x.clone().requires_grad_(), x.clone().requires_grad_()
    out = compiled(mine)
    out.backward(grad_out)
    REFERENCE[pool](reference, stride).backward(grad_out)
    torch.testing.assert_close(out, REFERENCE[pool](x, stride), rtol=0, atol=1e-12)
    torch.testing.assert_close(mine.grad, reference.grad, rtol=0, atol=1e-12)
    (graph,) = graphs
    code = graph.code
    assert "pool2d" not in code  # inductor never gets pooling to lower itself
    assert (f"facenar.{'max' if pool is MaxPool3x3 else 'avg'}_pool3x3" in code) == (stride == 2)  # aten, opaque


@pytest.mark.parametrize("op, args", [("max_pool3x3", 2), ("avg_pool3x3", 2), ("max_pool3x3", 1)])
def test_opaque_pooling_ops_are_registered_consistently(op, args):
    """torch.library's own checks: shapes and strides of the fake version, autograd, and dispatch."""
    x = torch.randn(2, 3, 7, 6, requires_grad=True)
    torch.library.opcheck(getattr(torch.ops.facenar, op).default, (x, args))


def test_a_compiled_max_at_a_tie_keeps_the_value_and_the_weight_gradient_below():
    """At a tie torch.maximum shares the gradient where max_pool2d gives it to the first pixel; a flat image
    region (the usual cause) gives the conv below the same weight gradient either way."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
    image = torch.full((1, 3, 10, 10), 0.5)
    image[..., :3, :] = torch.rand(1, 3, 3, 10)  # texture above a flat region
    outputs, grads = [], []
    for pool in (MaxPool3x3(1), _compiled(MaxPool3x3(1), [])):
        conv.zero_grad()
        out = pool(conv(image))
        (out * torch.arange(out.numel()).view_as(out)).sum().backward()
        outputs.append(out.detach())
        grads.append(conv.weight.grad.clone())
    assert torch.equal(*outputs)
    torch.testing.assert_close(*grads, rtol=1e-5, atol=1e-5)
    tied, first = torch.zeros(1, 1, 4, 4, requires_grad=True), torch.zeros(1, 1, 4, 4, requires_grad=True)
    _compiled(MaxPool3x3(1), [])(tied).sum().backward()
    F.max_pool2d(first, 3, 1, 1).sum().backward()
    assert tied.grad.sum().item() == first.grad.sum().item() == 16  # every output's gradient arrives...
    assert not torch.equal(tied.grad, first.grad)  # ...shared out among the tied pixels
