"""Status, history and health-check commands run for real; process-manager argv exactly.

The health answers come from a real HTTP server on loopback; the "venv" python a release
links to is the interpreter running these tests.
"""
import hashlib
import json
import signal
import shutil
import socket
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fabship.deploy.commands import health, status, supervisor, systemd
from fabship.deploy.config import parse_services
from fabship.deploy.errors import ConfigError
from fabship.deploy.layout import Layout
from tests.deploy.helpers import plain_check

LAYOUT = Layout("/srv/hello")
OWNER = {"who": "alice", "where": "laptop", "since": "2026-11-23T12:00:00Z"}


def run(argv):
    """Run a builder's argv as a host would."""
    return subprocess.run(argv, capture_output=True, text=True, check=False)


class Answer(BaseHTTPRequestHandler):
    """Answers every GET with the server's current (status, body)."""

    def do_GET(self):  # pylint: disable=invalid-name
        """The configured answer."""
        code, body = self.server.answer
        self.send_response(code)
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_):  # pylint: disable=arguments-differ
        """Quiet."""


@pytest.fixture(name="server")
def fixture_server():
    """A real HTTP server on loopback; set `.answer = (status, body)`."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Answer)
    httpd.answer = (200, "hello r1\n")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def url(server):
    """The health URL of the server."""
    return health.url("127.0.0.1", server.server_address[1], "/health")


def deployed(root, venv=True):
    """A root with release r1 current (release.json, venv link) and a held lock."""
    release = root / "releases" / "r1" / ".fabship"
    release.mkdir(parents=True)
    (root / "releases" / "r1" / "release.json").write_text(
        json.dumps({"release": "r1", "commit": "abc1234def5678900"}, indent=2) + "\n")
    if venv:
        (root / "venv" / "bin").mkdir(parents=True)
        (root / "venv" / "bin" / "python").symlink_to(sys.executable)
        (release / "venv").symlink_to(root / "venv")
    (root / "current").symlink_to(root / "releases" / "r1")
    (root / ".lock").mkdir()
    (root / ".lock" / "owner.json").write_text(json.dumps(OWNER, indent=1) + "\n")


def test_status_of_a_healthy_release(tmp_path, server):
    """current, release.json and the lock on one line each, then one health answer."""
    deployed(tmp_path)
    proc = run(status.command(Layout(str(tmp_path)), url(server)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == [
        f"current={tmp_path}/releases/r1",
        'release_json={  "release": "r1",  "commit": "abc1234def5678900"}',
        'lock={ "who": "alice", "where": "laptop", "since": "2026-11-23T12:00:00Z"}',
        "health=200 hello r1"]
    assert status.parse(proc.stdout) == {
        "release": "r1", "commit": "abc1234def56", "health": "ok",
        "lock": "held by alice@laptop since 2026-11-23T12:00:00Z"}


def test_status_of_a_stale_or_failing_release(tmp_path, server):
    """Another release answering is stale; an error status is down, with the reason."""
    deployed(tmp_path)
    server.answer = (200, "hello r0")
    text = run(status.command(Layout(str(tmp_path)), url(server))).stdout
    assert status.parse(text)["health"] == "stale: hello r0"
    server.answer = (503, "starting")
    text = run(status.command(Layout(str(tmp_path)), url(server))).stdout
    assert status.parse(text)["health"] == ("down: down HTTP Error 503: Service Unavailable")


def test_status_without_a_venv_or_a_release(tmp_path):
    """No venv: no health probe at all. No current: nothing to report."""
    deployed(tmp_path, venv=False)
    text = run(status.command(Layout(str(tmp_path)), "http://127.0.0.1:9/")).stdout
    assert "health=" not in text
    assert status.parse(text)["health"] == "down: no venv"
    empty = run(status.command(Layout(str(tmp_path / "none")), "http://127.0.0.1:9/"))
    assert (empty.returncode, empty.stdout) == (0, "current=\n")
    assert status.parse(empty.stdout) == {"release": "-", "commit": "-",
                                          "health": "no release", "lock": "free"}


@pytest.mark.parametrize("text, expected", [
    ("current=/r/releases/r2/\nhealth=200 r2 ok\n", {"release": "r2", "health": "ok"}),
    ("current=/r/releases/r2\nhealth=200 " + "x" * 100,
     {"health": "stale: " + "x" * 76}),
    ("current=/r/releases/r2\nhealth=down " + "y" * 100, {"health": "down: down " + "y" * 75}),
    ("current=/r/releases/r2\nhealth=2000 r2", {"health": "down: 2000 r2"}),
    ("current=\nhealth=200 r2", {"release": "-", "health": "no release"}),
    ("release_json=[1]\nlock=[2]", {"release": "-", "health": "no release", "commit": "-",
                                    "lock": "held by ?@? since ?"}),
    ("current=/r/releases/rX/\nhealth=200 rX a=b", {"release": "rX", "health": "ok"}),
    ('release_json={"commit": 12345678901234}\nlock={"who": "b"}',
     {"commit": "123456789012", "lock": "held by b@? since ?"}),
    ("release_json={bad\nlock=\nnoise\nx=a=b", {"commit": "-", "lock": "held by ?@? since ?"}),
    # the manager's word on each process: one not running makes a healthy host degraded
    ("current=/r/releases/r2\nhealth=200 r2\nprocesses=h:h_0:RUNNING h:h_1:STARTING",
     {"health": "ok"}),
    ("current=/r/releases/r2\nhealth=200 r2\nprocesses=h:h_0:BACKOFF h:h_1:RUNNING",
     {"health": "degraded: 1 of 2 processes running (h:h_0 BACKOFF)"}),
    ("current=/r/releases/r2\nhealth=200 r2\nprocesses=a@1.service:active a@2.service:failed "
     "a@3.service:", {"health": "degraded: 1 of 3 processes running (a@2.service failed, "
                                "a@3.service unknown)"}),
    ("current=/r/releases/r2\nhealth=200 r2\nprocesses=", {"health": "ok"}),
    ("current=/r/releases/r2\nhealth=down x\nprocesses=h:h_0:FATAL", {"health": "down: down x"}),
])
def test_status_parse_edges(text, expected):
    """Truncation, a trailing slash, broken JSON, and answers that only look healthy."""
    parsed = status.parse(text)
    assert {key: parsed[key] for key in expected} == expected


def test_history_prints_the_last_lines(tmp_path):
    """`tail -n limit` of deploys.jsonl; no file yet is an empty history."""
    layout = Layout(str(tmp_path))
    lines = [json.dumps({"release": f"r{i}"}) for i in range(5)]
    (tmp_path / "deploys.jsonl").write_text("\n".join(lines) + "\nnot json\n[1]\n{}\n")
    proc = run(status.history(layout, 6))
    assert proc.stdout.splitlines() == lines[2:] + ["not json", "[1]", "{}"]
    assert status.parse_history(proc.stdout) == [{"release": "r2"}, {"release": "r3"},
                                                 {"release": "r4"}]
    assert status.history(layout, 6)[3:] == ("fabship", f"{tmp_path}/deploys.jsonl", "6")
    empty = run(status.history(Layout(str(tmp_path / "none")), 5))
    assert (empty.returncode, empty.stdout) == (0, "")


def test_health_check_argv_and_url():
    """The release's python runs the constant check with url, what answers, the timeout
    and the units that run the program (systemd is asked for their state and pids)."""
    assert health.url("::1", 8080, "/health") == "http://::1:8080/health"
    expect = health.expectation(("release",), "r1")
    assert systemd.healthy("/srv/hello/venvs/k", "http://h:1/x", expect, 2.5, ("a.service",)) \
        == ("/srv/hello/venvs/k/bin/python", "-c", systemd.CHECK, "http://h:1/x",
            '{"kind": "release", "release": "r1"}', "2.5", "a.service")
    assert systemd.healthy("/v", "u", expect, 30.0, ())[-1] == "30"
    assert systemd.roll("/v", "u", expect, 5, ("a@1.service", "a@2.service")) == (
        "/v/bin/python", "-c", systemd.ROLL, "u", '{"kind": "release", "release": "r1"}', "5",
        "a@1.service", "a@2.service")


def test_health_check_runs_until_the_release_answers(server):
    """Healthy at once when the body names the release; else it fails after the timeout."""
    venv = os.path.dirname(os.path.dirname(sys.executable))
    ok = run(plain_check(venv, url(server), "r1", 5))
    assert (ok.returncode, ok.stdout) == (0, "healthy: 200 hello r1\n")
    server.answer = (500, "boom")
    bad = run(plain_check(venv, url(server), "r1", 1))
    assert (bad.returncode, bad.stdout) == (1, "unhealthy after 1s; last response: 500 boom\n")


SHARED = """
import os, socket, sys, time
from http.server import BaseHTTPRequestHandler, HTTPServer
name = sys.argv[1]
listener = socket.socket(fileno=int(sys.argv[2]))
if name == "mute":  # holds the socket, never accepts
    time.sleep(60)


