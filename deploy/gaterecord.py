"""Read the gate record `python -m ci` writes (reports/gates.json): the only coupling."""
import json
import subprocess

from .errors import DeployError


def head_commit(root):
    """(commit, dirty) of the project checkout, or (None, None) outside git."""
    def git(*args):
        try:
            proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True,
                                  check=False)
        except OSError:
            return None
        return proc.stdout.strip() if proc.returncode == 0 else None
    commit = git("rev-parse", "HEAD")
    if commit is None:
        return None, None
    return commit, bool(git("status", "--porcelain", "--", ".", ":(exclude)reports",
                            ":(exclude).coverage*", ":(exclude).fabship"))


def summary(record):
    """{gate: status} for release.json and the history."""
    return {name: gate.get("status") for name, gate in record.get("gates", {}).items()}


def check_gates(root, skip):
    """(commit, gate summary) when the record lets this commit ship; else DeployError."""
    commit, dirty = head_commit(root)
    path = root / "reports" / "gates.json"
    if skip:
        return commit or "unknown", {"skipped": True}
    hint = ("run the gates (`python -m ci`) on this commit, or ship anyway with "
            "`--skip-gates` (recorded in release.json and the history)")
    if commit is None:
        raise DeployError(f"{root} is not a git checkout, so no gate record can vouch for "
                          f"it; {hint}")
    if dirty:
        raise DeployError(f"the working tree has uncommitted changes; commit them, then {hint}")
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DeployError(f"no readable gate record at {path} ({exc}); {hint}") from exc
    if not isinstance(record, dict) or not isinstance(record.get("gates", {}), dict):
        raise DeployError(f"{path} is not a gate record written by `python -m ci`; {hint}")
    if record.get("commit") != commit:
        raise DeployError(f"the gate record {path} is for commit "
                          f"{str(record.get('commit'))[:12]}, not HEAD {commit[:12]}; {hint}")
    if not record.get("passed") or record.get("dirty"):
        failed = [name for name, status in summary(record).items() if status != "passed"]
        why = f"gates failed: {', '.join(failed)}" if failed else "the tree was dirty"
        raise DeployError(f"commit {commit[:12]} did not pass its gates ({why}); {hint}")
    return commit, summary(record)
