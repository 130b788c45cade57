"""IJB-B / IJB-C evaluation of a model: 1:1 TAR at FAR and 1:N rank-k / TPIR at FPIR, insightface's rules.

This module joins the parts: the meta files (data_tools.ijb_meta), the embeddings
(facenar.verify.ijb_features, cached), and the scoring (facenar.verify.ijb_metrics); `run` is what
`python -m facenar.verify --ijb DIR` calls. The rules and their quirks are in docs/guides/ijb.md.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facenar_runtime.atomic import atomic_open, write_text_atomic
from facenar_runtime.errors import UserError
from data_tools import ijb_meta as meta
from facenar_runtime.outputs import check_creatable, check_outputs
from facenar_runtime.paths import facenar_home
from facenar.verify import ijb_features as features
from facenar.verify import ijb_metrics as metrics


@dataclass(frozen=True)
class Switches:
    """insightface's test modes: keep the feature norm (N1), weight by faceness (D1), add the mirror (F1)."""
    keep_norm: bool = True
    detector_score: bool = True
    flip: bool = True

    @property
    def name(self) -> str:
        return f"N{self.keep_norm:d}D{self.detector_score:d}F{self.flip:d}"


@dataclass
class Release:
    """One IJB release's meta files, read and cross-checked (before any image is embedded)."""
    layout: meta.IJBLayout
    names: np.ndarray
    templates: np.ndarray
    medias: np.ndarray
    points: np.ndarray
    faceness: np.ndarray
    pairs: tuple[np.ndarray, np.ndarray, np.ndarray]
    one_to_n: dict[str, tuple[np.ndarray, np.ndarray]] | None   # name -> (unique template ids, subject ids)


def _unique_templates(path: Path, templates: np.ndarray, subjects: np.ndarray, known: np.ndarray):
    """ijb_evals.py's choice: unique template ids (sorted), each with the subject of its first row."""
    ids, first = np.unique(templates, return_index=True)
    _, missing = metrics.template_rows(known, ids)
    if missing.any():
        row = int(first[np.flatnonzero(missing)[0]])
        raise meta.row_error(path, row, f"template {templates[row]} has no images in the template/media file",
                             header=True)
    return ids, subjects[first]


def load_release(root, target: str | None = None, one_to_n: bool = True) -> Release:
    layout = meta.locate(root, target)
    names, templates, medias = meta.read_tid_mid(layout.tid_mid)
    landmark_names, points, faceness = meta.read_landmarks(layout.landmarks)
    meta.check_same_images(layout.tid_mid, names, layout.landmarks, landmark_names)
    first, second, labels = meta.read_pairs(layout.pairs)
    known = np.unique(templates)
    for column in (first, second):
        _, missing = metrics.template_rows(known, column)
        if missing.any():
            row = int(np.flatnonzero(missing)[0])
            raise meta.row_error(layout.pairs, row, f"template {column[row]} has no images in {layout.tid_mid.name}")
    if labels.all() or not labels.any():
        raise UserError(f"{layout.pairs}: all pairs are {'genuine' if labels.all() else 'impostor'}; "
                        "TAR at FAR needs both")
    sets = None
    if one_to_n:
        files = dict(zip(("gallery1", "gallery2"), layout.galleries), probes=layout.probes)
        sets = {name: _unique_templates(path, *meta.read_1n(path), known) for name, path in files.items()}
    return Release(layout, names, templates, medias, points, faceness, (first, second, labels), sets)


def far_key(far: float) -> str:
    """A FAR as the JSON key: 1e-4 -> "0.0001"."""
    return np.format_float_positional(far, trim="-")


def evaluate(release: Release, plain: np.ndarray, mirrored: np.ndarray, switches: Switches = Switches(),
             fars=metrics.FARS) -> tuple[dict, np.ndarray, metrics.Roc]:
    """(metrics, pair scores in pair-file order, ROC) from the raw embeddings."""
    feats = metrics.image_features(plain, mirrored, release.faceness, switches.keep_norm,
                                   switches.detector_score, switches.flip)
    ids, template_feats = metrics.pool_templates(feats, release.templates, release.medias)
    first, second, labels = release.pairs
    scores = metrics.score_pairs(template_feats, metrics.template_rows(ids, first)[0],
                                 metrics.template_rows(ids, second)[0])
    curve = metrics.roc(labels, scores)
    result = {"target": release.layout.target, "switches": switches.name, "images": len(release.names),
              "templates": len(ids), "pairs": len(scores), "genuine_pairs": int(labels.sum()),
              "tar_at_far": {far_key(f): metrics.tar_at_far(curve, f) for f in fars},
              "tar_at_far_strict": {far_key(f): metrics.tar_at_far_strict(curve, f) for f in fars},
              "auc": metrics.auc(curve)}
    if release.one_to_n:
        result.update(_identification(release.one_to_n, ids, template_feats))
    return result, scores, curve


def _identification(sets: dict, ids: np.ndarray, template_feats: np.ndarray) -> dict:
    """Both galleries against the mixed probes; ranks over all probes, TPIR averaged (ijb_evals.py)."""
    probe_ids, probe_subjects = sets["probes"]
    probe_feats = template_feats[metrics.template_rows(ids, probe_ids)[0]]
    runs = []
    for name in ("gallery1", "gallery2"):
        gallery_ids, gallery_subjects = sets[name]
        runs.append(metrics.identify(probe_feats, probe_subjects,
                                     template_feats[metrics.template_rows(ids, gallery_ids)[0]], gallery_subjects))
    out = {"probes": len(probe_ids)}
    out.update({f"rank{k}": sum(r.top[k] for r in runs) / len(probe_ids) for k in metrics.RANKS})
    out["tpir_at_fpir"] = {key: (runs[0].tpir[key] + runs[1].tpir[key]) / 2 for key in metrics.FPIRS}
    return out


