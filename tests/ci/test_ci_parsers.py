"""Parsers for the reports the gate tools write, on texts as the tools print them."""
import pytest

from fabship.ci.metrics import sloc_by_package, sloc_of_file
from fabship.ci.parsers import (ReportError, JunitTotals, parse_coverage, parse_duplicate_lines,
                        parse_junit, parse_pylint_score)

PYLINT_R0801 = """************* Module p.b
p/b.py:1: [R0801(duplicate-code), ] Similar lines in 2 files
==p.a:[4:11]
==p.c:[4:11]
    y = x + 1
    return t
************* Module p.d
p/d.py:1: [R0801(duplicate-code), ] Similar lines in 3 files
==p.d:[10:16]
==p.e:[20:26]
==p.f:[1:7]
    a = 1
"""


def test_junit_sums_suites(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text('<testsuites><testsuite tests="5" failures="1" errors="1" skipped="1"/>'
                    '<testsuite tests="3" failures="0" errors="0" skipped="0"/></testsuites>')
    counts = parse_junit(path)
    assert counts == JunitTotals(tests=8, failures=1, errors=1, skipped=1)
    assert counts.summary() == "5 passed, 2 failed, 1 skipped"


def test_junit_single_suite(tmp_path):
    path = tmp_path / "junit.xml"
    path.write_text('<testsuite tests="2" failures="0" errors="0" skipped="0"/>')
    assert parse_junit(path).summary() == "2 passed, 0 failed"


def test_missing_or_broken_report(tmp_path):
    with pytest.raises(ReportError, match="cannot read report"):
        parse_junit(tmp_path / "absent.xml")
    (tmp_path / "bad.xml").write_text("<testsuite")
    with pytest.raises(ReportError, match="bad.xml"):
        parse_coverage(tmp_path / "bad.xml")


def test_coverage_counts_lines_and_branches(tmp_path):
    path = tmp_path / "coverage.xml"
    path.write_text('<coverage line-rate="0.9" lines-covered="90" lines-valid="100" '
                    'branches-covered="5" branches-valid="20"/>')
    assert parse_coverage(path) == pytest.approx(100 * 95 / 120)
    path.write_text('<coverage lines-covered="0" lines-valid="0"/>')
    assert parse_coverage(path) == 100.0


def test_pylint_score_takes_the_last_rating():
    text = "x.py:1: [C0114] ...\nYour code has been rated at 9.73/10 (previous run: 9.5/10)\n"
    assert parse_pylint_score(text) == 9.73
    assert parse_pylint_score("Your code has been rated at -3.50/10") == -3.5
    assert parse_pylint_score("no score here") is None


def test_duplicate_lines_counts_every_extra_copy():
    assert parse_duplicate_lines(PYLINT_R0801) == 7 * 1 + 6 * 2
    assert parse_duplicate_lines("") == 0


def test_sloc_skips_comments_and_blanks(tmp_path):
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "a.py").write_text('"""Doc\nstring."""\n# comment\n\nx = 1  # trailing\n')
    (pkg / "sub" / "b.py").write_text("def f():\n\n    return 2\n")
    (tmp_path / "tool.py").write_text("print(1)\n")
    (pkg / "broken.py").write_text("x = (\n")
    assert sloc_of_file(pkg / "a.py") == 3
    assert sloc_of_file(pkg / "broken.py") == 0
    assert sloc_by_package(tmp_path, ("pkg", "tool.py")) == {"pkg": 5, "tool.py": 1}