class Named(BaseHTTPRequestHandler):
    def do_GET(self):
        body = name.encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_):
        pass


server = HTTPServer(("127.0.0.1", 0), Named, bind_and_activate=False)
server.socket = listener
server.serve_forever()
"""


@pytest.fixture(name="shared")
def shared_fixture():
    """Processes a, b and mute sharing one listening socket, as under a process manager:
    {name: pid} and the port."""
    listener = socket.create_server(("127.0.0.1", 0))
    procs = {name: subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-c", SHARED, name, str(listener.fileno())],
        pass_fds=(listener.fileno(),)) for name in ("a", "b", "mute")}
    try:
        yield {name: proc.pid for name, proc in procs.items()}, listener.getsockname()[1]
    finally:
        for proc in procs.values():
            proc.kill()
            proc.wait()
        listener.close()


def alone(pid, port, timeout=5):
    """health.POLL's wait(alone=True) for process `pid`, run for real: (ok, said)."""
    code = health.POLL + (f"\nprint(wait(sys.argv[1], {{'kind': 'status'}}, {timeout}, "
                          f"pids=lambda: [{pid}], alone=True))\n")
    return run((sys.executable, "-c", code, f"http://127.0.0.1:{port}/health"))


def test_a_process_sharing_the_socket_is_checked_on_connections_it_accepted(shared):
    """Each process is asked on a connection it accepted itself, whichever of the three
    the kernel hands connections to; one that never accepts is not healthy."""
    pids, port = shared
    for name in ("a", "b", "a", "b"):
        proc = alone(pids[name], port)
        assert proc.stdout == f"(True, 'healthy: 200 {name}')\n", proc.stdout + proc.stderr
    mute = alone(pids["mute"], port, timeout=1)
    assert mute.stdout == (f"(False, 'unhealthy after 1s; last response: connections "
                           f"accepted by other processes than pid {pids['mute']}')\n"), \
        mute.stdout + mute.stderr


