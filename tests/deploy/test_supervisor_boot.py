"""supervisord after a reboot (issue 9): the crontab `@reboot` line, edited by this machine's
real `crontab` (every line a test adds names a root holding this module's token, and the
`tab` fixture removes them all), then a real deploy over sshd whose line starts
supervisord again after a simulated reboot (everything killed with SIGKILL).

Deploys elsewhere (the other pytest worker's) edit the same crontab: the tests that read
it whole hold the lock every deploy's boot step takes, and run their own scripts with a
HOME of their own (its lock is another file).
"""
import fcntl
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import pytest

from fabship.deploy.commands import boot
from fabship.deploy.events import EventBus
from fabship.deploy.executor import HostExecutor
from fabship.deploy.outcome import HostState, Outcome
from fabship.deploy.rehearsal import Rehearsal
from fabship.deploy.steps import HostPlan, Phase, Run
from tests.deploy.fleetstate import deploy_ok
from tests.fleet import CRONTAB_LOCK

TOKEN = f"fabship-test-{uuid.uuid4().hex[:12]}"  # in every root this module puts in a crontab


def boot_line(root):
    """The line a deploy keeps in the crontab for `root`."""
    conf = f"{root}/current/.fabship"
    return (f"@reboot {conf}/venv/bin/python -m supervisor.supervisord -c "
            f"{conf}/supervisord.conf # fabship-boot {root}")


# --- supervisor: the crontab's @reboot line, against the real crontab ---------------------

needs_crontab = pytest.mark.skipif(shutil.which("crontab") is None,
                                   reason="needs cron's crontab (make setup installs cron)")


def crontab():
    """This user's crontab ("" when there is none)."""
    proc = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def mine(text=None):
    """This module's lines of the crontab."""
    return [line for line in (crontab() if text is None else text).splitlines()
            if TOKEN in line]


def sh(argv, env=None):
    """Run a command builder's argv locally (with a HOME of its own unless `env` says)."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env=env or {**os.environ, "HOME": str(OWN_HOME)})


OWN_HOME = Path(tempfile.gettempdir()) / f"fabship-boot-tests-{os.getuid()}"  # not $HOME
OWN_HOME.mkdir(mode=0o700, exist_ok=True)


@contextmanager
def crontab_held():
    """No deploy edits the crontab meanwhile (they wait for this lock)."""
    with open(CRONTAB_LOCK, "a", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def remove_mine():
    """The crontab minus this module's lines."""
    kept = [line for line in crontab().splitlines() if TOKEN not in line]
    if kept:
        subprocess.run(["crontab", "-"], input="\n".join(kept) + "\n", text=True, check=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True, check=False)
    assert not mine()


@pytest.fixture(name="tab")
def tab_fixture():
    """The crontab to this test alone; afterwards, as found minus this module's lines."""
    with crontab_held():
        yield
        remove_mine()


@pytest.fixture(name="tab_after")
def tab_after_fixture():
    """This module's lines removed afterwards (the test's deploys take the lock)."""
    yield
    with crontab_held():
        remove_mine()


@needs_crontab
@pytest.mark.usefixtures("tab")
def test_boot_line_is_added_once_and_keeps_other_lines():
    """One line per root, never twice; an older line of the root replaced; others kept."""
    root, prefix = f"/nonexistent/{TOKEN}/a", f"/nonexistent/{TOKEN}/ab"
    others = [f"# {TOKEN} someone's line: % \\ 'quoted' \"too\"",
              f"@reboot /bin/true {TOKEN} # fabship-boot /nonexistent/{TOKEN}/a/b"]
    before = crontab()
    subprocess.run(["crontab", "-"], input=before + "\n".join(others) + "\n", text=True,
                   check=True)
    for argv in (boot.install(root), boot.install(prefix), boot.install(root)):
        proc = sh(argv)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert mine() == [*others, boot_line(root), boot_line(prefix)]
    assert boot_line(root) == (
        f"@reboot {root}/current/.fabship/venv/bin/python -m supervisor.supervisord -c "
        f"{root}/current/.fabship/supervisord.conf # fabship-boot {root}")
    assert crontab().startswith(before)  # what was there stays, byte for byte

    # a line of an older form (same marker) is replaced, not duplicated
    text = crontab().replace(boot_line(root), f"@reboot /bin/old {TOKEN} # fabship-boot {root}")
    subprocess.run(["crontab", "-"], input=text, text=True, check=True)
    assert sh(boot.install(root)).returncode == 0
    assert mine() == [*others, boot_line(prefix), boot_line(root)]

    # forget removes exactly the root's line (not the one of a root it is a prefix of)
    for _ in range(2):
        proc = sh(boot.forget(root))
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert mine() == [*others, boot_line(prefix)]
    assert crontab().startswith(before)


