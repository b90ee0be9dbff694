"""Print the score of the last `mutmut run` and every mutant the tests did not kill.

Run from the project root after `mutmut run` (as `make mutants` does). The score is
killed / total, where a timeout counts as killed (the mutant made the tests hang) and
every other verdict (survived, no tests, suspicious, skipped, ...) counts against it.
Exits 1 when mutmut recorded no mutant at all, or when the score is below
`--fail-under PERCENT` (default 0: report only).
"""
import argparse
import ast
import difflib
import json
import subprocess
import sys
from functools import cache
from pathlib import Path

MUTMUT = str(Path(sys.executable).with_name("mutmut"))
STATS = Path("mutants") / "mutmut-cicd-stats.json"
UNDETECTED = ("survived", "no tests", "suspicious", "skipped", "not checked", "segfault",
              "check was interrupted by user")


def mutmut(*args):
    """stdout of one mutmut command."""
    proc = subprocess.run([MUTMUT, *args], capture_output=True, text=True, check=True)
    return proc.stdout


def undetected():
    """[(mutant name, status)] of every mutant the tests did not kill."""
    rows = []
    for line in mutmut("results").splitlines():
        name, sep, status = line.strip().rpartition(": ")
        if sep and status in UNDETECTED:
            rows.append((name, status))
    return rows


@cache
def functions(module):
    """{function name: source lines} of one mutated module under mutants/ (mutants included)."""
    path = Path("mutants", *module.split(".")).with_suffix(".py")
    if not path.exists():  # a package: its functions live in __init__.py
        path = Path("mutants", *module.split("."), "__init__.py")
    text = path.read_text(encoding="utf-8")
    lines = text.splitlines()
    return {node.name: lines[node.lineno - 1:node.end_lineno]
            for node in ast.walk(ast.parse(text))
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def changed_lines(name):
    """The line(s) a mutant changes, from its function against the original one.

    The same diff `mutmut show NAME` prints, without a process (and a parse) per mutant.
    """
    module, _, function = name.rpartition(".")
    sources = functions(module)
    original = sources[function.rpartition("__mutmut_")[0] + "__mutmut_orig"]
    mutant = sources[function]
    diff = difflib.unified_diff(original[1:], mutant[1:], n=0, lineterm="")
    return [line[1:].strip() for line in diff
            if line.startswith("+") and not line.startswith("+++")]


def main():
    """Print the score and the survivors; exit 1 without mutants or below --fail-under."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fail-under", type=float, default=0.0, metavar="PERCENT")
    args = parser.parse_args()
    mutmut("export-cicd-stats")
    stats = json.loads(STATS.read_text(encoding="utf-8"))
    total = stats["total"]
    if not total:
        print("mutation: no mutants recorded; did `mutmut run` finish?")
        return 1
    killed = stats["killed"] + stats["timeout"]
    score = 100 * killed / total
    rows = undetected()
    print(f"\nmutation score: {killed} killed / {total} total = {score:.1f}% "
          f"({stats['survived']} survived, {stats['no_tests']} without tests, "
          f"{stats['timeout']} timeouts counted as killed)")
    if rows:
        print(f"\n{len(rows)} mutants not killed:")
    for name, status in rows:
        print(f"  {name} [{status}]")
        for line in changed_lines(name):
            print(f"      + {line}")
    if score < args.fail_under:
        print(f"\nmutation score {score:.1f}% is below {args.fail_under:g}%")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
