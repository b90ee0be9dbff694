"""`fab service status` and `history` (and `rollback`, from deploy/rollback.py).

None of them needs a secret, but a host may print one (a failing health check that echoes
its configuration): the service's `secret_env` values that are exported are masked in
everything they print.
"""
import shlex

from .commands import status as status_cmd
from .context import target_hosts
from .parallel import each
from .printer import prefixed, summary_table
from .reader import count_option
from .rollback import rollback
from .secrets import known_secrets, mask
from .session import connected

__all__ = ["rollback", "status", "history"]


def _masked(rows, secrets):
    return [tuple(mask(str(cell), secrets) for cell in row) for row in rows]


def _read_all(project, target, command_for, secrets):
    """Run a read-only command on every host: [(host, ok, output or the reason it failed)].

    A reason is masked (it is cut short after this).
    """
    hosts = target_hosts(project, target)
    with connected(project, [host for host, _, _ in hosts]) as conns:
        results = each(lambda pair: pair[1].run(shlex.join(command_for(*pair[0][1:]))),
                       list(zip(hosts, conns)))
    rows = []
    for (host, _, _), (_, result, error) in zip(hosts, results):
        if error or result[0]:
            reason = str(error) if error else (result[1].strip().splitlines() or ["?"])[-1]
            rows.append((host, False, mask(reason, secrets)))
        else:
            rows.append((host, True, result[1]))
    return rows


def _dry_read(project, target, command_for, out):
    """The dry-run of a read-only command: what each host would run; no connection."""
    for host, layout, url in target_hosts(project, target):
        for line in prefixed(host.address, [f"would run: {shlex.join(command_for(layout, url))}"]):
            out(line)
    out(f"dry-run: read-only, on {len(target.hosts)} host(s); nothing was run, no connection "
        "made")
    return 0


def status(project, target, options, out=print):
    """Per host: current release, commit, health (degraded when a process of the program
    does not run), lock holder; exit 1 unless all healthy."""
    def command(layout, url):
        return status_cmd.command(layout, url, status_cmd.manager_args(target.service, layout))
    if options.get("dry"):
        return _dry_read(project, target, command, out)
    secrets, rows = known_secrets(project, target.service), []
    for host, ok, text in _read_all(project, target, command, secrets):
        if not ok:
            rows.append((host.address, "-", "-", f"error: {text[:80]}", "-"))
            continue
        info = status_cmd.parse(text, target.service.health.expect)
        rows.append((host.address, info["release"], info["commit"], info["health"],
                     info["lock"]))
    out(summary_table(_masked(rows, secrets),
                      ("host", "current release", "commit", "health", "lock")))
    return 0 if all(row[3] == "ok" for row in rows) else 1


def history(project, target, options, out=print):
    """The deploy log of every host, oldest first; exit 1 if a host could not be read."""
    limit = count_option(options.get("limit"), "--limit", 20)
    if options.get("dry"):
        return _dry_read(project, target, lambda layout, url: status_cmd.history(layout, limit),
                         out)
    secrets, rows, failed = known_secrets(project, target.service), [], False
    for host, ok, text in _read_all(project, target,
                                    lambda layout, url: status_cmd.history(layout, limit),
                                    secrets):
        if not ok:
            failed = True
            rows.append((host.address, "-", "-", f"error: {text[:80]}", "-"))
            continue
        for entry in status_cmd.parse_history(text):
            rows.append((host.address, entry.get("finished", "?"), entry.get("release", "?"),
                         entry.get("status", "?"), f"{entry.get('deployer', '?')}@"
                         f"{entry.get('origin', '?')}"
                         + (" (gates skipped)" if entry.get("skip_gates") else "")))
    if rows:
        out(summary_table(_masked(rows, secrets),
                          ("host", "finished", "release", "status", "by")))
    else:
        out("no deploys recorded yet")
    return 1 if failed else 0
