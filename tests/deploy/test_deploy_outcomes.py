"""What a user sees when a deploy or a rollback goes wrong: exit code, the summary table's
result column, where `current` points, what /health and `fab service status` say.

Every test builds its own project on the session fleet (see fleetstate).
"""
import os
import re
import shutil
import subprocess
import time

from tests.deploy.fleetstate import break_health, by_host, deploy_fails, deploy_ok, \
    history, release_of, revert, refuses, supervisorctl

SICK = 'self.set_status(503)\n        self.write({"status": "sick"})'
OTHER_RELEASE = "20200101T000000.000Z-0000000"


def test_failed_first_deploy_leaves_no_current_and_nothing_running(build):
    """A first release that fails its health check is stopped and `current` removed."""
    project = build.project()
    break_health(project, SICK)
    proc = deploy_fails(project)
    failed = release_of(proc)
    assert by_host(project, proc.stdout, "outcome") == ["rolled-back"] * 3
    assert by_host(project, proc.stdout, "new release") == [failed] * 3
    assert "last response: 503" in proc.stdout
    assert "ROLLED BACK: 3 host(s) failed, more than max_fail 0" in proc.stdout
    for index in range(3):
        root = project.host_root(index)
        assert not os.path.lexists(root / "current")
        assert refuses(project, index), "the failed first release still listens"
        assert (root / "releases" / failed).is_dir()  # kept to inspect
        assert not (root / ".lock").exists()
        assert [(e["status"], e["release"], e["previous"]) for e in history(project, index)] \
            == [("failed", failed, None)]
    status = project.fab("service", "status")
    assert status.returncode == 1, status.stdout + status.stderr
    assert by_host(project, status.stdout, "current release") == ["-"] * 3
    assert by_host(project, status.stdout, "health") == ["no release"] * 3

    revert(project)  # the fix: the next deploy starts from a clean slate and serves
    release, _ = deploy_ok(project)
    for index in range(3):
        assert project.current(index) == release
        assert project.health(index)["release"] == release


def test_health_check_requires_the_body_to_name_the_new_release(build):
    """A 200 naming another release is not healthy: the deploy rolls back."""
    project, (previous,) = build.deployed(1)
    break_health(project, f'self.write({{"status": "ok", "release": "{OTHER_RELEASE}", '
                          '"commit": "0"})')
    proc = deploy_fails(project)
    failed = release_of(proc)
    assert by_host(project, proc.stdout, "outcome") == ["rolled-back"] * 3
    assert f'last response: 200 {{"status": "ok", "release": "{OTHER_RELEASE}"' in proc.stdout
    assert "ROLLED BACK: 3 host(s) failed, more than max_fail 0" in proc.stdout
    for index in range(3):
        assert project.current(index) == previous
        assert project.health(index)["release"] == previous
        entry = history(project, index)[-1]
        assert (entry["status"], entry["release"]) == ("failed", failed)


def test_rollback_that_fails_is_reported_as_rollback_failed(build):
    """A host whose previous release cannot come back says rollback-failed; exit 1. Its
    revert stopped at the first process that could not start: the other still serves the
    old release, and `fab service status` says the host is degraded (exit 1)."""
    project, (good,) = build.deployed(1)
    package = project.host_root(1) / "releases" / good / "hello"
    (package / "app.py").write_text("this release was damaged on disk (\n")
    shutil.rmtree(package / "__pycache__", ignore_errors=True)
    break_health(project, SICK)
    proc = deploy_fails(project)
    failed = release_of(proc)
    assert by_host(project, proc.stdout, "outcome") == \
        ["rolled-back", "rollback-failed", "rolled-back"]
    assert by_host(project, proc.stdout, "new release") == [failed] * 3
    assert "ROLLED BACK: 3 host(s) failed, more than max_fail 0" in proc.stdout
    for index in range(3):
        entry = history(project, index)[-1]
        assert (entry["status"], entry["release"]) == ("failed", failed)
        assert not (project.host_root(index) / ".lock").exists()
    for index in (0, 2):
        assert project.current(index) == good
        assert project.health(index)["release"] == good
    deadline = time.monotonic() + 20
    while True:  # supervisord retries the process that cannot start: STARTING, BACKOFF
        status = project.fab("service", "status")
        if status.returncode or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert status.returncode == 1, status.stdout + status.stderr
    health = by_host(project, status.stdout, "health")
    assert health[0] == health[2] == "ok"
    assert re.fullmatch(r"degraded: 1 of 2 processes running \(hello:hello_0 "
                        r"(BACKOFF|EXITED|FATAL)\)", health[1]), health
    assert project.health(1)["release"] == good  # the process left alone


def test_status_reports_down_and_stale_hosts(build):
    """Status exits 1 and says down for a stopped program, stale for a moved `current`."""
    project, (older, newer) = build.deployed(2)
    stopped = supervisorctl(project, 0, "stop", "hello:*")  # every process
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    assert refuses(project, 0)
    root = project.host_root(1)
    subprocess.run(["ln", "-sfn", str(root / "releases" / older), str(root / "current")],
                   check=True)  # `current` moved by hand, nothing restarted
    proc = project.fab("service", "status")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert by_host(project, proc.stdout, "current release") == [newer, older, newer]
    health = by_host(project, proc.stdout, "health")
    assert health[0].startswith("down: "), health
    assert health[1].startswith("stale: ") and newer in health[1], health
    assert health[2] == "ok"
