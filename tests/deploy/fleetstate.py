"""Each fleet test builds the state it starts from: projects, deploys, broken releases.

A `Builder` (the `build` fixture of the fleet test modules) makes projects through the
session's `make_project`, each with its own service roots on the shared sshd fleet and
its own app ports, held reserved while the test runs. Unless told otherwise, a project's
hosts are seeded with a complete venv (a hard-linked copy of the one a real deploy built
once per session), as a host holds it after an earlier deploy with the same requirements,
so only the tests about building venvs pay for building them. At the end of
the test the supervisords the test's deploys started are stopped and the ports freed.
"""
import functools
import json
import os
import random
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request

from fabship.deploy.localhosts import read_pid, stop_pid
from tests.helpers import git
from tests.project import fleet_hosts

RELEASE = re.compile(r"deploying hello release (\S+) to")
APP = "services/hello/hello/app.py"
MAIN = "services/hello/hello/__main__.py"
HEALTH_ANSWER = 'self.write({"status": "ok", **self.settings["release_info"]})'


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


def deploy_fails(project, *args):
    """Run a deploy that must exit 1; return the CompletedProcess."""
    proc = project.fab("service", "deploy", *args)
    assert proc.returncode == 1, (f"exit {proc.returncode}, expected 1\n" + proc.stdout[-4000:]
                                  + proc.stderr)
    return proc


def edit(project, path, old, new, message):
    """Change a file of the project's service and commit (with a passing gate record)."""
    file = project.root / path
    text = file.read_text()
    assert old in text, f"{path} no longer holds {old!r}"
    file.write_text(text.replace(old, new))
    return project.commit(message)


def change_code(project, label):
    """Commit a code change (a new artifact) that serves exactly as before."""
    file = project.root / APP
    file.write_text(file.read_text() + f"\n# change {label}\n")
    return project.commit(f"change {label}")


def break_health(project, answer):
    """Commit a /health handler that runs `answer` instead of naming the release."""
    return edit(project, APP, HEALTH_ANSWER, answer, "break health")


def deploy_crashing(project):
    """Deploy a release that exits at start (it must fail and roll back), then revert it."""
    edit(project, MAIN, "import sys\n", "import sys\n\nsys.exit(3)\n", "crash at start")
    proc = deploy_fails(project)
    revert(project)
    return proc


def revert(project):
    """Revert the last commit and write the gate record for the result."""
    git(project.root, "revert", "--no-edit", "HEAD")
    project.commit("gates for the revert")


def table(text, first="host"):
    """The rows of the summary table in `text` as dicts keyed by the header's names."""
    lines = text.splitlines()
    for at, line in enumerate(lines[:-1]):
        if line.startswith(first + " ") and re.fullmatch(r"-+( +-+)*", lines[at + 1]):
            break
    else:
        raise AssertionError(f"no table in:\n{text}")
    starts = [m.start() for m in re.finditer(r"-+", lines[at + 1])]
    spans = list(zip(starts, starts[1:] + [None]))
    names = [lines[at][a:b].strip() for a, b in spans]
    rows = []
    for line in lines[at + 2:]:
        if not line.strip() or line.startswith(("FAILED on", "deployed on", "rolled back on",
                                                "ROLLED BACK", "INTERRUPTED")):
            break
        rows.append(dict(zip(names, (line[a:b].strip() for a, b in spans))))
    return rows


def by_host(project, text, column, first="host"):
    """One column of the summary table, in the order of the project's hosts."""
    rows = {row[first]: row for row in table(text, first)}
    assert set(rows) == {host["host"] for host in project.hosts}, text
    return [rows[host["host"]][column] for host in project.hosts]


