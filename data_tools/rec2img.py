"""python -m data_tools.rec2img: dump an emore dataset back to a folder per identity.

Folders are the zero-padded labels and files the zero-padded keys, so sorted names follow label
and key order and `data_tools.img2rec` packs the dump back into the same records.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from facenar_runtime.atomic import atomic_path
from facenar_runtime.cli import progress, run_cli
from data_tools.emore import EmoreDataset
from facenar_runtime.outputs import check_outputs

SIGNATURES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"), (b"BM", ".bmp"))


def image_suffix(data: bytes) -> str:
    """File extension from the encoded bytes' signature (.bin when unknown)."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return ".webp"
    return next((suffix for magic, suffix in SIGNATURES if data.startswith(magic)), ".bin")


def rec_to_images(data_dir, out_dir, prefix: str = "train", force: bool = False) -> dict:
    dataset = EmoreDataset(data_dir, prefix)
    check_outputs(force, folders={"--out": out_dir}, inputs={"--data": data_dir})
    labels = dataset.labels
    label_width = len(str(max(labels, default=0)))
    key_width = len(str(int(dataset.image_keys.max(initial=0))))
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        for label in progress(labels, total=len(labels), desc="identities"):
            folder = tmp / f"{label:0{label_width}d}"
            folder.mkdir()
            for key in dataset.keys_of(label):
                data = dataset.read_image(key)
                (folder / f"{key:0{key_width}d}{image_suffix(data)}").write_bytes(data)
    return {"identities": len(labels), "images": dataset.num_images, "out": str(out_dir)}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_tools.rec2img",
                                     description="Write every image of an emore dataset to OUT/<label>/<key>.<ext>.")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder (train.rec/idx + property)")
    parser.add_argument("--out", required=True, type=Path, help="output folder")
    parser.add_argument("--prefix", default="train", help="record file name without extension (default train)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    done = rec_to_images(args.data, args.out, args.prefix, args.force)
    print(f"wrote {done['images']} images of {done['identities']} identities to {done['out']}")


if __name__ == "__main__":
    run_cli(main)