@pytest.mark.parametrize("family, server_host, client_host", [
    (socket.AF_INET, "127.0.0.1", "127.0.0.1"), (socket.AF_INET6, "::1", "::1"),
    (socket.AF_INET6, "::", "127.0.0.1")])  # a dual-stack server, an IPv4 client
def test_the_server_end_of_a_connection_is_found_once_accepted(family, server_host,
                                                               client_host):
    """health.POLL's server_end: "" while the connection waits in the backlog, then the
    inode of the socket accept() made, matched by both ends' addresses and ports."""
    code = {}
    exec(health.POLL, code)  # pylint: disable=exec-used
    with socket.socket(family) as listener:
        if family == socket.AF_INET6:
            listener.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        listener.bind((server_host, 0))
        listener.listen()
        with socket.create_connection((client_host, listener.getsockname()[1])) as conn:
            assert code["server_end"](conn) == ""
            accepted, _ = listener.accept()
            with accepted:
                inode = f"socket:[{os.fstat(accepted.fileno()).st_ino}]"
                assert code["server_end"](conn) == inode
                assert code["accepted_by"](conn, [os.getpid()]) is True
                with subprocess.Popen(["sleep", "30"]) as other:  # holds no such socket
                    assert code["accepted_by"](conn, [other.pid]) is False
                    other.kill()


