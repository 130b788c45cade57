"""The operator registry: every registered operator fits every slot shape of each space that builds it."""
import pytest
import torch
from torch import nn

from facenar.space.ops import OPERATORS, PAPER_OPS, build_enas_op, build_op, space_ops

OPS = space_ops("nar")


def test_paper_ops_are_the_first_four_codes():
    assert PAPER_OPS == ("conv3x3", "dwconv3x3", "max3x3", "avg3x3")
    assert set(PAPER_OPS) | {"conv5x5", "dwconv5x5"} == set(OPS)


def test_one_registry_serves_both_spaces():
    from facenar.space.macro import ENAS_CANDIDATES

    assert set(space_ops("enas")) == set(ENAS_CANDIDATES)
    assert set(space_ops("nar")) | set(space_ops("enas")) == set(OPERATORS.names())
    assert all(OPERATORS.summaries()[name] for name in OPERATORS)


@pytest.mark.parametrize("name", space_ops("enas"))
def test_enas_branch_keeps_the_shape(name):
    branch = build_enas_op(name, 6)
    assert branch(torch.randn(2, 6, 8, 8)).shape == (2, 6, 8, 8)
    assert isinstance(branch[0], nn.Conv2d) and branch[0].kernel_size == (1, 1)  # ENAS's 1x1 head


@pytest.mark.parametrize("name", sorted(OPS))
@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("cin,cout", [(8, 8), (8, 16), (16, 8)])
def test_op_output_shape(name, stride, cin, cout):
    op = build_op(name, cin, cout, stride)
    for size in (7, 8):  # odd sizes: ceil(size / stride) like a padded 3x3 conv
        out = op(torch.randn(2, cin, size, size))
        assert out.shape == (2, cout, (size - 1) // stride + 1, (size - 1) // stride + 1)


def test_op_structure_matches_design():
    dw = build_op("dwconv3x3", 8, 16, 2)
    assert dw[0].groups == 8 and dw[0].stride == (2, 2) and dw[1].kernel_size == (1, 1)
    assert dw[1].in_channels == 8 and dw[1].out_channels == 16
    pool = build_op("max3x3", 8, 16, 2)
    assert isinstance(pool[0], nn.MaxPool2d) and pool[1].kernel_size == (1, 1)
    assert build_op("conv5x5", 8, 8, 1).padding == (2, 2)
    assert all(m.bias is None for n in OPS for m in build_op(n, 8, 8, 1).modules() if isinstance(m, nn.Conv2d))


def test_avg_pool_ignores_padding():
    op = build_op("avg3x3", 1, 1, 1)
    nn.init.ones_(op[1].weight)
    out = op(torch.ones(1, 1, 4, 4))
    assert torch.allclose(out, torch.ones_like(out))  # corners average only real pixels


def test_unknown_op_and_stride_rejected():
    with pytest.raises(ValueError, match="unknown operator"):
        build_op("sep7x7", 8, 8, 1)
    with pytest.raises(ValueError, match="stride"):
        build_op("conv3x3", 8, 8, 3)
    with pytest.raises(ValueError, match="unknown operator"):
        build_op("sepconv3x3", 8, 8, 1)  # an ENAS branch, not a NAR operator
    with pytest.raises(ValueError, match="unknown macro operator"):
        build_enas_op("max3x3", 8)


@pytest.mark.parametrize("stride", [1, 2])
def test_max_pool_without_autograd_gives_max_pool2d_values_exactly(stride):
    from facenar.space.ops import MaxPool3x3

    pool = MaxPool3x3(stride)
    x = torch.randn(3, 5, 9, 8)
    x[0, 0, 0, 0], x[1, 2, 4, 4], x[2, 1, 3, :] = float("nan"), float("inf"), -3.0  # NaN, inf, ties
    expected = nn.functional.max_pool2d(x, 3, stride, 1)
    with torch.no_grad():
        fast = pool(x)
    assert fast.shape == expected.shape and torch.equal(fast.isnan(), expected.isnan())
    assert torch.equal(fast.nan_to_num(), expected.nan_to_num())
    grad_input = x.clone().requires_grad_()  # with autograd: max_pool2d itself (its gradient's tie rule)
    pool(grad_input).nan_to_num().sum().backward()
    reference = x.clone().requires_grad_()
    nn.functional.max_pool2d(reference, 3, stride, 1).nan_to_num().sum().backward()
    assert torch.equal(grad_input.grad, reference.grad)
