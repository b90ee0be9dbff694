"""`fab service rollback`, `status` and `history`: the same layout, read or switched back."""
import json
import posixpath
import shlex

from .commands import health, lock, release, status as status_cmd
from .context import host_basics
from .deployment import new_release, report
from .errors import ConfigError, DeployError
from .executor import run_plans
from .parallel import each
from .planner import owner_record, reload_step, restart_steps
from .printer import summary_table
from .render import environment
from .session import connect_all, give_back_locks, lock_and_probe
from .steps import Batch, HostPlan, Run


def _hosts(project, target):
    env = environment(project.root / "templates")
    return [(host, *host_basics(env, target, host)[1:]) for host in target.hosts]


def rollback_plan(service, where, facts, to, owner_json):
    """Switch back to `to` (default: the release before current); where = (host, layout, url)."""
    host, layout, health_url = where
    goal = to or facts.previous
    if goal is None:
        raise DeployError(f"{host.address}: no earlier release to roll back to "
                          f"(current: {facts.current or 'none'})")
    if goal not in facts.releases:
        raise DeployError(f"{host.address}: release {goal!r} is not on the host; it holds "
                          f"{', '.join(facts.releases) or 'no releases'}")
    target_dir = layout.release(goal)
    venv = posixpath.join(target_dir, ".fabship", "venv")

    owner = json.loads(owner_json)

    def finish(outcome):
        record = json.dumps({"release": goal, "status": outcome, "host": host.address,
                             "deployer": owner["who"], "origin": owner["where"],
                             "previous": facts.current, "started": owner["since"]})
        return (Batch("record, unlock", (
            Run(release.append_history(layout, record), f"record '{outcome}' in the history"),
            Run(lock.release(layout.root), "release the lock"))),)
    batches = (Batch(f"switch to {goal}, restart, health check", (
        Run(release.switch(layout, target_dir), "switch current (rename)"),
        *restart_steps(service, layout, venv, reload_step(layout, venv)),
        Run(health.check(venv, health_url, goal, service.health.timeout),
            f"health check: {health_url} names {goal}"))),)
    # No automatic rollback of a rollback: a failure is reported, the lock given back.
    return HostPlan(host.address, batches, (len(batches), 0), (), finish("rollback"),
                    finish("rollback-failed")), goal


def rollback(project, target, options, out=print):
    """Every host back to the previous release (or `to`); exit 0 when all serve it."""
    if options.get("dry"):
        raise ConfigError("`--dry` is not supported for rollback yet: `fab service status` "
                          "shows what each host runs")
    owner = owner_record(new_release("rollback", {}, False), action="rollback")
    hosts = _hosts(project, target)
    conns = connect_all(project, [host.address for host, _, _ in hosts])
    try:
        facts = lock_and_probe([(layout, conn, ("-", "-")) for (_, layout, _), conn
                                in zip(hosts, conns)], owner, options.get("break_lock"))
        try:
            plans = [rollback_plan(target.service, where, fact, options.get("to"), owner)
                     for where, fact in zip(hosts, facts)]
        except DeployError:
            give_back_locks([(layout, conn) for (_, layout, _), conn in zip(hosts, conns)])
            raise
        results = run_plans([(conn, plan, goal) for conn, (plan, goal) in zip(conns, plans)],
                            {}, out, done="rolled back")
    finally:
        for conn in conns:
            conn.close()
    return report(results, [host.address for host, _, _ in hosts], out, done="rolled back")


def _read_all(project, target, command_for):
    hosts = _hosts(project, target)
    conns = connect_all(project, [host.address for host, _, _ in hosts])
    try:
        results = each(lambda pair: pair[1].run(shlex.join(command_for(*pair[0]))),
                       list(zip(hosts, conns)))
        return hosts, [result[1] if result and result[0] == 0 else None
                       for _, result, _ in results]
    finally:
        for conn in conns:
            conn.close()


def status(project, target, options, out=print):
    """Per host: current release, commit, health, lock holder."""
    del options
    hosts, outputs = _read_all(project, target,
                               lambda host, layout, url: status_cmd.command(layout, url))
    rows = []
    for (host, _, _), text in zip(hosts, outputs):
        info = status_cmd.parse(text or "")
        rows.append((host.address, info["release"], info["commit"], info["health"],
                     info["lock"]))
    out(summary_table(rows, ("host", "current release", "commit", "health", "lock")))
    return 0 if all(row[3] == "ok" for row in rows) else 1


def history(project, target, options, out=print):
    """The deploy log of every host, oldest first."""
    limit = int(options.get("limit") or 20)
    hosts, outputs = _read_all(project, target,
                               lambda host, layout, url: status_cmd.history(layout, limit))
    rows = []
    for (host, _, _), text in zip(hosts, outputs):
        for entry in status_cmd.parse_history(text or ""):
            rows.append((host.address, entry.get("finished", "?"), entry.get("release", "?"),
                         entry.get("status", "?"), f"{entry.get('deployer', '?')}@"
                         f"{entry.get('origin', '?')}"
                         + (" (gates skipped)" if entry.get("skip_gates") else "")))
    if not rows:
        out("no deploys recorded yet")
        return 0
    out(summary_table(rows, ("host", "finished", "release", "status", "by")))
    return 0
