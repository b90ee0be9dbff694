"""The rehearsal: the whole pipeline on one machine (`make demo`), no cloud account needed.

    python -m deploy.rehearsal up      local SSH hosts + the EC2 emulator, left running
    python -m deploy.rehearsal demo    up, then gates -> launch -> deploy -> URLs + status
    python -m deploy.rehearsal down    stop everything it started

Everything lives under `.rehearsal/` in the project (git-ignored). The project's
fabric.yaml says what to rehearse: each service's `rehearsal` environment, an `ec2:`
environment whose `address` is `tag:NAME` and whose `var_tags` is set, so the emulator's
pairer can place each instance on a local host (see deploy/emulator.py).
"""
import argparse
import getpass
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .aws import Aws
from .commands import boot
from .config import parse_services, parse_ssh
from .ec2facts import find_instances
from .errors import ConfigError, FabshipError
from .gaterecord import check_gates, head_commit
from .hostkeys import InstancePins
from .localhosts import free_port, keygen, read_pid, start_daemon, stop_pid, wait_for_port, \
    write_config

ENVIRONMENT = "rehearsal"
STATE = ".rehearsal"
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "rehearsal", "AWS_SECRET_ACCESS_KEY": "rehearsal",
               "AWS_EC2_METADATA_DISABLED": "true", "AWS_DEFAULT_REGION": "us-east-1"}


def rehearsed(root):
    """[(service name, Ec2Settings)] of the services with a rehearsal environment."""
    path = root / "fabric.yaml"
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read it: {exc}") from exc
    found = []
    for name, service in parse_services(raw.get("services"), "fabric.yaml").items():
        env = service.environments.get(ENVIRONMENT)
        if env is None:
            continue
        where = f"fabric.yaml: services.{name}.environments.{ENVIRONMENT}.ec2"
        if env.ec2 is None or not env.ec2.address.startswith("tag:") or not env.ec2.var_tags:
            raise ConfigError(f"{where}: the rehearsal needs an ec2 block with `address: "
                              "tag:NAME` and `var_tags: PREFIX` (see README, Rehearsal)")
        found.append((name, env.ec2))
    if not found:
        raise ConfigError(f"{path}: no service has a `{ENVIRONMENT}` environment to rehearse")
    return found


