"""Connections to every host at once, for the read-only commands (status, history)."""
import sys
from contextlib import contextmanager

from .errors import DeployError
from .knownhosts import KnownHosts
from .parallel import each
from .ssh import SshHost


@contextmanager
def connected(project, targets, out=None):
    """One open connection per Host for the `with` block, all closed after it.

    If any host cannot be reached, DeployError names every one that failed. known_hosts
    files are read once; lines they skip are warned about (on stderr without `out`). A
    host key pinned at this first contact (a new EC2 instance, or `accept-new`) is told.
    """
    say = out or (lambda line: print(line, file=sys.stderr))
    known = KnownHosts(project.known_hosts)
    for warning in known.warnings:
        say(warning)
    hosts = _connect_all(project, targets, known)
    for host in hosts:
        if host.pinned:
            say(f"[{host.address}] pinned host key {host.pinned} (first contact)")
    try:
        yield hosts
    finally:
        for host in hosts:
            host.close()


def open_host(project, known, target):
    """An open SshHost for `target` (DeployError if it cannot be reached)."""
    host = SshHost(target, project.fabric_config, known, project.ssh, project.instance_pins)
    host.open()
    return host


def _connect_all(project, targets, known):
    results = each(lambda target: open_host(project, known, target), targets)
    errors = [str(error) for _, _, error in results if error]
    if errors:
        for _, host, _ in results:
            if host:
                host.close()
        raise DeployError("cannot reach every host; nothing was changed:\n  " +
                          "\n  ".join(errors))
    return [host for _, host, _ in results]
