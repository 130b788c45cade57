"""The 3x3 pooling of the pool operators (max3x3, avg3x3, ENAS's pool branches), computed on CPU in the form
that measured fastest where it runs. The modules stay nn.MaxPool2d / nn.AvgPool2d, so exports, cost counting
and every isinstance check see plain pooling, and the values are pooling's own:

- eager without autograd (search rewards, derivation, evaluation), max only: separable elementwise maxima
  (torch 2.13's CPU max_pool2d on NCHW activations was 4-8x slower, a third of a derivation's time);
- under torch.compile, stride 1: the same separable passes (their gradient: separable_max3x3), which
  inductor fuses with the BN and PReLU around them;
- under torch.compile, stride 2: aten's own kernels behind an opaque custom op: inductor's lowering of
  strided 3x3 pooling (its max backward a scatter) ran 2-3x slower than aten's kernels here;
- anywhere else (eager with autograd, tracing, export, other devices): aten's pooling itself.

With the supernet's own code object per compiled part, these forms took the demo search's compiled
shared-weight step from 1.12-1.18x to 1.27-1.31x eager (benchmarks.networks; the speed guide has the
measurements).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

Combine = Callable[[Tensor, Tensor], Tensor]


def _pooled_size(size: int, stride: int) -> int:
    """Output length of a 3x3 window with padding 1."""
    return (size - 1) // stride + 1


def _separable3x3(x: Tensor, stride: int, pad_value: float, combine: Combine) -> Tensor:
    """A 3x3 window reduction with padding 1 as two passes over the padded input (columns, then rows):
    `combine(earlier tap, later tap)` folds the three taps of every output position."""
    rows, cols = (_pooled_size(size, stride) for size in x.shape[-2:])
    padded = F.pad(x, (1, 1, 1, 1), value=pad_value)
    span = lambda k, n: slice(k, k + (n - 1) * stride + 1, stride)  # the k-th tap of every output position
    wide = combine(combine(padded[..., span(0, cols)], padded[..., span(1, cols)]), padded[..., span(2, cols)])
    return combine(combine(wide[..., span(0, rows), :], wide[..., span(1, rows), :]), wide[..., span(2, rows), :])


def separable_max3x3(x: Tensor, stride: int) -> Tensor:
    """max_pool2d(x, 3, stride, padding=1) through torch.maximum: the same values (a maximum is exact). Its
    gradient differs only at an exact tie inside a window: torch.maximum shares it between the tied pixels,
    max_pool2d gives it to the first. Both are subgradients, and the layers below get the same weight
    gradient wherever the tied pixels see the same input (a flat image region, the usual cause of ties).
    (A first-wins `where` chain would match max_pool2d there too, but compiled it ran 5-10x slower.)"""
    return _separable3x3(x, stride, float("-inf"), torch.maximum)


def separable_avg3x3(x: Tensor, stride: int) -> Tensor:
    """avg_pool2d(x, 3, stride, padding=1, count_include_pad=False): window sums over the zero-padded input
    divided by each window's count of real pixels (equal to float rounding)."""
    ones = torch.ones((1, 1, *x.shape[-2:]), dtype=x.dtype, device=x.device)
    return _separable3x3(x, stride, 0.0, torch.add) / _separable3x3(ones, stride, 0.0, torch.add)[0, 0]


def _pooled(x: Tensor, stride: int) -> Tensor:
    n, c, h, w = x.shape
    return x.new_empty((n, c, _pooled_size(h, stride), _pooled_size(w, stride)))


