"""5-point similarity alignment to the ArcFace template, checked on real LFW photos."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from data_tools.align import ARCFACE_TEMPLATE, align_face, main, read_landmarks, similarity_transform
from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError

FRONTAL = {"Teresa_Williams_0001.jpg", "Anthony_Hopkins_0001.jpg", "Anthony_Hopkins_0002.jpg",
           "Rob_Lowe_0001.jpg", "Rob_Lowe_0002.jpg", "Nathalie_Baye_0002.jpg"}


def apply(matrix, points):
    return points @ matrix[:, :2].T + matrix[:, 2]


def test_recovers_a_known_similarity():
    angle, scale, shift = np.deg2rad(17.0), 2.3, np.array([40.0, -12.0])
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    src = (ARCFACE_TEMPLATE - shift) @ np.linalg.inv(scale * rotation).T  # template = s R src + t
    matrix = similarity_transform(src, ARCFACE_TEMPLATE)
    np.testing.assert_allclose(matrix, np.hstack([scale * rotation, shift[:, None]]), atol=1e-9)


def least_squares_similarity(src, dst):
    """Independent check: solve u = a x - b y + tx, v = b x + a y + ty as a linear system."""
    rows, rhs = [], []
    for (x, y), (u, v) in zip(src, dst):
        rows += [[x, -y, 1, 0], [y, x, 0, 1]]
        rhs += [u, v]
    a, b, tx, ty = np.linalg.lstsq(np.array(rows), np.array(rhs), rcond=None)[0]
    return np.array([[a, -b, tx], [b, a, ty]])


def test_real_lfw_landmarks_land_on_the_template(realdata):
    faces = read_landmarks(realdata / "lfw_raw" / "landmarks_5pt.txt")
    assert len(faces) == 7
    for relative, landmarks in faces:
        matrix = similarity_transform(landmarks, ARCFACE_TEMPLATE)
        np.testing.assert_allclose(matrix, least_squares_similarity(landmarks, ARCFACE_TEMPLATE), atol=1e-8)
        errors = np.linalg.norm(apply(matrix, landmarks) - ARCFACE_TEMPLATE, axis=1)
        if relative.split("/")[-1] in FRONTAL:
            # what remains is the face's own deviation from the mean template
            assert errors.mean() < 3.0 and errors[:2].max() < 3.0, (relative, errors)


def test_aligned_image_puts_a_landmark_dot_on_the_template(realdata):
    relative, landmarks = read_landmarks(realdata / "lfw_raw" / "landmarks_5pt.txt")[3]
    image = cv2.imread(str(realdata / "lfw_raw" / relative.split("/")[-1]))
    cv2.circle(image, (int(landmarks[0, 0]), int(landmarks[0, 1])), 2, (0, 0, 255), -1)  # left eye
    aligned = align_face(image, landmarks)
    assert aligned.shape == (112, 112, 3)
    red = (aligned[..., 2] > 200) & (aligned[..., 1] < 60) & (aligned[..., 0] < 60)
    y, x = np.argwhere(red).mean(axis=0)
    assert np.hypot(x - ARCFACE_TEMPLATE[0, 0], y - ARCFACE_TEMPLATE[0, 1]) < 3.0


def test_cli_aligns_the_real_folder(realdata, tmp_path, capsys):
    out = tmp_path / "aligned"
    main(["--images", str(realdata / "lfw_raw"), "--landmarks", str(realdata / "lfw_raw" / "landmarks_5pt.txt"),
          "--out", str(out)])
    written = sorted(out.rglob("*.jpg"))
    assert len(written) == 7 and (out / "lfw" / "Rob_Lowe" / "Rob_Lowe_0001.jpg") in written
    assert {cv2.imread(str(path)).shape for path in written} == {(112, 112, 3)}
    assert "aligned 7 faces" in capsys.readouterr().out


def test_plain_landmark_lines_without_box(tmp_path):
    image = np.zeros((200, 200, 3), np.uint8)
    cv2.imwrite(str(tmp_path / "a.png"), image)
    numbers = " ".join(str(v) for v in (ARCFACE_TEMPLATE * 1.5 + 10).ravel())
    (tmp_path / "marks.txt").write_text(f"# comment\n\na.png {numbers}\n")
    [(name, landmarks)] = read_landmarks(tmp_path / "marks.txt")
    assert name == "a.png" and landmarks.shape == (5, 2)
    main(["--images", str(tmp_path), "--landmarks", str(tmp_path / "marks.txt"), "--out", str(tmp_path / "o")])
    assert cv2.imread(str(tmp_path / "o" / "a.png")).shape == (112, 112, 3)


@pytest.mark.parametrize("line, match", [
    ("a.jpg 1 2 3", "expected 'path"),
    ("a.jpg " + " ".join(["x"] * 10), "must be numbers"),
    ("../a.jpg " + " ".join(["1"] * 10), "must be relative"),
])
def test_bad_landmark_lines(tmp_path, line, match):
    (tmp_path / "marks.txt").write_text(line + "\n")
    with pytest.raises(UserError, match=match):
        read_landmarks(tmp_path / "marks.txt")


def test_missing_image_exits_2_and_leaves_nothing(tmp_path, capsys):
    (tmp_path / "marks.txt").write_text("lfw/Nobody/Nobody_0001.jpg 38 51 73 51 56 71 41 92 70 92\n")
    with pytest.raises(SystemExit) as info:
        run_cli(main, ["--images", str(tmp_path), "--landmarks", str(tmp_path / "marks.txt"),
                       "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert info.value.code == 2 and "Nobody_0001.jpg" in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


def test_refuses_to_replace_its_own_input(tmp_path):
    (tmp_path / "marks.txt").write_text("a.png " + " ".join(["5"] * 10) + "\n")
    with pytest.raises(UserError, match="would replace the input"):
        main(["--images", str(tmp_path), "--landmarks", str(tmp_path / "marks.txt"), "--out", str(tmp_path),
              "--force"])
    assert (tmp_path / "marks.txt").exists()
