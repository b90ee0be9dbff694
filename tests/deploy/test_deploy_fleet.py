"""`fab service deploy` and friends against a fleet of real sshd hosts running supervisord.

Every test builds its own project and the state it needs (see fleetstate): each runs
alone and in any order.
"""
import json
import re
import socket


from tests.deploy.fleetstate import APP, MAIN, RELEASE, Background, break_health, \
    by_host, deploy_crashing, deploy_fails, deploy_ok, edit, history, page, release_of, revert, \
    wait_until
from tests.helpers import git


def test_first_deploy_serves_on_every_host(build):
    """A first deploy builds the venv, records the release and serves it everywhere."""
    project = build.project(seed=False)
    release, out = deploy_ok(project)
    head = git(project.root, "rev-parse", "HEAD")
    for index in range(3):
        assert project.health(index) == {"status": "ok", "release": release, "commit": head}
        assert project.current(index) == release
        root = project.host_root(index)
        saved = json.loads((root / "releases" / release / "release.json").read_text())
        assert saved["commit"] == head and saved["skip_gates"] is False
        assert saved["gates"] == {"unit": "passed"}
        assert set(saved["templates"]) == {"hello.conf", ".fabship/run", ".fabship/launch.py",
                                           ".fabship/argv.json", ".fabship/env",
                                           ".fabship/supervisord.conf"}
        assert not (root / ".lock").exists()
    assert "build the venv from the shipped wheels" in out
    assert re.search(r"deployed on 3 host\(s\)", out)


def test_code_change_is_served_and_venv_reused(build):
    """A code change ships a new artifact and is served; the venv is reused."""
    project, _ = build.deployed(1)
    before = project.current(0)
    edit(project, APP, "<h1>{greeting}</h1>", "<h1>{greeting}, friend</h1>",
         "friendlier heading")
    release, out = deploy_ok(project)
    assert release != before
    assert "upload release artifact" in out
    assert "build the venv" not in out  # requirements unchanged: venv reused
    for index in range(3):
        assert project.health(index)["release"] == release
        assert "<h1>hello, friend</h1>" in page(project, index)
    root = project.host_root(0)
    assert {p.name for p in (root / "venvs").iterdir()} == {
        json.loads((root / "current" / "release.json").read_text())["deps"]}


def test_no_change_redeploy_skips_the_upload(build):
    """Redeploying the same commit ships no artifact: the hosts hold it."""
    project, _ = build.deployed(1)
    before = project.current(0)
    release, out = deploy_ok(project)
    assert release != before
    assert "upload release artifact" not in out
    assert all(project.health(i)["release"] == release for i in range(3))
    assert re.findall(r"deployed\s+\S+\s+\S+\s+\S+\s+(\d+) round trips", out) == ["3", "3", "3"]


def test_failing_health_check_rolls_back(build):
    """A release whose /health answers 503 is rolled back; it stays on disk, recorded."""
    project, _ = build.deployed(1)
    serving = project.current(0)
    break_health(project, 'self.set_status(503)\n        self.write({"status": "sick"})')
    proc = deploy_fails(project)
    failed = release_of(proc)
    assert "rolled-back" in proc.stdout
    assert by_host(project, proc.stdout, "outcome") == ["rolled-back"] * 3
    assert "last response: 503" in proc.stdout
    assert "ROLLED BACK: 3 host(s) failed, more than max_fail 0" in proc.stdout
    for index in range(3):
        assert project.current(index) == serving
        assert project.health(index)["release"] == serving
        assert (project.host_root(index) / "releases" / failed).is_dir()  # kept to inspect
        entries = history(project, index)
        assert entries[-1]["status"] == "failed"
        assert entries[-1]["release"] == failed


def lock_owners(project):
    """The release each host's .lock/owner.json names (None where there is none yet)."""
    owners = []
    for index in range(3):
        try:
            text = (project.host_root(index) / ".lock" / "owner.json").read_text()
            owners.append(json.loads(text).get("release"))
        except (OSError, ValueError):  # not there, or being written
            owners.append(None)
    return owners


def test_second_deploy_while_locked_is_refused(build, tmp_path):
    """A deploy while another holds the lock is refused, naming the owner; nothing changes."""
    project = build.project(health={"path": "/health", "port": "{{ port }}", "timeout": 120})
    # The first deploy's release does not listen until `gate` exists: it holds the first
    # deploy (and its lock) in its health check for as long as the test needs.
    gate = tmp_path / "gate"
    edit(project, MAIN, "import sys\n",
         f"import os\nimport sys\nimport time\n\nwhile not os.path.exists({str(gate)!r}):\n"
         "    time.sleep(0.1)\n", "start once the gate opens")
    first = Background(project, "service", "deploy")
    try:
        found = wait_until(lambda: RELEASE.search(first.text),
                           lambda: f"the first deploy names its release:\n{first.text}",
                           timeout=60)
        holding = found.group(1)
        wait_until(lambda: lock_owners(project) == [holding] * 3,
                   lambda: f"every host's lock names {holding}:\n{first.text}", timeout=120)
        revert(project)  # the second deploy would ship a release that starts at once
        second = project.fab("service", "deploy")
        assert second.returncode == 1, second.stdout + second.stderr
        assert lock_owners(project) == [holding] * 3
    except BaseException:
        first.proc.terminate()  # do not wait out a health check that can no longer pass
        first.wait(timeout=60)
        raise
    finally:
        gate.touch()
    assert first.wait(timeout=300) == 0, first.text
    assert "the deploy lock is held; nothing was changed" in second.stderr
    assert "locked by " in second.stderr and "deploying " in second.stderr
    assert f"deploying {holding}" in second.stderr
    assert "Traceback" not in second.stderr
    for index in range(3):
        assert project.current(index) == holding
        assert project.health(index)["release"] == holding
        assert not (project.host_root(index) / ".lock").exists()