# aten's pooling kernels as opaque ops: inductor calls them instead of lowering pooling itself. Inputs and
# outputs are contiguous, as the fake (shape-only) versions declare.
@torch.library.custom_op("facenar::max_pool3x3", mutates_args=())
def _aten_max_pool3x3(x: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    out, indices = torch.ops.aten.max_pool2d_with_indices(x.contiguous(), [3, 3], [stride, stride], [1, 1])
    return out.contiguous(), indices.contiguous()


@_aten_max_pool3x3.register_fake
def _(x: Tensor, stride: int) -> tuple[Tensor, Tensor]:
    out = _pooled(x, stride)
    return out, out.to(torch.int64)


@torch.library.custom_op("facenar::max_pool3x3_backward", mutates_args=())
def _aten_max_pool3x3_backward(grad: Tensor, x: Tensor, indices: Tensor, stride: int) -> Tensor:
    return torch.ops.aten.max_pool2d_with_indices_backward(
        grad.contiguous(), x.contiguous(), [3, 3], [stride, stride], [1, 1], [1, 1], False, indices).contiguous()


@_aten_max_pool3x3_backward.register_fake
def _(grad: Tensor, x: Tensor, indices: Tensor, stride: int) -> Tensor:
    return x.new_empty(x.shape)


@torch.library.custom_op("facenar::avg_pool3x3", mutates_args=())
def _aten_avg_pool3x3(x: Tensor, stride: int) -> Tensor:
    return F.avg_pool2d(x.contiguous(), 3, stride, 1, count_include_pad=False).contiguous()


@_aten_avg_pool3x3.register_fake
def _(x: Tensor, stride: int) -> Tensor:
    return _pooled(x, stride)


@torch.library.custom_op("facenar::avg_pool3x3_backward", mutates_args=())
def _aten_avg_pool3x3_backward(grad: Tensor, x: Tensor, stride: int) -> Tensor:
    return torch.ops.aten.avg_pool2d_backward(grad.contiguous(), x.contiguous(), [3, 3], [stride, stride], [1, 1],
                                              False, False, None).contiguous()


@_aten_avg_pool3x3_backward.register_fake
def _(grad: Tensor, x: Tensor, stride: int) -> Tensor:
    return x.new_empty(x.shape)


def _save_input(ctx, inputs, output) -> None:
    x, ctx.stride = inputs
    ctx.save_for_backward(x, *output[1:] if isinstance(output, tuple) else ())


def _max_backward(ctx, grad: Tensor, _indices_grad) -> tuple[Tensor, None]:
    x, indices = ctx.saved_tensors
    return _aten_max_pool3x3_backward(grad, x, indices, ctx.stride), None


def _avg_backward(ctx, grad: Tensor) -> tuple[Tensor, None]:
    (x,) = ctx.saved_tensors
    return _aten_avg_pool3x3_backward(grad, x, ctx.stride), None


_aten_max_pool3x3.register_autograd(_max_backward, setup_context=_save_input)
_aten_avg_pool3x3.register_autograd(_avg_backward, setup_context=_save_input)


def _form(x: Tensor, stride: int) -> str:
    """Which computation runs (see the module docstring): aten, separable, fused or opaque."""
    if (x.device.type != "cpu" or x.dim() != 4 or torch.jit.is_tracing() or torch.onnx.is_in_onnx_export()
            or torch.compiler.is_exporting()):
        return "aten"
    if torch.compiler.is_compiling():
        return "fused" if stride == 1 else "opaque"
    if x.is_contiguous() and not (torch.is_grad_enabled() and x.requires_grad):
        return "separable"
    return "aten"


class MaxPool3x3(nn.MaxPool2d):
    """nn.MaxPool2d(3, stride, padding=1), computed in the fastest form where it runs (module docstring)."""

    def __init__(self, stride: int):
        super().__init__(3, stride=stride, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        form = _form(x, self.stride)
        if form in ("separable", "fused"):
            return separable_max3x3(x, self.stride)
        if form == "opaque":
            return _aten_max_pool3x3(x, self.stride)[0]
        return super().forward(x)


class AvgPool3x3(nn.AvgPool2d):
    """nn.AvgPool2d(3, stride, padding=1, count_include_pad=False): the average over real pixels only, so a
    border pixel is not darkened by the zero padding; compiled on CPU in the fastest form (module docstring)."""

    def __init__(self, stride: int):
        super().__init__(3, stride=stride, padding=1, count_include_pad=False)

    def forward(self, x: Tensor) -> Tensor:
        form = _form(x, self.stride)
        if form == "fused":
            return separable_avg3x3(x, self.stride)
        if form == "opaque":
            return _aten_avg_pool3x3(x, self.stride)
        return super().forward(x)
