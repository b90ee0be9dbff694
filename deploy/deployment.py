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
from .executor import run_plans
from .facts import UNKNOWN
from .gaterecord import check_gates
from .hostkeys import InstancePins
from .hosts import local_user
from .planner import build_host_plan, owner_record, probe_batch
from .printer import plan_lines, summary_table
from .render import environment
from .secrets import read_secrets
from .session import connected, give_back_locks, lock_and_probe
from .sourcetree import read_file, read_templates


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


def dry_run(target, prepared, break_lock, out):
    """Print every host's plan with unknown facts; connect to nothing."""
    for ctx in prepared.contexts:
        probe = probe_batch(ctx.layout, owner_record(prepared.release), break_lock,
                            _wanted(prepared, ctx))
        plan = build_host_plan(target.service, ctx, UNKNOWN, (prepared.source, None),
                               prepared.release)
        for line in plan_lines(ctx.host.address, probe, plan, prepared.secrets):
            out(line)
    if target.ec2 is not None:
        out(f"dry-run: the hosts are the running instances of the {target.environment} EC2 "
            f"environment, looked up when the deploy runs; shown as one per slot" +
            (f"; variables from their `{target.ec2.var_tags}*` tags are shown with the "
             "environment's defaults" if target.ec2.var_tags else ""))
    out(f"dry-run: release {prepared.release.release_id} of {target.service.name} to "
        f"{len(prepared.contexts)} host(s); nothing was run, no connection made")
    return 0


def _wanted(prepared, ctx):
    """What the probe looks for: this release's artifact and venv."""
    return prepared.source.name, posixpath.basename(ctx.venv)


def deploy(project, target, options, out=print):
    """`fab service deploy`: returns the exit code; raises FabshipError on bad input."""
    prepared = prepare(project, target, options.get("skip_gates", False))
    break_lock = options.get("break_lock", False)
    if options.get("dry"):
        return dry_run(target, prepared, break_lock, out)
    release_id = prepared.release.release_id
    out(f"deploying {target.service.name} release {release_id} to "
        f"{len(prepared.contexts)} host(s)")
    owner = owner_record(prepared.release)
    with connected(project, [ctx.host for ctx in prepared.contexts], out) as hosts:
        pairs = list(zip(prepared.contexts, hosts))
        facts = lock_and_probe(
            [(ctx.layout, host, _wanted(prepared, ctx)) for ctx, host in pairs], owner,
            break_lock)
        deps = None
        if not all(f.has_venv for f in facts):
            try:
                deps = artifacts.build_deps(prepared.specs, project.cache, log=out,
                                            hide=target.service.secret_env)
            except BaseException:  # even Ctrl-C: never leave the hosts locked
                give_back_locks([(ctx.layout, host) for ctx, host in pairs], owner)
                raise
        jobs = [(host, build_host_plan(target.service, ctx, fact, (prepared.source, deps),
                                       prepared.release), release_id)
                for (ctx, host), fact in zip(pairs, facts)]
        results = run_plans(jobs, {"source": prepared.source.data,
                                   "deps": deps.data if deps else b""}, out, prepared.secrets)
    return report(results, [ctx.host.address for ctx in prepared.contexts], out)


def report(results, addresses, out, done="deployed"):
    """The summary table; exit 0 only when every host ended `done`."""
    rows, failed = [], []
    for address, (_, outcome, error) in zip(addresses, results):
        if error:
            rows.append((address, "error", "-", "-", str(error)))
            failed.append(address)
            continue
        rows.append((address, outcome.status, outcome.release, f"{outcome.seconds:.1f}",
                     f"{outcome.trips} round trips" + (f"; {outcome.detail}"
                                                       if outcome.detail else "")))
        if outcome.status != done:
            failed.append(address)
    out("")
    out(summary_table(rows, ("host", "result", "release", "seconds", "detail")))
    if failed:
        out(f"FAILED on {len(failed)} of {len(rows)} host(s): {', '.join(failed)}")
        return 1
    out(f"{done} on {len(rows)} host(s)")
    return 0
