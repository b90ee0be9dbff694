"""Judge each gate from its job's outcome and reports (no processes run here)."""
from dataclasses import dataclass, field, replace

from .metrics import sloc_by_package
from .parsers import (ReportError, parse_coverage, parse_duplicate_lines, parse_junit,
                      parse_pylint_score)

PYTEST_EXIT = {2: "interrupted", 3: "internal error", 4: "usage error", 5: "no tests collected"}


@dataclass(frozen=True)
class GateResult:  # pylint: disable=too-many-instance-attributes
    """One gate's verdict: status is "passed", "failed" or "error"."""

    name: str
    status: str
    value: float | None
    shown: str  # the value as the table shows it
    threshold: float | None
    compare: str
    seconds: float
    detail: str = ""
    data: dict = field(default_factory=dict)  # extra numbers for the record

    @property
    def passed(self):
        """True when the gate passed."""
        return self.status == "passed"

    def as_record(self):
        """The gate as it goes into gates.json."""
        return {"status": self.status, "value": self.value, "shown": self.shown,
                "threshold": self.threshold, "compare": self.compare,
                "seconds": round(self.seconds, 2), "detail": self.detail, **self.data}


def _meets(value, threshold, compare):
    if threshold is None:
        return True
    return value >= threshold if compare == ">=" else value <= threshold


def _result(gate, outcome, value, shown, **extra):
    status = "passed" if _meets(value, gate.threshold, gate.compare) else "failed"
    return GateResult(gate.name, status, value, shown, gate.threshold, gate.compare,
                      outcome.seconds, **extra)


def _error(gate, outcome, detail):
    return GateResult(gate.name, "error", None, "error", gate.threshold, gate.compare,
                      outcome.seconds, detail)


def judge_unit(gate, outcome, settings):
    """Passed when pytest ran tests and none failed."""
    if outcome.returncode not in (0, 1):
        reason = PYTEST_EXIT.get(outcome.returncode, "unexpected exit")
        return _error(gate, outcome, f"pytest exited {outcome.returncode} ({reason})")
    counts = parse_junit(settings.reports_dir / "junit.xml")
    result = _result(gate, outcome, counts.passed, counts.summary(),
                     data={"tests": counts.tests, "failed": counts.failed,
                           "skipped": counts.skipped})
    if counts.failed or outcome.returncode or not counts.tests:
        return replace(result, status="failed")
    return result


def judge_coverage(gate, outcome, settings):
    """Total coverage against [coverage:report] fail_under."""
    if outcome.returncode not in (0, 1):
        return _error(gate, outcome, f"pytest exited {outcome.returncode}; no coverage data")
    percent = round(parse_coverage(settings.reports_dir / "coverage.xml"), 2)
    return _result(gate, outcome, percent, f"{percent:.2f}%")


def judge_lint(gate, outcome, settings):
    """pylint's score against [ci:lint] min_score; fatal or usage errors are errors."""
    if outcome.returncode & (1 | 32):
        return _error(gate, outcome, f"pylint exited {outcome.returncode} (fatal or usage error)")
    try:
        text = (settings.reports_dir / "pylint.txt").read_text(encoding="utf-8")
    except OSError as exc:
        raise ReportError(f"{settings.reports_dir / 'pylint.txt'}: {exc.strerror}") from exc
    score = parse_pylint_score(text)
    if score is None:
        return _error(gate, outcome, "pylint printed no score")
    return _result(gate, outcome, score, f"{score:.2f}/10")


def judge_metrics(gate, outcome, settings):
    """Duplicated lines against [ci:metrics] max_duplicate_lines; SLOC recorded."""
    if outcome.returncode & (1 | 32):
        return _error(gate, outcome, f"pylint exited {outcome.returncode} (fatal or usage error)")
    duplicated = parse_duplicate_lines(outcome.log.read_text(encoding="utf-8"))
    sloc = sloc_by_package(settings.root, settings.packages)
    shown = f"{duplicated} duplicated lines, {sum(sloc.values())} sloc"
    return _result(gate, outcome, duplicated, shown,
                   data={"duplicate_lines": duplicated, "sloc": sloc})


JUDGES = {"unit": judge_unit, "coverage": judge_coverage, "lint": judge_lint,
          "metrics": judge_metrics}


def judge(gate, outcome, settings):
    """The verdict for one gate; a missing report is an error verdict, not a crash."""
    try:
        return JUDGES[gate.name](gate, outcome, settings)
    except ReportError as exc:
        return _error(gate, outcome, str(exc))
