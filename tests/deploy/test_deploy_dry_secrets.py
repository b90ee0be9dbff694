"""`fab --dry service deploy` connects to nothing; secrets reach templates, masked everywhere."""
import json
import socket
import stat

import pytest

SECRET = "hunter2-Very-Secret"


def listening_sockets(count):
    """Servers that would see any connection attempt (accept is non-blocking)."""
    socks = []
    for _ in range(count):
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        sock.setblocking(False)
        socks.append(sock)
    return socks


def test_dry_run_prints_plan_and_connects_to_nothing(make_project):
    project = make_project("dry")
    socks = listening_sockets(2)
    try:
        hosts = [{"host": f"deploy@127.0.0.1:{s.getsockname()[1]}",
                  "vars": {"host_id": f"d{i}", "port": 18000 + i}} for i, s in enumerate(socks)]
        project.service["environments"] = {"test": {"hosts": hosts}}
        project.write_config({"hello": project.service})
        project.commit("dry hosts")
        proc = project.fab("--dry", "service", "deploy")
        for sock in socks:
            with pytest.raises(BlockingIOError):
                sock.accept()  # nobody knocked
    finally:
        for sock in socks:
            sock.close()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    for host in hosts:
        prefix = f"[{host['host']}] "
        assert f"{prefix}round trip 1: lock and read facts" in out
        assert f"{prefix}round trip 2: ship, switch, restart, health check" in out
        assert f"{prefix}        | port = {host['vars']['port']}" in out  # rendered content
    assert "[skipped when the host holds artifact" in out
    assert "$ tar -xzf " in out and "sh -c " in out
    assert "nothing was run, no connection made" in out
    assert not (project.root / ".fabship" / "known_hosts").exists()


@pytest.fixture(scope="module")
def secret_project(make_project):
    """hello plus a template holding DB_PASSWORD from the controller's environment."""
    project = make_project("secrets")
    (project.root / "templates" / "hello" / "db.env.j2").write_text(
        "DB_PASSWORD={{ DB_PASSWORD }}\nDB_USER=hello\n")
    project.service["templates"].append({"src": "hello/db.env.j2", "dest": "db.env"})
    project.service["secret_env"] = ["DB_PASSWORD"]
    project.write_config({"hello": project.service})
    project.commit("secret")
    return project


def test_secret_masked_in_dry_run(secret_project):
    proc = secret_project.fab("--dry", "service", "deploy", env={"DB_PASSWORD": SECRET})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert "| DB_PASSWORD=********" in proc.stdout
    assert "(mode 0600, " in proc.stdout and "holds secrets)" in proc.stdout


def test_missing_secret_is_a_config_error(secret_project):
    proc = secret_project.fab("service", "deploy", env={"DB_PASSWORD": ""})
    assert proc.returncode == 2
    assert ("services.hello.secret_env: environment variable DB_PASSWORD is not set"
            in proc.stderr)


def test_secret_file_written_0600_and_never_printed(secret_project):
    proc = secret_project.fab("service", "deploy", env={"DB_PASSWORD": SECRET})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    for index in range(3):
        root = secret_project.host_root(index)
        secret_file = root / "current" / "db.env"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert f"DB_PASSWORD={SECRET}" in secret_file.read_text()
        release = json.loads((root / "current" / "release.json").read_text())
        assert release["secret_files"] == [".fabship/env", "db.env"]
        assert "db.env" not in release["templates"] and ".fabship/env" not in release["templates"]
        env_file = root / "current" / ".fabship" / "env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert json.loads(env_file.read_text()) == {"DB_PASSWORD": SECRET}
        assert SECRET not in (root / "deploys.jsonl").read_text()
        assert stat.S_IMODE((root / "current" / "hello.conf").stat().st_mode) == 0o644


def test_hosts_flag_targets_exactly_those_hosts(make_project):
    project = make_project("direct")
    project.service["root"] = "/srv/direct-hello"
    project.service["vars"]["port"] = 8123
    project.write_config({"hello": project.service})
    project.commit("fixed root")
    proc = project.fab("--dry", "service", "--hosts", "deploy@127.0.0.1:1,web2:2222", "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    prefixes = {line.split("]")[0] + "]" for line in proc.stdout.splitlines()
                if line.startswith("[")}
    assert prefixes == {"[deploy@127.0.0.1:1]", "[web2:2222]"}
    assert "/srv/direct-hello/releases/" in proc.stdout
    assert "| port = 8123" in proc.stdout


def test_dry_rollback_prints_the_plan_and_connects_to_nothing(make_project):
    project = make_project("dry-rollback")
    (sock,) = listening_sockets(1)
    host = f"deploy@127.0.0.1:{sock.getsockname()[1]}"
    project.service["root"] = "/srv/rb-hello"
    project.service["vars"]["port"] = 8124
    project.write_config({"hello": project.service})
    project.commit("fixed root")
    try:
        guess = project.fab("--dry", "service", "--hosts", host, "rollback")
        exact = project.fab("--dry", "service", "--hosts", host, "rollback", "--to",
                            "20261101T000000.000Z-abcdef0")
        with pytest.raises(BlockingIOError):
            sock.accept()
    finally:
        sock.close()
    assert guess.returncode == 0, guess.stdout + guess.stderr
    assert f"[{host}] round trip 1: lock and read facts" in guess.stdout
    assert "switch to <the newest served release before current>" in guess.stdout
    assert "nothing was run, no connection made" in guess.stdout
    assert exact.returncode == 0, exact.stdout + exact.stderr
    assert "/srv/rb-hello/releases/20261101T000000.000Z-abcdef0" in exact.stdout