def history(project, index):
    """The entries of host `index`'s deploys.jsonl, oldest first."""
    text = (project.host_root(index) / "deploys.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def port(project, index):
    """The app port of host `index`."""
    return project.hosts[index]["vars"]["port"]


def page(project, index, path="/"):
    """GET a page of host `index`'s app -> text."""
    url = f"http://127.0.0.1:{port(project, index)}{path}"
    with urllib.request.urlopen(url, timeout=5) as answer:
        return answer.read().decode()


def refuses(project, index):
    """True when nothing listens on host `index`'s app port."""
    try:
        with socket.create_connection(("127.0.0.1", port(project, index)), timeout=5):
            return False
    except ConnectionRefusedError:
        return True


def supervisorctl(project, index, *args):
    """Run supervisorctl of the release `current` names on host `index`."""
    fabship = project.host_root(index) / "current" / ".fabship"
    return subprocess.run([str(fabship / "venv" / "bin" / "python"), "-m",
                           "supervisor.supervisorctl", "-c", str(fabship / "supervisord.conf"),
                           *args], capture_output=True, text=True, timeout=60, check=False)


def wait_until(condition, what, timeout=120, interval=0.1):
    """Poll `condition` until it returns something true; fail naming `what` (a text, or a
    function giving it) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not true within {timeout}s: "
                                 f"{what() if callable(what) else what}")
        time.sleep(interval)


class Background:
    """`fab ...` running in the background, its output collected as it comes."""

    def __init__(self, project, *args):
        self.proc = project.popen(*args)
        self.lines = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.append(line)

    @property
    def text(self):
        """Everything printed so far."""
        return "".join(self.lines)

    def wait(self, timeout=300):
        """Wait for the end; return the exit code."""
        self.proc.wait(timeout=timeout)
        self.reader.join(timeout=30)
        return self.proc.returncode


def reserve_port():
    """A loopback port below the ephemeral range, bound (not listening) to hold it.

    While the socket is open, nobody else's free-port check can pick the port; the app
    still binds and listens on it (both sockets set SO_REUSEADDR, neither listens twice).
    """
    rng = random.Random()
    for _ in range(500):
        sock = socket.socket()
        try:
            sock.bind(("127.0.0.1", rng.randrange(20000, 30000)))
        except OSError:
            sock.close()
            continue
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        return sock
    raise RuntimeError("no free port in 20000-29999")


@functools.cache
def venv_seed(make_project):
    """A complete venv for the hello service, built by one real deploy per session."""
    builder = Builder(make_project)
    try:
        donor = builder.project(seed=False, hosts=1)
        deploy_ok(donor)
        venvs = [p for p in (donor.host_root(0) / "venvs").iterdir() if p.is_dir()]
        assert len(venvs) == 1 and (venvs[0] / ".complete").is_file(), venvs
        return venvs[0]
    finally:
        builder.close()


class Builder:
    """Makes the projects of one test and cleans up after them (see the module doc)."""

    def __init__(self, make_project):
        self.make_project = make_project
        self.projects, self.sockets = [], []

    def project(self, seed=True, hosts=3, **service_overrides):
        """A committed project on the first `hosts` hosts of the fleet, with held ports."""
        project = self.make_project(**service_overrides)
        self.projects.append(project)
        held = [reserve_port() for _ in range(hosts)]
        self.sockets += held
        project.hosts = fleet_hosts(project.fleet, [
            (server, sock.getsockname()[1]) for server, sock in zip(project.fleet.servers, held)])
        project.service["environments"]["test"]["hosts"] = project.hosts
        project.write_config({"hello": project.service})
        project.commit("own ports")
        if seed:
            venv = venv_seed(self.make_project)
            for index in range(hosts):
                venvs = project.host_root(index) / "venvs"
                venvs.mkdir(parents=True)
                # Hard links: a quick copy, of real files and directories inside this root.
                subprocess.run(["cp", "-al", str(venv), str(venvs)], check=True)
        return project

    def deployed(self, count=1, **service_overrides):
        """A project deployed `count` times, each time with a code change; (project, ids)."""
        project = self.project(**service_overrides)
        releases = []
        for number in range(count):
            if number:
                change_code(project, number)
            releases.append(deploy_ok(project)[0])
        return project, releases

    def close(self):
        """Stop the supervisords the projects' deploys started, free the ports."""
        pidfiles = [project.host_root(index) / "supervisord.pid"
                    for project in self.projects for index in range(len(project.hosts))]
        for pid in filter(None, map(read_pid, pidfiles)):
            try:
                os.kill(pid, signal.SIGTERM)  # all at once: each takes a second to stop
            except ProcessLookupError:
                pass
        for pidfile in pidfiles:
            stop_pid(pidfile)
        for sock in self.sockets:
            sock.close()
