"""`fab service rollback`, `status` and `history`: the same layout, read or switched back.

None of them needs a secret, but a host may print one (a failing health check that echoes
its configuration): the service's `secret_env` values that are exported are masked in
everything they print.
"""
import json
import os
import posixpath
import shlex

from .commands import health, lock, release, status as status_cmd
from .context import host_basics
from .deployment import new_release, report
from .errors import DeployError
from .executor import run_plans
from .parallel import each
from .planner import owner_record, probe_batch, reload_step, restart_steps
from .printer import plan_lines, prefixed, summary_table
from .reader import count_option
from .render import environment
from .secrets import mask, secrets_set
from .session import connected, give_back_locks, lock_and_probe
from .steps import Batch, HostPlan, Run


def known_secrets(project, service, environ=None):
    """The service's secrets that are set in the environment (a missing one is fine)."""
    return secrets_set(service.secret_env, os.environ if environ is None else environ,
                       f"{project.source}: services.{service.name}.secret_env")


def _masked(rows, secrets):
    return [tuple(mask(str(cell), secrets) for cell in row) for row in rows]


def _hosts(project, target):
    env = environment(project.root / "templates")
    return [(host, *host_basics(env, target, host)[1:]) for host in target.hosts]


UNKNOWN_GOAL = "<the newest served release before current>"


def rollback_goal(host, facts, to):
    """The release a host goes back to; DeployError when there is none to go to."""
    goal = to or facts.previous
    if goal is None:
        raise DeployError(f"{host.address}: no earlier release to roll back to "
                          f"(current: {facts.current or 'none'})")
    if goal not in facts.releases:
        raise DeployError(f"{host.address}: release {goal!r} is not on the host; it holds "
                          f"{', '.join(facts.releases) or 'no releases'}")
    return goal


def rollback_plan(service, where, goal, previous, owner_json):
    """Switch back to `goal`; where = (host, layout, health URL), previous = current now."""
    host, layout, health_url = where
    target_dir = layout.release(goal)
    venv = posixpath.join(target_dir, ".fabship", "venv")
    owner = json.loads(owner_json)

    def finish(outcome):
        record = json.dumps({"release": goal, "status": outcome, "host": host.address,
                             "deployer": owner["who"], "origin": owner["where"],
                             "previous": previous, "started": owner["since"]})
        return (Batch("record, unlock", (
            Run(release.append_history(layout, record), f"record '{outcome}' in the history"),
            Run(lock.release(layout.root, owner_json), "release the lock"))),)
    batches = (Batch(f"switch to {goal}, restart, health check", (
        Run(release.switch(layout, target_dir), "switch current (rename)"),
        *restart_steps(service, layout, venv, reload_step(layout, venv)),
        Run(health.check(venv, health_url, goal, service.health.timeout),
            f"health check: {health_url} names {goal}"))),)
    # No automatic rollback of a rollback: a failure is reported, the lock given back.
    return HostPlan(host.address, batches, (len(batches), 0), (), finish("rollback"),
                    finish("rollback-failed"))


def rollback_dry_run(service, hosts, options, owner, out):
    """Print each host's rollback plan; the goal is exact only when --to names it."""
    goal = options.get("to") or UNKNOWN_GOAL
    for where in hosts:
        plan = rollback_plan(service, where, goal, None, owner)
        for line in plan_lines(where[0].address, probe_batch(where[1], owner, False), plan):
            out(line)
    out(f"dry-run: rollback of {service.name} on {len(hosts)} host(s) to {goal}; "
        "nothing was run, no connection made")
    return 0


def rollback(project, target, options, out=print):
    """Every host back to the previous served release (or `to`); exit 0 when all serve it."""
    owner = owner_record(new_release("rollback", {}, False), action="rollback")
    hosts = _hosts(project, target)
    if options.get("dry"):
        return rollback_dry_run(target.service, hosts, options, owner, out)
    secrets = known_secrets(project, target.service)

    def say(line):  # every line, the summary's errors too
        out(mask(line, secrets))

    with connected(project, [host for host, _, _ in hosts], say) as conns:
        facts = lock_and_probe([(layout, conn, ("-", "-")) for (_, layout, _), conn
                                in zip(hosts, conns)], owner, options.get("break_lock"))
        try:
            goals = [rollback_goal(where[0], fact, options.get("to"))
                     for where, fact in zip(hosts, facts)]
        except DeployError:
            give_back_locks([(layout, conn) for (_, layout, _), conn in zip(hosts, conns)],
                            owner)
            raise
        results = run_plans([(conn, rollback_plan(target.service, where, goal, fact.current,
                                                  owner), goal)
                             for conn, where, goal, fact in zip(conns, hosts, goals, facts)],
                            {}, say, secrets, done="rolled back")
    return report(results, [host.address for host, _, _ in hosts], say, done="rolled back")


def _read_all(project, target, command_for, secrets):
    """Run a read-only command on every host: [(host, ok, output or the reason it failed)].

    A reason is masked (it is cut short after this).
    """
    hosts = _hosts(project, target)
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
    for host, layout, url in _hosts(project, target):
        for line in prefixed(host.address, [f"would run: {shlex.join(command_for(layout, url))}"]):
            out(line)
    out(f"dry-run: read-only, on {len(target.hosts)} host(s); nothing was run, no connection "
        "made")
    return 0


def status(project, target, options, out=print):
    """Per host: current release, commit, health, lock holder; exit 1 unless all healthy."""
    if options.get("dry"):
        return _dry_read(project, target, status_cmd.command, out)
    secrets, rows = known_secrets(project, target.service), []
    for host, ok, text in _read_all(project, target, status_cmd.command, secrets):
        if not ok:
            rows.append((host.address, "-", "-", f"error: {text[:80]}", "-"))
            continue
        info = status_cmd.parse(text)
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
