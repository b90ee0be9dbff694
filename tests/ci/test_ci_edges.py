"""Gate verdicts and the gate record at their edges: errors, boundaries, missing reports."""
import json
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest

from fabship.ci.gates import gates_for
from fabship.ci.report import build_record, format_table, git_state, write_record
from fabship.ci.runner import JobOutcome
from fabship.ci.settings import CiSettings
from fabship.ci.verdicts import GateResult, judge
from tests.helpers import git


@pytest.fixture(name="settings")
def fixture_settings(tmp_path):
    """A project with thresholds: coverage 80, lint 9.0, at most 5 duplicated lines."""
    (tmp_path / "reports").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1\n")
    return CiSettings(root=tmp_path, packages=("pkg",), tests=("tests",),
                      reports=Path("reports"), gates=("unit", "coverage", "lint", "metrics"),
                      fail_under=80.0, min_score=9.0, max_duplicate_lines=5)


def verdict(settings, name, code, log_text=""):
    """judge() of gate `name` after its job exited `code` (log: log_text)."""
    log = settings.reports_dir / f"{name}.log"
    log.write_text(log_text)
    gate = gates_for(settings, (name,))[0]
    return judge(gate, JobOutcome(gate.job, code, 2.345, log), settings)


def junit(settings, tests, failures=0, errors=0):
    """reports/junit.xml with these counts."""
    (settings.reports_dir / "junit.xml").write_text(
        f'<testsuite tests="{tests}" failures="{failures}" errors="{errors}" skipped="1"/>')


def coverage(settings, covered, valid=300):
    """reports/coverage.xml with this many lines covered."""
    (settings.reports_dir / "coverage.xml").write_text(
        f'<coverage lines-covered="{covered}" lines-valid="{valid}"/>')


def lint_report(settings, score):
    """reports/pylint.txt rating the code `score`."""
    (settings.reports_dir / "pylint.txt").write_text(f"Your code has been rated at {score}/10\n")


def duplicates(lines):
    """pylint's duplicate-code output for one block of `lines` lines in two files."""
    return f"p/a.py:1: [R0801(duplicate-code), ] Similar\n==p.a:[0:{lines}]\n==p.b:[0:{lines}]\n"


def test_error_verdicts_are_complete_and_never_pass(settings):
    """An error carries the gate, its threshold and the reason, and is not a pass."""
    result = verdict(settings, "coverage", 2)
    assert result == GateResult("coverage", "error", None, "error", 80.0, ">=", 2.345,
                                "pytest exited 2; no coverage data")
    assert not result.passed
    assert result.as_record() == {"status": "error", "value": None, "shown": "error",
                                  "threshold": 80.0, "compare": ">=", "seconds": 2.35,
                                  "detail": "pytest exited 2; no coverage data"}
    metrics = verdict(settings, "metrics", 32)
    assert metrics == GateResult("metrics", "error", None, "error", 5, "<=", 2.345,
                                 "pylint exited 32 (fatal or usage error)")


@pytest.mark.parametrize("code", [1, 33, 32 | 16])
def test_lint_fatal_or_usage_exits_are_errors_whatever_the_report(settings, code):
    """Bit 1 (fatal) and bit 32 (usage) of pylint's exit code make an error verdict."""
    lint_report(settings, "10.00")
    result = verdict(settings, "lint", code)
    assert (result.status, result.detail) == (
        "error", f"pylint exited {code} (fatal or usage error)")


@pytest.mark.parametrize("code", [2, 4, 8, 16, 30])
def test_lint_message_exits_are_judged_by_score(settings, code):
    """Bits 2-16 only say pylint found messages: the score decides."""
    lint_report(settings, "9.00")
    assert verdict(settings, "lint", code).passed


def test_lint_without_a_report_is_an_error(settings):
    """The missing report is named."""
    result = verdict(settings, "lint", 0)
    assert (result.status, result.detail) == (
        "error", f"{settings.reports_dir / 'pylint.txt'}: No such file or directory")


@pytest.mark.parametrize("score, status", [("8.99", "failed"), ("9.00", "passed"),
                                           ("10.00", "passed")])
def test_lint_threshold_boundary(settings, score, status):
    """min_score itself passes."""
    lint_report(settings, score)
    result = verdict(settings, "lint", 0)
    assert (result.name, result.status, result.value, result.shown) == (
        "lint", status, float(score), f"{float(score):.2f}/10")


@pytest.mark.parametrize("covered, status, shown", [(239, "failed", "79.67%"),
                                                    (240, "passed", "80.00%"),
                                                    (200, "failed", "66.67%")])
def test_coverage_boundary_and_rounding(settings, covered, status, shown):
    """fail_under itself passes; the value is kept to two decimals."""
    coverage(settings, covered)
    result = verdict(settings, "coverage", 0)
    assert (result.status, result.value, result.shown) == (status, float(shown[:-1]), shown)


@pytest.mark.parametrize("lines, status", [(5, "passed"), (6, "failed"), (0, "passed")])
def test_metrics_boundary(settings, lines, status):
    """max_duplicate_lines itself passes."""
    result = verdict(settings, "metrics", 0, duplicates(lines) if lines else "")
    assert (result.status, result.value, result.threshold, result.compare) == (
        status, lines, 5, "<=")
    assert result.shown == f"{lines} duplicated lines, 1 sloc"
    assert result.data == {"duplicate_lines": lines, "sloc": {"pkg": 1}}


