"""IJB-B / IJB-C: vectorised scoring equal to insightface's loops, the CLI on the IJB-layout demo, bad input."""
from __future__ import annotations

import json
import shutil
import warnings

import cv2
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_curve

from data_tools.align import ARCFACE_TEMPLATE, similarity_transform
from facenar_runtime.cli import run_cli
from data_tools.ijb_demo import make_ijb_demo
from data_tools import ijb_meta
from facenar.checkpoint import save_model
from facenar.space.arch import Arch
from facenar.space.iresnet import build_child
from facenar.verify import cli as verify_cli, ijb_metrics as M, ijb_reference as R
from facenar.verify.benches import resolve_benches


@pytest.fixture(scope="module")
def ijb_demo(tmp_path_factory):
    return make_ijb_demo(tmp_path_factory.mktemp("ijb") / "IJBC", subjects=8, negatives_per_subject=6)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    torch.manual_seed(0)
    arch = Arch.baseline("iresnet18", width=0.125, input_size=112, embedding_size=32)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_model(path, arch, build_child(arch).eval())
    return path


def run_exit(argv, capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(verify_cli.main, argv)
    out, err = capsys.readouterr()
    return exc.value.code, out, err


def random_release(rng, images=300, dim=16):
    templates = rng.integers(1, int(rng.integers(2, 40)), images) * 7
    medias = rng.integers(0, int(rng.integers(1, 30)), images)
    embs, flips = (rng.normal(size=(images, dim)).astype(np.float32) for _ in range(2))
    return templates, medias, embs, flips, rng.uniform(0, 1, images).astype(np.float32)


@pytest.mark.parametrize("seed", range(6))
def test_pooling_and_scores_equal_insightface_loops_exactly(seed):
    rng = np.random.default_rng(seed)
    templates, medias, embs, flips, faceness = random_release(rng, images=int(rng.integers(5, 400)))
    for switches in ((True, True, True), (False, True, True), (True, False, False)):
        feats = M.image_features(embs, flips, faceness, *switches)
        np.testing.assert_array_equal(feats, R.reference_features(embs, flips, faceness, *switches))
        ids, pooled = M.pool_templates(feats, templates, medias, rows=int(rng.integers(1, 60)))
        ref_ids, ref_pooled = R.reference_templates(feats, templates, medias)
        np.testing.assert_array_equal(ids, ref_ids)
        np.testing.assert_array_equal(pooled, ref_pooled)       # equal, not close: same float32 additions
    p1, p2 = rng.choice(ids, 2000), rng.choice(ids, 2000)
    scores = M.score_pairs(pooled, M.template_rows(ids, p1)[0], M.template_rows(ids, p2)[0], chunk=37)
    np.testing.assert_array_equal(scores, R.reference_scores(ref_pooled, ref_ids, p1, p2))


@pytest.mark.parametrize("seed", range(8))
def test_roc_tars_and_auc_equal_sklearn_and_the_insightface_rule(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(20, 5000))
    labels = rng.random(n) < rng.uniform(0.01, 0.5)
    labels[:2] = True, False
    scores = rng.normal(size=n) + labels
    if seed % 2:                                     # heavy ties, mixed and within each class
        scores = np.round(scores, int(seed % 3))
    curve = M.roc(labels, scores.copy())
    fpr, tpr, _ = roc_curve(labels, scores)
    np.testing.assert_array_equal(curve.fpr, fpr)
    np.testing.assert_array_equal(curve.tpr, tpr)
    fars = [*M.FARS, 0.0, 0.05, 0.3, 1.0, 1 / (~labels).sum(), 2.5 / (~labels).sum()]
    table, strict, area = R.reference_tars(labels, scores, fars)
    assert {f: M.tar_at_far(curve, f) for f in fars} == table
    assert {f: M.tar_at_far_strict(curve, f) for f in fars} == strict
    assert M.auc(curve) == area


def test_identification_equals_evaluation_1n():
    rng = np.random.default_rng(3)
    for trial in range(12):
        gallery = rng.normal(size=(int(rng.integers(2, 40)), 8))
        gallery_ids = rng.permutation(500)[:len(gallery)]
        probes = rng.normal(size=(int(rng.integers(2, 80)), 8))
        if trial % 3 == 0:                                   # ties in the similarities
            gallery, probes = np.round(gallery, 0), np.round(probes, 0)
        probe_ids = np.where(rng.random(len(probes)) < 0.6, rng.choice(gallery_ids, len(probes)), 1000 + trial)
        probe_ids[:2] = gallery_ids[0], 999
        got = M.identify(probes, probe_ids, gallery, gallery_ids, chunk=int(rng.integers(1, 30)))
        top1, top5, top10, mated, tpir = R.reference_1n(probes, gallery, probe_ids, gallery_ids,
                                                        list(M.FPIRS.values()))
        assert (got.top[1], got.top[5], got.top[10], got.mated) == (top1, top5, top10, mated)
        assert got.tpir == {key: tpir[value] for key, value in M.FPIRS.items()}


def test_demo_landmarks_align_onto_the_template(ijb_demo):
    path = ijb_meta.locate(ijb_demo).landmarks
    names, points, faceness = ijb_meta.read_landmarks(path)
    rows = [line.split(" ") for line in path.read_text().splitlines()]     # insightface's parse
    np.testing.assert_array_equal(points, np.array([r[1:-1] for r in rows]).astype("float32").reshape(-1, 5, 2))
    np.testing.assert_array_equal(faceness, np.array([r[-1] for r in rows]).astype(np.float32))
    for row in (0, 7, len(names) - 1):
        matrix = similarity_transform(points[row], ARCFACE_TEMPLATE)
        mapped = points[row] @ matrix[:, :2].T + matrix[:, 2]
        assert np.abs(mapped - ARCFACE_TEMPLATE).max() < 1.5
        assert cv2.imread(str(ijb_demo / "loose_crop" / names[row])).shape == (160, 160, 3)


def test_cli_outputs_cache_and_exact_numbers(ijb_demo, checkpoint, tmp_path, capsys):
    out = tmp_path / "r.json"
    argv = ["--ijb", str(ijb_demo), "--model", str(checkpoint), "--json", str(out), "--scores",
            str(tmp_path / "s.npy"), "--plot", str(tmp_path / "roc.png"), "--batch-size", "16", "--workers", "2"]
    code, stdout, err = run_exit(argv, capsys)
    assert code == 0, err
    assert "TAR % strict" in stdout and "rank-1" in stdout and "cached the embeddings" in err
    got = json.loads(out.read_text())
    assert got["target"] == "IJBC" and got["switches"] == "N1D1F1"
    assert set(got["tar_at_far"]) == {"0.000001", "0.00001", "0.0001", "0.001", "0.01", "0.1"}
    assert set(got["tpir_at_fpir"]) == {"0.01", "0.1"}
    fractions = [*got["tar_at_far"].values(), *got["tar_at_far_strict"].values(), *got["tpir_at_fpir"].values(),
                 got["auc"], got["rank1"], got["rank5"], got["rank10"]]
    assert all(0.0 <= v <= 1.0 for v in fractions)
    assert got["rank1"] <= got["rank5"] <= got["rank10"]
    # the same embeddings through insightface's loops give the same numbers, exactly
    cache = np.load(tmp_path / "r.embeddings.npz")
    layout = ijb_meta.locate(ijb_demo)
    _, templates, medias = ijb_meta.read_tid_mid(layout.tid_mid)
    _, _, faceness = ijb_meta.read_landmarks(layout.landmarks)
    p1, p2, labels = ijb_meta.read_pairs(layout.pairs)
    feats = R.reference_features(cache["plain"], cache["mirrored"], faceness)
    ids, pooled = R.reference_templates(feats, templates, medias)
    scores = R.reference_scores(pooled, ids, p1, p2)
    np.testing.assert_array_equal(np.load(tmp_path / "s.npy"), scores)
    table, strict, area = R.reference_tars(labels, scores, M.FARS)
    assert list(got["tar_at_far"].values()) == list(table.values()) and got["auc"] == area
    assert list(got["tar_at_far_strict"].values()) == list(strict.values())
    # 1 worker gives the same embeddings; switches and FARs reuse the cache
    code, _, err = run_exit([*argv[:-1], "1", "--force", "--no-flip", "--fars", "1e-2,0.1"], capsys)
    assert code == 0 and "using cached embeddings" in err, err
    again = json.loads(out.read_text())
    assert again["switches"] == "N1D1F0" and set(again["tar_at_far"]) == {"0.01", "0.1"}


def test_bench_all_finds_every_bin(tiny_demo):
    assert set(resolve_benches("all", tiny_demo)) == {"lfw", "cfp_fp", "agedb_30"}


def _break(root, name, edit):
    path = root / "meta" / name
    lines = path.read_text().splitlines()
    edit(lines)
    path.write_text("\n".join(lines) + "\n")


def test_bad_input_one_error_line_naming_file_and_line(ijb_demo, checkpoint, tmp_path, capsys):
    def broken(tag, edit=None, name=None, remove=None):
        root = tmp_path / tag / "IJBC"
        shutil.copytree(ijb_demo, root)
        if remove:
            (root / remove).unlink()
        if edit:
            _break(root, name, edit)
        return root

    def set_line(index, text):
        return lambda lines: lines.__setitem__(index, text)

    cases = {
        "missing meta": (broken("a", remove="meta/ijbc_template_pair_label.txt"),
                         "ijbc_template_pair_label.txt not found"),
        "landmark fields": (broken("b", set_line(4, "5.jpg 1 2 3 4 5 6 7 8 9 10"), "ijbc_name_5pts_score.txt"),
                            "ijbc_name_5pts_score.txt:5: expected 12 fields"),
        "extra field": (broken("h", set_line(6, "7.jpg 1 2 3 4 5 6 7 8 9 10 0.9 7"), "ijbc_name_5pts_score.txt"),
                        "ijbc_name_5pts_score.txt:7: expected 12 fields"),
        "absent image": (broken("c", remove="loose_crop/3.jpg"), "ijbc_name_5pts_score.txt:3: image"),
        "unknown template": (broken("d", set_line(2, "1 4242 0"), "ijbc_template_pair_label.txt"),
                             "ijbc_template_pair_label.txt:3: template 4242 has no images"),
        "no header": (broken("e", lambda lines: lines.pop(0), "ijbc_1N_probe_mixed.csv"),
                      "ijbc_1N_probe_mixed.csv:1: expected a header line"),
        "bad label": (broken("f", set_line(1, "1 2 7"), "ijbc_template_pair_label.txt"),
                      "ijbc_template_pair_label.txt:2: label '7' must be 0 or 1"),
    }
    unreadable = broken("g")
    (unreadable / "loose_crop" / "2.jpg").write_bytes(b"not a jpeg")
    cases["unreadable image"] = (unreadable, "ijbc_name_5pts_score.txt:2: image")
    for case, (root, message) in cases.items():
        code, _, err = run_exit(["--ijb", str(root), "--model", str(checkpoint), "--workers", "1",
                                 "--cache", str(tmp_path / f"{case}.npz")], capsys)
        assert code == 2 and message in err and len(err.strip().splitlines()) == 1, (case, err)


def test_model_input_must_be_112(ijb_demo, tmp_path, capsys):
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 8, stride=8), torch.nn.Flatten(), torch.nn.Linear(4 * 12 * 12, 8))
    path = tmp_path / "m96.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model.eval(), (torch.zeros(2, 3, 96, 96),), str(path), input_names=["data"],
                          output_names=["fc1"], opset_version=17, dynamo=False, dynamic_axes={"data": {0: "b"}})
    code, _, err = run_exit(["--ijb", str(ijb_demo), "--model", str(path), "--cache", str(tmp_path / "c.npz")], capsys)
    assert code == 2 and "m96.onnx" in err and "96x96" in err and "112x112" in err, err


