"""known_hosts files as OpenSSH reads them: the system's /etc/ssh/ssh_known_hosts, the
user's ~/.ssh/known_hosts and the project's (ssh_config's UserKnownHostsFile and
GlobalKnownHostsFile are not read).

Parsed here line by line, so a line paramiko cannot read does not break every host:
comments and blank lines are skipped, unreadable lines too (with a warning), `@revoked`
keys are refused for the hosts they match even when also listed as known, and
`@cert-authority` lines are skipped with a warning (fabship does not check host
certificates). Host patterns follow OpenSSH: `*` and `?` wildcards, `!` negation,
`[host]:port` for other ports than 22, hashed `|1|` names.
"""
import base64
import binascii
import functools
import hashlib
import hmac
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError
from .hostkeys import append_private, locked, read_private

SYSTEM_FILE = "/etc/ssh/ssh_known_hosts"  # OpenSSH's GlobalKnownHostsFile default
USER_FILE = "~/.ssh/known_hosts"  # and its UserKnownHostsFile default
HASHED = re.compile(r"^\|1\|([A-Za-z0-9+/]+={0,2})\|([A-Za-z0-9+/]+={0,2})$")


@dataclass(frozen=True)
class KnownKey:
    """One usable known_hosts line: host names (patterns or one |1| hash) and a key."""

    names: tuple
    kind: str
    data: str
    revoked: bool = False


def _key_blob(kind, data):
    """True when `data` is base64 of an SSH public key blob of type `kind`."""
    try:
        blob = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return False
    size = int.from_bytes(blob[:4], "big")
    return len(blob) > 4 + size and blob[4:4 + size] == kind.encode("ascii", "replace")


def parse_known_hosts(text, source):
    """([KnownKey], [warning]) of a known_hosts file's text.

    One warning per kind of skipped line (with their line numbers), none for comments
    and blank lines.
    """
    keys, authorities, unreadable = [], [], []
    for number, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        marker = fields.pop(0) if fields[0].startswith("@") else None
        if marker == "@cert-authority":
            authorities.append(number)
        elif marker not in (None, "@revoked") or len(fields) < 3 \
                or not _key_blob(fields[1], fields[2]) \
                or (fields[0].startswith("|") and not _hashed(fields[0])):
            unreadable.append(number)
        else:
            keys.append(KnownKey(tuple(fields[0].split(",")), fields[1], fields[2],
                                 marker == "@revoked"))
    warnings = []
    if authorities:
        warnings.append(f"warning: {source}: skipped @cert-authority line(s) "
                        f"{_numbers(authorities)}: fabship does not check host certificates; "
                        "pin the hosts' own keys")
    if unreadable:
        warnings.append(f"warning: {source}: skipped unreadable line(s) "
                        f"{_numbers(unreadable)} (not `[@revoked] names key-type base64-key`)")
    return keys, warnings


def _numbers(numbers):
    shown = ", ".join(map(str, numbers[:10]))
    return shown + (f" and {len(numbers) - 10} more" if len(numbers) > 10 else "")


@functools.lru_cache(maxsize=1024)
def _hashed(name):
    """(salt, digest) of a hashed name `|1|salt|hash` (20 bytes each), else None."""
    match = HASHED.fullmatch(name)
    try:
        parts = [base64.b64decode(part, validate=True) for part in match.groups()]
    except (AttributeError, binascii.Error, ValueError):
        return None
    return tuple(parts) if all(len(part) == 20 for part in parts) else None


@functools.lru_cache(maxsize=1024)
def _wildcard(pattern):
    return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c)
                              for c in pattern), re.DOTALL)


def host_matches(names, host):
    """Whether known_hosts names (patterns, or one hashed name) cover `host`.

    `host` is how OpenSSH looks a server up: `name` on port 22, else `[name]:port`.
    """
    host = host.lower()
    hashed = _hashed(names[0]) if len(names) == 1 else None
    if hashed:
        salt, digest = hashed
        mine = hmac.new(salt, host.encode("utf-8"), hashlib.sha1).digest()
        return hmac.compare_digest(mine, digest)
    found = False
    for name in names:
        negated = name.startswith("!")
        if _wildcard(name[negated:].lower()).fullmatch(host):
            if negated:
                return False
            found = True
    return found


class KnownHosts:
    """The keys of the system's, the user's and the project's known_hosts files, read once.

    Keys and `@revoked` lines count from all three; a missing file is no file. `accept-new`
    pins new keys in the project's file (`path`).
    """

    def __init__(self, path, user_file=USER_FILE, system_file=None):
        self.path = Path(path)
        self.keys, self.warnings = [], []
        for source in (Path(system_file or SYSTEM_FILE), Path(os.path.expanduser(user_file)),
                       self.path):
            keys, warnings = parse_known_hosts(self._read(source), source)
            self.keys += keys
            self.warnings += warnings

    def _read(self, path):
        """A file's text ("" when missing); the project's file is not read through a link."""
        try:
            if path == self.path:
                return read_private(path).decode("utf-8", errors="replace")
            return path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        except OSError as exc:
            raise DeployError(f"cannot read the known hosts in {path}: "
                              f"{exc.strerror or exc}") from exc

    def known(self, host):
        """[(key type, base64)] known for `host` and not revoked for it, in file order."""
        matching = [key for key in self.keys if host_matches(key.names, host)]
        revoked = {(key.kind, key.data) for key in matching if key.revoked}
        return [(key.kind, key.data) for key in matching
                if not key.revoked and (key.kind, key.data) not in revoked]

    def revoked(self, host, kind, data):
        """Whether a file marks this key @revoked for `host`."""
        return any(key.revoked and (key.kind, key.data) == (kind, data)
                   and host_matches(key.names, host) for key in self.keys)

    def pin(self, host, kind, data):
        """accept-new: add a new host's key to the project file.

        Returns None when pinned (or already pinned with this key), else the (key type,
        base64) another run pinned for the host meanwhile.
        """
        with locked(self.path, "the known hosts"):
            theirs, _ = parse_known_hosts(self._read(self.path), self.path)
            held = [(key.kind, key.data) for key in theirs
                    if not key.revoked and host_matches(key.names, host)]
            if held and (kind, data) not in held:
                return held[0]
            if not held:
                append_private(self.path, f"{host} {kind} {data}\n")
        self.keys.append(KnownKey((host,), kind, data))
        return None
