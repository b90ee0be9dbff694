"""Wall time of `python -m ci` against the sum of each gate run alone.

Usage: .venv/bin/python bench/gates.py [--root DIR]
Concurrency should bring the all-gates wall time close to the slowest single gate.
"""
import argparse
import subprocess
import sys
import time
from pathlib import Path

GATES = ("unit", "coverage", "lint", "metrics")
REPO = Path(__file__).resolve().parent.parent


def timed_ci(root, *args):
    """Seconds taken by one `python -m ci` run (its output discarded)."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "ci", "--root", str(root), *args], cwd=REPO,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.monotonic() - started


def main():
    """Print one line per gate, then the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=str(REPO))
    root = parser.parse_args().root
    alone = {}
    for gate in GATES:
        alone[gate] = timed_ci(root, "--only", gate)
        print(f"{gate:10s} alone   {alone[gate]:6.1f}s")
    together = timed_ci(root)
    slowest = max(alone.values())
    print(f"{'sum of gates alone':20s} {sum(alone.values()):6.1f}s")
    print(f"{'slowest gate alone':20s} {slowest:6.1f}s")
    print(f"{'all gates together':20s} {together:6.1f}s  "
          f"({together / slowest:.2f}x the slowest gate)")


if __name__ == "__main__":
    main()
