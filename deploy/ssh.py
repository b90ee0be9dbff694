"""The SSH transport: the only module that imports Fabric (and paramiko).

One connection per host, reused for every round trip. Host keys are checked against
~/.ssh/known_hosts and the project's known_hosts file; Fabric's default of silently
adding unknown keys is replaced by `strict` (refuse) or `accept-new` (pin new keys in
the project file, refuse changed ones). An EC2 instance is checked against the keys
pinned for its instance id only (its address may be recycled): an instance with no pin
yet is pinned at this first contact, one with pins is checked strictly.
"""
import base64
import binascii
import socket
import threading
from pathlib import Path

import paramiko
from fabric import Connection

from .errors import DeployError

DEFAULT_CONNECT_TIMEOUT = 10  # seconds, when Fabric's timeouts.connect is unset
_PIN_LOCK = threading.Lock()


class AcceptNewPolicy(paramiko.MissingHostKeyPolicy):  # pylint: disable=too-few-public-methods
    """Pin an unknown host's key in the project known_hosts file (like ssh's accept-new)."""

    def __init__(self, path):
        self.path = Path(path)

    def missing_host_key(self, client, hostname, key):
        with _PIN_LOCK:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                handle.write(f"{hostname} {key.get_name()} {key.get_base64()}\n")
        client.get_host_keys().add(hostname, key.get_name(), key)


class PinInstancePolicy(paramiko.MissingHostKeyPolicy):  # pylint: disable=too-few-public-methods
    """First contact with a new EC2 instance: pin its key under its instance id."""

    def __init__(self, pins, instance_id):
        self.pins, self.instance_id, self.pinned = pins, instance_id, None

    def missing_host_key(self, client, hostname, key):
        if not self.pins.pin(self.instance_id, [(key.get_name(), key.get_base64())]):
            raise paramiko.SSHException(f"{self.instance_id}: host key pinned meanwhile")
        self.pinned = fingerprint(key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def _pin_check(client, pins, instance_id, key_name):
    """Check only against the instance's pins (strict), or pin at first contact."""
    keys = pins.keys(instance_id)
    for kind, data in keys:
        try:
            client.get_host_keys().add(key_name, kind, paramiko.PKey.from_type_string(
                kind, base64.b64decode(data)))
        except (paramiko.SSHException, ValueError, binascii.Error) as exc:
            raise DeployError(f"{instance_id}: unusable pinned {kind} key in {pins.path}: "
                              f"{exc}") from exc
    policy = paramiko.RejectPolicy() if keys else PinInstancePolicy(pins, instance_id)
    client.set_missing_host_key_policy(policy)
    return policy


def _key_name(conn):
    """The name paramiko looks a server's key up by: host, or [host]:port."""
    return conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}"


def _check_host_keys(client, known_hosts, policy):
    """Known hosts from ~/.ssh and the project file; unknown keys refused or pinned."""
    client.load_system_host_keys()
    if Path(known_hosts).exists():
        client.get_host_keys().load(str(known_hosts))
    client.set_missing_host_key_policy(
        AcceptNewPolicy(known_hosts) if policy == "accept-new" else paramiko.RejectPolicy())


def fingerprint(key):
    """SHA256 fingerprint as OpenSSH prints it."""
    return key.fingerprint if hasattr(key, "fingerprint") else key.get_name()


class SshHost:
    """A connected host: run commands, count round trips."""

    def __init__(self, host, config, known_hosts, policy, pins=None):
        self.address = host.address
        self.trips = 0
        timeout = config.timeouts.connect if config is not None else None
        self.conn = Connection(host.address, config=config,
                               connect_timeout=timeout or DEFAULT_CONNECT_TIMEOUT)
        self.known_hosts = known_hosts
        self.pin_policy = None
        hop = self.conn
        while isinstance(hop, Connection):  # the host and every jump host (ProxyJump)
            if hop is self.conn and host.instance_id and pins is not None:
                self.known_hosts = f"the pins of {host.instance_id} in {pins.path}"
                self.pin_policy = _pin_check(hop.client, pins, host.instance_id,
                                             _key_name(hop))
            else:
                _check_host_keys(hop.client, known_hosts, policy)
            hop = hop.gateway

    @property
    def pinned(self):
        """The fingerprint pinned at this first contact, if this host was a new instance."""
        return getattr(self.pin_policy, "pinned", None)

    def open(self):
        """Connect and authenticate; raise DeployError with a one-line reason."""
        try:
            self.conn.open()
        except paramiko.BadHostKeyException as exc:
            raise DeployError(
                f"{self.address}: HOST KEY CHANGED: known_hosts has {fingerprint(exc.expected_key)}"
                f", the host offered {fingerprint(exc.key)}. Someone may be intercepting the "
                f"connection; if the host was rebuilt, remove its old key from "
                f"{self.known_hosts}.") from exc
        except paramiko.AuthenticationException as exc:
            raise DeployError(f"{self.address}: authentication failed as user "
                              f"{self.conn.user!r} ({exc}); check the key (`fab -i KEY`) "
                              "and the user") from exc
        except paramiko.SSHException as exc:
            text = str(exc)
            if "not found in known_hosts" in text:
                raise DeployError(f"{self.address}: unknown host key; add it to known_hosts "
                                  f"({self.known_hosts} or ~/.ssh/known_hosts) or set "
                                  "`ssh.host_key_policy: accept-new`") from exc
            raise DeployError(f"{self.address}: SSH failed: {text}") from exc
        except (OSError, socket.timeout) as exc:
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise DeployError(f"{self.address}: cannot connect: {reason}") from exc

    def run(self, command, stdin=None, on_line=None):
        """Run one command (one round trip); return (exit code, combined output).

        `on_line` sees each output line as it arrives (for live progress).
        """
        self.trips += 1
        channel = self.conn.client.get_transport().open_session()
        try:
            channel.set_combine_stderr(True)
            channel.exec_command(command)
            sender = threading.Thread(target=_send, args=(channel, stdin), daemon=True)
            sender.start()
            output, pending = [], b""
            while True:
                data = channel.recv(65536)
                if not data:
                    break
                output.append(data)
                if on_line:
                    *lines, pending = (pending + data).split(b"\n")
                    for line in lines:
                        on_line(line.decode("utf-8", "replace"))
            sender.join()
            code = channel.recv_exit_status()
        finally:
            channel.close()
        return code, b"".join(output).decode("utf-8", "replace")

    def close(self):
        """Close the connection."""
        self.conn.close()


def _send(channel, data):
    if data:
        channel.sendall(data)
    channel.shutdown_write()


def server_host_key(hostname, port, prefer=(), timeout=5):
    """(type, base64, fingerprint) of the key an SSH server offers: key exchange, no login.

    This is how a launch knows a new instance answers on SSH, and what to pin. `prefer`
    asks for these key types first (the ones already pinned). DeployError if no answer.
    """
    try:
        with socket.create_connection((hostname, port), timeout=timeout) as sock:
            transport = paramiko.Transport(sock)
            try:
                options = transport.get_security_options()
                known = [kind for kind in prefer if kind in options.key_types]
                options.key_types = known + [k for k in options.key_types if k not in known]
                transport.start_client(timeout=timeout)
                key = transport.get_remote_server_key()
            finally:
                transport.close()
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise DeployError(f"{hostname}:{port}: no SSH answer ({exc or type(exc).__name__})") \
            from exc
    return key.get_name(), key.get_base64(), fingerprint(key)
