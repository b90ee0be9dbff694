"""Verdicts from job outcomes and report files, including the tools' error exits."""
from dataclasses import replace
from pathlib import Path

import pytest

from fabship.ci.gates import gates_for
from fabship.ci.runner import JobOutcome
from fabship.ci.settings import CiSettings
from fabship.ci.verdicts import judge


@pytest.fixture
def settings(tmp_path):
    (tmp_path / "reports").mkdir()
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "m.py").write_text("x = 1\ny = 2\n")
    return CiSettings(root=tmp_path, packages=("pkg",), tests=("tests",),
                      reports=Path("reports"), gates=("unit", "coverage", "lint", "metrics"),
                      fail_under=80.0, min_score=9.0, max_duplicate_lines=5)


def outcome(settings, name, code, log_text=""):
    log = settings.reports_dir / f"{name}.log"
    log.write_text(log_text)
    return JobOutcome(name, code, 1.5, log)


def gate(settings, name):
    return gates_for(settings, (name,))[0]


def write_junit(settings, tests, failures):
    (settings.reports_dir / "junit.xml").write_text(
        f'<testsuite tests="{tests}" failures="{failures}" errors="0" skipped="0"/>')


def test_unit_passes_and_fails_on_counts(settings):
    write_junit(settings, 4, 0)
    result = judge(gate(settings, "unit"), outcome(settings, "pytest", 0), settings)
    assert (result.status, result.shown, result.data["tests"]) == ("passed", "4 passed, 0 failed", 4)
    write_junit(settings, 4, 1)
    result = judge(gate(settings, "unit"), outcome(settings, "pytest", 1), settings)
    assert (result.status, result.shown) == ("failed", "3 passed, 1 failed")


@pytest.mark.parametrize("code, words", [(4, "usage error"), (5, "no tests collected"),
                                         (3, "internal error"), (-9, "unexpected exit")])
def test_unit_error_exits(settings, code, words):
    result = judge(gate(settings, "unit"), outcome(settings, "pytest", code), settings)
    assert result.status == "error"
    assert result.detail == f"pytest exited {code} ({words})"


def test_coverage_against_threshold(settings):
    cov = settings.reports_dir / "coverage.xml"
    cov.write_text('<coverage lines-covered="79" lines-valid="100"/>')
    result = judge(gate(settings, "coverage"), outcome(settings, "pytest", 0), settings)
    assert (result.status, result.value, result.threshold) == ("failed", 79.0, 80.0)
    cov.write_text('<coverage lines-covered="80" lines-valid="100"/>')
    assert judge(gate(settings, "coverage"), outcome(settings, "pytest", 1), settings).passed
    assert judge(gate(settings, "coverage"), outcome(settings, "pytest", 4),
                 settings).status == "error"


def test_missing_report_is_an_error_verdict(settings):
    result = judge(gate(settings, "coverage"), outcome(settings, "pytest", 0), settings)
    assert result.status == "error" and "coverage.xml" in result.detail
    result = judge(gate(settings, "lint"), outcome(settings, "pylint", 0), settings)
    assert result.status == "error" and "pylint.txt" in result.detail


def test_lint_score_and_errors(settings):
    report = settings.reports_dir / "pylint.txt"
    report.write_text("Your code has been rated at 8.99/10\n")
    result = judge(gate(settings, "lint"), outcome(settings, "pylint", 16), settings)
    assert (result.status, result.shown) == ("failed", "8.99/10")
    report.write_text("Your code has been rated at 9.00/10\n")
    assert judge(gate(settings, "lint"), outcome(settings, "pylint", 0), settings).passed
    report.write_text("")
    result = judge(gate(settings, "lint"), outcome(settings, "pylint", 0), settings)
    assert (result.status, result.detail) == ("error", "pylint printed no score")
    result = judge(gate(settings, "lint"), outcome(settings, "pylint", 32), settings)
    assert result.detail == "pylint exited 32 (fatal or usage error)"


def test_metrics_records_sloc_and_duplicates(settings):
    dup = "pkg/m.py:1: [R0801(duplicate-code), ] Similar\n==a:[0:6]\n==b:[0:6]\n"
    result = judge(gate(settings, "metrics"), outcome(settings, "duplicates", 8, dup), settings)
    assert result.status == "failed"
    assert result.data == {"duplicate_lines": 6, "sloc": {"pkg": 2}}
    assert result.as_record()["sloc"] == {"pkg": 2}
    relaxed = replace(settings, max_duplicate_lines=6)
    assert judge(gate(relaxed, "metrics"), outcome(relaxed, "duplicates", 8, dup), relaxed).passed
    result = judge(gate(settings, "metrics"), outcome(settings, "duplicates", 1), settings)
    assert result.status == "error"
