"""ResNet-18 in the NAR search space: layout, slots, Table 4 costs (supernet == child: test_supernet.py)."""
import itertools
import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from facenar.space.cost import count_params, op_cost
from facenar.space.ops import PAPER_OPS
from facenar.space.arch import num_slots
from facenar.space.resnet import CONVENTIONS, ResNet, build_child, conv_sites, fixed_ops, resnet_cost

ARCHS = Path(__file__).resolve().parents[1] / "weights" / "archs"
# Table 4 (parameters, FLOPS) and how close facenar's counting ("torch" convention) must come:
# the absolute MACs sit 2.7-3.3% above the paper, the savings vs the baseline within 0.5 points.
PAPER = {"resnet18_baseline.json": (1.17e7, 1.76e9), "resnet18_8_paper.json": (None, 1.57e9),
         "resnet18_16_paper.json": (0.92e7, 1.41e9)}
MACS_TOLERANCE, SAVING_TOLERANCE, PARAMS_TOLERANCE = 0.035, 0.005, 0.01


def _arch(codes, granularity, input_size=32, width=0.125):
    ops = [PAPER_OPS[c] for c in codes]
    return SimpleNamespace(backbone="resnet18", ops=ops, width=width, input_size=input_size,
                           embedding_size=None, granularity=granularity)


@pytest.mark.parametrize("size,stem,first_kernel,pooled", [(32, "cifar", 3, False), (96, "imagenet", 7, True)])
def test_stems_and_shapes(size, stem, first_kernel, pooled):
    model = build_child(_arch([0] * 8, "block", size))
    assert model.stem == stem and model.conv1.kernel_size == (first_kernel, first_kernel)
    assert isinstance(model.maxpool, torch.nn.MaxPool2d) == pooled
    features = model(torch.randn(2, 3, size, size))
    assert features.shape == (2, 64) and (features >= 0).all()  # ReLU after the add, then average
    explicit = build_child(_arch([0] * 8, "block", 32), stem="imagenet")
    assert explicit.stem == "imagenet" and explicit.eval()(torch.randn(1, 3, 32, 32)).shape == (1, 64)


def test_torchvision_parameter_count_and_layout():
    assert resnet_cost([0] * 8, "block").params == 11_689_512  # torchvision resnet18, 1000 classes
    with torch.device("meta"):
        model = build_child(_arch([0] * 16, "conv", 224, 1.0))
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert shapes["conv1.weight"] == (64, 3, 7, 7)
    assert shapes["layer2.0.conv1.weight"] == (128, 64, 3, 3) and model.layer2[0].conv1.stride == (2, 2)
    assert shapes["layer4.0.downsample.0.weight"] == (512, 256, 1, 1)
    assert "layer1.0.downsample.0.weight" not in shapes and "fc.weight" not in shapes
    assert count_params(model) == 11_689_512 - 513_000


@pytest.mark.parametrize("granularity,slots", [("block", 8), ("conv", 16)])
def test_slot_counts(granularity, slots):
    sites = conv_sites("resnet18", granularity=granularity)
    assert num_slots("resnet18", granularity) == slots == len({s.slot for s in sites})
    assert [s.slot for s in sites] == sorted(s.slot for s in sites) and len(sites) == 16
    assert [(s.path, s.stride, s.in_size) for s in sites[4:6]] == [("layer2.0.conv1", 2, 56),
                                                                   ("layer2.0.conv2", 1, 28)]


@pytest.mark.parametrize("name", sorted(PAPER))
def test_table4_figures(name):
    arch = json.loads((ARCHS / name).read_text())
    assert (arch["backbone"], arch["input_size"], arch["embedding_size"]) == ("resnet18", 224, 512)
    assert arch["ops"] == [arch["candidates"][c] for c in arch["codes"]]
    cost = resnet_cost(arch["codes"], arch["granularity"])
    base = resnet_cost([0] * len(arch["codes"]), arch["granularity"])
    assert (cost.params, cost.macs) == (arch["provenance"]["params"], arch["provenance"]["macs"])
    params, flops = PAPER[name]
    assert abs(cost.macs / flops - 1) < MACS_TOLERANCE
    assert abs(cost.macs / base.macs - flops / PAPER["resnet18_baseline.json"][1]) < SAVING_TOLERANCE
    if params:
        assert abs(cost.params / params - 1) < PARAMS_TOLERANCE


def test_conventions_differ_only_by_their_parts():
    full = resnet_cost([0] * 8).macs
    assert full == 1_814_073_344  # the widely quoted 1.82 GMACs of torchvision's resnet18 at 224
    assert resnet_cost([0] * 8, convention="no_fc").macs == full - 512 * 1000
    assert resnet_cost([0] * 8, convention="no_stem").macs == full - 64 * 3 * 49 * 112 * 112
    assert resnet_cost([0] * 8, convention="no_downsample").macs == full - 3 * 6_422_528
    assert resnet_cost([0] * 8, convention="with_pooling").macs == full + 64 * 56 * 56 * 9 + 512 * 49
    sites = conv_sites("resnet18")
    blocks = sum(op_cost("conv3x3", s.cin, s.cout, s.stride, s.in_size)[1] for s in sites)
    assert resnet_cost([0] * 8, convention="blocks_only").macs == blocks
    with pytest.raises(ValueError, match="convention"):
        resnet_cost([0] * 8, convention="thop")
    with pytest.raises(ValueError, match="16 slots"):
        resnet_cost([0] * 8, "conv")
    with pytest.raises(ValueError, match="codes must be in 0..3"):
        resnet_cost([0] * 7 + [-1])
    assert set(CONVENTIONS) >= {"torch", "no_fc"}


def test_resnet18_16_reconstruction_is_the_documented_set():
    """Of the 4^6 completions of [1,0,0,2,0,0,0,0,1,0,...], exactly one replaced 512->512 conv
    (slot 13, 14 or 15, any op) lands within 1% of 0.92e7 params and 0.5 points of the 20% saving."""
    sites = conv_sites("resnet18", granularity="conv")
    delta = {}
    for site, code in itertools.product(sites, range(4)):
        base, new = (op_cost(op, site.cin, site.cout, site.stride, site.in_size)
                     for op in ("conv3x3", PAPER_OPS[code]))
        delta[site.slot, code] = (new[0] - base[0], new[1] - base[1])
    base = resnet_cost([0] * 16, "conv")
    found = []
    for tail in itertools.product(range(4), repeat=6):
        codes = [1, 0, 0, 2, 0, 0, 0, 0, 1, 0, *tail]
        params = base.params + sum(delta[slot, c][0] for slot, c in enumerate(codes))
        macs = base.macs + sum(delta[slot, c][1] for slot, c in enumerate(codes))
        saving_error = abs(macs / base.macs - 1.41 / 1.76)
        if abs(params / 0.92e7 - 1) < PARAMS_TOLERANCE and saving_error < SAVING_TOLERANCE:
            found.append(tail)
    expected = [tuple(code if i == slot else 0 for i in range(10, 16))
                for slot in (13, 14, 15) for code in (1, 2, 3)]
    assert sorted(found) == sorted(expected)
    chosen = json.loads((ARCHS / "resnet18_16_paper.json").read_text())["codes"]
    assert tuple(chosen[10:]) in found


def test_embedding_size_must_match_feature():
    with pytest.raises(ValueError, match="embedding_size must be 64"):
        ResNet("resnet18", fixed_ops(["conv3x3"] * 8), width=0.125, input_size=32, embedding_size=128)
