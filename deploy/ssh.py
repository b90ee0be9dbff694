"""The SSH transport: the only module that imports Fabric (and paramiko).

One connection per host, reused for every round trip. Host keys are checked against
/etc/ssh/ssh_known_hosts, ~/.ssh/known_hosts and the project's known_hosts file (read by
knownhosts.KnownHosts: `@revoked` keys are refused); Fabric's default of silently adding
unknown keys is replaced by `strict` (refuse) or `accept-new` (pin new keys in the project
file, refuse changed ones). An EC2 instance is checked against the keys pinned for its
instance id only (its address may be recycled): an instance with no pin yet is pinned at
this first contact, one with pins is checked strictly. Jump hosts (ProxyJump, `gateway`)
get the same checks and the same connect timeout; behind a ProxyCommand the host's key
is checked as usual, and what the command itself trusts is its own business.

Every round trip has a deadline (`ssh.command_timeout`), and a host that stops answering
SSH keepalives (`ssh.keepalive`) while a command is silent is given up before it: the
connection is closed, and the host fails with a one-line reason.
"""
import base64
import binascii
import socket
import threading

import paramiko
from fabric import Connection
from paramiko.pkey import UnknownKeyType

from .errors import DeployError
from .roundtrip import Watch, exchange

DEFAULT_CONNECT_TIMEOUT = 10  # seconds, when Fabric's timeouts.connect is unset
KEY_ERRORS = (paramiko.SSHException, UnknownKeyType, ValueError, TypeError, binascii.Error)
NO_ANSWER = ("No existing session", "Error reading SSH protocol banner", "Negotiation timed",
             "Timeout opening channel")
_PIN_LOCK = threading.Lock()


class RevokedKey(paramiko.SSHException):
    """The host offered a key that a known_hosts file marks @revoked."""

    def __init__(self, hostname, key):
        super().__init__(f"{hostname}: host key {fingerprint(key)} is revoked")
        self.key = key


class TrustPolicy(paramiko.MissingHostKeyPolicy):  # pylint: disable=too-few-public-methods
    """A key with no known match: refused when revoked, else pinned by `pin`, or refused.

    `source` names where the host's keys are kept, for messages.
    """

    def __init__(self, known, source, pin=None):
        self.known, self.source, self.pin, self.pinned = known, source, pin, None

    def missing_host_key(self, client, hostname, key):
        if self.known.revoked(hostname, key.get_name(), key.get_base64()):
            raise RevokedKey(hostname, key)
        if self.pin is None:
            raise paramiko.SSHException(f"Server {hostname!r} not found in known_hosts")
        self.pin(hostname, key)
        self.pinned = fingerprint(key)
        client.get_host_keys().add(hostname, key.get_name(), key)


def _pkey(kind, data):
    return paramiko.PKey.from_type_string(kind, base64.b64decode(data))


def _accept_new(known):
    """accept-new: pin in the project's file, unless another host pinned a key meanwhile."""
    def pin(hostname, key):
        with _PIN_LOCK:
            held = known.pin(hostname, key.get_name(), key.get_base64())
        if held:
            raise paramiko.BadHostKeyException(hostname, key, _pkey(*held))
    return pin


def _pin_instance(pins, instance_id):
    """First contact with a new EC2 instance: pin its key under its instance id."""
    def pin(_hostname, key):
        if not pins.pin(instance_id, [(key.get_name(), key.get_base64())]):
            raise paramiko.SSHException(f"{instance_id}: host key pinned meanwhile")
    return pin


def _install(client, name, keys, where=None):
    """Known keys of `name` into the client (the first of each key type counts).

    A key paramiko cannot use is skipped, or (for pins, `where`) a DeployError.
    """
    table = client.get_host_keys()
    for kind, data in keys:
        if kind in (table.lookup(name) or {}):
            continue
        try:
            table.add(name, kind, _pkey(kind, data))
        except KEY_ERRORS as exc:
            if where:
                raise DeployError(f"{where}: unusable pinned {kind} key: {exc}") from exc


