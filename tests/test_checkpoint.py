"""Checkpoints carry their architecture and refuse mismatched weights with a clear error."""
import pytest
import torch

from facenar_runtime.errors import UserError
from facenar.space.arch import Arch
from facenar.space.iresnet import build_child
from facenar.checkpoint import load_model, save_model
from facenar.checkpoint import save_checkpoint

ARCH = Arch("iresnet18", [0, 1, 2, 3, 0, 1, 2, 3], width=0.125, input_size=32, embedding_size=16,
            provenance={"run": "test"})


def test_roundtrip_same_embeddings(tmp_path):
    torch.manual_seed(0)
    model = build_child(ARCH)
    model(torch.randn(8, 3, 32, 32))  # move BN running stats off their defaults
    model.eval()
    save_model(tmp_path / "m.pt", ARCH, torch.nn.DataParallel(model), extra={"step": 7})
    loaded, arch, payload = load_model(tmp_path / "m.pt")
    assert arch == ARCH and payload["step"] == 7 and not loaded.training
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert torch.load(tmp_path / "m.pt", weights_only=True)["arch"]["codes"] == ARCH.codes


def test_reserved_extra_keys(tmp_path):
    with pytest.raises(ValueError, match="reserved"):
        save_model(tmp_path / "m.pt", ARCH, build_child(ARCH), extra={"arch": {}})


def test_mismatched_state_rejected(tmp_path):
    other = Arch("iresnet18", [0] * 8, width=0.125, input_size=32, embedding_size=16)
    save_checkpoint(tmp_path / "m.pt", {"format": "facenar-checkpoint-v1", "arch": ARCH.to_dict(),
                                        "model": build_child(other).state_dict()})
    with pytest.raises(UserError, match="do not match"):
        load_model(tmp_path / "m.pt")


def test_bad_arch_and_foreign_files(tmp_path):
    save_checkpoint(tmp_path / "a.pt", {"format": "facenar-checkpoint-v1",
                                        "arch": {"backbone": "iresnet18", "codes": [0]}, "model": {}})
    with pytest.raises(UserError, match="stored architecture is invalid"):
        load_model(tmp_path / "a.pt")
    save_checkpoint(tmp_path / "b.pt", {"state_dict": {}})
    with pytest.raises(UserError, match="not a facenar-checkpoint-v1"):
        load_model(tmp_path / "b.pt")
    (tmp_path / "c.pt").write_bytes(b"garbage")
    with pytest.raises(UserError, match="c.pt"):
        load_model(tmp_path / "c.pt")
