"""Supernet paths and children cut from it compute the same function with the same weights."""
import copy

import pytest
import torch

from facenar_runtime.errors import UserError
from facenar.space.arch import Arch
from facenar.space.iresnet import IResNet
from facenar.space.networks import build_child
from facenar.space.resnet import ResNet
from facenar.space.supernet import Supernet, child_from_supernet

SPACE = dict(width=0.125, input_size=32, embedding_size=16)
SPACES = {"iresnet18": SPACE, "resnet18": dict(width=0.125, input_size=32, embedding_size=64)}


def _randomise(model):
    """Non-trivial BN statistics/affines, so a wrong copy cannot match by accident."""
    torch.manual_seed(1)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and ("running_var" in name or name.endswith("bn1.weight")):
            tensor.uniform_(0.5, 1.5)
        elif tensor.is_floating_point() and ("running_mean" in name or name.endswith(".bias")):
            tensor.normal_(0, 0.1)


@pytest.mark.parametrize("granularity,codes", [("block", [1, 2, 3, 0, 1, 2, 3, 0]),
                                               ("conv", [0, 1, 2, 3] * 4)])
@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("backbone", sorted(SPACES))
def test_child_equals_supernet(backbone, granularity, codes, train):
    torch.manual_seed(0)
    space = SPACES[backbone]
    supernet = Supernet(backbone, granularity=granularity, **space)
    _randomise(supernet)
    supernet.train(train)
    child = child_from_supernet(supernet, Arch.baseline(backbone, granularity=granularity, **space).with_codes(codes))
    assert type(child) is {"iresnet18": IResNet, "resnet18": ResNet}[backbone]
    assert child.training == train
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        expected = supernet(x, codes)
        got = child(x)
    assert torch.allclose(expected, got, atol=1e-5)
    other = [(c + 1) % 4 for c in codes]
    with torch.no_grad():
        assert not torch.allclose(supernet(x, other), got, atol=1e-3)


def test_child_inherits_weights_and_owns_them():
    supernet = Supernet("iresnet18", **SPACE)
    codes = [0, 1, 2, 3, 0, 0, 0, 0]
    child = child_from_supernet(supernet, Arch.baseline("iresnet18", **SPACE).with_codes(codes))
    assert torch.equal(child.layer1[1].conv1[0].weight, supernet.layer1[1].conv1.candidates[1][0].weight)
    assert torch.equal(child.layer2[0].conv2[1].weight, supernet.layer2[0].conv2.candidates[2][1].weight)
    assert torch.equal(child.fc.weight, supernet.fc.weight)
    with torch.no_grad():
        child.fc.weight.zero_()
    assert supernet.fc.weight.abs().sum() > 0


def test_candidate_order_may_differ():
    supernet = Supernet("iresnet18", **SPACE)
    arch = Arch("iresnet18", [1] * 8, candidates=["max3x3", "conv3x3"], **SPACE)
    child = child_from_supernet(supernet.eval(), arch).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(child(x), supernet(x, [0] * 8), atol=1e-5)


def test_shared_modules_and_gradients_only_on_path():
    supernet = Supernet("iresnet18", **SPACE)
    assert supernet.num_slots == 8 and supernet.num_ops == 4
    assert len(supernet.layer1[0].conv1.candidates) == 4
    supernet(torch.randn(2, 3, 32, 32), [1] * 8).sum().backward()
    assert supernet.layer1[0].conv1.candidates[1][0].weight.grad is not None
    assert supernet.layer1[0].conv1.candidates[0].weight.grad is None
    assert supernet.layer1[0].bn2.weight.grad is not None


def test_bad_codes_and_mismatched_arch():
    supernet = Supernet("iresnet18", **SPACE)
    with pytest.raises(ValueError, match="expected 8 codes"):
        supernet(torch.randn(1, 3, 32, 32), [0] * 7)
    with pytest.raises(ValueError, match="outside"):
        supernet.select([4] + [0] * 7)
    with pytest.raises(UserError, match="does not match"):
        child_from_supernet(supernet, Arch.baseline("iresnet18"))
    with pytest.raises(UserError, match="not in the supernet"):
        child_from_supernet(supernet, Arch("iresnet18", [0] * 8, candidates=["conv5x5"], **SPACE))


def test_resnet_supernet_is_the_resnet_skeleton():
    supernet = Supernet("resnet18", width=0.125, input_size=32, granularity="conv")  # embedding: the feature size
    assert isinstance(supernet, Supernet) and isinstance(supernet, ResNet) and supernet.stem == "cifar"
    assert supernet.num_slots == 16 and supernet.embedding_size == 64
    child = build_child(Arch.baseline("resnet18", width=0.125, input_size=32, granularity="conv"))
    keys = {k.replace(".candidates.0", "") for k in supernet.state_dict() if ".candidates." not in k
            or ".candidates.0." in k}
    assert keys == set(child.state_dict())
    copied = copy.deepcopy(supernet)  # __new__ picks the family only when called as Supernet(...)
    assert type(copied) is type(supernet)
    assert Supernet("resnet18", width=0.125, input_size=96).stem == "imagenet"
    with pytest.raises(UserError, match="embedding_size must be 64"):
        Supernet("resnet18", width=0.125, input_size=32, embedding_size=16)
    assert supernet.eval()(torch.randn(2, 3, 32, 32), [3] * 16).shape == (2, 64)
