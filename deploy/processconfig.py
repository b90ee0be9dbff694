"""The program's processes: how many, whether they are replaced one at a time on a socket
the process manager holds (zero downtime), and how long one may drain on SIGTERM."""
import re
from dataclasses import dataclass

MAX_PROCESSES, MAX_DRAIN = 64, 3600
KEYS = ("processes", "zero_downtime", "drain", "listen")
LISTEN = re.compile(r"(\{\{.*\}\}|[A-Za-z0-9.-]+):(\{\{.*\}\}|[0-9]+)")


@dataclass(frozen=True)
class ProcessSettings:
    """`processes`, `zero_downtime`, `drain` and `listen` of a service."""

    count: int = 2  # processes of the program per host
    zero_downtime: bool = True  # the manager holds the socket; processes replaced in turn
    drain: float = 10.0  # seconds a process may take after SIGTERM (the stop timeout)
    listen: str | None = None  # HOST:PORT (a template) of the socket; None: health's


def parse_processes(reader, raw, path):
    """The process keys of the service mapping `raw` (at `path`). Zero downtime is the
    default under both managers (supervisord's fcgi-program socket, systemd's .socket)."""
    zero = raw.get("zero_downtime", True)
    if not isinstance(zero, bool):
        reader.fail(f"{path}.zero_downtime", "true or false", zero)
    count = reader.number(raw.get("processes", 2 if zero else 1), f"{path}.processes", 1,
                          int, high=MAX_PROCESSES)
    if zero and count < 2:
        reader.fail(f"{path}.processes", "2 or more with zero_downtime (one process is "
                    "replaced while the others serve), or zero_downtime: false", count)
    if not zero and count > 1:
        reader.fail(f"{path}.processes", "1 with zero_downtime: false (the processes would "
                    "need a socket the manager holds)", count)
    listen = raw.get("listen")
    if listen is not None:
        reader.text(listen, f"{path}.listen", LISTEN, "HOST:PORT (an IPv4 address or a host "
                    "name, and a port or a template such as {{ port }})")
    drain = reader.number(raw.get("drain", 10), f"{path}.drain", 0, high=MAX_DRAIN)
    return ProcessSettings(count, zero, drain, listen)
