"""Pure parsers for the reports the gate tools write."""
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass

SCORE = re.compile(r"rated at (-?\d+(?:\.\d+)?)/10")
SIMILAR_BLOCK = re.compile(r"^==[^:\n]+:\[(\d+):(\d+)\]", re.MULTILINE)


class ReportError(Exception):
    """A report file is missing or unreadable."""


@dataclass(frozen=True)
class JunitTotals:
    """Totals from a JUnit XML report."""

    tests: int
    failures: int
    errors: int
    skipped: int

    @property
    def passed(self):
        """Tests that ran and passed."""
        return self.tests - self.failures - self.errors - self.skipped

    @property
    def failed(self):
        """Failures and errors together."""
        return self.failures + self.errors

    def summary(self):
        """'N passed, N failed[, N skipped]', the line CI systems read."""
        text = f"{self.passed} passed, {self.failed} failed"
        return text + (f", {self.skipped} skipped" if self.skipped else "")


def _parse_xml(path):
    try:
        return ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise ReportError(f"{path}: cannot read report: {exc}") from exc


def parse_junit(path):
    """Sum the counts of every <testsuite> in a JUnit XML file."""
    root = _parse_xml(path)
    suites = [root] if root.tag == "testsuite" else root.findall("testsuite")
    totals = [0, 0, 0, 0]
    for suite in suites:
        for i, key in enumerate(("tests", "failures", "errors", "skipped")):
            totals[i] += int(suite.get(key, "0"))
    return JunitTotals(*totals)


def parse_coverage(path):
    """Total percentage from Cobertura XML, lines and branches as coverage.py counts them."""
    root = _parse_xml(path)
    covered = int(root.get("lines-covered", "0")) + int(root.get("branches-covered", "0"))
    valid = int(root.get("lines-valid", "0")) + int(root.get("branches-valid", "0"))
    return 100.0 * covered / valid if valid else 100.0


def parse_pylint_score(text):
    """The score from pylint's 'Your code has been rated at X/10' line, or None."""
    found = SCORE.findall(text)
    return float(found[-1]) if found else None


def parse_duplicate_lines(text):
    """Lines that repeat a block found elsewhere, from pylint R0801 messages.

    Each message lists the copies of one block as `==module:[start:end]` lines; a block
    of n lines in k places counts n * (k - 1).
    """
    total = 0
    for message in re.split(r"^\S.*\[R0801", text, flags=re.MULTILINE)[1:]:
        blocks = SIMILAR_BLOCK.findall(message)
        if blocks:
            start, end = blocks[0]
            total += (int(end) - int(start)) * (len(blocks) - 1)
    return total
