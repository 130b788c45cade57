"""Tiny synthetic JPEG datasets for the data tests (distinct, decodable, deterministic)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from data_tools.emore import write_emore, write_property


def jpeg(seed: int, size: tuple[int, int] = (112, 112)) -> bytes:
    """A smooth random colour image encoded as JPEG (RGB content, stored the cv2/BGR way)."""
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
    image = cv2.resize(small, size[::-1], interpolation=cv2.INTER_LINEAR)
    ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
    assert ok
    return data.tobytes()


def jpeg_identities(counts: list[int], size: tuple[int, int] = (112, 112)) -> list[list[bytes]]:
    return [[jpeg(1000 * i + j, size) for j in range(n)] for i, n in enumerate(counts)]


def write_jpeg_emore(folder: Path, counts: list[int], size: tuple[int, int] = (112, 112)) -> Path:
    write_emore(folder, jpeg_identities(counts, size))
    write_property(folder, len(counts), size)
    return folder
