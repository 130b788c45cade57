"""benchmarks.data_pipeline's ImageFolder decode rows: photo-sized JPEGs, full vs reduced cv2 decode."""
import numpy as np

from benchmarks import data_pipeline
from data_tools.imagefolder import decode_image, jpeg_size


def test_photo_jpegs_are_photo_sized_and_distinct():
    files = data_pipeline.photo_jpegs(3, 75, 100)
    assert [jpeg_size(f) for f in files] == [(75, 100)] * 3  # (height, width)
    assert decode_image(files[0], "x").shape == (75, 100, 3)
    assert not np.array_equal(files[0], files[1])


def test_decode_rows_full_then_reduced(monkeypatch):
    monkeypatch.setattr(data_pipeline, "PHOTO_SIZE", (120, 160))
    rows = data_pipeline.imagefolder_decode_rows(quick=True)
    assert [row["pipeline"].split("cv2 ")[1] for row in rows] == [
        "full decode", "reduced decode 1/2", "reduced decode 1/4", "reduced decode 1/8"]
    assert all(row["images"] == 8 and row["images_per_s"] > 0 for row in rows)
    assert rows[0]["vs_full_decode"] == 1.0 and rows[0]["mean_abs_diff"] == 0.0
    assert all(0 < row["mean_abs_diff"] < 20 for row in rows[1:])  # close to the full decode, not equal
    assert set(rows[0]) <= set(data_pipeline.COLUMNS)
