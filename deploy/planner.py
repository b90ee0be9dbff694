"""(context, facts, artifacts) -> the inert plan of one host. Only the planner orders steps.

Round trips of a deploy: 1. lock + facts; 2. the rollout: ship (refuse links planted in
the layout, uploads on stdin, assemble), switch `current` and restart, verify (health
check); 3. finish, once the fleet runner has decided the rollout: history, prune, unlock
(every finish step runs even after one fails, so the lock is always given back). A
failure from the switch on, or a fleet rollback, runs the revert (one more round trip)
before the finish. Every batch after the first is fenced by this run's lock.
"""
import hashlib
import json
import posixpath
from dataclasses import replace

from .commands import boot, health, lock, release, supervisor, systemd
from .steps import Batch, HostPlan, Phase, Run, Upload


def owner_record(release_info, action="deploy"):
    """The lock's owner.json: who, from where, since when, which release."""
    return json.dumps({"who": release_info.deployer, "where": release_info.origin,
                       "pid": release_info.pid, "since": release_info.started,
                       "action": action, "release": release_info.release_id})


def probe_batch(layout, owner, break_lock, wanted=("-", "-")):
    """Round trip 1: take the lock, then read the facts (wanted = artifact, venv key)."""
    return Batch("lock and read facts", (
        Run(lock.acquire(layout.root, owner, break_lock), "take the deploy lock"),
        Run(lock.probe(layout.root, *wanted), "read facts: current release, releases, "
            "artifact, venv"),
    ))


def _when(step, facts, holds, condition):
    """Keep `step` unless the fact holds; in a dry-run, keep it with the condition shown."""
    if not facts.known:
        return replace(step, unless=condition)
    return None if holds else step


def reload_step(layout, venv):
    """Make a running supervisord re-read the config of the release `current` names."""
    return Run(supervisor.reload(layout, venv), "reload supervisord's config")


def _roll(service, check):
    """(label, step timeout, expectation JSON) of replacing the processes one at a time,
    each health-checked."""
    processes, health_conf = service.processes, service.health
    return (f"replace the {processes.count} processes one at a time, each health-checked",
            processes.count * (health_conf.timeout + processes.drain + 10),
            health.expectation(health_conf.expect, check[1]))


def restart_steps(service, layout, venv, reload, check):
    """Restart the program through its manager (the release's venv talks to supervisord).

    Under supervisor, `reload` (a reload_step, or None to skip it) comes first, and with
    `boot: cron` the crontab's @reboot line follows. Under systemd the units named after
    the service and root are installed and enabled (they start at boot). With
    zero_downtime the processes are replaced one at a time, each checked healthy
    (`check`: the health URL and the release that must answer).
    """
    if service.manager == "systemd":
        return _systemd_restart_steps(service, layout, venv, check)
    at_boot = Run(boot.install(layout.root), "start supervisord at boot (crontab @reboot)")
    label, timeout, expect = _roll(service, check)
    if service.processes.zero_downtime:
        restart = Run(supervisor.roll(layout, venv, service.name, check[0], expect,
                                      service.health.timeout),
                      label + " (supervisord started if not running)", timeout=timeout)
    else:
        restart = Run(supervisor.restart(layout, venv, service.name),
                      "restart through supervisord (started if not running)")
    return (*((reload,) if reload else ()), restart,
            *((at_boot,) if service.boot == "cron" else ()))


def _systemd_restart_steps(service, layout, venv, check):
    """Install and enable the units `current` holds, then restart them (see
    restart_steps); the labels name the units of the configured mode."""
    name, root, count = service.name, layout.root, service.processes.count
    label, timeout, expect = _roll(service, check)
    if service.processes.zero_downtime:
        install = (f"install {systemd.socket_name(name, root)} and "
                   f"{systemd.template_name(name, root)}, reload systemd, start the socket, "
                   f"enable {count} processes")
        label += f" ({', '.join(systemd.instance_names(name, root, count))})"
    else:
        install = f"install and enable {systemd.unit_name(name, root)}, reload systemd"
        label, timeout = f"restart {systemd.unit_name(name, root)}", None
    return (Run(systemd.install(layout.current, name, root, count, service.user), install),
            Run(systemd.roll(venv, check[0], expect, service.health.timeout,
                             systemd.units_of(layout.current, name, root, count)),
                label, timeout=timeout))


