"""facenar.export: ONNX with a dynamic batch that onnxruntime runs like PyTorch."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch

from facenar_runtime.errors import UserError
from facenar.space.arch import Arch
from facenar.space.iresnet import build_child
from facenar.checkpoint import save_model
from facenar.export import INPUT_NAME, graph_opset, main


def tiny_checkpoint(path: Path, input_size: int = 32, codes: list[int] | None = None) -> tuple[Path, torch.nn.Module]:
    """A small random network whose BatchNorm statistics are not the identity (as after training)."""
    arch = Arch.baseline("iresnet18", width=0.0625, input_size=input_size, embedding_size=16)
    if codes:
        arch = arch.with_codes(codes)
    torch.manual_seed(0)
    model = build_child(arch)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.2, 0.2)
            module.running_var.uniform_(0.5, 1.5)
    save_model(path, arch, model.eval())
    return path, model


def test_export_matches_pytorch_for_any_batch(tmp_path, capsys):
    ckpt, model = tiny_checkpoint(tmp_path / "model.pt", codes=[0, 1, 2, 3, 0, 1, 2, 3])
    out = tmp_path / "model.onnx"
    assert main(["--checkpoint", str(ckpt), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    diff = float(printed.split("max abs difference ")[1].split()[0])
    assert diff <= 1e-4 and "N x 3 x 32 x 32" in printed and "insightface" in printed  # 32 < 112: noted

    assert graph_opset(out) == 17
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].name == INPUT_NAME and session.get_inputs()[0].shape[1:] == [3, 32, 32]
    for batch in (1, 5):
        images = np.random.default_rng(batch).uniform(-1, 1, (batch, 3, 32, 32)).astype(np.float32)
        got = session.run(None, {INPUT_NAME: images})[0]
        with torch.no_grad():
            want = model(torch.from_numpy(images)).numpy()
        assert got.shape == (batch, 16) and np.abs(got - want).max() < 1e-4


def test_existing_output_and_bad_checkpoint_are_user_errors(tmp_path):
    ckpt, _ = tiny_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "model.onnx"
    out.write_bytes(b"keep me")
    with pytest.raises(UserError, match="--force"):
        main(["--checkpoint", str(ckpt), "--out", str(out)])
    assert out.read_bytes() == b"keep me"
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="junk.pt"):
        main(["--checkpoint", str(tmp_path / "junk.pt"), "--out", str(tmp_path / "other.onnx")])
    assert not (tmp_path / "other.onnx").exists()
    assert main(["--checkpoint", str(ckpt), "--out", str(out), "--force"]) == 0
    assert out.read_bytes() != b"keep me"