def test_real_score_distributions_deepface(realdata):
    """Real models' distances (4 decimals, so ties): our ROC and TARs equal sklearn's and insightface's rule."""
    import pandas as pd

    table = pd.read_csv(realdata / "deepface_pairs" / "face-recognition-pivot.csv")
    labels = (table["decision"] == "Yes").to_numpy()
    for column in [c for c in table.columns if c.endswith(("cosine", "euclidean_l2"))]:
        scores = -table[column].to_numpy(dtype=np.float64)        # smaller distance = more similar
        curve = M.roc(labels, scores.copy())
        fpr, tpr, _ = roc_curve(labels, scores)
        np.testing.assert_array_equal(curve.fpr, fpr)
        np.testing.assert_array_equal(curve.tpr, tpr)
        fars = [1e-3, 1e-2, 0.05, 0.1, 0.3]
        want, strict, area = R.reference_tars(labels, scores, fars)
        assert {f: M.tar_at_far(curve, f) for f in fars} == want, column
        assert {f: M.tar_at_far_strict(curve, f) for f in fars} == strict, column
        assert M.auc(curve) == area


def test_real_lfw_photos_as_an_ijb_release(realdata, checkpoint, tmp_path, capsys):
    """Raw 250x250 LFW photos with their real 5-point landmarks, laid out as an IJB-C release."""
    root = tmp_path / "IJBC"
    (root / "loose_crop").mkdir(parents=True)
    (root / "meta").mkdir()
    lines = (realdata / "lfw_raw" / "landmarks_5pt.txt").read_text().split("\n")
    faces = {line.split()[0].rsplit("/", 1)[-1]: line.split()[5:] for line in lines if line.strip()}
    names = sorted(faces)
    template = {name: index + 1 for index, name in enumerate(names)}
    template["Anthony_Hopkins_0002.jpg"] = template["Anthony_Hopkins_0001.jpg"]   # one template, two media
    for name in names:
        shutil.copy(realdata / "lfw_raw" / name, root / "loose_crop" / name)
    (root / "meta" / "ijbc_face_tid_mid.txt").write_text(
        "".join(f"{name} {template[name]} {index}\n" for index, name in enumerate(names)))
    (root / "meta" / "ijbc_name_5pts_score.txt").write_text(
        "".join(f"{name} {' '.join(faces[name])} 0.99\n" for name in names))
    rob1, rob2 = template["Rob_Lowe_0001.jpg"], template["Rob_Lowe_0002.jpg"]
    tony = template["Anthony_Hopkins_0001.jpg"]
    others = sorted(set(template.values()) - {rob1, rob2, tony})
    pairs = [(rob1, rob2, 1), (rob1, tony, 0), (rob2, tony, 0), *((rob1, o, 0) for o in others), (tony, others[0], 0)]
    (root / "meta" / "ijbc_template_pair_label.txt").write_text("".join(f"{a} {b} {y}\n" for a, b, y in pairs))
    out = tmp_path / "lfw.json"
    code, stdout, err = run_exit(["--ijb", str(root), "--model", str(checkpoint), "--no-1n", "--workers", "1",
                                  "--json", str(out), "--scores", str(tmp_path / "lfw.npy")], capsys)
    assert code == 0, err
    got = json.loads(out.read_text())
    assert got["pairs"] == len(pairs) and got["templates"] == len(names) - 1 and "rank1" not in got
    cache = np.load(tmp_path / "lfw.embeddings.npz")
    assert cache["plain"].shape == (len(names), 32) and np.isfinite(cache["plain"]).all()
    assert np.abs(np.load(tmp_path / "lfw.npy")).max() <= 1 + 1e-12


