"""The summary table, the gates.json record and the git state it names."""
import json
from datetime import datetime, timezone

from fabship.ci.report import build_record, format_table, git_state, write_record
from fabship.ci.verdicts import GateResult
from tests.helpers import git

RESULTS = [
    GateResult("unit", "passed", 12, "12 passed, 0 failed", None, ">=", 3.04),
    GateResult("coverage", "failed", 71.5, "71.50%", 90.0, ">=", 3.04),
    GateResult("lint", "error", None, "error", 9.5, ">=", 10.0, detail="pylint exited 32"),
]


def test_table_lines_up():
    assert format_table(RESULTS).splitlines() == [
        "gate      status  value                threshold  seconds",
        "--------  ------  -------------------  ---------  -------",
        "unit      PASSED  12 passed, 0 failed  -              3.0",
        "coverage  FAILED  71.50%               >= 90          3.0",
        "lint      ERROR   error                >= 9.5        10.0",
    ]


def test_record_names_commit_and_each_gate(tmp_path):
    now = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
    record = build_record(RESULTS, "abc123", False, now=now)
    path = tmp_path / "r" / "gates.json"
    write_record(path, record)
    saved = json.loads(path.read_text())
    assert saved["commit"] == "abc123" and saved["dirty"] is False
    assert saved["finished"] == "2026-11-23T12:00:00Z"
    assert saved["passed"] is False
    assert list(saved["gates"]) == ["unit", "coverage", "lint"]
    assert saved["gates"]["coverage"] == {
        "status": "failed", "value": 71.5, "shown": "71.50%", "threshold": 90.0,
        "compare": ">=", "seconds": 3.04, "detail": ""}
    assert saved["gates"]["lint"]["detail"] == "pylint exited 32"
    assert not list(path.parent.glob("*.tmp"))


def test_git_state(tmp_path):
    assert git_state(tmp_path) == (None, None)
    git(tmp_path, "init", "-q")
    (tmp_path / "f").write_text("1")
    git(tmp_path, "add", "f")
    git(tmp_path, "commit", "-qm", "one")
    head = git(tmp_path, "rev-parse", "HEAD")
    assert git_state(tmp_path) == (head, False)
    (tmp_path / "f").write_text("2")
    assert git_state(tmp_path) == (head, True)