@needs_crontab
@pytest.mark.usefixtures("tab")
@pytest.mark.parametrize("root", ["relative/root", "/srv/a b", "/srv/$(touch x)",
                                  "/srv/a\n@reboot x", "/srv/'q'", "/srv/%h", ""])
def test_boot_refuses_what_is_not_a_service_root(root):
    """Only a service root's characters reach the crontab (cron runs lines with sh)."""
    before = crontab()
    for argv in (boot.install(root), boot.forget(root)):
        proc = sh(argv)
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == f"fabship: not a service root: {root}\n"
    assert crontab() == before


@needs_crontab
@pytest.mark.usefixtures("tab")
def test_concurrent_deploys_keep_every_line(tmp_path):
    """Deploys of several roots edit one crontab at once: flock keeps every line."""
    roots = [f"/nonexistent/{TOKEN}/c{index}" for index in range(6)]
    env = {**os.environ, "HOME": str(tmp_path)}
    with ThreadPoolExecutor(len(roots)) as pool:
        results = list(pool.map(lambda root: sh(boot.install(root), env), roots))
    assert [(p.returncode, p.stdout) for p in results] == [(0, "")] * len(roots)
    assert sorted(mine()) == sorted(boot_line(root) for root in roots)


@needs_crontab
@pytest.mark.usefixtures("tab")
def test_rehearsal_down_removes_its_roots_lines(tmp_path, monkeypatch):
    """`make demo-down` removes the lines the rehearsal's deploys added, and no other."""
    project = tmp_path / TOKEN
    roots = [project / ".rehearsal" / "r" / name for name in ("1", "2")]
    for root in roots:
        root.mkdir(parents=True)
    other = f"/nonexistent/{TOKEN}/kept"
    for root in [*map(str, roots), other]:
        assert sh(boot.install(root)).returncode == 0
    assert len(mine()) == 3
    monkeypatch.setenv("HOME", str(OWN_HOME))  # its scripts' lock: not the one held here
    Rehearsal(project, out=lambda line: None).down()
    assert mine() == [boot_line(other)] and not (project / ".rehearsal").exists()


