"""Hostile or damaged host state, on real sshd hosts: links planted in the service root,
a stale supervisord pid file, source files shadowing rendered ones, output that looks
like fabship's progress marks, and a finish step that fails.

Links point to a directory outside the root, beside it on the host's disk; that tree
(everything on the host outside the root) is compared byte for byte before and after.
"""
import os
import signal
import subprocess

from fabship.deploy.commands import supervisor
from fabship.deploy.layout import Layout
from tests.deploy.fleetstate import break_health, by_host, deploy_fails, deploy_ok, \
    history, release_of, supervisorctl, wait_until

SECRET = "secret-content-outside"


def host_dir(project, index):
    """The host's own part of the disk: its service root lives at srv/hello below it."""
    return project.host_root(index).parents[1]


def outside(project, index):
    """A directory beside the root, with a file links may point to; made once."""
    path = host_dir(project, index) / "outside"
    if not path.exists():
        (path / "sub").mkdir(parents=True)
        (path / "owner.json").write_text(f'{{"who": "{SECRET}"}}')
        (path / "sub" / "file").write_text("keep")
    return path


def outside_state(project, index):
    """Everything on the host's disk outside its root: modes, link targets, bytes."""
    base, root = host_dir(project, index), project.host_root(index)
    state = {}
    for entry in sorted(base.rglob("*")):
        if entry == root or root in entry.parents:
            continue
        info = entry.lstat()
        state[str(entry.relative_to(base))] = (
            info.st_mode, os.readlink(entry) if entry.is_symlink() else
            entry.read_bytes() if entry.is_file() else None)
    return state


def plant(project, index, name, target=""):
    """Put a link to the outside directory (or to `target` in it) at root/name; what is
    there is moved aside (to name.aside, in the root) first."""
    path = project.host_root(index) / name
    path.parent.mkdir(parents=True, exist_ok=True)
    if os.path.lexists(path):
        path.rename(f"{path}.aside")
    path.symlink_to(outside(project, index) / target)
    return path


def unplant(path):
    """Remove a planted link and put back what it replaced."""
    path.unlink()
    if os.path.lexists(f"{path}.aside"):
        os.rename(f"{path}.aside", path)


def refused_on_every_host(project, names):
    """Deploy with a link planted at names[i] (name, target) on host i: every host fails
    naming its link, gives the lock back, switches nothing and changes nothing outside."""
    links = [plant(project, index, *name) for index, name in enumerate(names)]
    before = [outside_state(project, index) for index in range(len(names))]
    proc = deploy_fails(project)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert by_host(project, proc.stdout, "outcome") == ["failed"] * len(names)
    for index, link in enumerate(links):
        assert f"refusing: {link} is a symbolic link (to {os.readlink(link)})" in proc.stdout
        assert outside_state(project, index) == before[index]
        root = project.host_root(index)
        assert not os.path.lexists(root / ".lock") and not os.path.lexists(root / "current")
        unplant(link)
    return proc


def test_links_planted_in_the_root_fail_their_host_and_change_nothing_outside(build):
    """releases, artifacts, shared (and its log/), venvs, deploys.jsonl: refused, named;
    a staging directory that is a link is removed, a release entry that is one ignored."""
    project = build.project()
    refused_on_every_host(project, [("releases",), ("shared",), ("venvs",)])
    proc = refused_on_every_host(project, [("artifacts",), ("deploys.jsonl", "owner.json"),
                                           ("shared/log",)])
    assert by_host(project, proc.stdout, "detail")[1].endswith(
        "left undone: record 'failed' in the history")  # and yet the lock was given back

    stale = plant(project, 0, "releases/.20200101T000000.000Z-0000000.tmp")
    fake = plant(project, 1, "releases/20200101T000000.000Z-0000000")
    before = [outside_state(project, index) for index in range(3)]
    release, out = deploy_ok(project)
    assert "Traceback" not in out
    assert not os.path.lexists(stale)  # the stale staging link went, its target stayed
    assert fake.is_symlink()  # not a release: neither pruned through nor a rollback target
    for index in range(3):
        assert outside_state(project, index) == before[index]
        assert project.health(index)["release"] == release


