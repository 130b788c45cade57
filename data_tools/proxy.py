"""The NAR proxy task: a seeded subset of identities and images of an emore dataset.

Selection reads only the source's header and identity records (no image is touched), and the
copy phase reads exactly the chosen images, copying their encoded bytes verbatim, so building
4,000 x 40 from MS1M costs seconds rather than a pass over 5.8M images.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

from facenar_runtime.atomic import atomic_path, write_text_atomic
from facenar_runtime.cli import progress
from facenar_runtime.errors import UserError
from facenar_runtime.textinput import read_json
from data_tools.emore import EmoreDataset, write_emore, write_property
from facenar_runtime.outputs import check_outputs
from facenar_runtime.paths import demo_proxy_dir

FULL_DEFAULTS = {"num_ids": 4000, "per_id": 40, "val_per_id": 4, "seed": 0}
# The demo has 600 ids x 50 images; 200 x (36 + 4) keeps the search demo's val pass small.
DEMO_DEFAULTS = {"num_ids": 200, "per_id": 40, "val_per_id": 4, "seed": 0}
MANIFEST_COLUMNS = ["split", "proxy_label", "proxy_key", "source_label", "source_key"]


def _check_options(num_ids: int, per_id: int, val_per_id: int) -> None:
    if num_ids < 1:
        raise UserError(f"--num-ids must be at least 1, got {num_ids}")
    if per_id < 2:
        raise UserError(f"--per-id must be at least 2 (one train and one val image), got {per_id}")
    if not 1 <= val_per_id < per_id:
        raise UserError(f"--val-per-id must be between 1 and --per-id - 1 ({per_id - 1}), "
                        f"got {val_per_id}")


def select(source: EmoreDataset, num_ids: int, per_id: int, val_per_id: int,
           seed: int) -> list[tuple[int, list[int], list[int]]]:
    """(source label, train keys, val keys) per chosen identity, ascending by source label."""
    counts = source.counts()
    eligible = np.array(sorted(label for label, count in counts.items() if count >= per_id),
                        dtype=np.int64)
    if eligible.size < num_ids:
        raise UserError(f"{source.folder}: only {eligible.size} of {len(counts)} identities have "
                        f"at least {per_id} images, fewer than --num-ids {num_ids}; lower "
                        f"--num-ids or --per-id")
    rng = np.random.default_rng(seed)
    chosen = np.sort(rng.choice(eligible, size=num_ids, replace=False))
    train_count = per_id - val_per_id
    plan = []
    for label in chosen.tolist():
        picked = rng.choice(np.asarray(source.keys_of(label)), size=per_id, replace=False).tolist()
        plan.append((label, sorted(picked[:train_count]), sorted(picked[train_count:])))
    return plan


def _manifest(plan: list[tuple[int, list[int], list[int]]]) -> pd.DataFrame:
    rows = []
    for split, column in (("train", 1), ("val", 2)):
        proxy_key = 1
        for proxy_label, entry in enumerate(plan):
            for source_key in entry[column]:
                rows.append((split, proxy_label, proxy_key, entry[0], source_key))
                proxy_key += 1
    return pd.DataFrame(rows, columns=MANIFEST_COLUMNS)


def _fingerprint(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def build_proxy(data_dir, out_dir, num_ids: int = 4000, per_id: int = 40, val_per_id: int = 4,
                seed: int = 0, force: bool = False) -> dict:
    """Write OUT/{train,val}.rec|idx (emore layout, labels 0..num_ids-1), property, manifest.csv."""
    _check_options(num_ids, per_id, val_per_id)
    data_dir, out_dir = Path(data_dir), Path(out_dir)
    check_outputs(force, folders={"--out": out_dir}, inputs={"--data": data_dir})
    started = time.perf_counter()
    source = EmoreDataset(data_dir)
    plan = select(source, num_ids, per_id, val_per_id, seed)
    record = {"format": "facenar-proxy-v1", "source": str(data_dir.resolve()),
              "source_idx_sha256": _fingerprint(source.reader.idx_path),
              "num_ids": num_ids, "per_id": per_id, "val_per_id": val_per_id, "seed": seed}
    selected = time.perf_counter()
    copied = {"bytes": 0}

    def identities(column: int, split: str):
        for entry in progress(plan, total=len(plan), desc=f"copy {split}"):
            images = [source.read_image(key) for key in entry[column]]
            copied["bytes"] += sum(len(image) for image in images)
            yield images

    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        train_images, _ = write_emore(tmp, identities(1, "train"), prefix="train")
        val_images, _ = write_emore(tmp, identities(2, "val"), prefix="val")
        write_property(tmp, num_ids, source.image_size)
        _manifest(plan).to_csv(tmp / "manifest.csv", index=False)
        write_text_atomic(tmp / "proxy.json", json.dumps(record, indent=1) + "\n")
    finished = time.perf_counter()
    counts = source.counts()
    return {"out": str(out_dir), "source": str(data_dir), "source_ids": len(counts),
            "source_images": source.num_images,
            "eligible_ids": sum(count >= per_id for count in counts.values()),
            "num_ids": num_ids, "per_id": per_id, "val_per_id": val_per_id, "seed": seed,
            "train_images": train_images, "val_images": val_images, "bytes": copied["bytes"],
            "select_seconds": selected - started, "copy_seconds": finished - selected}


def format_summary(summary: dict) -> str:
    return (f"proxy split of {summary['source']}: {summary['num_ids']} of {summary['eligible_ids']} "
            f"identities with >= {summary['per_id']} images (of {summary['source_ids']}), "
            f"{summary['train_images']} train / {summary['val_images']} val images, "
            f"{summary['bytes'] / 1e6:.1f} MB copied; selection {summary['select_seconds']:.2f} s, "
            f"copy {summary['copy_seconds']:.2f} s -> {summary['out']}")


def _is_current(folder: Path, source: Path) -> bool:
    try:
        record = read_json(folder / "proxy.json", "proxy record")
        fingerprint = _fingerprint(source / "train.idx")
    except (OSError, UserError):  # missing or damaged: rebuild
        return False
    return (isinstance(record, dict) and record.get("source_idx_sha256") == fingerprint
            and all(record.get(key) == value for key, value in DEMO_DEFAULTS.items()))


def ensure_demo_proxy() -> Path:
    """The demo proxy split (DEMO_DEFAULTS of the demo data), built on first use."""
    from data_tools.demo import ensure_demo

    source = ensure_demo()
    folder = demo_proxy_dir()
    if not _is_current(folder, source):
        print(f"facenar: building the demo proxy split in {folder} (first use, a few seconds)",
              file=sys.stderr)
        build_proxy(source, folder, **DEMO_DEFAULTS, force=True)
    return folder