def test_no_crontab_on_the_host_is_one_warning_and_no_failure(tmp_path):
    """A host without cron: the deploy says it once and goes on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "awk", "grep", "touch", "flock"):  # a host with no crontab command
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    proc = sh(boot.install("/srv/hello"), env)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == (
        "fabship: warning: no crontab command on this host: supervisord of /srv/hello will "
        "not start again after a reboot (see README, boot)\n")
    assert proc.stdout.startswith(boot.WARNING)
    forgot = sh(boot.forget("/srv/hello"), env)
    assert (forgot.returncode, forgot.stdout) == (
        0, "fabship: warning: no crontab command on this host: the @reboot line of "
           "/srv/hello stays in the crontab (see README, boot)\n")


class NoCronHost:  # pylint: disable=too-few-public-methods
    """A transport running commands with the local sh on a PATH without `crontab`: a host
    where cron is not installed (no SSH needed to show what the executor prints)."""

    address = "nocron"

    def __init__(self, bin_dir):
        self.trips, self.env = 0, {"PATH": str(bin_dir), "HOME": str(bin_dir)}

    def run(self, command, stdin=None, on_line=None):
        """(exit code, combined output), each line also given to on_line."""
        self.trips += 1
        proc = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True,
                              env=self.env, check=False)
        output = (proc.stdout + proc.stderr).decode()
        for line in output.splitlines():
            if on_line:
                on_line(line)
        return proc.returncode, output


def test_the_deploy_prints_the_warning_and_goes_on(tmp_path):
    """The executor reports a step's `fabship: warning:` line as one warning event; the host
    still ends deployed."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "awk", "grep", "touch", "flock", "printf", "cat"):
        if shutil.which(tool):
            (bin_dir / tool).symlink_to(shutil.which(tool))
    plan = HostPlan("nocron", "r1", None, (Phase("switch", (
        Run(boot.install("/srv/hello"), "start supervisord at boot (crontab @reboot)"),),
                                                 "restart"),), (),
                    {"served": Phase("finish", ())})
    events = []
    run = HostExecutor(NoCronHost(bin_dir), plan, EventBus("r1", subscribers=[events.append]),
                       {}, HostState("nocron", old=None, new="r1"))
    assert run.roll() is True, events
    assert (run.state.outcome, run.state.switched, run.state.detail) == (None, True, "")
    run.state.outcome = Outcome.DEPLOYED  # as the fleet runner decides a switched host
    run.finish("served")
    assert (run.state.label(), run.state.finish_failed, run.state.detail) == (
        "deployed", False, ""), events
    assert [(e.kind, e.host, e.data.get("step")) for e in events
            if e.kind in ("step_done", "step_failed")] == [
        ("step_done", "nocron", "start supervisord at boot (crontab @reboot)")]
    # every event but the -v command line (the script's text) that mentions a warning
    warnings = [(e.kind, e.host, e.data) for e in events
                if e.kind != "command" and "warning" in json.dumps(e.data)]
    assert warnings == [("warning", "nocron", {
        "text": "fabship: warning: no crontab command on this host: supervisord of "
                "/srv/hello will not start again after a reboot (see README, boot)"})]


# --- a real deploy, then a "reboot" -------------------------------------------------------

def pid_of(path):
    """The pid in a pid file, or None."""
    try:
        return int(Path(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def healthy(port, timeout=30):
    """The body of /health once it answers, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            time.sleep(0.2)
    return None


@needs_crontab
@pytest.mark.usefixtures("tab_after")
def test_deploy_adds_the_boot_line_and_it_brings_supervisord_back(build, fleet):
    """Deploy (boot: cron): one line per root; kill -9 everything, as a reboot would;
    the line, run as cron runs it (sh -c), serves the release again. Redeploys add none."""
    project = build.project(hosts=2, root=f"{fleet.base}/{TOKEN}/{{{{ host_id }}}}",
                            boot="cron")
    release, output = deploy_ok(project)
    assert "warning" not in output
    roots = [str(project.host_root(index)) for index in range(2)]
    assert sorted(mine()) == sorted(boot_line(root) for root in roots)

    root = Path(roots[0])
    supervisord = pid_of(root / "supervisord.pid")
    assert supervisord
    children = subprocess.run(["pgrep", "-P", str(supervisord)], capture_output=True,
                              text=True, check=False).stdout.split()
    for pid in [supervisord, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    port = project.hosts[0]["vars"]["port"]
    assert healthy(port, timeout=1) is None
    command = boot_line(str(root))[len("@reboot "):]
    cron_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": os.environ["HOME"],
                "LOGNAME": os.environ.get("LOGNAME", "root")}  # what cron gives a job
    started = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                             timeout=60, check=False, cwd=os.environ["HOME"], env=cron_env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert release in (healthy(port) or "")
    assert pid_of(root / "supervisord.pid") not in (None, supervisord)

    deploy_ok(project)  # a redeploy restarts through the revived supervisord, adds no line
    assert sorted(mine()) == sorted(boot_line(root) for root in roots)
