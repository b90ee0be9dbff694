"""The console summary table and the gates.json record."""
import json
import subprocess
from datetime import datetime, timezone


def git_state(root, outputs=()):
    """(commit, dirty) of the checkout at root; (None, None) outside git.

    Paths in `outputs` (what the gates themselves write) do not make the tree dirty.
    """
    def git(*args):
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                              check=False)
        return proc.stdout.strip() if proc.returncode == 0 else None
    try:
        commit = git("rev-parse", "HEAD")
        excludes = [f":(exclude){path}" for path in outputs]
        status = git("status", "--porcelain", "--", ".", *excludes) if commit else None
    except OSError:  # git itself is not installed
        return None, None
    if commit is None:
        return None, None
    return commit, bool(status)


def _threshold(result):
    if result.threshold is None:
        return "-"
    return f"{result.compare} {result.threshold:g}"


def format_table(results):
    """The summary table: gate, status, value, threshold, seconds."""
    rows = [("gate", "status", "value", "threshold", "seconds")]
    rows += [(r.name, r.status.upper(), r.shown, _threshold(r), f"{r.seconds:.1f}")
             for r in results]
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:4], widths)]
        lines.append("  ".join(cells + [row[4].rjust(widths[4])]))
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def build_record(results, commit, dirty, now=None):
    """The gates.json content: what deploy reads before shipping `commit`."""
    now = now or datetime.now(timezone.utc)
    return {
        "version": 1,
        "commit": commit,
        "dirty": dirty,
        "finished": now.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "passed": bool(results) and all(result.passed for result in results),
        "gates": {result.name: result.as_record() for result in results},
    }


def write_record(path, record):
    """Write gates.json atomically enough: a temp file, then rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)
