"""5-point face alignment to the ArcFace 112x112 template (what every insightface model expects).

Usage: python -m data_tools.align --images DIR --landmarks FILE --out DIR [--force]

Landmarks file: one face per line, `path [x1 y1 x2 y2] lex ley rex rey nx ny lmx lmy rmx rmy`
(an optional face box, then left eye, right eye, nose tip, left and right mouth corner, in
pixels); blank lines and lines starting with # are ignored. `path` is looked up under --images
as written, then with leading folders dropped (so `lfw/Name/Name_0001.jpg` also finds
`DIR/Name/Name_0001.jpg` or `DIR/Name_0001.jpg`); the aligned image is written to
`--out/path` exactly as written, keeping the extension.
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path, PurePosixPath
from typing import Sequence

import cv2
import numpy as np

from facenar_runtime.atomic import atomic_path
from facenar_runtime.cli import progress, run_cli
from facenar_runtime.errors import UserError
from facenar_runtime.outputs import check_outputs
from facenar_runtime.textinput import read_text
from facenar_runtime import limits

ALIGNED_SIZE = 112
MIN_SPREAD = 1.0  # pixels (RMS distance from the centroid); less is no face, e.g. all-zero placeholders
# left eye, right eye, nose tip, left mouth corner, right mouth corner (insightface arcface_dst)
ARCFACE_TEMPLATE = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]],
    dtype=np.float64,
)


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares rotation+uniform scale+shift mapping src points onto dst (Umeyama 1991); 2x3."""
    src = np.asarray(src, dtype=np.float64)
    dst = np.asarray(dst, dtype=np.float64)
    src_mean, dst_mean = src.mean(axis=0), dst.mean(axis=0)
    src_c, dst_c = src - src_mean, dst - dst_mean
    covariance = dst_c.T @ src_c / len(src)
    u, singular, vt = np.linalg.svd(covariance)
    reflect = np.diag([1.0, np.sign(np.linalg.det(u) * np.linalg.det(vt)) or 1.0])
    rotation = u @ reflect @ vt
    scale = np.trace(np.diag(singular) @ reflect) / (src_c ** 2).sum(axis=1).mean()
    shift = dst_mean - scale * rotation @ src_mean
    return np.hstack([scale * rotation, shift[:, None]])


def landmark_problem(points: np.ndarray, image_size: tuple[int, int] | None = None) -> str | None:
    """Why 5 landmarks cannot define an alignment, else None: NaN/inf, all on one spot, or (given the
    image's height and width) farther outside the photo than the photo is large, whose crop would be
    nothing of it. Without the image, coordinates past limits.PIXELS (1e300 would overflow the fit)."""
    if not np.isfinite(points).all():
        return "landmarks must be finite numbers (found nan or inf)"
    if np.abs(points).max() > limits.PIXELS:
        return f"landmark coordinates must lie within +-{limits.PIXELS:g} pixels, found {np.abs(points).max():g}"
    if image_size is not None:
        height, width = image_size
        inside = ((points >= -np.array([width, height])) & (points <= 2 * np.array([width, height]))).all()
        if not inside:
            return (f"landmarks lie far outside the {width}x{height} image (more than its own size beyond an "
                    "edge); are they for this image, in pixels?")
    if ((points - points.mean(axis=0)) ** 2).sum(axis=1).mean() < MIN_SPREAD ** 2:
        return f"degenerate landmarks: the 5 points lie within {MIN_SPREAD:g} pixel of each other"
    return None


def align_face(image: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
    """Warp `image` so its 5 landmarks (5x2, pixels) land on the ArcFace template; 112x112 out."""
    points = np.asarray(landmarks, dtype=np.float64).reshape(5, 2)
    problem = landmark_problem(points) or landmark_problem(points, image.shape[:2])
    if problem:
        raise ValueError(problem)
    matrix = similarity_transform(points, ARCFACE_TEMPLATE)
    return cv2.warpAffine(image, matrix, (ALIGNED_SIZE, ALIGNED_SIZE), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def read_landmarks(path: str | os.PathLike) -> list[tuple[str, np.ndarray]]:
    """Parse the landmarks file into (relative image path, 5x2 landmarks) in file order."""
    lines = read_text(path, "landmarks file", max_line=4096).splitlines()
    faces = []
    for number, line in enumerate(lines, start=1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if len(fields) not in (11, 15):
            raise UserError(
                f"{path}:{number}: expected 'path [x1 y1 x2 y2] + 10 landmark numbers', got {len(fields)} fields"
            )
        try:
            numbers = np.array([float(value) for value in fields[-10:]])
        except ValueError:
            raise UserError(f"{path}:{number}: landmark values must be numbers") from None
        parts = PurePosixPath(fields[0]).parts
        if fields[0].startswith("/") or ".." in parts:
            raise UserError(f"{path}:{number}: image path {fields[0]!r} must be relative, without '..'")
        problem = landmark_problem(numbers.reshape(5, 2))
        if problem:
            raise UserError(f"{path}:{number}: {problem}")
        faces.append((fields[0], numbers.reshape(5, 2)))
    if not faces:
        raise UserError(f"{path} lists no faces")
    return faces


def _find_image(root: Path, relative: str) -> Path:
    parts = PurePosixPath(relative).parts
    for start in range(len(parts)):
        candidate = root.joinpath(*parts[start:])
        if candidate.is_file():
            return candidate
    raise UserError(f"image {relative} (from the landmarks file) not found under {root}")


def align_folder(images_dir: str | os.PathLike, landmarks_path: str | os.PathLike,
                 out_dir: str | os.PathLike, force: bool = False) -> int:
    """Align every face listed in the landmarks file into `out_dir`; returns the count."""
    check_outputs(force, folders={"--out": out_dir}, inputs={"--images": images_dir, "--landmarks": landmarks_path})
    root = Path(images_dir)
    if not root.is_dir():
        raise UserError(f"image folder {root} does not exist")
    faces = read_landmarks(landmarks_path)
    with atomic_path(out_dir) as tmp:
        for relative, landmarks in progress(faces, total=len(faces), desc="align"):
            source = _find_image(root, relative)
            image = cv2.imread(str(source), cv2.IMREAD_COLOR)
            if image is None:
                raise UserError(f"{source} is not a decodable image")
            target = tmp.joinpath(*PurePosixPath(relative).parts)
            target.parent.mkdir(parents=True, exist_ok=True)
            problem = landmark_problem(landmarks, image.shape[:2])
            if problem:
                raise UserError(f"{landmarks_path}: {relative}: {problem}")
            try:
                ok, encoded = cv2.imencode(target.suffix, align_face(image, landmarks),
                                           [cv2.IMWRITE_JPEG_QUALITY, 95])
            except cv2.error:
                ok = False
            if not ok:
                raise UserError(f"cannot encode {target.name}: unsupported extension {target.suffix!r}")
            target.write_bytes(encoded.tobytes())
    return len(faces)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m data_tools.align",
                                     description="Align faces to the ArcFace 112x112 5-point template.")
    parser.add_argument("--images", required=True, help="folder holding the raw photos")
    parser.add_argument("--landmarks", required=True, help="landmarks file (see module docstring)")
    parser.add_argument("--out", required=True, help="output folder (mirrors the paths in the landmarks file)")
    parser.add_argument("--force", action="store_true", help="replace an existing output folder")
    args = parser.parse_args(argv)
    count = align_folder(args.images, args.landmarks, args.out, force=args.force)
    print(f"aligned {count} faces into {args.out}")


if __name__ == "__main__":
    run_cli(main)
