"""Until new instances answer on SSH: host keys pinned per instance id as they do.

Keys come from the console output when cloud-init printed them there; otherwise the
key seen at the first contact with that new instance is pinned. An instance that
already has pins must offer one of them.
"""
import base64
import binascii
import time

from .ec2facts import find_instances
from .aws import CloudError
from .errors import DeployError
from .hostkeys import console_host_keys
from .instances import address_of, host_of
from .inventory import where
from .parallel import each
from .ssh import server_host_key


class NoAnswer(DeployError):
    """Nothing answered SSH yet at the instance's address: keep waiting."""


def say(out, text):
    """A launch's progress line."""
    out(f"[ec2] {text}")


def console_keys(aws, instance_id, out):
    """The host keys in an instance's console output (base64 or plain text), if any.

    Without the permission (or any answer), there are none: say so, pin at first contact.
    """
    try:
        output = aws.request("ec2", "GetConsoleOutput",
                             InstanceId=instance_id).get("Output") or ""
    except CloudError as exc:
        say(out, f"no console output for {instance_id} ({exc}); its host key will be pinned "
                 "at first contact")
        return []
    try:
        decoded = base64.b64decode(output, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        decoded = output
    return console_host_keys(decoded)


def pin_from_console(aws, pins, instances, out):
    """Pin the keys cloud-init printed, for instances that have no pins yet."""
    for instance in instances:
        if pins.keys(instance.instance_id):
            continue
        keys = console_keys(aws, instance.instance_id, out)
        if keys and pins.pin(instance.instance_id, keys):
            say(out, f"pinned {len(keys)} host key(s) of {instance.instance_id} from its "
                      "console output")


class SshWait:  # pylint: disable=too-few-public-methods
    """Wait until each instance answers on SSH with its pinned key (or pin it)."""

    def __init__(self, project, target, aws, out):
        self.project, self.target, self.aws, self.out = project, target, aws, out
        self.pins = project.instance_pins

    def _check(self, instance):
        host = host_of(instance, self.target.ec2, f"{self.project.source}: {where(self.target)}",
                       self.target.vars)
        pinned = self.pins.keys(instance.instance_id)
        try:
            kind, data, shown = server_host_key(host.hostname, host.port or 22,
                                                [kind for kind, _ in pinned])
        except DeployError as exc:
            raise NoAnswer(str(exc)) from exc
        if not pinned:  # it answers now: cloud-init has likely printed its keys by then
            pinned = console_keys(self.aws, instance.instance_id, self.out)
            if pinned and self.pins.pin(instance.instance_id, pinned):
                say(self.out, f"pinned {len(pinned)} host key(s) of {instance.instance_id} "
                              "from its console output")
        if pinned and (kind, data) not in pinned:
            raise DeployError(f"{instance.instance_id} at {host.address}: HOST KEY "
                              f"MISMATCH: it offered {shown}, which is not a key pinned "
                              f"for this instance in {self.pins.path}; nothing was "
                              "deployed to it. If the instance was rebuilt, remove its "
                              "lines from that file.")
        if not pinned and self.pins.pin(instance.instance_id, [(kind, data)]):
            say(self.out, f"pinned host key {shown} of {instance.instance_id} (first contact)")
        return host.address

    def wait(self, ids, timeout):
        """Poll (re-reading addresses) until every instance answered, or give up."""
        deadline, waiting, last = time.monotonic() + timeout, set(ids), {}
        while waiting:
            current = {i.instance_id: i for i in find_instances(
                self.aws, self.target.service.name, self.target.environment)}
            ready = [current[i] for i in sorted(waiting) if i in current
                     and address_of(current[i], self.target.ec2.address)]
            for instance, address, error in each(self._check, ready):
                if error is None:
                    say(self.out, f"{instance.instance_id} answers on SSH at {address}")
                    waiting.discard(instance.instance_id)
                elif isinstance(error, NoAnswer):
                    last[instance.instance_id] = str(error)
                else:
                    raise error
            if waiting and time.monotonic() >= deadline:
                why = "; ".join(f"{i}: {last.get(i, 'no address yet')}" for i in sorted(waiting))
                raise DeployError(f"gave up after {timeout:g}s (ec2.wait_timeout) waiting for "
                                  f"SSH to answer on {len(waiting)} instance(s): {why}")
            if waiting:
                time.sleep(1)
