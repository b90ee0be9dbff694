"""Gates -> jobs: the exact commands, built without running anything."""
from dataclasses import replace
from pathlib import Path

from fabship.ci.gates import gates_for, jobs_for
from fabship.ci.settings import CiSettings

SETTINGS = CiSettings(root=Path("/p"), packages=("pkg", "tool.py"), tests=("tests",),
                      reports=Path("reports"), gates=("unit", "coverage", "lint", "metrics"),
                      fail_under=90.0, min_score=9.5, max_duplicate_lines=None)


def test_unit_and_coverage_share_one_pytest_run():
    jobs = jobs_for(SETTINGS, gates_for(SETTINGS, ("unit", "coverage")), "py")
    assert [job.name for job in jobs] == ["pytest"]
    assert jobs[0].argv == (
        "py", "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
        "--junitxml=reports/junit.xml", "-o", "junit_family=xunit2",
        "--cov", "--cov-report=xml:reports/coverage.xml", "--cov-report=html:reports/htmlcov",
        "--cov-report=term", "--cov-fail-under=0")
    assert jobs[0].modules == ("pytest", "pytest_cov")
    assert jobs[0].log == "reports/pytest.log"


def test_pytest_args_come_after_fabships_own():
    settings = replace(SETTINGS, pytest_args=("-n", "2", "-k", "not slow"))
    (job,) = jobs_for(settings, gates_for(settings, ("unit",)), "py")
    assert job.argv == ("py", "-m", "pytest", "tests", "-q", "-p", "no:cacheprovider",
                        "--junitxml=reports/junit.xml", "-o", "junit_family=xunit2",
                        "-n", "2", "-k", "not slow")


def test_unit_alone_skips_coverage():
    (job,) = jobs_for(SETTINGS, gates_for(SETTINGS, ("unit",)), "py")
    assert not any(arg.startswith("--cov") for arg in job.argv)
    assert job.modules == ("pytest",)


def test_lint_and_metrics_jobs():
    jobs = jobs_for(SETTINGS, gates_for(SETTINGS, ("lint", "metrics")), "py")
    assert [job.argv for job in jobs] == [
        ("py", "-m", "pylint", "pkg", "tool.py", "--persistent=n",
         "--output-format=parseable:reports/pylint.txt,parseable"),
        ("py", "-m", "pylint", "--disable=all", "--enable=duplicate-code", "--persistent=n",
         "--output-format=parseable", "--score=n", "pkg", "tool.py"),
    ]


def test_gates_carry_their_thresholds():
    gates = {gate.name: gate for gate in gates_for(SETTINGS, SETTINGS.gates)}
    assert (gates["coverage"].threshold, gates["coverage"].compare) == (90.0, ">=")
    assert (gates["lint"].threshold, gates["lint"].compare) == (9.5, ">=")
    assert (gates["metrics"].threshold, gates["metrics"].compare) == (None, "<=")
    assert gates["unit"].job == gates["coverage"].job == "pytest"