@pytest.mark.slow
def test_benchmark_quick_identical_faster_and_leaner():
    from benchmarks.ijb_eval import compare
    from benchmarks.run import run_one

    rows, numbers = compare(quick=True)          # raises if the two paths disagree
    ours = rows[1]
    assert ours["speed_up"] > 1 and ours["memory_ratio"] < 1 and 0 <= numbers["auc"] <= 1
    section, ran = run_one("ijb_eval", quick=True)  # as benchmarks.run collects it
    assert ran and [row["path"] for row in section.rows] == [row["path"] for row in rows]


def test_ijbb_names_and_the_parent_folder_are_found(ijb_demo, tmp_path):
    from facenar.verify.ijb import load_release

    root = tmp_path / "IJB_release" / "IJBB"
    shutil.copytree(ijb_demo, root)
    for path in (root / "meta").iterdir():
        path.rename(path.with_name(path.name.replace("ijbc_", "ijbb_").replace("G1", "S1").replace("G2", "S2")))
    release = load_release(tmp_path / "IJB_release")               # the parent: IJBB/ found inside
    assert release.layout.target == "IJBB" and release.layout.root == root
    assert set(release.one_to_n) == {"gallery1", "gallery2", "probes"}
    assert len(release.pairs[0]) == len(load_release(ijb_demo, "IJBC").pairs[0])
