"""ENAS macro space: supernet paths and children compute the same function; architectures as JSON."""
import json
import random

import pytest
import torch

from facenar_runtime.errors import UserError
from facenar.space.cost import count_params
from facenar.space.macro import (ENAS_CANDIDATES, MacroArch, MacroSupernet, child_from_supernet, join_codes,
                                 macro_cost, needed_reductions, num_codes, pool_layers, random_codes,
                                 split_codes)

LAYERS = 6
SPACE = dict(channels=8, input_size=16)


def _random_codes(seed: int, layers: int = LAYERS) -> list[int]:
    rng = random.Random(seed)
    return join_codes([rng.randrange(len(ENAS_CANDIDATES)) for _ in range(layers)],
                      [[rng.randrange(2) for _ in range(k)] for k in range(layers)])


def _randomise(model):
    """Non-trivial BN statistics and affines, so a wrong copy cannot match by accident."""
    torch.manual_seed(1)
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and ("running_var" in name or name.endswith(".weight") and tensor.dim() == 1):
            tensor.uniform_(0.5, 1.5)
        elif tensor.is_floating_point() and ("running_mean" in name or name.endswith(".bias")):
            tensor.normal_(0, 0.1)


def test_layout_follows_enas():
    assert pool_layers(12) == [3, 7] and pool_layers(6) == [1, 3] and pool_layers(2) == []
    assert num_codes(12) == 12 + 66
    codes = _random_codes(0)
    ops, skips = split_codes(codes, LAYERS)
    assert [len(row) for row in skips] == list(range(LAYERS)) and join_codes(ops, skips) == codes
    drawn = random_codes(LAYERS, 200, torch.Generator().manual_seed(0))
    assert drawn == random_codes(LAYERS, 200, torch.Generator().manual_seed(0))
    splits = [split_codes(c, LAYERS) for c in drawn]
    assert {op for ops, _ in splits for op in ops} == set(range(len(ENAS_CANDIDATES)))
    density = sum(sum(map(sum, skips)) for _, skips in splits) / (200 * 15)
    assert 0.45 < density < 0.55
    # node 0 (stem) read only by layer 0 and a skip from layer 2: reduced at pool 1, not at pool 3
    skips = [[0] * k for k in range(LAYERS)]
    skips[2][0] = 1
    need = needed_reductions(skips, LAYERS)
    assert (1, 0) in need and (3, 0) not in need and (1, 2) in need and (3, 4) in need and (3, 2) not in need


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_child_equals_supernet(train, seed):
    torch.manual_seed(0)
    supernet = MacroSupernet(LAYERS, **SPACE)
    _randomise(supernet)
    supernet.train(train)
    codes = _random_codes(seed)
    child = child_from_supernet(supernet, supernet.make_arch(codes))
    assert child.training == train
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        expected = supernet(x, codes)
        got = child(x)
    assert expected.shape == (4, 10)
    assert torch.allclose(expected, got, atol=1e-5)
    other = codes[:]
    other[-1] = 1 - other[-1]  # one skip bit of the last layer
    with torch.no_grad():
        assert not torch.allclose(supernet(x, other), got, atol=1e-4)


def test_dense_skips_across_both_pools():
    supernet = MacroSupernet(LAYERS, **SPACE).eval()
    _randomise(supernet)
    codes = join_codes([5, 4, 3, 2, 1, 0], [[1] * k for k in range(LAYERS)])
    child = child_from_supernet(supernet, supernet.make_arch(codes)).eval()
    assert len(child.reduce) == 3 + 5  # nodes 0-2 at pool 1 and 0-4 at pool 3 are all read later
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.allclose(supernet(x, codes), child(x), atol=1e-5)


def test_child_owns_only_chosen_ops_and_inherits_weights():
    supernet = MacroSupernet(LAYERS, **SPACE)
    codes = join_codes([0, 1, 2, 3, 4, 5], [[0] * k for k in range(LAYERS)])
    child = child_from_supernet(supernet, supernet.make_arch(codes))
    assert count_params(child) < count_params(supernet) / 3
    assert count_params(child) == macro_cost(child.arch)["params"]
    assert len(child.reduce) == 2  # only the predecessor at each pool
    assert torch.equal(child.layers[2][3].weight, supernet.layers[2][2][3].weight)
    assert torch.equal(child.fc.weight, supernet.fc.weight)
    with torch.no_grad():
        child.fc.weight.zero_()
    assert supernet.fc.weight.abs().sum() > 0