def poll_with(expect, server, pids, timeout=1):
    """health.POLL run for real against the server, the program's pids as given."""
    code = health.POLL + f"\npoll(sys.argv[1], sys.argv[2], {timeout}, pids=lambda: {pids!r})\n"
    return run((sys.executable, "-c", code, url(server),
                health.expectation(expect, "r1")))


def test_status_and_field_checks_need_the_answering_socket_held_by_the_new_process(server):
    """`status`/`field` cannot tell processes apart by the answer: the socket listening on
    the port must be held by the manager's pid (or a process below it). Here it is held
    by this test's process; a stray pid (a child `sleep`) is not the one answering."""
    server.answer = (200, '{"status": "ok", "data": {"n": 1}}')
    mine = [os.getpid()]
    assert poll_with(("status",), server, mine).returncode == 0
    assert poll_with(("field", "data.n", 1), server, mine).returncode == 0
    with subprocess.Popen(["sleep", "30"]) as stray:
        try:
            bad = poll_with(("status",), server, [stray.pid])
        finally:
            stray.kill()
    assert bad.returncode == 1
    assert bad.stdout.startswith("unhealthy after 1s; last response: 200 ")
    assert (f"(a socket listening on port {server.server_address[1]} is not held by the "
            f"process started now (pid {stray.pid}))") in bad.stdout, bad.stdout
    wrong = poll_with(("field", "data.n", 2), server, mine)
    assert wrong.returncode == 1 and "(data.n is 1)" in wrong.stdout, wrong.stdout
    none = poll_with(("status",), server, [])
    assert "(the manager names no running process)" in none.stdout, none.stdout
    server.answer = (200, "plain")
    assert "(the body is not JSON)" in poll_with(("field", "s", "ok"), server, mine).stdout
    assert poll_with(("release",), server, []).returncode == 1  # no r1 in "plain"


@pytest.mark.parametrize("expect, parsed", [
    ("release", ("release",)), ("status", ("status",)),
    ({"field": "data.state", "value": "up"}, ("field", "data.state", "up")),
    ({"field": "ok", "value": True}, ("field", "ok", True)),
])
def test_health_expect_forms(expect, parsed):
    """health.expect: release (the default), status, or a JSON field with its value."""
    service = {"source": "s", "run": "r", "health": {"expect": expect},
               "environments": {"t": {"hosts": ["u@h"]}}}
    assert parse_services({"x": service}, "f.yaml")["x"].health.expect == parsed
    del service["health"]
    assert parse_services({"x": service}, "f.yaml")["x"].health.expect == ("release",)


@pytest.mark.parametrize("expect, message", [
    ("ok", "services.x.health.expect: expected release, status or {field: PATH, value: "
           "VALUE}, got 'ok'"),
    ({"field": "a..b", "value": 1}, "services.x.health.expect.field: expected a field path"),
    ({"field": "a"}, "services.x.health.expect.value: expected the value the field must "
                     "hold, got None"),
    ({"field": "a", "value": [1]}, "services.x.health.expect.value: expected a string, "
                                   "number, boolean or null, got [1]"),
    ({"field": "a", "value": 1, "op": "eq"}, "services.x.health.expect.op: unknown key"),
])
def test_bad_health_expect_is_one_clear_error(expect, message):
    """Which file, which key, what was expected."""
    service = {"source": "s", "run": "r", "health": {"expect": expect},
               "environments": {"t": {"hosts": ["u@h"]}}}
    with pytest.raises(ConfigError) as err:
        parse_services({"x": service}, "f.yaml")
    assert str(err.value).startswith("f.yaml: " + message), err.value


