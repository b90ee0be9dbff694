"""`python -m ci [--only GATES] [--dry] [--root DIR]`: parse, run, report, exit code."""
import argparse
import importlib.util
import shlex
import shutil
import sys
from pathlib import Path

from .gates import gates_for, jobs_for
from .report import build_record, format_table, git_state, write_record
from .runner import run_jobs
from .settings import GATE_NAMES, CiConfigError, load_settings, parse_gate_names
from .verdicts import judge

STALE_REPORTS = ("junit.xml", "coverage.xml", "htmlcov", "pylint.txt", "gates.json")


def parse_args(argv):
    """The command line."""
    prog = "fabship-ci" if sys.argv[0].endswith("fabship-ci") else "python -m ci"
    parser = argparse.ArgumentParser(
        prog=prog, description="Run the quality gates configured in setup.cfg "
                               "([ci]) or pyproject.toml ([tool.fabship.ci]).")
    parser.add_argument("--only", metavar="GATES",
                        help=f"comma list of gates to run (of {', '.join(GATE_NAMES)})")
    parser.add_argument("--dry", action="store_true",
                        help="print the commands the gates would run, run nothing")
    parser.add_argument("--root", default=".",
                        help="project directory holding setup.cfg or pyproject.toml")
    return parser.parse_args(argv)


def preflight(settings, jobs):
    """Refuse early, with a clear message, when a path or a tool is missing."""
    for key in ("packages", "tests"):
        for path in getattr(settings, key):
            if not (settings.root / path).exists():
                raise CiConfigError(f"{settings.name(key)}: {path!r} does not exist "
                                    f"under {settings.root}")
    for job in jobs:
        for module in job.modules:
            if importlib.util.find_spec(module) is None:
                raise CiConfigError(
                    f"{job.name} needs the Python package {module!r}, which is not installed "
                    f"for {sys.executable}; install fabship's gate tools (pip install "
                    "'fabship[gates]'; in fabship's repository: make setup)")


def clear_reports(settings):
    """Remove last run's reports so a gate never judges stale files."""
    for name in STALE_REPORTS:
        path = settings.reports_dir / name
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def run(settings, gates, jobs, out):
    """Run the jobs, judge the gates, print the table, write the record."""
    # .pins/ holds SSH host keys a deploy pins: trust data, not code the gates judge.
    commit, dirty = git_state(settings.root,
                              outputs=(str(settings.reports), ".coverage*", ".pins"))
    clear_reports(settings)
    outcomes = run_jobs(jobs, settings.root, progress=out)
    results = [judge(gate, outcomes[gate.job], settings) for gate in gates]
    out("")
    out(format_table(results))
    for result in results:
        if not result.passed:
            out(f"\n{result.name} {result.status}: {result.detail or result.shown}")
            out(outcomes[gates_job(gates, result)].tail())
    record = build_record(results, commit, dirty)
    write_record(settings.reports_dir / "gates.json", record)
    passed = sum(r.passed for r in results)
    verdict = "all gates passed" if record["passed"] else "GATES FAILED"
    out(f"\n{verdict} ({passed}/{len(results)}); commit {commit or 'unknown'}"
        f"{' (dirty tree)' if dirty else ''}; record: {settings.reports / 'gates.json'}")
    unit = next((r for r in results if r.name == "unit" and r.status != "error"), None)
    if unit is not None:
        out(f"tests: {unit.shown}")
    return 0 if record["passed"] else 1


def gates_job(gates, result):
    """The job name behind a result."""
    return next(gate.job for gate in gates if gate.name == result.name)


def main(argv=None, out=print):
    """Entry point; returns the exit code (0 passed, 1 a gate failed, 2 bad input)."""
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        settings = load_settings(Path(args.root))
        names = settings.gates
        if args.only is not None:
            names = parse_gate_names(args.only, "--only")
        gates = gates_for(settings, names)
        jobs = jobs_for(settings, gates, sys.executable)
        if args.dry:
            for job in jobs:
                out(f"[{job.name}] (cd {shlex.quote(str(settings.root))} && "
                    f"{shlex.join(job.argv)}) > {shlex.quote(job.log)}")
            out(f"gates: {', '.join(names)}; nothing was run (--dry)")
            return 0
        preflight(settings, jobs)
    except CiConfigError as exc:
        print(f"ci: error: {exc}", file=sys.stderr)
        return 2
    return run(settings, gates, jobs, out)