def test_gradients_only_on_path_and_features_without_classifier():
    supernet = MacroSupernet(3, channels=8, num_classes=0, input_size=16)
    codes = join_codes([0, 1, 2], [[], [1], [0, 1]])
    out = supernet(torch.randn(2, 3, 16, 16), codes)
    assert out.shape == (2, 8)
    out.sum().backward()
    assert supernet.layers[1][1][0].weight.grad is not None
    assert supernet.layers[1][0][0].weight.grad is None
    assert supernet.skip_bn[0].weight.grad is not None


def test_cost_counts_ops_and_reductions():
    def cost(ops, dense):
        return macro_cost(MacroArch(ops, [[int(dense)] * k for k in range(LAYERS)], **SPACE))

    convs, pools = cost(["conv5x5"] * LAYERS, False), cost(["maxpool3x3"] * LAYERS, False)
    assert convs["params"] > pools["params"] and convs["macs"] > pools["macs"] > 0
    assert cost(["conv5x5"] * LAYERS, True)["params"] > convs["params"]  # the extra reductions


def test_bad_codes_and_mismatched_arch():
    supernet = MacroSupernet(LAYERS, **SPACE)
    with pytest.raises(ValueError, match="need 21 codes"):
        supernet(torch.randn(1, 3, 16, 16), [0] * 20)
    with pytest.raises(ValueError, match="op codes"):
        split_codes([6] + [0] * 20, LAYERS)
    with pytest.raises(ValueError, match="skip bits"):
        split_codes([0, 0, 2] + [0] * 18, LAYERS)
    with pytest.raises(UserError, match="does not match"):
        child_from_supernet(supernet, MacroArch(["conv3x3"] * 4, [[0] * k for k in range(4)], **SPACE))


def test_json_roundtrip(tmp_path):
    arch = MacroArch.from_codes(_random_codes(3), LAYERS, provenance={"source": "test"}, **SPACE)
    path = tmp_path / "arch.json"
    arch.save(path)
    data = json.loads(path.read_text())
    assert data["space"] == "enas_macro" and data["codes"] == arch.codes
    assert MacroArch.load(path) == arch
    del data["codes"]
    assert MacroArch.from_dict(data) == arch


@pytest.mark.parametrize("change,message", [
    ({"ops": "conv3x3"}, "'ops' must be a non-empty list"),
    ({"ops": ["conv3x3", "conv7x7"]}, "unknown macro operator"),
    ({"skips": [[], [1], [1]]}, r"skips\[2\] must be a list of 2 bits"),
    ({"skips": [[], [True], [0, 1]]}, r"skips\[1\]"),
    ({"skips": [[], [2], [0, 1]]}, r"skips\[1\]"),
    ({"skips": [[], [1]]}, "one row per layer"),
    ({"channels": 7}, "channels must be even"),
    ({"channels": "8"}, "channels: expected a number"), ({"channels": 10**9}, "channels: must be <= 4096"),
    ({"num_classes": 2.5}, "num_classes"),
    ({"codes": [0, 0, 1, 0, 1, 1]}, "'codes' disagree"),
    ({"space": "nar"}, "'space' must be"),
    ({"layers": 3}, "unknown macro architecture field"),
    ({"provenance": []}, "provenance"),
])
def test_bad_json_is_a_user_error(tmp_path, change, message):
    data = {"ops": ["conv3x3", "sepconv5x5", "avgpool3x3"], "skips": [[], [1], [0, 1]], "channels": 8}
    MacroArch.from_dict(data)
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({**data, **change}))
    with pytest.raises(UserError, match=message):
        MacroArch.load(path)


def test_missing_fields_and_broken_file(tmp_path):
    with pytest.raises(UserError, match="needs 'skips'"):
        MacroArch.from_dict({"ops": ["conv3x3"]})
    with pytest.raises(UserError, match="JSON object"):
        MacroArch.from_dict([1, 2])
    broken = tmp_path / "broken.json"
    broken.write_text("{")
    with pytest.raises(UserError, match="not valid JSON"):
        MacroArch.load(broken)


def test_child_equals_supernet_with_dropout_in_train_mode():
    supernet = MacroSupernet(LAYERS, dropout=0.5, **SPACE).train()
    codes = _random_codes(4)
    child = child_from_supernet(supernet, supernet.make_arch(codes))
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        torch.manual_seed(9)
        expected = supernet(x, codes)
        torch.manual_seed(9)
        assert torch.allclose(expected, child(x), atol=1e-5)
