"""The service as a process: start, serve, and refuse bad settings."""
import json
import subprocess
import sys
import urllib.request

from pathlib import Path

from hello.server import main

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
