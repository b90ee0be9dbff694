"""Host addresses: `[user@]address[:port]`, validated, with per-host variables.

An IPv6 literal goes in brackets, as in OpenSSH's known_hosts: `[::1]`, `[::1]:2222`,
`deploy@[fd00::5]:2222`. Two entries are the same host when user, address and port
resolve the same (`a`, `a:22` and `me@a` when the default user is `me`).
"""
import getpass
import ipaddress
import os
import re
from dataclasses import dataclass, field
from types import MappingProxyType

USER = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,31}")
HOSTNAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")
PORT = re.compile(r"[0-9]{1,5}")


def port_number(text):
    """The TCP port `text` names (ASCII digits, 1-65535); ValueError otherwise."""
    if not isinstance(text, str) or not PORT.fullmatch(text) or not 0 < int(text) < 65536:
        raise ValueError(f"expected a port number 1-65535 (ASCII digits), got {text!r}")
    return int(text)


def address(text, where=""):
    """A host name, IPv4 or IPv6 address (bare or in brackets) -> its canonical form.

    IPv6 comes back without brackets, compressed (`::1`); ValueError naming the address
    (and `where` it was written) otherwise.
    """
    bare = text[1:-1] if text.startswith("[") and text.endswith("]") else text
    why = ""
    if ":" in bare and bare.isprintable() and not any(char.isspace() for char in bare):
        try:
            return ipaddress.IPv6Address(bare).compressed
        except ValueError:
            why = " (not an IPv6 address)"
    elif bare != text:
        why = " (brackets are for IPv6 addresses)"
    elif HOSTNAME.fullmatch(bare):
        return bare
    raise ValueError(f"bad address {text!r}{where}{why}")


def in_url(hostname):
    """A host as a URL (or known_hosts) needs it: IPv6 in brackets."""
    return f"[{hostname}]" if ":" in hostname else hostname


def local_user():
    """This machine's user name (USER, LOGNAME, the passwd entry), else `uid<N>`.

    A CI agent often runs as a uid with no passwd entry and no USER: getpass then raises.
    """
    try:
        name = getpass.getuser()
    except (KeyError, OSError, ImportError):
        name = ""
    return name if name and name.isprintable() and name.isascii() else f"uid{os.getuid()}"


def name_local_user(environ=None):
    """Give a uid with no passwd entry and no USER/LOGNAME a name: LOGNAME=uid<N>.

    There getpass.getuser() raises, and paramiko calls it whenever it reads an ssh_config
    (for `%u`), so not even a connection could be made. Returns the name set, or None
    when the user already has one. Fabric's default SSH user stays unknown: hosts must
    name theirs (target.check_hosts says so).
    """
    environ = os.environ if environ is None else environ
    try:
        getpass.getuser()
        return None
    except (KeyError, OSError):
        environ["LOGNAME"] = name = f"uid{os.getuid()}"
        return name


@dataclass(frozen=True)
class Host:
    """One target host. `user`/`port` None means Fabric's configured default."""

    hostname: str  # a host name or IP address; IPv6 without brackets
    user: str | None = None
    port: int | None = None
    vars: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    instance_id: str | None = None  # an EC2 instance: its host keys are pinned by this id

    @property
    def address(self):
        """`user@hostname:port` with the parts that were given (IPv6 in brackets)."""
        text = in_url(self.hostname)
        if self.user:
            text = f"{self.user}@{text}"
        if self.port:
            text = f"{text}:{self.port}"
        return text


def parse_host(text, host_vars=None):
    """Parse `[user@]address[:port]`; raise ValueError saying what is wrong."""
    user, at, rest = text.rpartition("@")
    if at and not USER.fullmatch(user):
        raise ValueError(f"bad user {user!r} in host {text!r}")
    if rest.startswith("["):
        inside, closed, port = rest.partition("]")
        if not closed or (port and not port.startswith(":")):
            raise ValueError(f"bad address {rest!r} in host {text!r} (expected [IPv6]:port)")
        hostname, port, colon = inside + closed, port[1:], port[:1]
    else:
        hostname, colon, port = rest.partition(":")
        if ":" in port:
            raise ValueError(f"bad address {rest!r} in host {text!r} (an IPv6 address goes "
                             "in brackets: [::1]:22)")
    hostname = address(hostname, f" in host {text!r}")
    if colon and (not PORT.fullmatch(port) or not 0 < int(port) < 65536):
        raise ValueError(f"bad port {port!r} in host {text!r} (expected 1-65535)")
    return Host(hostname, user or None, int(port) if colon else None,
                MappingProxyType(dict(host_vars or {})))
