"""The restart and health-check scripts against a real supervisord, without sshd.

The "venv" is this interpreter with supervisor's wheel on PYTHONPATH (the scripts' own
XML-RPC client runs `-I -S`: it needs the standard library only); the program is
`python -m http.server` serving its release directory, so /release.json names the
release that runs. supervisord.conf is the real template, rendered for the test's root.
"""
import os
import re
import socket
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import jinja2
import pytest

from fabship.deploy.commands import LAYOUT_NO_LINKS, health, supervisor
from fabship.deploy.layout import Layout
from tests.deploy.helpers import plain_check
from tests.helpers import REPO

TEMPLATE = REPO / "fabship" / "templates" / "supervisor" / "supervisord.conf.j2"
GOOD = '#!/bin/sh\ncd "$(dirname "$0")/.." && exec "$PY" -m http.server "$PORT" --bind 127.0.0.1\n'
CRASHING = "#!/bin/sh\necho 'hello: cannot start: no such file'\nexit 3\n"


def sh(argv, timeout=60):
    """Run a builder's argv as the host would."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


@pytest.fixture(name="venv", scope="module")
def venv_fixture(tmp_path_factory):
    """bin/python: this interpreter, with supervisor importable (from its wheel)."""
    base = tmp_path_factory.mktemp("sv")
    proc = sh([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
               "--no-deps", "-w", str(base / "wheel"), "supervisor>=4.3"], timeout=300)
    assert proc.returncode == 0, proc.stderr
    (wheel,) = (base / "wheel").glob("supervisor-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        archive.extractall(base / "site")
    python = base / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f'#!/bin/sh\nPYTHONPATH={base / "site"} exec {sys.executable} "$@"\n')
    python.chmod(0o755)
    return str(base / "venv")


class Host:
    """A service root with releases, `current`, and the supervisord the scripts start."""

    def __init__(self, root, venv):
        self.layout, self.venv = Layout(str(root)), venv
        self.port = free_port()
        os.makedirs(self.layout.shared + "/log")

    def release(self, release_id, run=GOOD):
        """releases/<id> with release.json, .fabship/run and supervisord.conf; current -> it."""
        path = Path(self.layout.release(release_id))
        (path / ".fabship").mkdir(parents=True)
        (path / "release.json").write_text(f'{{"release": "{release_id}"}}\n')
        run_file = path / ".fabship" / "run"
        run_file.write_text(run.replace('"$PY"', str(Path(self.venv, "bin", "python")))
                            .replace('"$PORT"', str(self.port)))
        conf = jinja2.Template(TEMPLATE.read_text()).render(  # http.server binds its port
            service="hello", root=self.layout.root, zero_downtime=False, drain=10)
        (path / ".fabship" / "supervisord.conf").write_text(conf)
        link = Path(self.layout.root, ".current.tmp")
        link.symlink_to(path)
        link.replace(self.layout.current)

    def restart(self):
        """The restart script (supervisord started when it does not answer)."""
        return sh(supervisor.restart(self.layout, self.venv, "hello"))

    def healthy(self, release_id, timeout=20):
        """The health check for /release.json naming `release_id`."""
        url = health.url("127.0.0.1", self.port, "/release.json")
        return sh(plain_check(self.venv, url, release_id, timeout))

    def watched(self, release_id, timeout=20):
        """supervisor.healthy: the health check that also asks supervisord."""
        url = health.url("127.0.0.1", self.port, "/release.json")
        return sh(supervisor.healthy(self.layout, self.venv, "hello", url,
                                     health.expectation(("release",), release_id), timeout))

    def shutdown(self):
        """Shut supervisord down and wait until its socket no longer answers."""
        assert self.ctl("shutdown").returncode == 0
        sock = os.path.join(self.layout.root, "supervisor.sock")
        deadline = time.monotonic() + 30
        while os.path.exists(sock) and answers(sock) and time.monotonic() < deadline:
            time.sleep(0.05)

    def ctl(self, *args):
        """supervisorctl (the real one) against this root's supervisord."""
        return sh([str(Path(self.venv, "bin", "python")), "-m", "supervisor.supervisorctl",
                   "-c", supervisor.conf_path(self.layout), *args])


