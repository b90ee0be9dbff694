"""A throwaway fabship project (fabfile, fabric.yaml, the hello service) for deploy tests."""
import json
import os
import shutil
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from tests.fleet import app_port
from tests.helpers import REPO, git

FAB = str(Path(sys.executable).with_name("fab"))


def hello_service(fleet_root, **overrides):
    """The hello service as fabric.yaml declares it for the fleet."""
    service = {
        "root": fleet_root + "/{{ host_id }}/srv/hello",
        "source": "services/hello",
        "requirements": "services/hello/requirements.txt",
        "run": "{{ venv }}/bin/python -m hello --config {{ release_dir }}/hello.conf",
        "manager": "supervisor",
        "templates": [{"src": "hello/hello.conf.j2", "dest": "hello.conf"}],
        # A failing release is given up after this long (hello answers within ~1 s).
        "health": {"path": "/health", "port": "{{ port }}", "timeout": 6},
        "keep_releases": 3,
        "vars": {"bind": "127.0.0.1", "greeting": "hello"},
        # A replaced process waits min(drain, 0.5 s) for requests just accepted: the
        # suite's many deploys keep it short; the zero downtime tests under load use 10.
        "drain": 0.2,
        # The fleet's hosts share this machine's user: leave its crontab alone
        # (tests/deploy/test_systemd_mode.py covers `boot: cron`, and cleans up).
        "boot": "none",
        # Every host at once: the suite's deploys stay fast. tests/deploy/test_rollout.py
        # sets its own canary and batches.
        "rollout": {"canary": 0, "batch": "100%"},
    }
    service.update(overrides)
    return service


def fleet_hosts(fleet, servers=None):
    """Host entries with per-host vars: own root (host_id) and own app port."""
    return [{"host": server.address, "vars": {"host_id": server.name, "port": port}}
            for server, port in (servers or [(s, app_port()) for s in fleet.servers])]


class Project:
    """A project directory: files, git, gate record, and `fab` runs in it."""

    hosts: list
    service: dict

    def __init__(self, root, fleet, cache):
        self.root = Path(root)
        self.fleet = fleet
        self.root.mkdir(parents=True)
        shutil.copy(REPO / "fabfile.py", self.root / "fabfile.py")
        shutil.copytree(REPO / "services" / "hello", self.root / "services" / "hello",
                        ignore=shutil.ignore_patterns("__pycache__", "tests"))
        shutil.copytree(REPO / "templates" / "hello", self.root / "templates" / "hello")
        (self.root / ".gitignore").write_text("reports/\n.fabship/\n.fabship-known_hosts\n")
        (self.root / ".fabship").symlink_to(cache)  # wheels built once per test session
        (self.root / ".fabship-known_hosts").write_text(fleet.known_hosts())
        git(self.root, "init", "-q")

    def write_config(self, services, ssh=None):
        """fabric.yaml with these services."""
        config = {"ssh": ssh or {"known_hosts": ".fabship-known_hosts"},
                  "services": services}
        (self.root / "fabric.yaml").write_text(yaml.safe_dump(config, sort_keys=False))

    def commit(self, message="change", gates_pass=True):
        """Commit everything and write a gate record for the new HEAD.

        `gates_pass=None` writes no record: whatever reports/gates.json holds stays.
        """
        git(self.root, "add", "-A")
        git(self.root, "commit", "-qm", message, "--allow-empty")
        head = git(self.root, "rev-parse", "HEAD")
        if gates_pass is None:
            return head
        reports = self.root / "reports"
        reports.mkdir(exist_ok=True)
        (reports / "gates.json").write_text(json.dumps({
            "version": 1, "commit": head, "dirty": False, "passed": gates_pass,
            "gates": {"unit": {"status": "passed" if gates_pass else "failed"}}}))
        return head

    def run_gates(self, timeout=300):
        """The gates in the project root, as a user runs them (`fabship-ci` is
        `python -m fabship.ci`); CompletedProcess."""
        return subprocess.run([sys.executable, "-m", "fabship.ci"], cwd=self.root,
                              capture_output=True, text=True, timeout=timeout, check=False)

    def fab(self, *args, timeout=300, key=None, env=None):
        """Run `fab -i <fleet key> ARGS` in the project; return CompletedProcess."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
        environ.update(env or {})
        return subprocess.run([FAB, "-i", str(key or self.fleet.client_key), *args],
                              cwd=self.root, capture_output=True, text=True, timeout=timeout,
                              env=environ, check=False)

    def snapshot(self):
        """Every host's tree (paths, link targets, sizes, mtimes), logs left out."""
        state = {}
        for index in range(len(self.hosts)):
            root = self.host_root(index)
            for path in sorted(root.rglob("*")) if root.exists() else []:
                rel = path.relative_to(root)
                if rel.parts[:2] == ("shared", "log") or path.name == "supervisor.sock":
                    continue
                info = path.lstat()
                state[f"{index}/{rel}"] = (os.readlink(path) if path.is_symlink() else None,
                                           info.st_size if path.is_file() else None,
                                           info.st_mtime_ns)
        return state

    def popen(self, *args):
        """Start `fab ...` without waiting (for kill tests)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
        return subprocess.Popen(  # pylint: disable=consider-using-with
            [FAB, "-i", str(self.fleet.client_key), *args], cwd=self.root, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def host_root(self, index):
        """The service root of host `index` on this machine's disk."""
        host_id = self.hosts[index]["vars"]["host_id"]
        return Path(self.service["root"].replace("{{ host_id }}", host_id))

    def health(self, index):
        """GET /health of host `index` -> dict (or raises)."""
        port = self.hosts[index]["vars"]["port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5) as answer:
            return json.load(answer)

    def current(self, index):
        """The release id `current` points to on host `index`."""
        link = self.host_root(index) / "current"
        return os.readlink(link).rsplit("/", 1)[-1] if link.is_symlink() else None