def health_step(service, layout, venv, health_url, release_id):
    """Poll health_url until it answers as health.expect says for release_id (2 x processes
    answers in a row with zero downtime). The check also asks the manager, so a program
    that exits fails it at once (with the end of its log, under supervisor)."""
    expect, timeout = service.health.expect, service.health.timeout
    label = health.describe(expect, health_url, release_id)
    times = 2 * service.processes.count if service.processes.zero_downtime else 1
    label += f" ({times} answers in a row)" if times > 1 else ""
    expectation = health.expectation(expect, release_id, times)
    if service.manager == "supervisor":
        return Run(supervisor.healthy(layout, venv, service.name, health_url, expectation,
                                      timeout), label, timeout=timeout)
    units = systemd.units_of(layout.current, service.name, layout.root,
                             service.processes.count)
    return Run(systemd.healthy(venv, health_url, expectation, timeout, units), label,
               timeout=timeout)


def _reload_when_changed(ctx, facts):
    """The supervisord reload, skipped when the running config is the same text."""
    conf = next((f.text for f in ctx.files if f.dest == ".fabship/supervisord.conf"), "")
    same = facts.supervisor_conf == hashlib.sha256(conf.encode()).hexdigest()
    return _when(reload_step(ctx.layout, ctx.venv), facts, same,
                 "supervisord.conf is unchanged")


def _stop(service, ctx):
    if service.manager == "supervisor":
        return Run(supervisor.stop(ctx.layout, ctx.venv, service.name), "stop the program")
    name, root = service.name, ctx.layout.root
    return Run(systemd.stop(ctx.layout.current, name, root),
               f"stop and disable {systemd.socket_name(name, root)} and its processes"
               if service.processes.zero_downtime else
               f"stop and disable {systemd.unit_name(name, root)}")


def prepare_steps(service, ctx, facts, shipped):
    """Upload what the host lacks and assemble releases/<id>."""
    source, deps = shipped
    layout, staging = ctx.layout, ctx.layout.staging(posixpath.basename(ctx.release_dir))
    artifact = layout.artifact(source.name)
    bundle = ctx.venv + ".bundle.tar.gz"
    has_artifact = f"the host holds artifact {source.digest[:12]}"
    has_venv = f"venvs/{posixpath.basename(ctx.venv)} is complete"
    steps = [
        Run(release.make_dirs(layout), "create the layout's directories"),
        Run(release.clean_staging(layout), "remove releases left half-assembled"),
        _when(Upload(artifact + ".part", f"upload release artifact {source.digest[:12]}",
                     blob="source", size=len(source.data)), facts, facts.has_artifact,
              has_artifact),
        _when(Upload(bundle, "upload the deps bundle (wheels)", blob="deps",
                     size=len(deps.data) if deps else 0), facts, facts.has_venv, has_venv),
        *(Upload(posixpath.join(staging, f.dest), f"write {f.dest}", mode=f.mode,
                 text=f.text, size=len(f.text.encode()), secret=f.secret, shown=f.shown)
          for f in ctx.files),
        _when(Run(release.keep_upload(artifact + ".part", artifact), "keep the artifact"),
              facts, facts.has_artifact, has_artifact),
        Run(release.extract(artifact, staging), "unpack the artifact into the release"),
        _when(Run(release.install_deps(ctx.venv, bundle, service.python),
                  "build the venv from the shipped wheels (offline)"),
              facts, facts.has_venv, has_venv),
        Run(release.link(ctx.venv, posixpath.join(staging, ".fabship", "venv")),
            "link the venv"),
        Run(release.link(layout.shared, posixpath.join(staging, "shared")), "link shared/"),
        Run(release.publish(staging, ctx.release_dir), "move the release into place"),
    ]
    return tuple(step for step in steps if step is not None)


