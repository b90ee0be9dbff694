"""The rehearsal's EC2: moto's server on loopback, and a pairer playing the data centre.

Emulated instances have made-up addresses that nothing may ever contact. The pairer
gives each new instance of the rehearsal environment a real place to live instead: one
of the local SSH hosts (by slot), its own service root and its own application port,
written on the instance as tags (`address: tag:...` and `var_tags:` in fabric.yaml read
them). When an instance is terminated, the pairer stops what ran in its root.
"""
import json
import os
import time
from pathlib import Path

from .aws import Aws
from .ec2facts import find_instances
from .localhosts import app_port, stop_pid

PAIRING_INTERVAL = 0.3


class Pairer:  # pylint: disable=too-few-public-methods
    """Tags unpaired rehearsal instances with a local host, a root and a port."""

    def __init__(self, state, watch):
        self.state, self.watch = Path(state), watch
        self.hosts = json.loads((self.state / "hosts.json").read_text(encoding="utf-8"))
        self.clients = {region: Aws(region) for region in {w["region"] for w in watch}}
        self.pairs_file = self.state / "pairs.json"
        self.pairs = self._load()

    def _load(self):
        try:
            return json.loads(self.pairs_file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}

    def _save(self):
        partial = self.pairs_file.with_suffix(".part")
        partial.write_text(json.dumps(self.pairs, indent=1), encoding="utf-8")
        os.replace(partial, self.pairs_file)

    def _pair(self, client, instance, watch):
        slot = instance.slot or 1
        host = self.hosts[(slot - 1) % len(self.hosts)]
        root = self.state / "r" / str(len(self.pairs) + 1)  # short: unix sockets live here
        root.mkdir(parents=True, exist_ok=True)
        port = app_port()
        prefix = watch["var_tags"]
        client.request("ec2", "CreateTags", Resources=[instance.instance_id], Tags=[
            {"Key": watch["address_tag"], "Value": host["address"]},
            {"Key": f"{prefix}port", "Value": str(port)},
            {"Key": f"{prefix}rehearsal_root", "Value": str(root)}])
        self.pairs[instance.instance_id] = {"host": host["name"], "port": port,
                                              "root": str(root), "slot": slot}
        self._save()

    def _retire(self, instance_id):
        """The instance was terminated: stop the supervisord(s) running in its root."""
        pair = self.pairs.get(instance_id)
        if pair and not pair.get("retired"):
            for pidfile in Path(pair["root"]).rglob("supervisord.pid"):
                stop_pid(pidfile)
            pair["retired"] = True
            self._save()

    def round(self):
        """One pass over every watched environment."""
        for watch in self.watch:
            client = self.clients[watch["region"]]
            for instance in find_instances(client, None, watch["environment"]):
                if instance.live and watch["address_tag"] not in instance.tags:
                    self._pair(client, instance, watch)
                elif instance.state in ("shutting-down", "terminated"):
                    self._retire(instance.instance_id)


def serve(state, port):
    """Run moto's server on 127.0.0.1:port and the pairer until SIGTERM.

    The caller sets AWS_ENDPOINT_URL (this server) and dummy credentials in the environment.
    """
    from moto.server import ThreadedMotoServer  # pylint: disable=import-outside-toplevel
    state = Path(state)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    (state / "emulator.pid").write_text(f"{os.getpid()}\n", encoding="utf-8")
    watch = json.loads((state / "watch.json").read_text(encoding="utf-8"))
    pairer = Pairer(state, watch)
    try:
        while True:
            try:
                pairer.round()
            except Exception as exc:  # pylint: disable=broad-except
                print(f"pairer: {type(exc).__name__}: {exc}", flush=True)  # keep serving
            time.sleep(PAIRING_INTERVAL)
    finally:
        server.stop()
