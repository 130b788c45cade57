"""The data_tools commands' user errors: one `error:` line, exit 2, nothing half-written (one test per case)."""
from __future__ import annotations

import math
import subprocess
import sys
import threading

import pytest

from benchmarks import run as bench_run
from data_tools import align, img2rec, make_bin, make_demo, proxy, rec2img
from data_tools.binfile import load_bin, save_bin
from facenar_runtime.cli import run_cli
from facenar_runtime.errors import UserError
from data_tools.emore import read_property, write_emore
from data_tools.recordio import RecordReader
from facenar import prepare_proxy
from facenar.schedule import schedule_problem, sgdr_lr, validate_schedule
from tests.jpeg_data import jpeg

TEMPLATE = "38 51 73 51 56 71 41 92 70 92"


def one_line_exit(main, argv, capsys) -> tuple[int, str]:
    with pytest.raises(SystemExit) as info:
        run_cli(main, [str(arg) for arg in argv])
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "Traceback" not in err, err
    return info.value.code, err


# -- 1: the SGDR hang --------------------------------------------------------------------------------
def _finishes(function, *args, timeout: float = 10.0):
    """Run function(*args) in a daemon thread: its result or exception, or fail if it has not returned."""
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args)
        except Exception as exc:  # noqa: BLE001 - handed back to the test
            outcome["error"] = exc

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{function.__name__}{args} did not return within {timeout} s (hang)"
    return outcome


@pytest.mark.parametrize("args, message", [
    ((0.0, 0, 2, 0.1, 1e-4), "t0"), ((5.0, -3, 2, 0.1, 1e-4), "t0"), ((3.0, 1, 0, 0.1, 1e-4), "t_mult"),
    ((3.0, 2, 0.5, 0.1, 1e-4), "t_mult"), ((1.0, math.nan, 2, 0.1, 0.0), "t0 must be finite"),
    ((1.0, 2, 2, math.inf, 0.0), "lr_max must be finite"), ((1.0, 2, 2, 0.1, 0.2), "lr_min <= lr_max"),
    ((math.nan, 2, 2, 0.1, 0.0), "epoch"),
])
def test_1_bad_schedules_raise_instead_of_looping(args, message):
    outcome = _finishes(sgdr_lr, *args)
    assert isinstance(outcome.get("error"), ValueError) and message in str(outcome["error"])


def test_1_validate_schedule_for_the_configs():
    assert schedule_problem(10, 2, 0.1, 1e-4) is None
    with pytest.raises(ValueError, match="t_mult"):
        validate_schedule(10, 0.5, 0.1, 1e-4)
    assert sgdr_lr(0.0, 2, 2, 0.1, 0.0) == pytest.approx(0.1)
    assert sgdr_lr(2.0, 2, 2, 0.1, 0.0) == pytest.approx(0.1)  # a restart after the first cycle
    assert sgdr_lr(4.0, 2, 2, 0.1, 0.0) == pytest.approx(0.05)  # middle of the second (4-epoch) cycle


# -- 2 and 3: outputs ----------------------------------------------------------------------------------
def test_2_make_bin_force_does_not_delete_a_folder(user_folder, tmp_path, capsys):
    (tmp_path / "pairs.txt").write_text("A 1 2\n")
    (tmp_path / "images").mkdir()
    code, err = one_line_exit(make_bin.main, ["--images", tmp_path / "images", "--pairs", tmp_path / "pairs.txt",
                                              "--out", user_folder, "--force"], capsys)
    assert code == 2 and "is a folder; the output is a file" in err and (user_folder / "keep.txt").exists()


def test_2_benchmarks_run_refuses_a_folder_before_running_anything(user_folder, monkeypatch, capsys):
    monkeypatch.setattr(bench_run, "run_all", lambda *a, **k: pytest.fail("benchmarks ran"))
    code, err = one_line_exit(bench_run.main, ["--out", user_folder, "--force", "--only", "cost_table"], capsys)
    assert code == 2 and "is a folder" in err and (user_folder / "keep.txt").exists()


@pytest.mark.parametrize("module, extra", [
    (img2rec, ["--images", "{images}"]), (rec2img, ["--data", "{data}"]), (make_demo, ["--num-ids", "2"]),
])
def test_2_folder_commands_never_replace_a_user_folder(module, extra, tiny_demo, tmp_path, user_folder, capsys):
    (tmp_path / "img" / "ann").mkdir(parents=True)
    (tmp_path / "img" / "ann" / "a.jpg").write_bytes(jpeg(0))
    argv = [arg.format(data=tiny_demo, images=tmp_path / "img") for arg in extra] + ["--out", user_folder, "--force"]
    code, err = one_line_exit(module.main, argv, capsys)
    assert code == 2 and "facenar did not write" in err and (user_folder / "keep.txt").exists()


def test_3_benchmarks_run_checks_the_output_folder_before_the_work(tmp_path, monkeypatch, capsys):
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(bench_run, "run_all", lambda *a, **k: pytest.fail("benchmarks ran"))
    code, err = one_line_exit(bench_run.main, ["--out", tmp_path / "afile" / "r.md", "--only", "cost_table"], capsys)
    assert code == 2 and "afile is not a folder" in err


