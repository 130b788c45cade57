"""Our ONNX export loaded by insightface.model_zoo.get_model gives our embeddings (peer venv)."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from data_tools.emore import EmoreDataset
from facenar.data import decode_image
from facenar.export import export_onnx
from tests.peers import run_peer
from tests.test_export import tiny_checkpoint

PEER_SCRIPT = r"""
import sys, cv2, numpy as np
from insightface.model_zoo import get_model
from insightface.model_zoo.arcface_onnx import ArcFaceONNX
model = get_model(sys.argv[1])
assert isinstance(model, ArcFaceONNX), type(model)
assert (model.input_mean, model.input_std, model.input_size) == (127.5, 127.5, (112, 112)), vars(model)
model.prepare(ctx_id=-1)
images = [cv2.imread(path) for path in sys.argv[3:]]  # BGR, as insightface's pipeline hands them over
np.save(sys.argv[2], model.get_feat(images))
"""


@pytest.mark.peer
def test_insightface_model_zoo_loads_our_onnx(tiny_demo, tmp_path):
    ckpt, model = tiny_checkpoint(tmp_path / "model.pt", input_size=112)
    onnx_path = tmp_path / "model.onnx"
    export_onnx(ckpt, onnx_path)

    records = EmoreDataset(tiny_demo)
    rgb = [decode_image(records.read_image(key)) for key in (1, 2, 30, 31)]  # aligned 112x112 demo faces
    paths = []
    for i, image in enumerate(rgb):
        paths.append(str(tmp_path / f"face{i}.png"))
        cv2.imwrite(paths[-1], cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    run_peer("insightface", PEER_SCRIPT, str(onnx_path), str(tmp_path / "theirs.npy"), *paths)
    theirs = np.load(tmp_path / "theirs.npy")

    batch = torch.from_numpy((np.stack(rgb).astype(np.float32) - 127.5) / 127.5).permute(0, 3, 1, 2)
    with torch.no_grad():
        ours = model(batch).numpy()
    cosine = (ours * theirs).sum(1) / np.linalg.norm(ours, axis=1) / np.linalg.norm(theirs, axis=1)
    assert theirs.shape == ours.shape == (4, 16)
    assert cosine.min() > 0.9999 and np.abs(ours - theirs).max() < 1e-3 * np.abs(ours).max()
