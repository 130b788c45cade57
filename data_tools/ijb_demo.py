"""A small synthetic IJB-C-layout release (loose crops + meta files) drawn from the demo identities.

It lets `python -m facenar.verify --ijb` run with nothing of the user's and lets the tests exercise
the real meta formats: each subject has one gallery template and two probe templates, each template
one to three media (stills or "video" frames); the loose crops are the demo faces placed, scaled and
rotated on a larger canvas, with the 5 landmarks carried along (plus sub-pixel noise) and a faceness
score (a few low ones, as the real release has). Subjects are split into galleries G1 and G2, so
every probe is mated in one gallery and non-mated in the other, as in IJB-C's mixed protocol.
"""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from data_tools.align import ARCFACE_TEMPLATE
from facenar_runtime.atomic import atomic_path, write_text_atomic
from facenar_runtime.errors import UserError
from data_tools.demo import identity_images
from data_tools.demo_cache import MARKER, ensure_generated
from facenar_runtime.outputs import check_outputs
from facenar_runtime.paths import facenar_home

GENERATOR_VERSION = 1
DEFAULTS = {"subjects": 30, "negatives_per_subject": 20, "seed": 0}
CANVAS = 160
ID_OFFSET = 10_000        # demo identities far past those of the demo .bin benches
TEMPLATES_PER_SUBJECT = 3  # one gallery template, two probe templates


def _loose_crop(face: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """The 112x112 face placed on a CANVAS-sized image, and where the template's landmarks went."""
    angle, scale = rng.uniform(-15, 15), rng.uniform(0.9, 1.25)
    matrix = cv2.getRotationMatrix2D((56.0, 56.0), angle, scale)
    matrix[:, 2] += (CANVAS - 112) / 2 + rng.uniform(-10, 10, 2)
    crop = cv2.warpAffine(face, matrix, (CANVAS, CANVAS), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    points = ARCFACE_TEMPLATE @ matrix[:, :2].T + matrix[:, 2] + rng.normal(0, 0.4, (5, 2))
    return crop, points


def make_ijb_demo(out, subjects: int = 30, negatives_per_subject: int = 20, seed: int = 0, *,
                  force: bool = False) -> Path:
    """Write the demo release into `out` (loose_crop/, meta/ with ijbc_* files); appears atomically."""
    if subjects < 4 or subjects % 2:
        raise UserError("the IJB demo needs an even number of subjects, at least 4")
    check_outputs(force, folders={"--out": out})
    rng = np.random.default_rng([seed, 21])
    tid_mid, landmarks, pairs, galleries, probes = [], [], [], ([], []), []
    template, media, image = 0, 0, 0
    with atomic_path(out) as tmp:
        (tmp / "loose_crop").mkdir(parents=True)
        (tmp / "meta").mkdir()
        owner = {}
        for subject in range(subjects):
            media_sizes = [[int(n) for n in rng.integers(1, 4, rng.integers(1, 4))]
                           for _ in range(TEMPLATES_PER_SUBJECT)]
            faces = identity_images(seed, "lfw", ID_OFFSET + subject, sum(map(sum, media_sizes)))
            for role, sizes in enumerate(media_sizes):
                template += 1
                owner[template] = subject
                rows = galleries[subject % 2] if role == 0 else probes
                for frames in sizes:
                    media += 1
                    for _ in range(frames):
                        image += 1
                        name = f"{image}.jpg"
                        face = cv2.imdecode(np.frombuffer(faces.pop(), np.uint8), cv2.IMREAD_COLOR)
                        crop, points = _loose_crop(face, rng)
                        _, encoded = cv2.imencode(".jpg", crop, [cv2.IMWRITE_JPEG_QUALITY, 90])
                        (tmp / "loose_crop" / name).write_bytes(encoded.tobytes())
                        score = rng.uniform(0.05, 0.2) if rng.random() < 0.05 else rng.uniform(0.8, 1.0)
                        tid_mid.append(f"{name} {template} {media}")
                        landmarks.append(" ".join([name, *(f"{v:.3f}" for v in points.ravel()), f"{score:.3f}"]))
                        rows.append(f"{template},{subject + 1},img/{name}")
        by_subject = [[t for t, s in owner.items() if s == subject] for subject in range(subjects)]
        for gallery, *probe_templates in by_subject:
            pairs += [(gallery, p, 1) for p in probe_templates] + [(*probe_templates, 1)]
        for _ in range(subjects * negatives_per_subject):
            a, b = rng.choice(subjects, 2, replace=False)
            pairs.append((int(rng.choice(by_subject[a])), int(rng.choice(by_subject[b])), 0))
        meta = tmp / "meta"
        header = "TEMPLATE_ID,SUBJECT_ID,FILENAME\n"
        write_text_atomic(meta / "ijbc_face_tid_mid.txt", "\n".join(tid_mid) + "\n")
        write_text_atomic(meta / "ijbc_name_5pts_score.txt", "\n".join(landmarks) + "\n")
        write_text_atomic(meta / "ijbc_template_pair_label.txt", "".join(f"{a} {b} {y}\n" for a, b, y in pairs))
        for name, rows in (("G1", galleries[0]), ("G2", galleries[1])):
            write_text_atomic(meta / f"ijbc_1N_gallery_{name}.csv", header + "\n".join(rows) + "\n")
        write_text_atomic(meta / "ijbc_1N_probe_mixed.csv", header + "\n".join(probes) + "\n")
        record = {"format": "facenar-demo-ijb", "generator_version": GENERATOR_VERSION, "synthetic": True,
                  "subjects": subjects, "negatives_per_subject": negatives_per_subject, "seed": seed,
                  "images": image, "templates": template, "pairs": len(pairs)}
        write_text_atomic(tmp / MARKER, json.dumps(record, indent=1) + "\n")
        write_text_atomic(tmp / "README.txt", "SYNTHETIC IJB-C-LAYOUT DEMO DATA - NOT REAL FACES (facenar "
                                              "data_tools.ijb_demo); numbers on it say nothing about IJB-C.\n")
    return Path(out)


def ensure_ijb_demo() -> Path:
    """The default IJB demo release in $FACENAR_HOME/demo_ijb, generated on first use."""
    return ensure_generated(facenar_home() / "demo_ijb", {"generator_version": GENERATOR_VERSION, **DEFAULTS},
                            lambda folder: make_ijb_demo(folder, **DEFAULTS, force=True),
                            "the synthetic IJB-C-layout demo (a few seconds)")