def _percent(value: float) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{100 * value:.2f}"


def format_report(result: dict) -> str:
    """The TAR table as insightface prints it (percent), the strict row beneath, then 1:N."""
    fars = list(result["tar_at_far"])
    head = ["FAR", *(f"{float(f):.0e}" for f in fars)]
    rows = [head, ["TAR %", *(_percent(result["tar_at_far"][f]) for f in fars)],
            ["TAR % strict", *(_percent(result["tar_at_far_strict"][f]) for f in fars)]]
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = [f"{result['target']} 1:1 verification ({result['switches']}): {result['templates']} templates, "
             f"{result['pairs']} pairs ({result['genuine_pairs']} genuine), AUC {result['auc']:.6f}"]
    lines += ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
              for r in rows]
    if "rank1" in result:
        lines.append(f"{result['target']} 1:N identification: {result['probes']} probes; rank-1 "
                     f"{_percent(result['rank1'])} %, rank-5 {_percent(result['rank5'])} %, rank-10 "
                     f"{_percent(result['rank10'])} %, TPIR@FPIR=0.01 {_percent(result['tpir_at_fpir']['0.01'])} %, "
                     f"TPIR@FPIR=0.1 {_percent(result['tpir_at_fpir']['0.1'])} %")
    return "\n".join(lines)


def write_plot(path, curve: metrics.Roc, result: dict) -> None:
    """The ROC (TAR against log FAR, 1e-6 .. 1), as insightface draws it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 5))
    ax.plot(curve.fpr, curve.tpr, lw=1, label=f"{result['switches']} (AUC {100 * result['auc']:.4f} %)")
    ax.set(xscale="log", xlim=(1e-6, 1), ylim=(0, 1.01), xlabel="FAR (false accept rate)",
           ylabel="TAR (true accept rate)", title=f"ROC on {result['target']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="lower right")
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)


def default_cache(key: str, target: str, model_path, outputs) -> Path:
    """Beside the first output (`OUT.embeddings.npz`), else in $FACENAR_HOME/ijb_cache."""
    for out in outputs:
        if out:
            out = Path(out)
            return out.with_name(f"{out.stem}.embeddings.npz")
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    return facenar_home() / "ijb_cache" / f"{target.lower()}-{Path(model_path).stem}-{digest}.npz"


def embeddings(release: Release, key: str, embedder, cache: Path, batch_size: int, workers: int):
    """The raw (plain, mirrored) embeddings, from the cache when it is current, else computed and cached."""
    layout = release.layout
    cached = features.load_cache(cache, key)
    if cached is not None:
        print(f"using cached embeddings {cache}", file=sys.stderr)
        return cached
    plain, mirrored = features.embed_images(embedder(), layout.images, release.names, release.points,
                                            layout.landmarks, batch_size, workers)
    features.save_cache(cache, key, plain, mirrored)
    print(f"cached the embeddings in {cache}", file=sys.stderr)
    return plain, mirrored


def run(root, model_path, load_embedder, *, target=None, switches=Switches(), fars=metrics.FARS,
        one_to_n=True, json_path=None, scores_path=None, plot_path=None, cache=None, batch_size=256,
        workers=1, force=False) -> dict:
    """The --ijb command: outputs checked first, meta read and checked, embed (or cache), score, report."""
    if root is None:
        from data_tools.ijb_demo import ensure_ijb_demo

        root = ensure_ijb_demo()
    outputs = {"--json": json_path, "--scores": scores_path, "--plot": plot_path}
    check_outputs(force, files=outputs, inputs={"--model": model_path, "--ijb": root})
    release = load_release(root, target, one_to_n)
    layout = release.layout
    key = features.cache_key(model_path, [layout.tid_mid, layout.landmarks])
    cache = Path(cache) if cache else default_cache(key, layout.target, model_path, (json_path, scores_path))
    features.check_cache_path(cache)
    check_creatable(cache, "--cache")

    def embedder():
        model = load_embedder()
        if model.input_size != features.ALIGNED:
            raise UserError(f"{model_path}: the model's input is {model.input_size}x{model.input_size}; "
                            f"IJB evaluation aligns faces to {features.ALIGNED}x{features.ALIGNED}")
        return model

    plain, mirrored = embeddings(release, key, embedder, cache, batch_size, workers)
    if len(plain) != len(release.names):
        raise UserError(f"{cache}: holds {len(plain)} embeddings for {len(release.names)} images; delete it")
    result, scores, curve = evaluate(release, plain, mirrored, switches, fars)
    print(format_report(result))
    if json_path:
        write_text_atomic(json_path, json.dumps(result, indent=2) + "\n")
    if scores_path:
        with atomic_open(scores_path, "wb") as handle:
            np.save(handle, scores)
    if plot_path:
        write_plot(plot_path, curve, result)
    for out in filter(None, outputs.values()):
        print(f"wrote {os.fspath(out)}", file=sys.stderr)
    return result
