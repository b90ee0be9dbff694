"""`fab service deploy` and friends against a fleet of real sshd hosts running supervisord."""
import json
import re
import socket
import time

import pytest

from tests.helpers import git

RELEASE = re.compile(r"deploying hello release (\S+) to")


def release_of(proc):
    """The release id a deploy announced."""
    found = RELEASE.search(proc.stdout)
    assert found, proc.stdout + proc.stderr
    return found.group(1)


def deploy_ok(project, *args):
    """Run a deploy that must succeed; return its release id and output."""
    proc = project.fab("service", "deploy", *args)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    return release_of(proc), proc.stdout


def edit(project, path, old, new, message):
    """Change a file of the project's service and commit (with a passing gate record)."""
    file = project.root / path
    file.write_text(file.read_text().replace(old, new))
    return project.commit(message)


@pytest.fixture(scope="module")
def project(make_project):
    """One project for the whole deploy story below (tests run in file order)."""
    return make_project("story")


def test_first_deploy_serves_on_every_host(project):
    release, out = deploy_ok(project)
    head = git(project.root, "rev-parse", "HEAD")
    for index in range(3):
        assert project.health(index) == {"status": "ok", "release": release, "commit": head}
        assert project.current(index) == release
        root = project.host_root(index)
        saved = json.loads((root / "releases" / release / "release.json").read_text())
        assert saved["commit"] == head and saved["skip_gates"] is False
        assert saved["gates"] == {"unit": "passed"}
        assert set(saved["templates"]) == {"hello.conf", ".fabship/run",
                                           ".fabship/supervisord.conf"}
        assert not (root / ".lock").exists()
    assert "build the venv from the shipped wheels" in out
    assert re.search(r"deployed on 3 host\(s\)", out)


def test_code_change_is_served_and_venv_reused(project):
    before = project.current(0)
    edit(project, "services/hello/hello/app.py", "<h1>{greeting}</h1>",
         "<h1>{greeting}, friend</h1>", "friendlier heading")
    release, out = deploy_ok(project)
    assert release != before
    assert "upload release artifact" in out
    assert "build the venv" not in out  # requirements unchanged: venv reused
    for index in range(3):
        assert project.health(index)["release"] == release
    root = project.host_root(0)
    assert {p.name for p in (root / "venvs").iterdir()} == {
        json.loads((root / "current" / "release.json").read_text())["deps"]}


def test_no_change_redeploy_skips_the_upload(project):
    before = project.current(0)
    release, out = deploy_ok(project)
    assert release != before
    assert "upload release artifact" not in out
    assert all(project.health(i)["release"] == release for i in range(3))
    assert re.findall(r"deployed  \S+\s+\S+\s+(\d+) round trips", out) == ["3", "3", "3"]


def deploy_broken_health(project, answer):
    """Commit a /health that answers `answer` instead, deploy it (it must fail), revert."""
    edit(project, "services/hello/hello/app.py",
         'self.write({"status": "ok", **self.settings["release_info"]})', answer,
         "break health")
    proc = project.fab("service", "deploy")
    git(project.root, "revert", "--no-edit", "HEAD")
    project.commit("gates for the revert")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    return proc


def test_failing_health_check_rolls_back(project):
    serving = project.current(0)
    proc = deploy_broken_health(
        project, 'self.set_status(503)\n        self.write({"status": "sick"})')
    failed = release_of(proc)
    assert "rolled-back" in proc.stdout
    assert "last response: 503" in proc.stdout
    assert "FAILED on 3 of 3 host(s)" in proc.stdout
    for index in range(3):
        assert project.current(index) == serving
        assert project.health(index)["release"] == serving
        assert (project.host_root(index) / "releases" / failed).is_dir()  # kept to inspect
        history = (project.host_root(index) / "deploys.jsonl").read_text().splitlines()
        assert json.loads(history[-1])["status"] == "failed"
        assert json.loads(history[-1])["release"] == failed


def test_second_deploy_while_locked_is_refused(project):
    # A release that takes 4 s to start keeps the first deploy (and its lock) busy
    # for certain while the second one tries.
    edit(project, "services/hello/hello/__main__.py", "import sys\n",
         "import sys\nimport time\n\ntime.sleep(4)\n", "slow start")
    first = project.popen("service", "deploy")
    try:
        deadline = time.monotonic() + 60
        line = ""
        while "round trip 2" not in line and time.monotonic() < deadline:
            line = first.stdout.readline()
        second = project.fab("service", "deploy")
    finally:
        rest = first.communicate(timeout=120)[0]
    assert first.returncode == 0, rest
    assert second.returncode == 1
    assert "the deploy lock is held; nothing was changed" in second.stderr
    assert "locked by " in second.stderr and "deploying " in second.stderr
    assert "Traceback" not in second.stderr
    git(project.root, "revert", "--no-edit", "HEAD")
    project.commit("gates for the revert")


def test_stale_lock_needs_break_lock(project):
    lock = project.host_root(1) / ".lock"
    lock.mkdir()
    (lock / "owner.json").write_text(json.dumps(
        {"who": "alice", "where": "laptop", "pid": 4242, "since": "2026-01-01T00:00:00Z",
         "release": "20260101T000000.000Z-dead000"}))
    refused = project.fab("service", "deploy")
    assert refused.returncode == 1
    assert "locked by alice@laptop (pid 4242) since 2026-01-01T00:00:00Z" in refused.stderr
    assert not (project.host_root(0) / ".lock").exists()  # the locks it took were released
    release, _ = deploy_ok(project, "--break-lock")
    assert project.current(1) == release and not lock.exists()


def test_status_shows_the_truth(project):
    proc = project.fab("service", "status")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    head = git(project.root, "rev-parse", "HEAD")[:12]
    for index, host in enumerate(project.hosts):
        row = next(line for line in proc.stdout.splitlines() if line.startswith(host["host"]))
        assert row.split()[1:5] == [project.current(index), head, "ok", "free"]


def test_rollback_and_history(project):
    current = project.current(0)
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
    history = project.fab("service", "history")
    assert history.returncode == 0
    rows = [line.split() for line in history.stdout.splitlines()
            if line.startswith(project.hosts[0]["host"])]
    assert [row[3] for row in rows][-3:] == ["deployed", "rollback", "rollback"]
    assert rows[-2][2] == previous and rows[-1][2] == current
    assert rows[-1][4].endswith(f"@{socket.gethostname()}") and "?" not in rows[-1][4]
    assert any(row[3] == "failed" for row in rows)


def test_old_releases_are_pruned(project):
    for index in range(3):
        releases = [p.name for p in (project.host_root(index) / "releases").iterdir()]
        assert len(releases) <= project.service["keep_releases"], releases
        assert project.current(index) in releases
        artifacts = list((project.host_root(index) / "artifacts").iterdir())
        assert 1 <= len(artifacts) <= project.service["keep_releases"]


def test_rollback_to_unknown_release_changes_nothing(project):
    current = project.current(0)
    proc = project.fab("service", "rollback", "--to", "20200101T000000.000Z-nothere")
    assert proc.returncode == 1
    assert "release '20200101T000000.000Z-nothere' is not on the host" in proc.stderr
    assert project.current(0) == current
    assert not (project.host_root(0) / ".lock").exists()


def test_rollback_skips_a_release_that_never_served(project):
    good = project.current(0)
    deploy_broken_health(project, "self.set_status(500)")
    newest, _ = deploy_ok(project)
    proc = project.fab("service", "rollback")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    for index in range(3):
        assert project.current(index) == good != newest
        assert project.health(index)["release"] == good