def test_a_linked_lock_is_refused_before_anything_changes(build):
    """.lock or .lock/owner.json planted as a link: the deploy stops in round trip 1,
    names the link, and neither prints nor touches what it points to."""
    project = build.project(hosts=1)
    lock = plant(project, 0, ".lock")
    before = outside_state(project, 0)
    proc = project.fab("service", "deploy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"refusing: {lock} is a symbolic link" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert outside_state(project, 0) == before
    lock.unlink()
    lock.mkdir()
    owner = plant(project, 0, ".lock/owner.json", "owner.json")
    proc = project.fab("service", "deploy")
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"refusing: {owner} is a symbolic link" in proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert outside_state(project, 0) == before
    assert not os.path.lexists(project.host_root(0) / "current")


def gone(pid):
    """The process has exited (a zombie nobody reaped counts as exited)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def stale_pidfile(project, sleeper):
    """Stop the host's supervisord (and the app) and leave its pid file naming `sleeper`,
    a live process that is not supervisord: a pid reused after a reboot or a crash."""
    pidfile = project.host_root(0) / "supervisord.pid"
    running = int(pidfile.read_text())
    stopped = supervisorctl(project, 0, "shutdown")
    assert stopped.returncode == 0, stopped.stdout + stopped.stderr
    # gone, not only silent: it stops its processes first (each drains) and keeps its
    # socket file until then
    wait_until(lambda: gone(running), "supervisord exited")
    pidfile.write_text(f"{sleeper.pid}\n")


FORGING = ('self.write("forged\\nfabship-step-done x\\nfabship-step-failed 0 0\\n'
           'fabship-step-done 99999\\nfabship-step-done abc")')


def test_stale_pid_file_shadowing_source_failed_finish_and_forged_marks(build):
    """One host, one deploy after another:
    - a pid file naming a live unrelated process: deploy, status, rollback and stop work
      (supervisord is asked, and started when it does not answer);
    - a source file at a rendered file's name ships, but the rendered file wins;
    - a history that cannot be written: the release stands, the lock is released, the
      run fails saying what was left undone;
    - a health body of mark-like lines is plain output: no crash, no fake progress."""
    project, (first,) = build.deployed(1, hosts=1, health={
        "path": "/health", "port": "{{ port }}", "timeout": 3})
    root = project.host_root(0)
    with subprocess.Popen(["sleep", "300"]) as sleeper:
        try:
            stale_pidfile(project, sleeper)
            shadow = project.root / "services" / "hello" / "hello.conf"
            shadow.write_text("[hello]\nbind = 127.0.0.1\nport = 1\ngreeting = shadowed\n")
            project.commit("a source file where a template renders")
            (root / "deploys.jsonl").rename(root / "deploys.jsonl.aside")
            (root / "deploys.jsonl").mkdir()  # appending fails, as to a root-owned file
            proc = project.fab("service", "deploy")
            assert proc.returncode == 1, proc.stdout + proc.stderr
            second = release_of(proc)
            assert by_host(project, proc.stdout, "outcome") == ["deployed (finish failed)"]
            assert by_host(project, proc.stdout, "detail")[0].endswith(
                "left undone: record 'deployed' in the history")
            assert "ok  release the lock" in proc.stdout
            assert not os.path.lexists(root / ".lock")
            assert project.health(0)["release"] == second
            shipped = (root / "releases" / second / "hello.conf").read_text()
            assert "greeting = hello" in shipped and "shadowed" not in shipped
            (root / "deploys.jsonl").rmdir()
            (root / "deploys.jsonl.aside").rename(root / "deploys.jsonl")

            status = project.fab("service", "status")
            assert status.returncode == 0, status.stdout + status.stderr
            assert by_host(project, status.stdout, "health") == ["ok"]
            stale_pidfile(project, sleeper)
            back = project.fab("service", "rollback")
            assert back.returncode == 0, back.stdout + back.stderr
            assert project.health(0)["release"] == first
            stale_pidfile(project, sleeper)
            stop = subprocess.run(supervisor.stop(Layout(str(root)), str(
                root / "current" / ".fabship" / "venv"), "hello"), capture_output=True,
                                  text=True, check=False)
            assert (stop.returncode, stop.stderr) == (0, ""), stop.stdout
            assert sleeper.poll() is None  # nobody signalled the unrelated process
        finally:
            sleeper.send_signal(signal.SIGTERM)

    break_health(project, FORGING)
    proc = deploy_fails(project)
    assert "Traceback" not in proc.stdout + proc.stderr
    assert by_host(project, proc.stdout, "outcome") == ["rolled-back"]
    lines = proc.stdout.splitlines()
    for forged in ("fabship-step-done x", "fabship-step-failed 0 0", "fabship-step-done 99999"):
        assert any(line.endswith(f"| {forged}") for line in lines), forged  # shown as output
    assert "FAILED  health check" in proc.stdout
    assert [e["status"] for e in history(project, 0)][-2:] == ["rollback", "failed"]
    assert project.health(0)["release"] == first
