"""Host addresses: `[user@]address[:port]`, validated, with per-host variables."""
import re
from dataclasses import dataclass, field
from types import MappingProxyType

USER = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$")
HOSTNAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9.-]{0,252})$")


@dataclass(frozen=True)
class Host:
    """One target host. `user`/`port` None means Fabric's configured default."""

    hostname: str
    user: str | None = None
    port: int | None = None
    vars: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    instance_id: str | None = None  # an EC2 instance: its host keys are pinned by this id

    @property
    def address(self):
        """`user@hostname:port` with the parts that were given."""
        text = self.hostname
        if self.user:
            text = f"{self.user}@{text}"
        if self.port:
            text = f"{text}:{self.port}"
        return text


def parse_host(text, host_vars=None):
    """Parse `[user@]address[:port]`; raise ValueError saying what is wrong."""
    user, _, rest = text.strip().rpartition("@")
    hostname, _, port = rest.partition(":")
    if user and not USER.fullmatch(user):
        raise ValueError(f"bad user {user!r} in host {text!r}")
    if not HOSTNAME.fullmatch(hostname):
        raise ValueError(f"bad address {hostname!r} in host {text!r}")
    if port and (not port.isdigit() or not 0 < int(port) < 65536):
        raise ValueError(f"bad port {port!r} in host {text!r} (expected 1-65535)")
    return Host(hostname, user or None, int(port) if port else None,
                MappingProxyType(dict(host_vars or {})))
