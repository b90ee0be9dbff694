"""Read the gate record `python -m ci` writes (reports/gates.json): the only coupling."""
import json
import subprocess

from .errors import ConfigError, DeployError
from .reader import flaw, key_path


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
    # .pins/ (host key pins, written by launch and accept-new) is trust data, not code
    return commit, bool(git("status", "--porcelain", "--", ".", ":(exclude)reports",
                            ":(exclude).coverage*", ":(exclude).fabship", ":(exclude).pins"))


def summary(record):
    """{gate: status} for release.json and the history."""
    return {name: gate.get("status") for name, gate in record.get("gates", {}).items()}


def read_record(path, hint):
    """The record at `path`: DeployError when there is none, ConfigError when it is corrupt.

    A corrupt record is bad input (exit 2): not UTF-8, not JSON, or not the shape
    `python -m ci` writes (an object; `commit` a string; `gates` a mapping of name ->
    result; `passed` and `dirty` booleans).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise DeployError(f"no readable gate record at {path} ({exc}); {hint}") from exc
    except OSError as exc:
        raise ConfigError(f"no readable gate record at {path} ({exc}); {hint}") from exc
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"no readable gate record at {path} (not UTF-8: byte "
                          f"0x{data[exc.start]:02x} at offset {exc.start}); {hint}") from exc
    except ValueError as exc:
        raise ConfigError(f"no readable gate record at {path} (not JSON: {exc}); {hint}") \
            from exc
    problem = record_problem(record)
    if problem:
        raise ConfigError(f"{path} is not a gate record written by `fabship-ci` "
                          f"({problem}); {hint}")
    return record


def record_problem(record):
    """What makes `record` unlike the record `python -m ci` writes, or None."""
    if not isinstance(record, dict):
        return f"expected a JSON object, got {type(record).__name__}"
    commit, gates = record.get("commit"), record.get("gates", {})
    checks = [("commit", "a commit id", commit, isinstance(commit, (str, type(None)))
               and not flaw(commit or "")),
              ("gates", "an object of gate -> result", gates, isinstance(gates, dict))]
    checks += [(key, "true or false", record.get(key),
                isinstance(record.get(key, False), bool)) for key in ("passed", "dirty")]
    checks += [(key_path("gates", name), "an object with a status string", gate,
                isinstance(gate, dict) and isinstance(gate.get("status", ""), str)
                and not flaw(name) and not flaw(gate.get("status", "")))
               for name, gate in (gates.items() if isinstance(gates, dict) else ())]
    for key, expected, value, ok in checks:
        if not ok:
            return f"{key}: expected {expected}, got {value!r}"[:200]
    return None


def check_gates(root, skip):
    """(commit, gate summary) when the record lets this commit ship; else DeployError."""
    commit, dirty = head_commit(root)
    path = root / "reports" / "gates.json"
    if skip:
        return commit or "unknown", {"skipped": True}
    hint = ("run the gates (`fabship-ci`) on this commit, or ship anyway with "
            "`--skip-gates` (recorded in release.json and the history)")
    if commit is None:
        raise DeployError(f"{root} is not a git checkout, so no gate record can vouch for "
                          f"it; {hint}")
    if dirty:
        raise DeployError(f"the working tree has uncommitted changes; commit them, then {hint}")
    record = read_record(path, hint)
    if record.get("commit") != commit:
        raise DeployError(f"the gate record {path} is for commit "
                          f"{str(record.get('commit'))[:12]}, not HEAD {commit[:12]}; {hint}")
    if not record.get("passed") or record.get("dirty"):
        failed = [name for name, status in summary(record).items() if status != "passed"]
        why = f"gates failed: {', '.join(failed)}" if failed else "the tree was dirty"
        raise DeployError(f"commit {commit[:12]} did not pass its gates ({why}); {hint}")
    return commit, summary(record)
