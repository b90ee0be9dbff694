"""A deploy killed with SIGKILL mid-way, then rerun: every host ends on one complete release."""
import json
import os
import signal
import time

import pytest


def kill_at(project, marker):
    """Start a deploy, SIGKILL it as soon as `marker` is printed; return what it printed."""
    proc = project.popen("service", "deploy")
    seen, deadline = [], time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if marker in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "".join(seen)
    return "".join(seen)


@pytest.mark.parametrize("marker", ["ok  upload release artifact",
                                    "ok  switch current (rename)"],
                         ids=["after-upload", "after-switch"])
def test_killed_deploy_then_rerun_ends_on_one_complete_release(make_project, marker):
    project = make_project()
    first = project.fab("service", "deploy")
    assert first.returncode == 0, first.stdout + first.stderr
    app = project.root / "services" / "hello" / "hello" / "app.py"
    app.write_text(app.read_text().replace("<h1>{greeting}</h1>", "<h1>{greeting}!</h1>"))
    project.commit("exclaim")
    kill_at(project, marker)

    rerun = project.fab("service", "deploy", "--break-lock")
    assert rerun.returncode == 0, rerun.stdout + rerun.stderr
    for index in range(3):
        root = project.host_root(index)
        current = project.current(index)
        assert project.health(index)["release"] == current
        assert json.loads((root / "current" / "release.json").read_text())["release"] == current
        for release in (root / "releases").iterdir():
            assert not release.name.startswith("."), f"staging left behind: {release}"
            assert (release / "release.json").is_file(), f"incomplete release {release}"
            assert (release / ".fabship" / "venv").is_symlink()
        assert not (root / ".lock").exists()