def _key_name(conn):
    """The name a server's key is looked up by: host, or [host]:port."""
    return conn.host if int(conn.port) == 22 else f"[{conn.host}]:{conn.port}"


def _hops(conn):
    """The host's Connection, then each jump host's (ProxyJump, `gateway`)."""
    while isinstance(conn, Connection):
        yield conn
        conn = conn.gateway


def fingerprint(key):
    """SHA256 fingerprint as OpenSSH prints it."""
    return key.fingerprint if hasattr(key, "fingerprint") else key.get_name()


class SshHost:
    """A connected host: run commands, count round trips.

    `known` is the run's knownhosts.KnownHosts, `settings` its config.SshSettings.
    """

    def __init__(self, host, config, known, settings, pins=None):
        self.address, self.settings, self.known = host.address, settings, known
        self.trips, self.broken, self.policies = 0, None, {}
        timeout = config.timeouts.connect if config is not None else None
        # A Config of its own: Fabric writes the resolved key files back into the config
        # it is given, and hosts are connected from several threads at once; a shared one
        # is re-merged under a concurrent reader, which then sees no key at all
        # ("No authentication methods available").
        config = config.clone() if config is not None else None
        self.conn = Connection(host.hostname, user=host.user, port=host.port, config=config,
                               connect_timeout=timeout or DEFAULT_CONNECT_TIMEOUT)  # IPv6 too
        for hop in _hops(self.conn):
            hop.connect_timeout = self.conn.connect_timeout  # jump hosts too
            # and opening a channel (through a jump host too) waits as long, not an hour
            hop.connect_kwargs = {"channel_timeout": hop.connect_timeout, **hop.connect_kwargs}
            if hop is self.conn and host.instance_id and pins is not None:
                policy = self._trust_pins(pins, host.instance_id)
            else:
                _install(hop.client, _key_name(hop), known.known(_key_name(hop)))
                policy = TrustPolicy(known, str(known.path), _accept_new(known) if
                                     settings.host_key_policy == "accept-new" else None)
            hop.client.set_missing_host_key_policy(policy)
            self.policies[id(hop)] = policy

    def _trust_pins(self, pins, instance_id):
        """Only the instance's pins count (revoked ones not); none yet: pin this key."""
        name, keys = _key_name(self.conn), pins.keys(instance_id)
        _install(self.conn.client, name, [key for key in keys
                                          if not self.known.revoked(name, *key)],
                 f"{instance_id} in {pins.path}")
        return TrustPolicy(self.known, f"the pins of {instance_id} in {pins.path}",
                           None if keys else _pin_instance(pins, instance_id))

    @property
    def pinned(self):
        """The fingerprint pinned at this first contact, if this host's key was new."""
        return self.policies[id(self.conn)].pinned

    def open(self):
        """Connect (the farthest jump host first) and authenticate; DeployError if not."""
        hops = list(_hops(self.conn))
        for hop in reversed(hops):
            try:
                hop.open()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                self.close()
                where = self.address if hop is self.conn else \
                    f"{self.address}: jump host {hop.host}:{hop.port}"
                raise DeployError(f"{where}: {self._why(exc, hop)}") from exc
        for hop in hops:
            hop.transport.set_keepalive(self.settings.keepalive)

    def _why(self, exc, hop):
        """The one-line reason the connection to `hop` failed."""
        text, source = str(exc), self.policies[id(hop)].source
        if isinstance(exc, RevokedKey) or isinstance(exc, paramiko.BadHostKeyException) \
                and self.known.revoked(_key_name(hop), exc.key.get_name(), exc.key.get_base64()):
            why = (f"HOST KEY REVOKED: the host offered {fingerprint(exc.key)}, which a "
                   "known_hosts file marks @revoked; refused")
        elif isinstance(exc, paramiko.BadHostKeyException):
            why = (f"HOST KEY CHANGED: known_hosts has {fingerprint(exc.expected_key)}, the "
                   f"host offered {fingerprint(exc.key)}. Someone may be intercepting the "
                   f"connection; if the host was rebuilt, remove its old key from {source}.")
        elif isinstance(exc, paramiko.AuthenticationException):
            why = (f"authentication failed as user {hop.user!r} ({exc}); check the key "
                   "(`fab -i KEY`) and the user")
        elif "not found in known_hosts" in text:
            why = (f"unknown host key; add it to known_hosts ({source} or ~/.ssh/known_hosts) "
                   "or set `ssh.host_key_policy: accept-new`")
        elif isinstance(exc, paramiko.ChannelException):  # opened through a jump host
            why = f"the jump host cannot reach it ({exc.text})"
        elif isinstance(exc, paramiko.SSHException):
            why = (f"no SSH answer within {hop.connect_timeout:g}s (timeouts.connect)"
                   if text.startswith(NO_ANSWER) else f"SSH failed: {text}")
        else:
            why = "cannot connect: " + (getattr(exc, "strerror", None) or text or
                                        type(exc).__name__)
        return why

    @property
    def step_timeout(self):
        """Seconds one step of a batch may run on this host (ssh.step_timeout)."""
        return self.settings.step_timeout

    def run(self, command, stdin=None, on_line=None):
        """Run one command (one round trip); return (exit code, combined output).

        `on_line` sees each output line as it arrives (for live progress). DeployError
        when the host does not answer in time: it is then given up (later calls fail).
        """
        return self._round_trip(command, stdin, on_line, False)

    def run_streams(self, command, stdin=None, on_line=None):
        """As `run`, with stdout and stderr kept apart: (exit code, stdout, stderr).

        `on_line` sees stdout's lines only: the executor's progress marks travel there,
        where no step's output can reach (see batch.batch_script).
        """
        return self._round_trip(command, stdin, on_line, True)

    @property
    def alive(self):
        """Whether the connection is still up (and was not given up)."""
        transport = self.conn.client.get_transport()
        return not self.broken and transport is not None and transport.is_active()

    def _round_trip(self, command, stdin, on_line, split):
        if self.broken:
            raise DeployError(self.broken)
        self.trips += 1
        transport = self.conn.client.get_transport()
        watch = Watch(transport, self.settings.command_timeout, self.settings.keepalive)
        try:
            result = exchange(transport, command, stdin, on_line, watch, split)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise self._give_up(watch.finish() or f"the connection failed: {exc}") from exc
        finally:
            reason = watch.finish()  # also when on_line raised
        if reason or not transport.is_active():
            raise self._give_up(reason or "the connection was lost")
        return result

    def _give_up(self, reason):
        self.broken = f"{self.address}: {reason}; gave up on this host"
        self.close()
        return DeployError(self.broken)

    def close(self):
        """Close the connection and every jump host's, at once.

        The socket is shut down first: paramiko's reader thread may be inside recv() on
        it, and a plain close() then leaves the TCP connection open until that returns.
        The pool counts on a closed connection being gone from the host.
        """
        for hop in _hops(self.conn):
            transport = hop.client.get_transport()
            shutdown = getattr(transport and transport.sock, "shutdown", None)
            if shutdown is not None:  # a socket, or a jump host's channel
                try:
                    shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass  # not connected (any more)
            hop.close()
            hop.client.close()  # also a transport left by a failed open


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
                transport.banner_timeout = timeout
                transport.start_client(timeout=timeout)
                key = transport.get_remote_server_key()
            finally:
                transport.close()
    except (OSError, paramiko.SSHException, EOFError) as exc:
        raise DeployError(f"{hostname}:{port}: no SSH answer ({exc or type(exc).__name__})") \
            from exc
    return key.get_name(), key.get_base64(), fingerprint(key)
