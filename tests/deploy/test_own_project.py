"""fabship in someone else's repository, as a user gets it: a wheel built from this repo,
installed into a fresh virtualenv outside it; a fresh git repo holding a tiny service on
the standard library's http.server (its own /healthz, no release in it); `fabship init`;
only the host list and the run command edited; `fabship-ci`; a deploy to two sshd hosts.
"""
import json
import os
import re
import subprocess
import sys
import sysconfig
import time
import urllib.request
from pathlib import Path

import pytest

from tests.fleet import app_port
from tests.helpers import REPO, git

APP = '''"""A tiny service: the standard library's http.server, with its own /healthz."""
import argparse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def answer(path):
    """(status, body) for a path."""
    if path == "/healthz":
        return 200, "ok"
    if path == "/":
        return 200, "tiny says hi"
    return 404, "not found"


class Handler(BaseHTTPRequestHandler):
    """GET only."""

    def do_GET(self):  # pylint: disable=invalid-name
        """Answer from `answer`."""
        status, body = answer(self.path)
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def main():
    """Serve on --port until stopped."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    port = parser.parse_args().port
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
'''
TEST = '''"""The tiny service's answers."""
from app import answer


def test_health_and_home():
    """/healthz is ok, / greets, the rest is 404."""
    assert answer("/healthz") == (200, "ok")
    assert answer("/") == (200, "tiny says hi")
    assert answer("/x")[0] == 404
'''
SCAFFOLD_HOSTS = re.compile(r"        hosts: .*\n(          .*\n)+")


def run(argv, cwd, env=None, timeout=600):
    """Run a command; fail the test with its output when it fails."""
    proc = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)
    assert proc.returncode == 0, f"{argv}:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module", name="installed")
def installed_fixture(tmp_path_factory):
    """A fresh virtualenv outside the repo with fabship[gates] from a wheel of this repo:
    (its bin directory, the wheel's top-level names)."""
    where = tmp_path_factory.mktemp("dist")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(where),
         str(REPO)], cwd=where)
    (wheel,) = where.glob("fabship-*.whl")
    names = subprocess.run([sys.executable, "-m", "zipfile", "-l", str(wheel)],
                           capture_output=True, text=True, check=True).stdout
    tops = sorted({line.split()[0].split("/")[0] for line in names.splitlines()[1:]
                   if line.strip()})
    venv = where / "venv"
    run([sys.executable, "-m", "venv", str(venv)], cwd=where)
    run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
         "--disable-pip-version-check", f"{wheel}[gates]"], cwd=where, timeout=900)
    return venv / "bin", tops


def site_packages(bin_dir):
    """The fresh venv's site-packages directory."""
    return Path(subprocess.run(
        [str(bin_dir / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()"
         "['purelib'])"], capture_output=True, text=True, check=True).stdout.strip())


def test_the_wheel_claims_no_generic_names(installed):
    """One import name: site-packages has fabship, and no top-level ci, deploy, fabfile."""
    bin_dir, tops = installed
    assert [name for name in tops if not name.startswith("fabship-")] == ["fabship"], tops
    site = site_packages(bin_dir)
    for name in ("ci", "deploy", "fabfile", "fabfile.py", "ci.py", "deploy.py"):
        assert not (site / name).exists(), name
    assert (site / "fabship" / "templates" / "supervisor" / "supervisord.conf.j2").is_file()
    assert (bin_dir / "fabship").exists() and (bin_dir / "fabship-ci").exists()
    assert sysconfig.get_paths()["purelib"] != str(site)  # really another environment


@pytest.fixture(name="roots")
def roots_fixture(tmp_path):
    """Where the hosts' roots go; the supervisords the deploy starts there stop after."""
    yield tmp_path
    subprocess.run(["pkill", "-f", f"supervisor.supervisord -c {tmp_path}/"], check=False)


def test_init_then_gates_then_a_deploy_to_two_hosts(installed, fleet, roots):
    """The user's path, timed from `fabship init` to the first deploy's end."""
    tmp_path = roots
    bin_dir, _ = installed
    env = {**{k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")},
           "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    project = tmp_path / "tiny-service"
    project.mkdir()
    (project / "app.py").write_text(APP)
    (project / "tests").mkdir()
    (project / "tests" / "test_app.py").write_text(TEST)
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "a tiny service")

    started = time.monotonic()
    made = run([str(bin_dir / "fabship"), "init"], cwd=project, env=env)
    assert "service 'tiny-service', source '.'" in made.stdout, made.stdout
    for name in ("fabfile.py", "fabric.yaml", "Jenkinsfile", "setup.cfg",
                 "templates/tiny-service/tiny-service.conf.j2"):
        assert f"wrote    {name}" in made.stdout, made.stdout
    assert "fabship-ci" in made.stdout.split("Next:")[1]

    # the user edits the host list and the run command, nothing else
    config = project / "fabric.yaml"
    ports = [app_port(), app_port()]
    hosts = "".join(
        f"          - host: {server.address}\n"
        f"            vars: {{port: {port}, root_dir: {tmp_path}/{server.name}/tiny}}\n"
        for server, port in zip(fleet.servers[:2], ports))
    text = SCAFFOLD_HOSTS.sub(lambda _: "        hosts:\n" + hosts, config.read_text(), 1)
    text = re.sub(r'    run: .*\n', '    run: "{{ venv }}/bin/python {{ release_dir }}/app.py '
                  '--port {{ port }}"\n', text, 1)
    config.write_text(text)
    (project / ".pins").mkdir()
    (project / ".pins" / "known_hosts").write_text(fleet.known_hosts())
    git(project, "add", "-A")
    git(project, "commit", "-qm", "Ship with fabship")

    gates = run([str(bin_dir / "fabship-ci")], cwd=project, env=env)
    assert "all gates passed" in gates.stdout, gates.stdout
    deploy = run([str(bin_dir / "fab"), "-i", str(fleet.client_key), "service", "deploy"],
                 cwd=project, env=env)
    took = time.monotonic() - started
    print(f"\nfabship init -> first deploy done: {took:.1f}s")
    assert "deployed on 2 host(s)" in deploy.stdout, deploy.stdout
    release = json.loads((project / "reports" / "gates.json").read_text())["commit"][:7]

    for server, port in zip(fleet.servers[:2], ports):
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as page:
            assert page.read() == b"tiny says hi"
        current = (tmp_path / server.name / "tiny" / "current").resolve()
        assert current.name.endswith(release)
        assert (current / "tiny-service.conf").read_text().startswith("# tiny-service")
    status = run([str(bin_dir / "fab"), "-i", str(fleet.client_key), "service", "status"],
                 cwd=project, env=env)
    rows = [line.split() for line in status.stdout.splitlines()
            if line.startswith(tuple(server.address for server in fleet.servers[:2]))]
    assert [row[3] for row in rows] == ["ok", "ok"], status.stdout