def test_stale_lock_needs_break_lock(build):
    """A lock left behind stops the deploy until --break-lock takes it over."""
    project, (before,) = build.deployed(1)
    lock = project.host_root(1) / ".lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps(
        {"who": "alice", "where": "laptop", "pid": 4242, "since": "2026-01-01T00:00:00Z",
         "release": "20260101T000000.000Z-dead000"}))
    refused = project.fab("service", "deploy")
    assert refused.returncode == 1
    assert "locked by alice@laptop (pid 4242) since 2026-01-01T00:00:00Z" in refused.stderr
    assert not (project.host_root(0) / ".lock").exists()  # the locks it took were released
    assert [project.current(i) for i in range(3)] == [before] * 3
    release, _ = deploy_ok(project, "--break-lock")
    assert project.current(1) == release and not lock.exists()


def test_status_shows_the_truth(build):
    """On a healthy fleet, status shows each host's release, commit, ok and a free lock."""
    project, _ = build.deployed(1)
    proc = project.fab("service", "status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head = git(project.root, "rev-parse", "HEAD")[:12]
    for index, host in enumerate(project.hosts):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(host["host"]))
        assert row.split()[1:5] == [project.current(index), head, "ok", "free"]


def test_rollback_and_history(build):
    """Rollback goes to the previous served release, --to back again; history shows all."""
    project, _ = build.deployed(1)
    deploy_crashing(project)  # a failed deploy in the history
    newest, _ = deploy_ok(project)
    current = project.current(0)
    assert current == newest
    served = sorted(p.parent.parent.name for p in
                    (project.host_root(0) / "releases").glob("*/.fabship/served"))
    previous = served[served.index(current) - 1]
    proc = project.fab("service", "rollback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for index in range(3):
        assert project.current(index) == previous
        assert project.health(index)["release"] == previous
    proc = project.fab("service", "rollback", "--to", current)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert project.health(2)["release"] == current
    proc = project.fab("service", "history")
    assert proc.returncode == 0
    rows = [line.split() for line in proc.stdout.splitlines()
            if line.startswith(project.hosts[0]["host"])]
    assert [row[3] for row in rows][-3:] == ["deployed", "rollback", "rollback"]
    assert rows[-2][2] == previous and rows[-1][2] == current
    assert rows[-1][4].endswith(f"@{socket.gethostname()}") and "?" not in rows[-1][4]
    assert any(row[3] == "failed" for row in rows)


def test_old_releases_are_pruned(build):
    """Only the newest keep_releases releases and artifacts stay on a host."""
    project, releases = build.deployed(3, keep_releases=2)
    for index in range(3):
        kept = sorted(p.name for p in (project.host_root(index) / "releases").iterdir())
        assert len(kept) <= project.service["keep_releases"], kept
        assert project.current(index) in kept
        assert kept == releases[-2:]
        artifacts = list((project.host_root(index) / "artifacts").iterdir())
        assert 1 <= len(artifacts) <= project.service["keep_releases"]
        assert len(artifacts) == 2


def test_rollback_to_unknown_release_changes_nothing(build):
    """Rolling back to a release no host holds is refused before anything changes."""
    project, _ = build.deployed(1)
    current = project.current(0)
    proc = project.fab("service", "rollback", "--to", "20200101T000000.000Z-nothere")
    assert proc.returncode == 1
    assert "release '20200101T000000.000Z-nothere' is not on the host" in proc.stderr
    assert project.current(0) == current
    assert not (project.host_root(0) / ".lock").exists()


def test_rollback_skips_a_release_that_never_served(build):
    """A failed release between two good ones is no rollback target."""
    project, (good,) = build.deployed(1)
    crashed = deploy_crashing(project)
    # supervisord is asked during the health check: the exit is seen, not waited out (the
    # first process replaced: the other one still serves the old release meanwhile)
    assert re.search(r"unhealthy after [0-9.]+s: hello:hello_0 is (BACKOFF|FATAL|EXITED) ",
                     crashed.stdout), crashed.stdout
    failed = release_of(crashed)
    newest, _ = deploy_ok(project)
    assert (project.host_root(0) / "releases" / failed).is_dir()
    proc = project.fab("service", "rollback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for index in range(3):
        assert project.current(index) == good != newest
        assert project.health(index)["release"] == good
