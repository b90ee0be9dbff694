"""Gate definitions and the commands that feed them (pure: no processes run here).

A *job* is one command; a *gate* judges one job's output. The unit and coverage gates
share one pytest run, so the job list is derived from the selected gates.
"""
from dataclasses import dataclass

from .settings import CiSettings


@dataclass(frozen=True)
class Job:
    """One command to run from the project root, with its log file."""

    name: str
    argv: tuple[str, ...]
    modules: tuple[str, ...]  # Python modules the command needs installed
    log: str


@dataclass(frozen=True)
class Gate:
    """One pass/fail check, its threshold and the job whose output it reads."""

    name: str
    job: str
    threshold: float | None
    compare: str  # ">=" or "<=" between value and threshold


def gates_for(settings: CiSettings, names):
    """The Gate objects for `names`, in the canonical order."""
    table = {
        "unit": Gate("unit", "pytest", None, ">="),
        "coverage": Gate("coverage", "pytest", settings.fail_under, ">="),
        "lint": Gate("lint", "pylint", settings.min_score, ">="),
        "metrics": Gate("metrics", "duplicates", settings.max_duplicate_lines, "<="),
    }
    return tuple(table[name] for name in names)


def pytest_job(settings: CiSettings, python, coverage):
    """pytest over the tests with JUnit XML, plus coverage reports when asked."""
    reports = settings.reports
    argv = [python, "-m", "pytest", *settings.tests, "-q", "-p", "no:cacheprovider",
            f"--junitxml={reports / 'junit.xml'}", "-o", "junit_family=xunit2",
            *settings.pytest_args]
    modules = ("pytest",)
    if coverage:
        # The gate judges the threshold itself, so pytest's exit code speaks of tests only.
        argv += ["--cov", f"--cov-report=xml:{reports / 'coverage.xml'}",
                 f"--cov-report=html:{reports / 'htmlcov'}", "--cov-report=term",
                 "--cov-fail-under=0"]
        modules += ("pytest_cov",)
    return Job("pytest", tuple(argv), modules, str(reports / "pytest.log"))


def pylint_job(settings: CiSettings, python):
    """pylint over the packages; parseable text report in reports/pylint.txt."""
    argv = (python, "-m", "pylint", *settings.packages, "--persistent=n",
            f"--output-format=parseable:{settings.reports / 'pylint.txt'},parseable")
    return Job("pylint", argv, ("pylint",), str(settings.reports / "pylint.log"))


def duplicates_job(settings: CiSettings, python):
    """pylint's duplicate-code checker alone, for the metrics gate."""
    argv = (python, "-m", "pylint", "--disable=all", "--enable=duplicate-code",
            "--persistent=n", "--output-format=parseable", "--score=n", *settings.packages)
    return Job("duplicates", argv, ("pylint",), str(settings.reports / "duplicates.log"))


def jobs_for(settings: CiSettings, gates, python):
    """The jobs the given gates need, each once."""
    names = {gate.name for gate in gates}
    jobs = []
    if names & {"unit", "coverage"}:
        jobs.append(pytest_job(settings, python, coverage="coverage" in names))
    if "lint" in names:
        jobs.append(pylint_job(settings, python))
    if "metrics" in names:
        jobs.append(duplicates_job(settings, python))
    return tuple(jobs)
