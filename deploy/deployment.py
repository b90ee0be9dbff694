"""The deploy, end to end: prepare locally, connect, lock + facts, plan, execute, report."""
import os
import posixpath
import socket
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from . import artifact as artifacts
from .config import SshSettings
from .context import ReleaseInfo, build_context
from .errors import ConfigError
from .facts import UNKNOWN
from .gaterecord import check_gates
from .hostkeys import InstancePins
from .hosts import local_user
from .planner import build_host_plan, owner_record, probe_batch
from .printer import plan_lines, wave_lines
from .render import environment
from .rollout import HostJob
from .rolloutconfig import RolloutSettings, waves as make_waves, with_options
from .runsession import Session
from .secrets import read_secrets
from .sourcetree import read_file, read_templates
from .target import hosts_key, limit


@dataclass(frozen=True)
class Project:
    """Where the project lives and how to reach its hosts."""

    root: Path
    source: str  # the config file named in errors
    ssh: SshSettings
    fabric_config: object

    @property
    def known_hosts(self):
        """The project's known_hosts file."""
        return self.root / self.ssh.known_hosts

    @property
    def instance_pins(self):
        """Host keys of EC2 instances, pinned per instance id."""
        return InstancePins(self.root / self.ssh.instance_known_hosts)

    @property
    def cache(self):
        """Local build cache (artifacts, wheels)."""
        return self.root / ".fabship"


@dataclass(frozen=True)
class Prepared:
    """Everything built before any connection."""

    release: ReleaseInfo
    secrets: tuple
    source: artifacts.Artifact
    specs: str
    contexts: tuple


def new_release(commit, gates, skip_gates, now=None):
    """ReleaseInfo with id `<UTC timestamp>-<short commit>`."""
    now = now or datetime.now(timezone.utc)
    stamp = now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z"
    return ReleaseInfo(f"{stamp}-{commit[:7]}", commit, local_user(),
                       socket.gethostname(), os.getpid(), now.strftime("%Y-%m-%dT%H:%M:%SZ"),
                       skip_gates, gates)


def read_requirements(project, service, commit):
    """The service's requirements file at `commit` ("" when it declares none)."""
    if not service.requirements:
        return ""
    where = f"{project.source}: services.{service.name}.requirements"
    try:
        return read_file(project.root, service.requirements, commit, where).decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{where}: {service.requirements} is not UTF-8 text") from None


def prepare(project, target, skip_gates, environ=None):
    """Check the gates, read secrets, build the artifact, render every host's files."""
    service = target.service
    commit, gates = check_gates(project.root, skip_gates)
    release = new_release(commit, gates, skip_gates)
    secrets = read_secrets(service.secret_env, os.environ if environ is None else environ,
                           f"{project.source}: services.{service.name}.secret_env")
    source = artifacts.build_source(project.root, service.source, commit,
                                    f"{project.source}: services.{service.name}.source")
    specs = artifacts.deps_specs(read_requirements(project, service, commit),
                                 service.manager)
    env = environment(read_templates(project.root, commit))
    shipped = (source.digest, artifacts.deps_hash(specs), secrets)
    deploy_user = getattr(project.fabric_config, "user", None)
    contexts = tuple(build_context(env, target, host, release, shipped, deploy_user=deploy_user)
                     for host in target.hosts)
    return Prepared(release, secrets, source, specs, contexts)


def dry_run(target, prepared, options, settings, out):
    """Print every host's plan with unknown facts, then the rollout's order; connect to
    nothing, send nothing."""
    for ctx in prepared.contexts:
        probe = probe_batch(ctx.layout, owner_record(prepared.release),
                            options.get("break_lock", False), _wanted(prepared, ctx))
        plan = build_host_plan(target.service, ctx, UNKNOWN, (prepared.source, None),
                               prepared.release)
        for line in plan_lines(ctx.host.address, probe, plan, prepared.secrets):
            out(line)
    for line in wave_lines(make_waves([ctx.host.address for ctx in prepared.contexts],
                                      settings), settings):
        out(line)
    if target.ec2 is not None:
        out(f"dry-run: the hosts are the running instances of the {target.environment} EC2 "
            f"environment, looked up when the deploy runs; shown as one per slot" +
            (f"; variables from their `{target.ec2.var_tags}*` tags are shown with the "
             "environment's defaults" if target.ec2.var_tags else ""))
    out(f"dry-run: release {prepared.release.release_id} of {target.service.name} to "
        f"{len(prepared.contexts)} host(s); nothing was run, no connection made, no "
        "notification sent")
    return 0


def _wanted(prepared, ctx):
    """What the probe looks for: this release's artifact and venv."""
    return prepared.source.name, posixpath.basename(ctx.venv)


def chosen(project, target, options):
    """The target cut to `--limit`, and the rollout settings with the command line's."""
    if options.get("limit") is not None:
        target = limit(target, options["limit"], hosts_key(target, project.source))
    settings = with_options(target.rollout or RolloutSettings(), options.get("canary"),
                            options.get("batch"), options.get("max_fail"))
    return target, settings


def deploy(project, target, options, out=None):
    """`fab service deploy`: returns the exit code; raises FabshipError on bad input."""
    target, settings = chosen(project, target, options)
    prepared = prepare(project, target, options.get("skip_gates", False))
    if options.get("dry"):
        return dry_run(target, prepared, options, settings, out or print)
    release = prepared.release
    hosts = [ctx.host.address for ctx in prepared.contexts]
    with Session(project, target, release, prepared.secrets, options, out) as session:
        session.bus.emit("started", service=target.service.name,
                         environment=target.environment, commit=release.commit,
                         deployer=f"{release.deployer}@{release.origin}", hosts=hosts,
                         waves=make_waves(hosts, settings), settings=settings.shown(),
                         skip_gates=release.skip_gates)
        jobs = [HostJob(ctx.host, ctx.layout, _wanted(prepared, ctx))
                for ctx in prepared.contexts]
        run = session.fleet_run(jobs, settings, owner_record(release),
                                options.get("break_lock", False))
        facts = run.check()
        try:  # nothing switched yet: any error, even Ctrl-C, gives every lock back
            deps = None
            if not all(f.has_venv for f in facts):
                deps = artifacts.build_deps(prepared.specs, project.cache, log=session.say,
                                            hide=target.service.secret_env)
            session.check_interrupt("before any switch (while the venv was built)")
            plans = [build_host_plan(target.service, ctx, fact, (prepared.source, deps),
                                     release) for ctx, fact in zip(prepared.contexts, facts)]
        except BaseException:
            run.unlock(jobs)
            session.check_interrupt("before any switch (while the venv was built)")
            raise
        result = run.run(plans, facts, {"source": prepared.source.data,
                                        "deps": deps.data if deps else b""})
    return result.code
