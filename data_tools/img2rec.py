"""python -m data_tools.img2rec: a folder per identity of aligned images -> emore layout.

Identities are the sub-folders of --images in sorted name order (label i = i-th folder); images
within a folder in sorted file-name order. File bytes are copied verbatim (no re-encoding), so
the images keep their exact quality; `property` takes its size from the first image.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

import numpy as np

from facenar_runtime.atomic import atomic_path
from facenar_runtime.cli import progress, run_cli
from facenar_runtime.errors import UserError
from data_tools.emore import write_emore, write_property
from facenar_runtime.outputs import check_outputs

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


def list_identities(images_dir: Path) -> list[tuple[str, list[Path]]]:
    """(folder name, image files) for every identity folder that holds images, sorted by name."""
    if not images_dir.is_dir():
        raise UserError(f"--images {images_dir} is not a folder")
    found = []
    for folder in sorted(p for p in images_dir.iterdir() if p.is_dir()):
        files = sorted(f for f in folder.iterdir() if f.is_file() and f.suffix.lower() in IMAGE_SUFFIXES)
        if files:
            found.append((folder.name, files))
    if not found:
        raise UserError(f"{images_dir}: no identity folders with images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                        f"expected {images_dir}/<identity>/<image>")
    return found


def _decoded(path: Path) -> tuple[bytes, tuple[int, int]]:
    """The file's bytes and image size, once it is known to decode: an HTML page named .jpg must stop
    the packing here, naming the file, not fail a training run days later."""
    import cv2

    data = path.read_bytes()
    if not data:
        raise UserError(f"{path} is empty (0 bytes); remove or replace it")
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise UserError(f"{path}: cannot decode this image; remove or replace it")
    return data, (image.shape[0], image.shape[1])


def images_to_rec(images_dir, out_dir, force: bool = False) -> dict:
    """Write OUT/train.rec, train.idx and property; returns counts and the image size."""
    images_dir, out_dir = Path(images_dir), Path(out_dir)
    identities = list_identities(images_dir)
    check_outputs(force, folders={"--out": out_dir}, inputs={"--images": images_dir})
    size = _decoded(identities[0][1][0])[1]
    batches = ([_decoded(file)[0] for file in files]
               for _, files in progress(identities, total=len(identities), desc="identities"))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        num_images, num_ids = write_emore(tmp, batches)
        write_property(tmp, num_ids, size)
    return {"identities": num_ids, "images": num_images, "image_size": size, "out": str(out_dir)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_tools.img2rec",
                                     description="Pack DIR/<identity>/<image> into an emore dataset "
                                                 "(train.rec, train.idx, property).")
    parser.add_argument("--images", required=True, type=Path, help="folder with one sub-folder per identity")
    parser.add_argument("--out", required=True, type=Path, help="output dataset folder")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    done = images_to_rec(args.images, args.out, args.force)
    height, width = done["image_size"]
    print(f"wrote {done['images']} images of {done['identities']} identities ({height}x{width}) to {done['out']}")


if __name__ == "__main__":
    run_cli(main)
