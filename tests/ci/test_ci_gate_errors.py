"""A gate in `error` (its tool produced no result) fails the run like a failed gate."""
import json

import pytest

from tests.ci.test_ci_samples import ci_process, sample_project, table_row


@pytest.mark.parametrize("args, statuses", [
    ([], {"unit": "error", "lint": "passed", "metrics": "passed"}),
    (["--only", "unit,coverage,lint"], {"unit": "error", "coverage": "error",
                                        "lint": "passed"}),
], ids=["configured-gates", "with-coverage"])
def test_pytest_collecting_nothing_fails_the_run(tmp_path, args, statuses):
    """pytest collects no test: unit (and coverage) in error, so the run fails."""
    root, commit = sample_project(tmp_path, "no_tests")
    proc = ci_process(root, *args)
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    for gate, status in statuses.items():
        assert table_row(out, gate)[1] == status.upper(), out
    assert table_row(out, "unit")[2] == "error", out
    assert "unit error: pytest exited 5 (no tests collected)" in out
    passed = sum(status == "passed" for status in statuses.values())
    assert f"GATES FAILED ({passed}/{len(statuses)}); commit {commit}" in out
    assert "all gates passed" not in out
    saved = json.loads((root / "reports" / "gates.json").read_text())
    assert (saved["commit"], saved["dirty"], saved["passed"]) == (commit, False, False)
    assert {gate: result["status"] for gate, result in saved["gates"].items()} == statuses
    assert saved["gates"]["unit"]["detail"] == "pytest exited 5 (no tests collected)"
    assert saved["gates"]["unit"]["value"] is None


def test_only_an_erroring_gate_fails_the_run(tmp_path):
    """The erroring gate alone: exit 1 and a failed record, with no failed gate at all."""
    root, _ = sample_project(tmp_path, "no_tests")
    proc = ci_process(root, "--only", "unit")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert table_row(proc.stdout, "unit")[1] == "ERROR"
    assert "GATES FAILED (0/1)" in proc.stdout
    saved = json.loads((root / "reports" / "gates.json").read_text())
    assert saved["passed"] is False and saved["gates"]["unit"]["status"] == "error"