class Rehearsal:
    """The rehearsal's state directory and the processes it records there."""

    def __init__(self, root, out=print):
        self.root, self.out = Path(root).resolve(), out
        self.state = self.root / STATE

    @property
    def key(self):
        """The client key every local host accepts."""
        return self.state / "client_key"

    def environ(self):
        """The environment `fab` runs with: the emulator's endpoint, dummy credentials."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "SSH_"))}
        port = json.loads((self.state / "emulator.json").read_text(encoding="utf-8"))["port"]
        return {**env, **CREDENTIALS, "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}

    def running(self):
        """True when the emulator and every local host are alive."""
        hosts = self.state / "hosts.json"
        if read_pid(self.state / "emulator.pid") is None or not hosts.exists():
            return False
        return all(read_pid(h["pidfile"]) for h in json.loads(hosts.read_text()))

    def up(self):
        """Start the local hosts and the emulator (once); write `.rehearsal/env`."""
        targets = rehearsed(self.root)
        if self.running():
            self.out(f"rehearsal: already up (state in {STATE}/)")
            return
        self.down(quiet=True)
        self.state.mkdir(parents=True, exist_ok=True)
        keygen(self.key)
        shutil.copy(f"{self.key}.pub", self.state / "authorized_keys")
        count = max(1, *(settings.count for _, settings in targets))
        hosts = []
        for index in range(1, count + 1):
            port = free_port()
            server = self.state / "hosts" / f"h{index}"
            start_daemon(write_config(server, port, self.state / "authorized_keys"), port)
            hosts.append({"name": f"h{index}", "address":
                          f"{getpass.getuser()}@127.0.0.1:{port}",
                          "pidfile": str(server / "sshd.pid")})
            self.out(f"rehearsal: local host h{index}: sshd on 127.0.0.1:{port}")
        (self.state / "hosts.json").write_text(json.dumps(hosts, indent=1))
        (self.state / "watch.json").write_text(json.dumps([
            {"region": settings.region or "us-east-1", "environment": ENVIRONMENT,
             "address_tag": settings.address[4:], "var_tags": settings.var_tags}
            for _, settings in targets]))
        self._start_emulator()

    def _start_emulator(self):
        port = free_port()
        (self.state / "emulator.json").write_text(json.dumps({"port": port}))
        with open(self.state / "emulator.log", "ab") as log:
            proc = subprocess.Popen(  # pylint: disable=consider-using-with
                [sys.executable, "-m", "deploy.rehearsal", "serve", "--state",
                 str(self.state), "--port", str(port)], env=self.environ(), cwd=self.root,
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True)
        try:
            wait_for_port(port, lambda: proc.poll() is None, timeout=30)
        except RuntimeError as exc:
            raise FabshipError(f"the EC2 emulator did not start ({exc}); see "
                               f"{STATE}/emulator.log") from exc
        (self.state / "env").write_text("".join(
            f"export {k}={v}\n" for k, v in self.environ().items()
            if k.startswith("AWS_")))
        self.out(f"rehearsal: EC2 emulator (moto) on 127.0.0.1:{port}; its settings are in "
                 f"{STATE}/env")

    def down(self, quiet=False):
        """Stop the applications, the emulator and the local hosts; remove the state."""
        stopped = 0
        if self.state.exists():
            for pidfile in sorted(self.state.rglob("supervisord.pid")):
                stopped += stop_pid(pidfile)
            for root in sorted(self.state.glob("r/*")):  # the deploys' @reboot lines
                subprocess.run(boot.forget(str(root)), capture_output=True, check=False)
            stopped += stop_pid(self.state / "emulator.pid")
            for pidfile in sorted(self.state.glob("hosts/*/sshd.pid")):
                stopped += stop_pid(pidfile)
            self._forget_pins()
            shutil.rmtree(self.state, ignore_errors=True)
        if not quiet:
            self.out(f"rehearsal: stopped {stopped} process(es); removed {STATE}/")

    def _forget_pins(self):
        """The emulated instances' host key pins go with them (the pin file is committed)."""
        try:
            ids = json.loads((self.state / "pairs.json").read_text(encoding="utf-8"))
            raw = yaml.safe_load((self.root / "fabric.yaml").read_text(encoding="utf-8"))
            ssh = parse_ssh((raw or {}).get("ssh") or {}, "fabric.yaml")
            InstancePins(self.root / ssh.instance_known_hosts).forget(ids)
        except (OSError, ValueError, AttributeError, yaml.YAMLError, FabshipError):
            pass  # nothing launched, or nothing to read: nothing to forget

    def fab(self, *args):
        """Run `fab -i <key> ARGS` in the project, echoing the command; its exit code."""
        fab = Path(sys.executable).with_name("fab")
        shown = " ".join([os.path.relpath(fab, self.root), "-i", f"{STATE}/client_key", *args])
        self.out(f"\n$ {shown}")
        return subprocess.run([str(fab), "-i", str(self.key), *args], cwd=self.root,
                              env=self.environ(), check=False).returncode

    def gates(self):
        """Run the gates, unless a passing record exists for this exact clean commit."""
        commit, dirty = head_commit(self.root)
        if commit is None or dirty:
            raise FabshipError("the rehearsal deploys only a committed, gated tree: "
                               + ("this is not a git checkout" if commit is None else
                                  "commit (or stash) your changes first"))
        try:
            check_gates(self.root, skip=False)
        except FabshipError:
            self.out(f"\n$ {os.path.relpath(sys.executable, self.root)} -m ci")
            return subprocess.run([sys.executable, "-m", "ci"], cwd=self.root,
                                  check=False).returncode
        self.out(f"rehearsal: the gates already passed for clean commit {commit[:12]} "
                 "(reports/gates.json); not running them again")
        return 0

    def urls(self, services):
        """Each running instance's page, through its local host."""
        os.environ.update(self.environ())
        pairs = json.loads((self.state / "pairs.json").read_text(encoding="utf-8"))
        for name, settings in services:
            for instance in find_instances(Aws(settings.region), name, ENVIRONMENT):
                pair = pairs.get(instance.instance_id)
                if instance.state == "running" and pair:
                    self.out(f"  {name} slot {instance.slot} ({instance.instance_id} on "
                             f"{pair['host']}): http://127.0.0.1:{pair['port']}/")

    def demo(self):
        """up, gates, launch, deploy, URLs and status; the exit code."""
        started = time.monotonic()
        services = rehearsed(self.root)
        self.up()
        if self.gates():
            return 1
        for name, _ in services:
            for task in (("launch",), ("deploy",)):
                if self.fab("service", "--name", name, "--env", ENVIRONMENT, *task):
                    return 1
        self.out("\nrehearsal: the service answers at:")
        self.urls(services)
        for name, _ in services:
            self.fab("service", "--name", name, "--env", ENVIRONMENT, "status")
        self.out(f"\nrehearsal: done in {time.monotonic() - started:.0f}s. Try the "
                 f"commands above again (`. {STATE}/env` first); `make demo-down` stops it.")
        return 0


def main(argv=None):
    """python -m deploy.rehearsal up|demo|down [--project DIR]."""
    parser = argparse.ArgumentParser(prog="python -m deploy.rehearsal",
                                     description="rehearse the pipeline on this machine")
    parser.add_argument("action", choices=("up", "demo", "down", "serve"))
    parser.add_argument("--project", default=".", help="project directory (default: .)")
    parser.add_argument("--state", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.action == "serve":
        from .emulator import serve  # pylint: disable=import-outside-toplevel
        serve(args.state, args.port)
        return 0
    rehearsal = Rehearsal(args.project, lambda line: print(line, flush=True))
    try:
        if args.action == "demo":
            return rehearsal.demo()
        getattr(rehearsal, args.action)()
    except FabshipError as exc:
        print(f"rehearsal: error: {exc}", file=sys.stderr)
        return exc.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