# -- 9: degenerate landmarks ---------------------------------------------------------------------------
@pytest.mark.parametrize("values, message", [
    ("nan 51 73 51 56 71 41 92 70 92", "finite"), ("38 51 73 51 inf 71 41 92 70 92", "finite"),
    (" ".join(["0"] * 10), "degenerate"), (" ".join(["7.2"] * 10), "degenerate"),
])
def test_9_degenerate_landmarks_name_the_line(tmp_path, values, message, capsys):
    (tmp_path / "img").mkdir()
    (tmp_path / "img" / "a.jpg").write_bytes(jpeg(1, (200, 200)))
    (tmp_path / "marks.txt").write_text(f"# header\na.jpg {TEMPLATE}\na.jpg {values}\n")
    code, err = one_line_exit(align.main, ["--images", tmp_path / "img", "--landmarks", tmp_path / "marks.txt",
                                           "--out", tmp_path / "out"], capsys)
    assert code == 2 and "marks.txt:3:" in err and message in err and not (tmp_path / "out").exists()
    with pytest.raises(ValueError, match=message):
        align.align_face(None, [float(v) for v in values.split()])


# -- 11: an empty image file ---------------------------------------------------------------------------
@pytest.mark.parametrize("empty_first", [True, False])
def test_11_img2rec_names_an_empty_image(tmp_path, empty_first, capsys):
    (tmp_path / "img" / "ann").mkdir(parents=True)
    (tmp_path / "img" / "ann" / ("a.jpg" if empty_first else "b.jpg")).write_bytes(b"")
    (tmp_path / "img" / "ann" / ("b.jpg" if empty_first else "a.jpg")).write_bytes(jpeg(2))
    code, err = one_line_exit(img2rec.main, ["--images", tmp_path / "img", "--out", tmp_path / "out"], capsys)
    empty = "a.jpg" if empty_first else "b.jpg"
    assert code == 2 and f"ann/{empty} is empty (0 bytes)" in err and not (tmp_path / "out").exists()


# -- 12, 13: prepare_proxy against another run and against a killed one ----------------------------------
def test_12_a_proxy_that_appeared_meanwhile_is_not_replaced(tiny_demo, tmp_path, monkeypatch, capsys):
    out = tmp_path / "sproxy"
    real_manifest = proxy._manifest

    def other_run_finishes_first(plan):
        out.mkdir()
        (out / "train.rec").write_text("the other run's output")
        return real_manifest(plan)

    monkeypatch.setattr(proxy, "_manifest", other_run_finishes_first)
    code, err = one_line_exit(prepare_proxy.main, ["--data", tiny_demo, "--out", out, "--num-ids", "3",
                                                   "--per-id", "8"], capsys)
    assert code == 2 and "appeared while this command was writing it" in err
    assert (out / "train.rec").read_text() == "the other run's output"
    assert [p.name for p in tmp_path.iterdir()] == ["sproxy"]


def test_13_prepare_proxy_removes_the_temp_folder_of_a_killed_run(tiny_demo, tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    stale = tmp_path / f".sproxy.{child.pid}.k1ll3d.tmp"
    stale.mkdir()
    (stale / "train.rec").write_bytes(b"x" * 4096)
    proxy.build_proxy(tiny_demo, tmp_path / "sproxy", num_ids=3, per_id=8, val_per_id=2)
    assert [p.name for p in tmp_path.iterdir()] == ["sproxy"]


# -- 14: bounded text inputs ---------------------------------------------------------------------------
def test_14_make_bin_with_random_bytes_as_pairs_stops_at_once(tmp_path, capsys):
    code, err = one_line_exit(make_bin.main, ["--images", tmp_path, "--pairs", "/dev/urandom",
                                              "--out", tmp_path / "x.bin"], capsys)
    assert code == 2 and "pairs file /dev/urandom is not UTF-8 text" in err


def test_14_property_and_idx_are_bounded(tmp_path):
    (tmp_path / "property").write_text("1,112,112" + " " * 5000)
    with pytest.raises(UserError, match="property file .* is larger than 4096 bytes"):
        read_property(tmp_path)
    folder = tmp_path / "emore"
    write_emore(folder, [[jpeg(3)]])
    with open(folder / "train.idx", "a") as handle:
        handle.write("\n" * (4 * (folder / "train.rec").stat().st_size + (1 << 20)))
    with pytest.raises(UserError, match="far too large"):
        RecordReader(folder / "train.rec")


# -- 16: minor ------------------------------------------------------------------------------------------
def test_16_a_bin_without_pairs_says_so(tmp_path):
    save_bin(tmp_path / "empty.bin", [], [])
    with pytest.raises(UserError, match="empty.bin has no pairs"):
        load_bin(tmp_path / "empty.bin")


def test_16_per_id_message_names_per_id(tiny_demo, tmp_path):
    with pytest.raises(UserError, match="--per-id must be at least 2"):
        proxy.build_proxy(tiny_demo, tmp_path / "p", num_ids=2, per_id=1, val_per_id=1)


def test_write_faults_in_a_command_are_one_line(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    code, err = one_line_exit(make_demo.main, ["--out", tmp_path / "afile" / "d"], capsys)
    assert code == 2 and "afile is not a folder" in err
