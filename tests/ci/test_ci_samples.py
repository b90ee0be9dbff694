"""`python -m ci` against the small sample projects in tests/samples (real pytest, pylint)."""
import json
import shutil
import subprocess
import sys

import pytest

from fabship.ci.cli import main
from tests.helpers import REPO, git

SAMPLES = REPO / "tests" / "samples"


def sample_project(tmp_path, name):
    """A committed copy of a sample project, so the record can name its commit."""
    root = tmp_path / name
    shutil.copytree(SAMPLES / name, root, ignore=shutil.ignore_patterns("reports", ".coverage"))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "sample")
    return root, git(root, "rev-parse", "HEAD")


def run_ci(root, *args):
    lines = []
    code = main(["--root", str(root), *args], out=lines.append)
    return code, "\n".join(lines)


def table_row(output, gate):
    """The cells of one gate's row in the summary table."""
    for line in output.splitlines():
        cells = line.split()
        if cells[:1] == [gate] and len(cells) > 2 and cells[1].isupper():
            return cells
    raise AssertionError(f"no table row for {gate} in:\n{output}")


def record(root):
    return json.loads((root / "reports" / "gates.json").read_text())


@pytest.mark.parametrize("name, code, statuses", [
    ("passing", 0, {"unit": "passed", "coverage": "passed", "lint": "passed",
                    "metrics": "passed"}),
    ("failing_test", 1, {"unit": "failed", "coverage": "passed", "lint": "passed",
                         "metrics": "passed"}),
    ("low_coverage", 1, {"unit": "passed", "coverage": "failed", "lint": "passed",
                         "metrics": "passed"}),
    ("low_lint", 1, {"unit": "passed", "coverage": "passed", "lint": "failed",
                     "metrics": "passed"}),
])
def test_sample_exit_code_table_and_record(tmp_path, name, code, statuses):
    root, commit = sample_project(tmp_path, name)
    exit_code, output = run_ci(root)
    assert exit_code == code, output
    for gate, status in statuses.items():
        assert table_row(output, gate)[1] == status.upper(), output
    saved = record(root)
    assert saved["commit"] == commit and saved["dirty"] is False
    assert saved["passed"] is (code == 0)
    assert {gate: result["status"] for gate, result in saved["gates"].items()} == statuses
    for report in ("junit.xml", "coverage.xml", "htmlcov/index.html", "pylint.txt"):
        assert (root / "reports" / report).exists(), report


def test_failures_are_explained(tmp_path):
    root, _ = sample_project(tmp_path, "failing_test")
    _, output = run_ci(root, "--only", "unit")
    assert "tests: 1 passed, 1 failed" in output
    assert "FAILED tests/test_greet.py::test_greet_shouts" in output
    assert record(root)["gates"]["unit"]["failed"] == 1

    root, _ = sample_project(tmp_path, "low_lint")
    _, output = run_ci(root, "--only", "lint")
    assert table_row(output, "lint")[2:5] == ["0.00/10", ">=", "9"]
    assert "invalid-name" in output


def test_low_coverage_value_against_threshold(tmp_path):
    root, _ = sample_project(tmp_path, "low_coverage")
    _, output = run_ci(root, "--only", "coverage")
    assert table_row(output, "coverage")[2:5] == ["37.50%", ">=", "90"]
    gate = record(root)["gates"]["coverage"]
    assert (gate["value"], gate["threshold"]) == (37.5, 90.0)


def test_only_runs_a_subset(tmp_path):
    root, _ = sample_project(tmp_path, "passing")
    code, output = run_ci(root, "--only", "lint,metrics")
    assert code == 0
    assert list(record(root)["gates"]) == ["lint", "metrics"]
    assert "pytest" not in output
    assert not (root / "reports" / "junit.xml").exists()


def test_dirty_tree_is_recorded(tmp_path):
    root, _ = sample_project(tmp_path, "passing")
    (root / "calc" / "__init__.py").write_text('"""Changed."""\n')
    run_ci(root, "--only", "metrics")
    assert record(root)["dirty"] is True


def test_dry_prints_commands_and_runs_nothing(tmp_path):
    root, _ = sample_project(tmp_path, "passing")
    code, output = run_ci(root, "--dry")
    assert code == 0
    assert "-m pytest tests" in output and "--cov-report=xml:reports/coverage.xml" in output
    assert "-m pylint calc" in output and "--enable=duplicate-code" in output
    assert not (root / "reports").exists()


def ci_process(root, *args, python_flags=()):
    """`python -m ci` as a user runs it, from the repo so `ci` is importable."""
    return subprocess.run([sys.executable, *python_flags, "-m", "ci", "--root", str(root), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120, check=False)


@pytest.mark.parametrize("args, edit, message", [
    (["--only", "unit,speed"], ("", ""), "ci: error: --only: unknown gate 'speed'"),
    ([], ("min_score = 9.0", "min_score = ten"),
     "ci: error: setup.cfg: [ci:lint] min_score: expected a number from 0 to 10, got 'ten'"),
    ([], ("packages = calc", "packages = nowhere"),
     "ci: error: setup.cfg: [ci] packages: 'nowhere' does not exist"),
])
def test_bad_input_exits_2_without_traceback(tmp_path, args, edit, message):
    root, _ = sample_project(tmp_path, "passing")
    cfg = root / "setup.cfg"
    cfg.write_text(cfg.read_text().replace(*edit))
    proc = ci_process(root, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert not (root / "reports").exists()


def test_missing_tool_exits_2(tmp_path):
    # `python -S` hides site-packages, so pytest and pylint are really absent for that run.
    root, _ = sample_project(tmp_path, "passing")
    proc = ci_process(root, "--only", "lint", python_flags=("-S",))
    assert proc.returncode == 2
    assert "pylint needs the Python package 'pylint', which is not installed" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_process_exit_code_follows_gates(tmp_path):
    root, _ = sample_project(tmp_path, "failing_test")
    proc = ci_process(root, "--only", "unit")
    assert proc.returncode == 1
    assert "GATES FAILED (0/1)" in proc.stdout
