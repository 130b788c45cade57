"""The iresnet skeleton: insightface layout, slot counts, sizes and width scaling."""
import pytest
import torch

from facenar.space.arch import Arch, num_slots
from facenar.space.iresnet import block_specs, build_child, conv_sites, scale_channels


@pytest.mark.parametrize("backbone,blocks", [("iresnet18", 8), ("iresnet34", 16), ("iresnet50", 24),
                                             ("iresnet100", 49)])
def test_slot_counts(backbone, blocks):
    assert num_slots(backbone, "block") == blocks
    assert num_slots(backbone, "conv") == 2 * blocks
    assert len(block_specs(backbone)) == blocks
    sites = conv_sites(backbone, granularity="conv")
    assert [s.slot for s in sites] == list(range(2 * blocks))
    assert [s.slot for s in conv_sites(backbone)] == [i // 2 for i in range(2 * blocks)]


def test_r50_layout_matches_insightface():
    specs = block_specs("iresnet50")
    firsts = [s for s in specs if s.index == 0]
    assert [(s.cin, s.cout, s.stride, s.in_size, s.out_size) for s in firsts] == [
        (64, 64, 2, 112, 56), (64, 128, 2, 56, 28), (128, 256, 2, 28, 14), (256, 512, 2, 14, 7)]
    with torch.device("meta"):
        model = build_child(Arch.baseline("iresnet50"))
    keys = model.state_dict()
    # insightface arcface_torch names and shapes
    assert keys["conv1.weight"].shape == (64, 3, 3, 3)
    assert keys["layer1.0.conv2.weight"].shape == (64, 64, 3, 3)
    assert keys["layer1.0.downsample.0.weight"].shape == (64, 64, 1, 1)
    assert "layer1.1.downsample.0.weight" not in keys
    assert keys["fc.weight"].shape == (512, 512 * 7 * 7)
    assert keys["features.weight"].shape == (512,)
    assert model.bn1.eps == 1e-5 and model.features.eps == 1e-5
    assert not model.features.weight.requires_grad
    assert sum(p.numel() for p in model.parameters()) == 43_590_848


@pytest.mark.parametrize("size,final", [(112, 7), (64, 4), (56, 4), (32, 2)])
def test_input_size_sets_fc(size, final):
    assert block_specs("iresnet18", input_size=size)[-1].out_size == final
    arch = Arch.baseline("iresnet18", width=0.125, input_size=size, embedding_size=32)
    model = build_child(arch).eval()
    assert model.fc.in_features == 64 * final * final
    assert model(torch.randn(2, 3, size, size)).shape == (2, 32)


def test_width_scaling_rounds_to_eight():
    assert [scale_channels(c, 0.25) for c in (64, 128, 256, 512)] == [16, 32, 64, 128]
    assert [scale_channels(c, 0.1) for c in (64, 128, 256, 512)] == [8, 16, 24, 48]
    assert scale_channels(64, 1.0) == 64


def test_child_uses_chosen_ops_and_trains():
    torch.manual_seed(0)
    arch = Arch("iresnet18", [0, 1, 2, 3, 0, 1, 2, 3], width=0.125, input_size=32, embedding_size=16)
    model = build_child(arch)
    assert isinstance(model.layer1[1].conv1, torch.nn.Sequential)  # dwconv
    assert isinstance(model.layer2[0].conv2[0], torch.nn.MaxPool2d)
    out = model(torch.randn(4, 3, 32, 32))
    out.square().mean().backward()
    assert model.conv1.weight.grad is not None and torch.isfinite(out).all()


def test_conv_granularity_child():
    codes = [0] * 16
    codes[1] = 1  # second conv of block 0 only
    model = build_child(Arch("iresnet18", codes, granularity="conv", width=0.125, input_size=32))
    assert isinstance(model.layer1[0].conv1, torch.nn.Conv2d)
    assert isinstance(model.layer1[0].conv2, torch.nn.Sequential)