def answers(path):
    """Something listens on the unix socket at `path`."""
    with socket.socket(socket.AF_UNIX) as probe:
        return probe.connect_ex(path) == 0


def free_port():
    """A free loopback port."""
    with ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler) as probe:
        return probe.server_address[1]


@pytest.fixture(name="host")
def host_fixture(tmp_path, venv):
    """A Host; its supervisord is shut down afterwards."""
    made = Host(tmp_path / "srv", venv)
    yield made
    if os.path.exists(made.layout.current):
        made.ctl("shutdown")


def test_scripts_ask_supervisord_through_its_socket_with_values_as_arguments():
    """Every script is a constant; root, program, URL, release and timeout travel as
    arguments; supervisord is asked through <root>/supervisor.sock (never its pid file),
    by the release's Python without site-packages."""
    layout, python = Layout("/srv/hello"), "/srv/hello/venvs/k/bin/python"
    conf = "/srv/hello/current/.fabship/supervisord.conf"
    expect = health.expectation(("release",), "r1")
    assert expect == '{"kind": "release", "release": "r1"}'
    assert supervisor.healthy(layout, "/srv/hello/venvs/k", "hello", "http://h:1/x", expect,
                              2.5) == ("sh", "-c", "set -e" + supervisor.HEALTHY, "fabship",
                                       python, conf, "/srv/hello", "hello", "http://h:1/x",
                                       expect, "2.5")
    for body in (supervisor.RELOAD, supervisor.RESTART, supervisor.STOP, supervisor.HEALTHY):
        assert '"$python" -I -S - ' in body and '"$root/supervisor.sock"' in body
        # the pid file is named only to refuse a link planted there
        assert body.count("supervisord.pid") == LAYOUT_NO_LINKS.count("supervisord.pid") == 1


def test_restart_starts_supervisord_then_restarts_without_waiting(host):
    """No supervisord: restart starts it. Then a restart stops and starts the program
    (without waiting for startsecs), and the health check sees the new release serve."""
    host.release("r1")
    first = host.restart()
    assert first.returncode == 0, first.stderr
    assert host.healthy("r1").returncode == 0
    host.release("r2")
    again = host.restart()
    assert (again.returncode, again.stdout) == (0, "hello: stopped\nhello: started\n"), \
        again.stderr
    check = host.healthy("r2")
    assert check.returncode == 0 and check.stdout.startswith("healthy: 200 "), check.stdout


def test_a_crashing_release_fails_its_health_check_and_the_old_one_comes_back(host):
    """A program that exits at once: the restart succeeds (it does not wait); the health
    check fails at its timeout, the one that asks supervisord as soon as supervisord
    reports the exit, quoting the program's log; the previous release restarts from
    there and serves."""
    host.release("r1")
    assert host.restart().returncode == 0
    assert host.watched("r1").stdout.startswith("healthy: 200 ")
    host.release("r2", run=CRASHING)
    assert host.restart().returncode == 0
    bad = host.healthy("r2", timeout=1)
    assert bad.returncode == 1 and "unhealthy after 1s; last response: no answer" in \
        bad.stdout, bad.stdout
    watched = host.watched("r2", timeout=600)  # long: only the exit can end it soon
    assert watched.returncode == 1, watched.stdout + watched.stderr
    assert re.fullmatch(r"unhealthy after [0-9.]+s: hello is (BACKOFF|FATAL|EXITED) \((Exited "
                        r"too quickly \(process log may have details\)|exit status 3)\); its "
                        r"log ends: .* \| hello: cannot start: no such file; last response: "
                        r"no answer \(Connection refused\)\n", watched.stdout), watched.stdout
    os.unlink(host.layout.current)
    os.symlink(host.layout.release("r1"), host.layout.current)
    back = host.restart()
    assert back.returncode == 0, back.stderr
    assert host.healthy("r1").returncode == 0
    host.shutdown()
    gone = host.watched("r1", timeout=600)
    assert gone.returncode == 1 and "supervisord does not answer" in gone.stdout, gone.stdout


