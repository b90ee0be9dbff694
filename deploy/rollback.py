"""`fab service rollback`: every host back to a release that once served.

All hosts at once (bounded by `rollout.parallel`), through the same fleet runner as a
deploy: the lock, the fence, signals, events. A host whose goal fails its health check
goes back to the release it served before, when that one had served.
"""
import json
from dataclasses import replace

from .commands import lock, release
from .deployment import new_release
from .errors import DeployError
from .facts import UNKNOWN
from .planner import fence, owner_record, probe_batch, revert_phases
from .printer import plan_lines
from .rollout import HostJob
from .rolloutconfig import Amount, RolloutSettings
from .runsession import Session
from .context import target_hosts
from .secrets import known_secrets
from .steps import HostPlan, Phase, Run


UNKNOWN_GOAL = "<the newest served release before current>"


def rollback_goal(host, facts, to):
    """The release a host goes back to; DeployError when there is none to go to.

    Only a release that once passed its health check is a target.
    """
    goal = to or facts.previous
    if goal is None:
        raise DeployError(f"{host.address}: no earlier release that served to roll back to "
                          f"(current: {facts.current or 'none'})")
    if goal not in facts.releases:
        raise DeployError(f"{host.address}: release {goal!r} is not on the host; it holds "
                          f"{', '.join(facts.releases) or 'no releases'}")
    if goal not in facts.served:
        raise DeployError(f"{host.address}: release {goal!r} never passed its health check; "
                          "only releases that served are rollback targets")
    return goal


def rollback_plan(service, where, goal, facts, owner_json):
    """Switch to `goal`, restart, check; if it fails, back to the release `current` named
    when that one had served (the best the host can be on). where = (host, layout, url)."""
    host, layout, health_url = where
    previous = facts.current if facts.known else None
    unlock = Run(lock.release(layout.root, owner_json), "release the lock")
    switch, restart, check = revert_phases(service, layout, health_url, goal)
    best = previous if previous in facts.served else None
    return HostPlan(
        host.address, goal, best,
        (Phase("switch", switch.steps), Phase("switch", restart.steps, "restart"),
         Phase("verify", check.steps, "health")),
        revert_phases(service, layout, health_url, best) if best else (),
        {"served": Phase("finish", (_record(where, goal, previous, owner_json, "rollback"),
                                    unlock)),
         "failed": Phase("finish", (_record(where, goal, previous, owner_json,
                                            "rollback-failed"), unlock)),
         "rolled-back": Phase("finish", (_record(where, goal, previous, owner_json,
                                                 "rollback-failed"), unlock)),
         "untouched": Phase("finish", (unlock,))},
        fence(layout, owner_json))


def _record(where, goal, previous, owner_json, outcome):  # pylint: disable=R0913,R0917
    """The history line of a rollback."""
    owner = json.loads(owner_json)
    entry = json.dumps({"release": goal, "status": outcome, "host": where[0].address,
                        "deployer": owner["who"], "origin": owner["where"],
                        "previous": previous, "started": owner["since"]})
    return Run(release.append_history(where[1], entry), f"record '{outcome}' in the history")


def rollback_dry_run(service, hosts, options, owner, out):
    """Print each host's rollback plan; the goal is exact only when --to names it."""
    goal = options.get("to") or UNKNOWN_GOAL
    for where in hosts:
        plan = rollback_plan(service, where, goal, UNKNOWN, owner)
        for line in plan_lines(where[0].address, probe_batch(where[1], owner, False), plan):
            out(line)
    out(f"dry-run: rollback of {service.name} on {len(hosts)} host(s) to {goal}; "
        "nothing was run, no connection made")
    return 0


def rollback(project, target, options, out=None):
    """Every host back to the previous served release (or `to`); exit 0 when all serve it.

    All hosts at once (bounded by `rollout.parallel`); a host whose goal fails its health
    check goes back to the release it served before, and the rollback says so.
    """
    release_info = new_release("rollback", {}, False)
    owner = owner_record(release_info, action="rollback")
    hosts = target_hosts(project, target)
    if options.get("dry"):
        return rollback_dry_run(target.service, hosts, options, owner, out or print)
    settings = replace(target.rollout or RolloutSettings(), canary=0, batch=Amount(100, True),
                       max_fail=Amount(100, True))
    jobs = [HostJob(host, layout) for host, layout, _ in hosts]
    with Session(project, target, release_info, known_secrets(project, target.service),
                 options, out) as session:
        run = session.fleet_run(jobs, settings, owner, options.get("break_lock"),
                                ("rolled back", "rollback-failed"))
        facts = run.check()
        try:  # nothing switched yet: any error gives every lock back
            plans = [rollback_plan(target.service, where,
                                   rollback_goal(where[0], fact, options.get("to")), fact,
                                   owner) for where, fact in zip(hosts, facts)]
        except BaseException:
            run.unlock(jobs)
            raise
        result = run.run(plans, facts, {})
    return result.code
