"""Build an insightface verification .bin from an image folder and an LFW-style pairs.txt.

pairs.txt: an optional header line (`folds pairs_per_fold`, as in the official LFW list), then
`name i j` (same person) or `name1 i name2 j` (different people); image k of `name` is
`DIR/name/name_%04d.EXT`. Files are copied as encoded bytes, so align them first
(data_tools.align) if they are raw photos.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Sequence

import cv2
import numpy as np

from data_tools.binfile import save_bin
from facenar_runtime.cli import progress, run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import check_outputs
from facenar_runtime.textinput import MiB, read_text

Pair = tuple[str, int, str, int]


def read_pairs(pairs_path: str | os.PathLike) -> list[tuple[Pair, bool]]:
    """Parse pairs.txt into ((name1, i, name2, j), issame) in file order."""
    lines = read_text(pairs_path, "pairs file", max_bytes=64 * MiB, max_line=4096).splitlines()
    pairs = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields:
            continue
        try:
            if len(fields) == 3:
                pairs.append(((fields[0], int(fields[1]), fields[0], int(fields[2])), True))
                continue
            if len(fields) == 4:
                pairs.append(((fields[0], int(fields[1]), fields[2], int(fields[3])), False))
                continue
            if len(fields) == 2 and number == 1 and all(field.isdigit() for field in fields):
                continue  # the LFW header: folds, pairs per fold
        except ValueError:
            pass
        raise UserError(
            f"{pairs_path}:{number}: expected 'name i j' or 'name1 i name2 j', got {line.strip()!r}"
        )
    if not pairs:
        raise UserError(f"{pairs_path} lists no pairs")
    return pairs


def _image_bytes(path: Path, warned: set) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"missing image {path} (listed in the pairs file)") from None
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f"{path} is not a decodable image")
    if image.shape[:2] != (112, 112) and image.shape[:2] not in warned:
        warned.add(image.shape[:2])
        print(
            f"warning: {path} is {image.shape[1]}x{image.shape[0]}, not 112x112; "
            "verification expects aligned crops (see data_tools.align)",
            file=sys.stderr,
        )
    return data


def make_bin(images_dir: str | os.PathLike, pairs_path: str | os.PathLike, out: str | os.PathLike,
             ext: str = "jpg", force: bool = False) -> int:
    """Write `out` (.bin) for every pair in pairs.txt; returns the number of pairs."""
    check_outputs(force, files={"--out": out}, inputs={"--images": images_dir, "--pairs": pairs_path})
    root = Path(images_dir)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    pairs = read_pairs(pairs_path)
    cache: dict[tuple[str, int], bytes] = {}
    warned: set = set()
    images, issame = [], []
    for (name1, i, name2, j), same in progress(pairs, total=len(pairs), desc="pairs"):
        for name, k in ((name1, i), (name2, j)):
            if (name, k) not in cache:
                cache[(name, k)] = _image_bytes(root / name / f"{name}_{k:04d}.{ext}", warned)
            images.append(cache[(name, k)])
        issame.append(same)
    save_bin(out, images, issame)
    return len(pairs)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_tools.make_bin", description=__doc__.splitlines()[0])
    parser.add_argument("--images", required=True, help="folder with NAME/NAME_0001.EXT images (aligned 112x112)")
    parser.add_argument("--pairs", required=True, help="LFW-style pairs.txt")
    parser.add_argument("--out", required=True, help="output .bin file")
    parser.add_argument("--ext", default="jpg", help="image file extension (default jpg)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing output")
    args = parser.parse_args(argv)
    count = make_bin(args.images, args.pairs, args.out, ext=args.ext.lstrip("."), force=args.force)
    print(f"wrote {args.out}: {count} pairs")


if __name__ == "__main__":
    run_cli(main)
