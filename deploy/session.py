"""Opening connections and taking the lock on every host, shared by deploy and rollback."""
import shlex
import sys
from contextlib import contextmanager

from .commands import lock
from .errors import DeployError
from .batch import run_batch
from .facts import describe_owner, parse_facts, parse_lock_owner
from .knownhosts import KnownHosts
from .parallel import each
from .planner import probe_batch
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


def _connect_all(project, targets, known):
    def connect(target):
        host = SshHost(target, project.fabric_config, known, project.ssh,
                       project.instance_pins)
        host.open()
        return host
    results = each(connect, targets)
    errors = [str(error) for _, _, error in results if error]
    if errors:
        for _, host, _ in results:
            if host:
                host.close()
        raise DeployError("cannot reach every host; nothing was changed:\n  " +
                          "\n  ".join(errors))
    return [host for _, host, _ in results]


def lock_and_probe(targets, owner, break_lock):
    """Round trip 1 on every (layout, host, wanted); a held lock anywhere stops all.

    On a held lock, the locks this run took are given back before the error.
    """
    def probe(target):
        layout, host, wanted = target
        return run_batch(host, probe_batch(layout, owner, break_lock, wanted), {})
    results = each(probe, targets)
    problems = []
    for (_, host, _), result, error in results:
        if error or not result.ok:
            holder = parse_lock_owner(result.output) if result else None
            problems.append(f"{host.address}: " + (
                f"locked by {describe_owner(holder)}" if holder is not None else
                f"probe failed: {error or result.output.strip()[-300:]}"))
    if problems:
        give_back_locks([(layout, host) for (layout, host, _), result, _ in results
                         if result and result.ok], owner)
        raise DeployError("the deploy lock is held; nothing was changed:\n  " +
                          "\n  ".join(problems) + "\nIf the owner is gone, take the lock "
                          "over with `--break-lock`.")
    return [parse_facts(result.output) for _, result, _ in results]


def give_back_locks(pairs, owner):
    """Release the locks this run (owner) took on [(layout, host)], all at once."""
    each(lambda pair: pair[1].run(shlex.join(lock.release(pair[0].root, owner))), pairs)
