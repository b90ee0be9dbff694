"""Fixtures: the hello service as a real process on a free port."""
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

SERVICE_DIR = Path(__file__).resolve().parent.parent


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until_serving(url, proc, timeout=15):
    """Poll `url` until it answers; fail with the process output if it dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"hello exited {proc.returncode}: {proc.stdout.read()}")
        try:
            with urllib.request.urlopen(url, timeout=1):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"hello did not answer {url} within {timeout}s")


@pytest.fixture
def hello_server(tmp_path):
    """Start `python -m hello` with a settings file; yield its base URL."""
    port = free_port()
    config = tmp_path / "hello.conf"
    config.write_text(f"[hello]\nbind = 127.0.0.1\nport = {port}\ngreeting = hello there\n")
    proc = subprocess.Popen(  # pylint: disable=consider-using-with
        [sys.executable, "-m", "hello", "--config", str(config)],
        cwd=SERVICE_DIR, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        wait_until_serving(base + "/health", proc)
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