def test_status_table_reads_health_by_the_expectation():
    """`fab service status` calls a host ok by the same rule (the body is cut at 300)."""
    text = "current=/srv/x/releases/r1\nhealth=200 {\"status\": \"ok\"}\n"
    assert status.parse(text)["health"].startswith("stale")
    assert status.parse(text, ("status",))["health"] == "ok"
    assert status.parse(text, ("field", "status", "ok"))["health"] == "ok"
    assert status.parse(text, ("field", "status", "up"))["health"].startswith("stale")
    one = "current=/srv/x/releases/r1\nhealth=200 {\"ok\": 1}\n"  # true is not 1, as in checks
    assert status.parse(one, ("field", "ok", True))["health"].startswith("stale")
    assert status.parse(one, ("field", "ok", 1))["health"] == "ok"


def test_supervisor_commands_are_exact():
    """supervisord's config is read through `current`; the release's venv runs it; the
    root is given so the scripts can refuse links (never the pid file: it is not trusted)."""
    conf = "/srv/hello/current/.fabship/supervisord.conf"
    assert supervisor.conf_path(LAYOUT) == conf
    python = "/srv/hello/venvs/k/bin/python"
    assert supervisor.reload(LAYOUT, "/srv/hello/venvs/k") == (
        "sh", "-c", "set -e" + supervisor.RELOAD, "fabship", python, conf, "/srv/hello", "")
    assert supervisor.restart(LAYOUT, "/srv/hello/venvs/k", "hello") == (
        "sh", "-c", "set -e" + supervisor.RESTART, "fabship", python, conf, "/srv/hello",
        "hello")
    assert supervisor.stop(LAYOUT, "/srv/hello/venvs/k", "hello") == (
        "sh", "-c", "set -e" + supervisor.STOP, "fabship", python, conf, "/srv/hello", "hello")
    for body in (supervisor.RELOAD, supervisor.RESTART, supervisor.STOP, supervisor.HEALTHY):
        # supervisord is asked through its socket, never through its pid file
        assert '"$root/supervisor.sock"' in body and "kill -0" not in body
        assert "cat \"$root/supervisord.pid" not in body


def test_reload_and_stop_do_nothing_without_a_running_supervisord(tmp_path):
    """Whether supervisord runs is asked of supervisord: no pid file, one naming a dead
    process, or one naming a live process that is not supervisord (a stale pid reused)
    all mean nothing to tell, and no error."""
    layout = Layout(str(tmp_path))
    venv = str(tmp_path / "no-venv")  # supervisorctl cannot answer: nothing runs
    for argv in (supervisor.reload(layout, venv), supervisor.stop(layout, venv, "hello")):
        assert run(argv).returncode == 0
    finished = subprocess.Popen(["true"])  # pylint: disable=consider-using-with
    finished.wait()
    (tmp_path / "supervisord.pid").write_text(f"{finished.pid}\n")
    for argv in (supervisor.reload(layout, venv), supervisor.stop(layout, venv, "hello")):
        assert (run(argv).returncode, run(argv).stderr) == (0, "")
    (tmp_path / "supervisord.pid").write_text(f"{os.getpid()}\n")  # alive, not supervisord
    for argv in (supervisor.reload(layout, venv), supervisor.stop(layout, venv, "hello")):
        assert (run(argv).returncode, run(argv).stderr) == (0, "")
    started = run(supervisor.restart(layout, venv, "hello"))  # no answer: it starts one
    assert started.returncode == 127 and f"{venv}/bin/python" in started.stderr


def test_systemd_commands_are_exact():
    """The units (named after service and root) travel as arguments of constant scripts:
    the unit directory, the release, the plain unit, the socket and the template first."""
    unit = "fabship-hello-" + hashlib.sha256(b"/r").hexdigest()[:8] + ".service"
    socket_unit = unit.replace(".service", ".socket")
    template = unit.replace(".service", "@.service")
    names = ("/etc/systemd/system", "/r/current", unit, socket_unit, template)
    assert systemd.install("/r/current", "hello", "/r", 3, "app") == (
        "sh", "-c", "set -e" + systemd.INSTALL, "fabship", *names, "3", "app")
    assert systemd.stop("/r/current", "hello", "/r") == (
        "sh", "-c", "set -e" + systemd.STOP, "fabship", *names)
    assert systemd.units_of("/r/current", "hello", "/r", 2) == (
        "/r/current", unit, socket_unit, template.replace("@", "@1"),
        template.replace("@", "@2"))
    assert 'as_root install -m 0644 "$staged/$plain" "$UNIT_DIR/$plain"' in systemd.INSTALL
    assert 'as_root systemctl enable --quiet "$plain"' in systemd.INSTALL


