"""benchmarks.run: sections from rows or Sections, failing/missing modules -> "not run", atomic report."""
import importlib
import sys
import textwrap

import pytest

from benchmarks import run as bench_run
from benchmarks.common import Section
from facenar_runtime.errors import UserError

FAKES = {
    "rows_only": '''
        """Rows only: a table built from the row keys."""
        def run(quick=False):
            return [{"name": "a", "per_s": 1.5}, {"name": "b", "per_s": 2.0, "extra": "x"}]
    ''',
    "with_section": '''
        """With section()."""
        from benchmarks.common import Section
        def run(quick=False, device="cpu"):
            return [{"value": 3, "device": device, "quick": quick}]
        def section(rows, quick):
            s = Section("Custom title", ["value", "device"], rows)
            s.target("value >= 3", rows[0]["value"] >= 3, "3")
            return s
    ''',
    "returns_section": '''
        """Returns a Section."""
        from benchmarks.common import Section
        def run(quick=False):
            s = Section("Direct", ["k"], [{"k": 1}])
            s.target("k == 2", False, "k is 1: the gap")
            return s
    ''',
    "fails": '''
        """Fails at run time."""
        def run(quick=False):
            raise RuntimeError("engine not ready")
    ''',
    "broken_import": '''
        import facenar_module_that_does_not_exist
    ''',
}


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    package = tmp_path / "fakebench"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, source in FAKES.items():
        (package / f"{name}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield "fakebench"
    for name in [m for m in sys.modules if m == "fakebench" or m.startswith("fakebench.")]:
        del sys.modules[name]


def test_rows_become_a_table_titled_from_the_docstring(fake_package):
    section, ran = bench_run.run_one("rows_only", quick=True, package=fake_package)
    assert ran
    assert section.title == "Rows only: a table built from the row keys"
    assert section.columns == ["name", "per_s", "extra"]
    text = section.markdown()
    assert "| name | per_s | extra |" in text and "| b | 2 | x |" in text


def test_module_section_and_device_are_used(fake_package):
    section, ran = bench_run.run_one("with_section", quick=True, device="cpu", package=fake_package)
    assert ran and section.title == "Custom title"
    assert section.rows == [{"value": 3, "device": "cpu", "quick": True}]
    assert "target value >= 3: **met**" in section.markdown()


def test_failures_and_missing_modules_are_not_run(fake_package):
    section, ran = bench_run.run_one("fails", quick=True, package=fake_package)
    assert not ran and section.title == "Fails at run time"
    assert section.notes[0].startswith("not run: RuntimeError: engine not ready (fails.py:")
    section, ran = bench_run.run_one("absent", quick=True, package=fake_package)
    assert not ran and section.notes == ["not run: module fakebench.absent does not exist yet"]
    section, ran = bench_run.run_one("broken_import", quick=True, package=fake_package)
    assert not ran and "import failed: ModuleNotFoundError" in section.notes[0]
    assert "|" not in section.markdown()  # no empty table for a benchmark that did not run


def test_cpu_only_module_is_not_run_on_cuda(fake_package):
    section, ran = bench_run.run_one("rows_only", quick=True, device="cuda", package=fake_package)
    assert not ran and "CPU only" in section.notes[0]
    assert bench_run.device_capable("with_section", fake_package)
    assert not bench_run.device_capable("rows_only", fake_package)


def test_report_summarises_every_benchmark_and_is_written_atomically(fake_package, tmp_path):
    names = ["rows_only", "returns_section", "fails", "absent"]
    results, all_ran = bench_run.run_all(names, quick=True, package=fake_package, echo=lambda _: None)
    assert not all_ran
    text = bench_run.render(results, {"cpu": "test"}, quick=True, device="cpu")
    assert text.startswith(bench_run.HEADER)
    assert "| returns_section | ran | 0/1 met |" in text
    assert "| fails | NOT RUN | - |" in text and "| absent | NOT RUN | - |" in text
    assert "target k == 2: **NOT met** (k is 1: the gap)" in text
    assert "GPU figures were not measured in this run" in text
    out = tmp_path / "RESULTS.md"
    bench_run.write_report(out, text)
    bench_run.write_report(out, text.replace("test", "again"))  # an earlier report is regenerated without --force
    assert "| cpu | again |" in out.read_text()
    with pytest.raises(TypeError):
        bench_run.write_report(out, None)  # fails mid-write: the previous report stays whole
    assert "| cpu | again |" in out.read_text()
    assert [p.name for p in tmp_path.iterdir() if p.name != "fakebench"] == ["RESULTS.md"]  # no temporary left


def test_report_write_is_atomic_and_protects_other_files(tmp_path):
    out = tmp_path / "notes.md"
    out.write_text("my own notes\n")
    with pytest.raises(UserError, match="not a benchmark report"):
        bench_run.write_report(out, bench_run.HEADER + "\n")
    assert out.read_text() == "my own notes\n"
    bench_run.write_report(out, bench_run.HEADER + "\nnew\n", force=True)
    assert out.read_text() == bench_run.HEADER + "\nnew\n"
    assert [p.name for p in tmp_path.iterdir()] == ["notes.md"]  # no temporary file left behind


def test_only_option_validates_names():
    assert bench_run.parse_only(None) == list(bench_run.BENCHMARKS)
    assert bench_run.parse_only("cost_table, networks") == ["cost_table", "networks"]
    with pytest.raises(UserError, match="unknown benchmark nope"):
        bench_run.parse_only("cost_table,nope")
    for empty in ("", " , "):  # not "all": an empty value is a mistake, not every benchmark's minutes
        with pytest.raises(UserError, match="unknown benchmark"):
            bench_run.parse_only(empty)


def test_main_strict_exit_code(fake_package, tmp_path, monkeypatch):
    monkeypatch.setattr(bench_run, "BENCHMARKS", ("rows_only", "fails"))
    monkeypatch.setattr(bench_run, "load", lambda name, package="benchmarks": importlib.import_module(
        f"{fake_package}.{name}"))
    out = tmp_path / "R.md"
    assert bench_run.main(["--quick", "--out", str(out)]) == 0
    assert "| rows_only | ran | - |" in out.read_text() and "not run: RuntimeError" in out.read_text()
    assert bench_run.main(["--quick", "--out", str(out), "--strict"]) == 1
    assert bench_run.main(["--quick", "--only", "rows_only", "--out", str(out), "--strict"]) == 0
    assert "fails" not in out.read_text()


def test_section_without_columns_renders_notes_only():
    section = Section("T", [])
    section.notes.append("not run: x")
    assert section.markdown() == "## T\n\n- not run: x\n"


@pytest.mark.slow
def test_cost_table_against_paper(tmp_path):
    from benchmarks import cost_table

    out = tmp_path / "R.md"
    assert bench_run.main(["--only", "cost_table", "--out", str(out), "--strict"]) == 0
    assert "| cost_table | ran | 2/2 met |" in out.read_text()
    section = cost_table.run()
    assert [row["network"].split(" ")[0] for row in section.rows] == ["LResNet50E-IR", "Ours-1", "Ours-2",
                                                                     "ResNet-18", "ResNet-18-8", "ResNet-18-16"]
    assert len(section.targets) == 2 and all(met for _, met, _ in section.targets), section.targets
    assert section.rows[2]["mac_saving"] == "26.0%" and section.rows[2]["paper_mac_saving"] == "25.8%"
    assert section.rows[0]["params"] == "4.3591e7"


def test_cost_table_resnet18_rows_against_table4():
    from benchmarks import cost_table

    rows = cost_table._rows("Table 4", cost_table.PAPER_TABLE4, cost_table.IMAGENET_CLASSES)
    cells = [(r["replaced"], r["params"], r["macs"], r["mac_saving"], r["paper_mac_saving"]) for r in rows]
    assert cells == [("0/8", "1.1690e7", "1.8141e9", "0.0%", "0.0%"),  # torchvision resnet18 + fc
                     ("1/8", "1.1625e7", "1.6122e9", "11.1%", "10.8%"),
                     ("4/16", "0.9266e7", "1.4564e9", "19.7%", "19.9%")]
    assert [r["macs_diff"] for r in rows] == ["+3.07%", "+2.69%", "+3.29%"]  # the documented gap
    assert rows[1]["paper_params"] == "—" and all("Linear(512->1000)" in r["counted"] for r in rows)
    assert all(r["_saving_gap"] <= cost_table.SAVING_TOLERANCE for r in rows)
