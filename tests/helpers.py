"""Helpers shared by the tests."""
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def git(cwd, *args):
    """Run git in cwd with a fixed identity; return stdout."""
    proc = subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.invalid", *args],
        cwd=cwd, capture_output=True, text=True, check=True)
    return proc.stdout.strip()
