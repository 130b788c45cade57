"""Arch JSON round trip, strict validation (UserError naming the file; CLI exit 2), shipped files."""
import json
from pathlib import Path

import pytest

from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError
from facenar import arch as arch_cli
from facenar.space.arch import Arch, family, num_slots

ARCHS = Path(__file__).resolve().parents[1] / "weights" / "archs"
OURS2 = [0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 0, 2, 2, 1, 0, 1, 0]


def test_roundtrip_and_properties(tmp_path):
    arch = Arch("iresnet50", OURS2, provenance={"reward": 0.5})
    assert arch.num_slots == 24 and arch.ops[2] == "max3x3" and arch.ops[6] == "dwconv3x3"
    arch.save(tmp_path / "a.json")
    loaded = Arch.load(tmp_path / "a.json")
    assert loaded == arch
    data = json.loads((tmp_path / "a.json").read_text())
    assert data["ops"][2] == "max3x3" and data["codes"] == OURS2
    assert Arch.from_dict({"backbone": "iresnet50", "ops": arch.ops}) == Arch("iresnet50", OURS2)


def test_baseline_and_granularity():
    base = Arch.baseline("iresnet50", granularity="conv")
    assert base.num_slots == 48 and set(base.ops) == {"conv3x3"}
    assert Arch.baseline("iresnet18", candidates=["max3x3", "conv3x3"]).codes == [1] * 8
    assert num_slots("iresnet100") == 49


def test_shipped_archs_load():
    base = Arch.load(ARCHS / "iresnet50_baseline.json")
    ours2 = Arch.load(ARCHS / "iresnet50_nar_pretrain_paper.json")
    ours1 = Arch.load(ARCHS / "iresnet50_nar_paper.json")
    assert base.codes == [0] * 24 and ours2.codes == OURS2
    assert ours1.codes[:10] == [0, 1, 2, 0, 0, 0, 0, 0, 1, 0]
    assert sum(c != 0 for c in ours1.codes) == 5  # "five operators are replaced"
    assert sum(c != 0 for c in ours2.codes) == 8  # "there are eight"
    assert "reconstructed" in ours1.provenance
    assert ours2.provenance["reported_table2_faceemore_v2"]["lfw"] == 99.75


def test_resnet_backbones(tmp_path):
    assert [family(b) for b in ("iresnet18", "iresnet100", "resnet18", "resnet34")] == ["iresnet"] * 2 + ["resnet"] * 2
    assert [num_slots("resnet18"), num_slots("resnet18", "conv"), num_slots("resnet34")] == [8, 16, 16]
    base = Arch.baseline("resnet18", width=0.125, input_size=32, embedding_size=64, granularity="conv")
    assert base.num_slots == 16 and set(base.ops) == {"conv3x3"}
    assert Arch("resnet18", [0] * 8, width=0.25).embedding_size == 128  # default: the pooled feature size
    assert Arch("iresnet18", [0] * 8, width=0.25).embedding_size == 512
    arch = base.with_codes([1, 0, 0, 2] * 4, {"note": "x"})
    arch.save(tmp_path / "r.json")
    assert Arch.load(tmp_path / "r.json") == arch
    assert json.loads((tmp_path / "r.json").read_text())["embedding_size"] == 64
    for name, codes in (("baseline", [0] * 8), ("8_paper", [1] + [0] * 7),
                        ("16_paper", [1, 0, 0, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 2])):
        shipped = Arch.load(ARCHS / f"resnet18_{name}.json")
        assert (shipped.backbone, shipped.codes, shipped.input_size, shipped.embedding_size) == \
            ("resnet18", codes, 224, 512)


BAD = [
    ({"backbone": "resnet50", "codes": [0] * 24}, "unknown backbone"),
    ({"backbone": "iresnet50", "codes": [0] * 23}, "24 slots, got 23"),
    ({"backbone": "iresnet50", "codes": [4] + [0] * 23}, "0..3"),
    ({"backbone": "iresnet50", "codes": [True] + [0] * 23}, "0..3"),
    ({"backbone": "iresnet50", "ops": ["conv7x7"] * 24}, "not among the candidates"),
    ({"backbone": "iresnet50", "codes": [0] * 24, "candidates": ["conv9x9"]}, "unknown operator"),
    ({"backbone": "iresnet50", "codes": [0] * 24, "ops": ["max3x3"] * 24}, "disagree"),
    ({"backbone": "iresnet50", "codes": [0] * 24, "colour": 1}, "unknown architecture field"),
    ({"backbone": "iresnet50", "codes": [0] * 24, "granularity": "layer"}, "granularity"),
    ({"backbone": "iresnet50", "codes": [0] * 24, "width": -1}, "width"),
    ({"backbone": "iresnet50"}, "needs 'ops' or 'codes'"),
    ({"backbone": "resnet18", "codes": [0] * 8, "granularity": "conv"}, "16 slots, got 8"),
    ({"backbone": "resnet18", "codes": [0] * 8, "width": 0.125, "embedding_size": 512},
     "resnet18 at width 0.125 ends in its 64-long pooled feature.*embedding_size must be 64, got 512"),
    ([1, 2], "JSON object"),
]


@pytest.mark.parametrize("data,message", BAD)
def test_invalid_files_name_the_file(tmp_path, data, message):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    with pytest.raises(UserError, match=message) as info:
        Arch.load(path)
    assert str(path) in str(info.value)


def test_unreadable_files(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(UserError, match="not valid JSON"):
        Arch.load(path)
    with pytest.raises(UserError, match="does not exist"):
        Arch.load(tmp_path / "missing.json")


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as info:
        run_cli(arch_cli.main, argv)
    return info.value.code, capsys.readouterr()


def test_cli_errors_exit_2(tmp_path, capsys):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps({"backbone": "iresnet50", "codes": [9] * 24}))
    code, out = _exit_code(["stats", str(path)], capsys)
    assert code == 2 and str(path) in out.err and "Traceback" not in out.err
    code, out = _exit_code(["stats", "--codes", "0,1,x"], capsys)
    assert code == 2 and "--codes" in out.err
    code, out = _exit_code(["stats", "--codes", "0,1"], capsys)
    assert code == 2 and "24 slots" in out.err