def test_metrics_without_a_limit_always_pass(settings):
    """No max_duplicate_lines: the numbers are recorded, nothing is judged."""
    relaxed = CiSettings(**{**settings.__dict__, "max_duplicate_lines": None})
    result = verdict(relaxed, "metrics", 0, duplicates(40))
    assert (result.status, result.value, result.threshold) == ("passed", 40, None)


@pytest.mark.parametrize("counts, code, status", [
    ((3, 0, 0), 0, "passed"),
    ((3, 1, 0), 0, "failed"),  # a failure in the report fails, whatever pytest exited
    ((3, 0, 1), 1, "failed"),
    ((3, 0, 0), 1, "failed"),  # pytest failed although the report shows none failing
    ((0, 0, 0), 0, "failed"),  # no test ran
])
def test_unit_verdict_needs_tests_and_no_failure(settings, counts, code, status):
    """Passed only when tests ran, none failed, and pytest agrees."""
    tests, failures, errors = counts
    junit(settings, tests, failures, errors)
    result = verdict(settings, "unit", code)
    assert result.status == status
    assert result.value == tests - failures - errors - 1
    assert result.data == {"tests": tests, "failed": failures + errors, "skipped": 1}
    assert (result.threshold, result.compare) == (None, ">=")


def test_unit_without_a_report_is_an_error(settings):
    """pytest exited normally but wrote no junit.xml."""
    result = verdict(settings, "unit", 0)
    assert result.status == "error" and result.value is None
    assert result.detail.startswith(f"{settings.reports_dir / 'junit.xml'}: cannot read report")


def test_record_passes_only_when_every_gate_passed():
    """An error gate never counts as passed; the version and the time are recorded."""
    passed = GateResult("unit", "passed", 3, "3", None, ">=", 1.0)
    error = GateResult("lint", "error", None, "error", 9.0, ">=", 1.0, "boom")
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
    assert build_record([passed], "c", False, now)["passed"] is True
    record = build_record([passed, error], "c", True, now)
    assert (record["version"], record["passed"], record["dirty"]) == (1, False, True)
    assert record["gates"]["lint"]["status"] == "error"
    assert build_record([], "c", False, now)["passed"] is False  # no gate vouches for it


def test_record_time_is_utc_whatever_the_local_zone(monkeypatch):
    """`finished` is UTC even where the machine's clock is not."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        before = datetime.now(timezone.utc).replace(microsecond=0, tzinfo=None)
        finished = datetime.strptime(build_record([], "c", False)["finished"],
                                     "%Y-%m-%dT%H:%M:%SZ")
    finally:
        monkeypatch.undo()
        time.tzset()
    assert 0 <= (finished - before).total_seconds() < 60


def test_write_record_makes_directories_and_replaces_the_file(tmp_path):
    """Parents are created; a second write replaces the first; two-space JSON, one line end."""
    path = tmp_path / "a" / "b" / "gates.json"
    write_record(path, {"passed": False})
    write_record(path, {"passed": True, "gates": {}})
    assert path.read_text() == '{\n  "passed": true,\n  "gates": {}\n}\n'
    assert sorted(p.name for p in path.parent.iterdir()) == ["gates.json"]


def test_table_formats_thresholds_and_seconds():
    """Thresholds as `>= 90`, `<= 0`, or `-`; seconds right-aligned to one decimal."""
    results = [GateResult("metrics", "passed", 0, "0 duplicated lines", 0, "<=", 12.349),
               GateResult("coverage", "passed", 91.0, "91.00%", 90.5, ">=", 0.04)]
    assert format_table(results).splitlines() == [
        "gate      status  value               threshold  seconds",
        "--------  ------  ------------------  ---------  -------",
        "metrics   PASSED  0 duplicated lines  <= 0          12.3",
        "coverage  PASSED  91.00%              >= 90.5        0.0"]


def test_git_state_ignores_only_the_outputs(tmp_path):
    """Files the gates write do not make the tree dirty; anything else does."""
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("1")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-qm", "one")
    head = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "reports").mkdir()
    (tmp_path / "reports" / "gates.json").write_text(json.dumps({}))
    assert git_state(tmp_path, ("reports",)) == (head, False)
    assert git_state(tmp_path) == (head, True)
    (tmp_path / "g").write_text("new")
    assert git_state(tmp_path, ("reports",)) == (head, True)


def test_git_state_of_a_project_in_a_subdirectory(tmp_path):
    """Only the project's own files count, as for the deploy's check of the same tree."""
    git(tmp_path, "init", "-q")
    (tmp_path / "proj").mkdir()
    (tmp_path / "top.txt").write_text("1")
    (tmp_path / "proj" / "f.py").write_text("1")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    head = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "top.txt").write_text("2")
    assert git_state(tmp_path / "proj", ("reports",)) == (head, False)
    (tmp_path / "proj" / "f.py").write_text("2")
    assert git_state(tmp_path / "proj", ("reports",)) == (head, True)


def test_git_state_without_git(tmp_path, monkeypatch):
    """No git on PATH: (None, None), as outside a checkout."""
    monkeypatch.setenv("PATH", str(tmp_path))
    assert git_state(tmp_path) == (None, None)