def _history(ctx, release_info, status, previous):
    record = json.dumps({"release": release_info.release_id, "commit": release_info.commit,
                         "status": status, "host": ctx.host.address,
                         "deployer": release_info.deployer, "origin": release_info.origin,
                         "previous": previous, "skip_gates": release_info.skip_gates,
                         "started": release_info.started})
    return Run(release.append_history(ctx.layout, record), f"record '{status}' in the history")


def fence(layout, owner_json):
    """The lock directory and this run's owner record: every later batch checks them."""
    return (layout.lock, owner_json)


def build_host_plan(service, ctx, facts, shipped, release_info):
    """The whole plan of one host, from the facts (or unknown facts for the dry-run).

    Phases: ship (upload, assemble: nothing served changes), switch (`current`, then the
    restart), verify (the health check), revert (back to the newest release that once
    served, or stop a failed first release), finish (by how the host ended).
    """
    release_id = release_info.release_id
    previous = facts.previous_for_revert if facts.known else None
    before = facts.current if facts.known else None  # what the history calls previous
    layout = ctx.layout
    rollout = (
        Phase("ship", prepare_steps(service, ctx, facts, shipped)),
        Phase("switch", (Run(release.switch(layout, ctx.release_dir),
                             "switch current (rename)"),)),
        Phase("switch", restart_steps(service, layout, ctx.venv,
                                      _reload_when_changed(ctx, facts),
                                      (ctx.health_url, release_id)), "restart"),
        Phase("verify", (health_step(service, layout, ctx.venv, ctx.health_url, release_id),),
              "health"),
    )
    if not facts.known:  # the dry-run: which release is known only on the host
        revert = ()
    elif previous:
        revert = revert_phases(service, layout, ctx.health_url, previous)
    else:  # a failed first release: nothing served before it
        revert = (Phase("revert", (_stop(service, ctx),
                                   Run(("rm", "-f", layout.current), "remove current"))),)
    protected = tuple(dict.fromkeys(r for r in (release_id, before, previous) if r))
    unlock = Run(lock.release(layout.root, owner_record(release_info)), "release the lock")
    finish = {
        "served": Phase("finish", (
            Run(release.mark_served(ctx.release_dir), "mark the release as served"),
            _history(ctx, release_info, "deployed", before),
            Run(release.prune(layout.releases, service.keep_releases, protected),
                f"prune releases to the newest {service.keep_releases}"),
            Run(release.prune(layout.artifacts, service.keep_releases,
                              (shipped[0].name,), order="time"), "prune old artifacts"),
            unlock)),
        "failed": Phase("finish", (_history(ctx, release_info, "failed", before), unlock)),
        "rolled-back": Phase("finish", (_history(ctx, release_info, "rolled-back", before),
                                        unlock)),
        "untouched": Phase("finish", (unlock,)),
    }
    return HostPlan(ctx.host.address, release_id, previous, rollout, revert, finish,
                    fence(layout, owner_record(release_info)))


def revert_phases(service, layout, health_url, previous):
    """Back to `previous` (a release that served): switch, restart, health check."""
    back = layout.release(previous)
    venv = posixpath.join(back, ".fabship", "venv")
    return (Phase("revert", (Run(release.switch(layout, back),
                                 f"switch current back to {previous}"),)),
            Phase("revert", restart_steps(service, layout, venv, reload_step(layout, venv),
                                          (health_url, previous)), "restart"),
            Phase("revert", (health_step(service, layout, venv, health_url, previous),),
                  "health"))
