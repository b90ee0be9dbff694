"""The `fab` entry point: task listing and the ci task."""
import subprocess
import sys
from pathlib import Path

from tests.helpers import REPO

FAB = str(Path(sys.executable).with_name("fab"))


def fab(*args, cwd=REPO):
    return subprocess.run([FAB, *args], cwd=cwd, capture_output=True, text=True, timeout=120,
                          check=False)


def test_fab_lists_tasks_with_docs():
    proc = fab("-l")
    assert proc.returncode == 0
    listed = {line.split()[0]: " ".join(line.split()[1:]) for line in proc.stdout.splitlines()
              if line.startswith("  ") and line[2] != " "}  # not a wrapped doc line
    assert set(listed) == {"ci", "deploy", "history", "hosts", "launch", "rollback", "service",
                           "status", "terminate"}
    assert listed["launch"].startswith("Launch the EC2 environment's missing instances")
    assert listed["ci"].startswith("Run the quality gates (as fabship-ci does)")
    assert listed["deploy"].startswith("Roll a release out: canary, batches")


def test_fab_dry_ci_prints_commands():
    proc = fab("--dry", "ci", "--only", "lint")
    assert proc.returncode == 0
    assert "-m pylint fabship ci deploy fabfile.py services/hello/hello" in proc.stdout
    assert "nothing was run (--dry)" in proc.stdout


def test_fab_ci_bad_gate_exits_2():
    proc = fab("ci", "--only", "speed")
    assert proc.returncode == 2
    assert "ci: error: --only: unknown gate 'speed'" in proc.stderr
    assert "Traceback" not in proc.stderr