def test_reload_applies_a_changed_config_and_stop_stops(host):
    """reload does what `supervisorctl update` does; with an unchanged config, nothing.
    stop stops the program; nothing answering (no socket, a stale socket file), reload
    and stop have nothing to do, and say nothing."""
    for argv in (supervisor.reload(host.layout, host.venv),
                 supervisor.stop(host.layout, host.venv, "hello")):
        assert (sh(argv).returncode, sh(argv).stderr) == (0, "")
    host.release("r1")
    assert host.restart().returncode == 0
    same = sh(supervisor.reload(host.layout, host.venv))
    assert (same.returncode, same.stdout) == (0, ""), same.stderr
    conf = Path(supervisor.conf_path(host.layout))
    conf.write_text(conf.read_text(encoding="utf-8").replace(
        "startsecs = ", "startretries = 2\nstartsecs = "), encoding="utf-8")
    changed = sh(supervisor.reload(host.layout, host.venv))
    assert (changed.returncode, changed.stdout) == (
        0, "hello: stopped\nhello: removed process group\nhello: updated process group\n"), \
        changed.stderr
    assert host.healthy("r1").returncode == 0
    stopped = sh(supervisor.stop(host.layout, host.venv, "hello"))
    assert (stopped.returncode, stopped.stdout) == (0, "hello: stopped\n"), stopped.stderr
    assert host.ctl("status", "hello").stdout.split()[1] == "STOPPED"
    host.shutdown()
    stale = os.path.join(host.layout.root, "supervisor.sock")
    if not os.path.exists(stale):  # it removed its socket: leave a stale one
        with socket.socket(socket.AF_UNIX) as orphan:
            orphan.bind(stale)
    for argv in (supervisor.reload(host.layout, host.venv),
                 supervisor.stop(host.layout, host.venv, "hello")):
        assert (sh(argv).returncode, sh(argv).stderr) == (0, "")


def test_a_linked_socket_is_refused(host, tmp_path):
    """The socket path planted as a link: refused, naming it; nothing is asked through it."""
    host.release("r1")
    (tmp_path / "elsewhere.sock").touch()
    Path(host.layout.root, "supervisor.sock").symlink_to(tmp_path / "elsewhere.sock")
    proc = host.restart()
    assert proc.returncode == 1
    assert f"refusing: {host.layout.root}/supervisor.sock is a symbolic link" in proc.stdout
    os.unlink(host.layout.current)  # nothing was started: nothing to shut down


class Answer(BaseHTTPRequestHandler):
    """Answers GET with the server's `answer`: (raw bytes after the status line) or None
    to send garbage; keeps the connection open (HTTP/1.1) when told to."""

    protocol_version = "HTTP/1.1"

    def do_GET(self):  # pylint: disable=invalid-name
        """The configured answer."""
        status, headers, body = self.server.answer
        if status is None:
            self.wfile.write(b"garbage\r\n\r\n")
            self.close_connection = True
            return
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)
        self.close_connection = not headers

    def log_message(self, *_):  # pylint: disable=arguments-differ
        """Quiet."""


def test_health_check_reads_to_content_length_and_follows_no_redirect():
    """A server that keeps the connection open is read up to its Content-Length; a redirect
    is an answer like any other (not followed); garbage is no HTTP answer."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = health.url("127.0.0.1", httpd.server_address[1], "/health?full=1")
    venv = os.path.dirname(os.path.dirname(sys.executable))
    try:
        httpd.answer = (200, [("Content-Length", "8")], b"ok r1 \xff\n")
        assert (sh(plain_check(venv, url, "r1", 1)).stdout) == "healthy: 200 ok r1 \ufffd\n"
        httpd.answer = (302, [("Location", "/elsewhere"), ("Content-Length", "0")], b"")
        moved = sh(plain_check(venv, url, "r1", 0.3))
        assert (moved.returncode, moved.stdout) == (1, "unhealthy after 0.3s; last response: "
                                                       "302 \n")
        httpd.answer = (None, [], b"")
        garbage = sh(plain_check(venv, url, "r1", 0.3))
        assert garbage.stdout == ("unhealthy after 0.3s; last response: no HTTP answer "
                                  "(b'garbage\\r\\n\\r\\n')\n")
    finally:
        httpd.shutdown()
        httpd.server_close()
