"""The service as a process: start, serve, and refuse bad settings."""
import json
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request

from pathlib import Path

import pytest

from hello.server import main
from conftest import free_port, wait_until_serving  # pylint: disable=import-error

SERVICE_DIR = Path(__file__).resolve().parent.parent


def test_health_from_a_checkout_says_dev(hello_server):
    with urllib.request.urlopen(hello_server + "/health", timeout=5) as response:
        assert response.status == 200
        assert json.load(response) == {"status": "ok", "release": "dev", "commit": "dev"}


def test_missing_settings_file_exits_2(tmp_path, capsys):
    assert main(["--config", str(tmp_path / "nope.conf")]) == 2
    err = capsys.readouterr().err
    assert "hello: error:" in err and "nope.conf" in err


def test_malformed_settings_file_exits_2_without_traceback(tmp_path):
    config = tmp_path / "bad.conf"
    config.write_text("[hello]\nport = many\n")
    proc = subprocess.run(
        [sys.executable, "-m", "hello", "--config", str(config)],
        cwd=SERVICE_DIR, capture_output=True, text=True, timeout=30, check=False,
    )
    assert proc.returncode == 2
    assert "port: expected a number" in proc.stderr
    assert "Traceback" not in proc.stderr


def start(config, listener=None, systemd=False):
    """`python -m hello` with the listening socket handed over as supervisord (fd 0) or
    systemd (fd 3, LISTEN_FDS/LISTEN_PID) do, or none (it binds its own)."""
    argv = [sys.executable, "-m", "hello", "--config", str(config)]
    kwargs = {}
    if listener is not None and systemd:
        argv = [sys.executable, "-c", "import os, sys\n"
                f"os.dup2({listener.fileno()}, 3)\n"
                "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1')\n"
                "os.execv(sys.argv[1], sys.argv[1:])", *argv]
        kwargs["pass_fds"] = (listener.fileno(),)
    elif listener is not None:
        kwargs["stdin"] = listener.fileno()
    return subprocess.Popen(argv, cwd=SERVICE_DIR, stdout=subprocess.PIPE,  # pylint: disable=consider-using-with
                            stderr=subprocess.STDOUT, text=True, **kwargs)


def listening_socket():
    """A listening TCP socket on a free loopback port, as a process manager holds it."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


@pytest.mark.parametrize("systemd", [False, True])
def test_it_serves_on_a_socket_the_manager_holds(tmp_path, systemd):
    """The manager's socket (its port is not in the settings) is served; after the process
    exits the socket still accepts connections: they wait in the backlog."""
    config = tmp_path / "hello.conf"
    config.write_text("[hello]\nport = 1\n")  # never bound: the socket is inherited
    with listening_socket() as sock:
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
        proc = start(config, sock, systemd)
        try:
            wait_until_serving(url + "/health", proc)
        finally:
            proc.terminate()
            out = proc.communicate(timeout=15)[0]
        assert ("systemd (LISTEN_FDS)" if systemd else "supervisord (fd 0)") in out, out
        assert proc.returncode == 0
        with socket.create_connection(sock.getsockname(), timeout=2):
            pass  # the manager's socket outlived the process: no refusal


def test_sigterm_lets_a_request_in_flight_finish_then_exits(tmp_path):
    """A 2-second request started before SIGTERM ends with 200; no new one is taken."""
    port = free_port()
    config = tmp_path / "hello.conf"
    config.write_text(f"[hello]\nport = {port}\ndrain = 10\n")
    proc = start(config)
    base = f"http://127.0.0.1:{port}"
    wait_until_serving(base + "/health", proc)
    answers = []

    def slow():
        with urllib.request.urlopen(base + "/wait?seconds=2", timeout=10) as answer:
            answers.append((answer.status, json.load(answer)))
    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    thread.join(timeout=10)
    out = proc.communicate(timeout=15)[0]
    assert answers == [(200, {"waited": 2.0, "release": "dev"})], out
    assert proc.returncode == 0 and "stopped (0 request(s) cut off)" in out, out
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/health", timeout=2)  # pylint: disable=consider-using-with


@pytest.mark.parametrize("value", ["-1", "301", "nan", "soon"])
def test_a_bad_drain_is_refused(tmp_path, capsys, value):
    """drain: seconds from 0 to 300."""
    config = tmp_path / "hello.conf"
    config.write_text(f"[hello]\ndrain = {value}\n")
    assert main(["--config", str(config)]) == 2
    assert f"[hello] drain: expected seconds from 0 to 300, got '{value}'" in \
        capsys.readouterr().err
