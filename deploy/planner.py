"""(context, facts, artifacts) -> the inert plan of one host. Only the planner orders steps.

Round trips of a deploy: 1. lock + facts; 2. the release: refuse links planted in the
layout, uploads on stdin, assemble, switch `current`, restart, health check; 3. finish:
history, prune, unlock (the executor runs every finish step even after one fails, so
the lock is always given back). A failure from the switch on runs the rollback (one
more round trip) before the finish.
"""
import hashlib
import json
import posixpath
from dataclasses import replace

from .commands import boot, health, lock, release, supervisor, systemd
from .steps import Batch, HostPlan, Run, Upload


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


def restart_steps(service, layout, venv, reload=None):
    """Restart the program through its manager (the release's venv runs supervisorctl).

    Under supervisor, `reload` (a reload_step, or None to skip it) comes first, and with
    `boot: cron` the crontab's @reboot line follows. Under systemd, the unit named after
    the service and root is installed, enabled (it starts at boot) and restarted.
    """
    if service.manager == "supervisor":
        at_boot = Run(boot.install(layout.root), "start supervisord at boot (crontab @reboot)")
        return (*((reload,) if reload else ()),
                Run(supervisor.restart(layout, venv, service.name),
                    "restart through supervisord (started if not running)"),
                *((at_boot,) if service.boot == "cron" else ()))
    unit = systemd.unit_name(service.name, layout.root)
    return (Run(systemd.install_unit(posixpath.join(layout.current, ".fabship", unit),
                                     service.name, layout.root, service.user),
                f"install and enable {unit}, reload systemd"),
            Run(systemd.restart(service.name, layout.root), f"restart {unit}"))


def _reload_when_changed(ctx, facts):
    """The supervisord reload, skipped when the running config is the same text."""
    conf = next((f.text for f in ctx.files if f.dest == ".fabship/supervisord.conf"), "")
    same = facts.supervisor_conf == hashlib.sha256(conf.encode()).hexdigest()
    return _when(reload_step(ctx.layout, ctx.venv), facts, same,
                 "supervisord.conf is unchanged")


def _stop(service, ctx):
    if service.manager == "supervisor":
        return Run(supervisor.stop(ctx.layout, ctx.venv, service.name), "stop the program")
    return Run(systemd.stop(service.name, ctx.layout.root),
               f"stop and disable {systemd.unit_name(service.name, ctx.layout.root)}")


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


def build_host_plan(service, ctx, facts, shipped, release_info):
    """The whole plan of one host, from the facts (or unknown facts for the dry-run)."""
    release_id = release_info.release_id
    previous = facts.current if facts.known else None
    prepare = prepare_steps(service, ctx, facts, shipped)
    batches = (Batch("ship, switch, restart, health check", (
        *prepare,
        Run(lock.still_ours(ctx.layout.root, owner_record(release_info)),
            "check the lock is still ours"),
        Run(release.switch(ctx.layout, ctx.release_dir), "switch current (rename)"),
        *restart_steps(service, ctx.layout, ctx.venv, _reload_when_changed(ctx, facts)),
        Run(health.check(ctx.venv, ctx.health_url, release_id, service.health.timeout),
            f"health check: {ctx.health_url} names {release_id}"),
    )),)
    if previous:
        back = ctx.layout.release(previous)
        back_venv = posixpath.join(back, ".fabship", "venv")
        rollback = (Batch(f"roll back to {previous}", (
            Run(release.switch(ctx.layout, back), f"switch current back to {previous}"),
            *restart_steps(service, ctx.layout, back_venv, reload_step(ctx.layout, back_venv)),
            Run(health.check(back_venv, ctx.health_url, previous, service.health.timeout),
                f"health check: {ctx.health_url} names {previous}"))),)
    else:
        rollback = (Batch("stop the failed first release",
                          (_stop(service, ctx), Run(("rm", "-f", ctx.layout.current),
                                                    "remove current"))),)
    if not facts.known:
        rollback = (Batch("if the release fails: switch back to the release current "
                          "pointed to, restart it and check it", ()),)
    protected = tuple(r for r in (release_id, previous) if r)
    on_success = (Batch("record, prune, unlock", (
        Run(release.mark_served(ctx.release_dir), "mark the release as served"),
        _history(ctx, release_info, "deployed", previous),
        Run(release.prune(ctx.layout.releases, service.keep_releases, protected),
            f"prune releases to the newest {service.keep_releases}"),
        Run(release.prune(ctx.layout.artifacts, service.keep_releases,
                          (shipped[0].name,), order="time"), "prune old artifacts"),
        Run(lock.release(ctx.layout.root, owner_record(release_info)), "release the lock"))),)
    on_failure = (Batch("record the failure, unlock", (
        _history(ctx, release_info, "failed", previous),
        Run(lock.release(ctx.layout.root, owner_record(release_info)), "release the lock"))),)
    return HostPlan(ctx.host.address, batches, (0, len(prepare) + 1), rollback, on_success,
                    on_failure)