STRAY = """
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Old(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"ok")


class Shared(ThreadingHTTPServer):
    allow_reuse_port = True


server = Shared(("127.0.0.1", int(sys.argv[1])), Old)
print("serving", flush=True)
server.serve_forever()
"""


def test_a_second_listener_on_the_port_held_by_another_process_fails_the_check():
    """Two sockets on the port (SO_REUSEPORT): the kernel may hand a connection to either,
    so the new process must hold every one of them, not just one."""
    class Shared(ThreadingHTTPServer):  # pylint: disable=too-few-public-methods
        """Its socket shares the port."""
        allow_reuse_port = True
    servers = [Shared(("127.0.0.1", 0), Answer)]
    servers.append(Shared(servers[0].server_address, Answer))
    for httpd in servers:
        httpd.answer = (200, "ok")
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        assert poll_with(("status",), servers[0], [os.getpid()]).returncode == 0  # ours
        closed = servers.pop()
        closed.shutdown()
        closed.server_close()
        # an old process, still there: not below this one (sh starts it and exits)
        with subprocess.Popen(["sh", "-c", '"$0" -c "$1" "$2" & echo $!', sys.executable,
                               STRAY, str(servers[0].server_address[1])],
                              stdout=subprocess.PIPE, text=True) as starter:
            stray = int(starter.stdout.readline())
            try:
                assert starter.stdout.readline() == "serving\n"
                bad = poll_with(("status",), servers[0], [os.getpid()])
            finally:
                os.kill(stray, signal.SIGKILL)
        assert bad.returncode == 1 and "is not held by the process started now" in bad.stdout
    finally:
        for httpd in servers:
            httpd.shutdown()
            httpd.server_close()


def test_a_field_check_tells_true_from_one_and_survives_a_deep_body(server):
    """`value: true` is not 1; a body nested too deep for json is no crash."""
    mine = [os.getpid()]
    server.answer = (200, '{"ok": 1}')
    assert "(ok is 1)" in poll_with(("field", "ok", True), server, mine).stdout
    server.answer = (200, "[" * 1500)
    deep = poll_with(("field", "ok", True), server, mine)
    assert deep.returncode == 1 and "(the body is not JSON)" in deep.stdout, deep.stdout


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("setpriv") is None,
                    reason="runs the check as nobody against root's server (needs root)")
def test_a_check_that_may_not_read_the_programs_descriptors_compares_the_socket_owner(server):
    """As another user (a systemd `user:` apart from the SSH user) the program's fds are
    closed to the check: the socket's owner uid must then be the program's."""
    code = health.POLL + "\npoll(sys.argv[1], sys.argv[2], 1, pids=lambda: [int(sys.argv[3])])\n"
    argv = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups", sys.executable,
            "-c", code, url(server), health.expectation(("status",), "r1")]
    ours = subprocess.run([*argv, str(os.getpid())], capture_output=True, text=True,
                          timeout=30, check=False, cwd="/")
    assert (ours.returncode, ours.stdout) == (0, "healthy: 200 hello r1\n"), ours.stderr
    with subprocess.Popen(["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups",
                           "sleep", "30"]) as other:  # nobody's process: not the owner
        try:
            theirs = subprocess.run([*argv, str(other.pid)], capture_output=True, text=True,
                                    timeout=30, check=False, cwd="/")
        finally:
            other.kill()
    assert theirs.returncode == 1 and "is not held by the process started now" in theirs.stdout
