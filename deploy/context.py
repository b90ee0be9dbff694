"""Everything known about each host before any connection: paths, variables, files.

Variables: service vars < environment vars < host vars < built-ins (host, service,
environment, release_id, release_dir, root, venv, commit) < secrets (by env var name).
"""
import hashlib
import json
from dataclasses import dataclass
from pathlib import PurePosixPath

from .commands import health, systemd
from .errors import ConfigError
from .layout import Layout
from .render import render_file, render_string
from .secrets import holds_secret


@dataclass(frozen=True)
class ReleaseInfo:  # pylint: disable=too-many-instance-attributes
    """The release being shipped, the same on every host."""

    release_id: str
    commit: str
    deployer: str
    origin: str  # the controller's hostname
    pid: int
    started: str
    skip_gates: bool
    gates: dict


@dataclass(frozen=True)
class RenderedFile:
    """A file written into the release."""

    dest: str  # relative to the release directory
    text: str
    mode: int
    secret: bool


@dataclass(frozen=True)
class HostContext:  # pylint: disable=too-many-instance-attributes
    """One host's paths, rendered files and health URL for this release."""

    host: object
    layout: Layout
    release_dir: str
    venv: str
    files: tuple[RenderedFile, ...]
    health_url: str
    variables: dict


def _file(spec_dest, text, mode, secrets):
    secret = holds_secret(text, secrets)
    return RenderedFile(spec_dest, text, 0o600 if secret else (mode or 0o644), secret)


def _release_json(ctx_vars, files, release, digest, deps_key):
    return json.dumps({
        "release": release.release_id, "commit": release.commit, "service": ctx_vars["service"],
        "host": ctx_vars["host"], "artifact": digest, "deps": deps_key,
        "templates": {f.dest: "sha256:" + hashlib.sha256(f.text.encode()).hexdigest()
                      for f in files if not f.secret},
        "secret_files": sorted(f.dest for f in files if f.secret),
        "deployer": release.deployer, "origin": release.origin, "started": release.started,
        "skip_gates": release.skip_gates, "gates": release.gates,
    }, indent=2) + "\n"


def host_basics(env, target, host, extra=None):
    """(variables, layout, health URL) of a host: what every command needs."""
    service = target.service
    where = f"services.{service.name}"
    variables = {**target.vars, **host.vars, "host": host.hostname, "service": service.name,
                 "environment": target.environment or "", **(extra or {})}
    root = render_string(env, service.root, variables, f"{where}.root")
    if not PurePosixPath(root).is_absolute():
        raise ConfigError(f"{where}.root: expected an absolute path, got {root!r}")
    port = render_string(env, service.health.port, variables, f"{where}.health.port")
    if not port.isdigit():
        raise ConfigError(f"{where}.health.port: expected a port number, got {port!r}")
    variables["root"] = root
    return variables, Layout(root), health.url(service.health.host, port, service.health.path)


def build_context(env, target, host, release, shipped):
    """The HostContext of one host; shipped = (artifact digest, deps key, secrets)."""
    digest, deps_key, secrets = shipped
    service = target.service
    where = f"services.{service.name}"
    variables, layout, health_url = host_basics(
        env, target, host, {"commit": release.commit, "release_id": release.release_id})
    variables.update(release_dir=layout.release(release.release_id),
                     venv=layout.venv(deps_key))
    variables.update({secret.name: secret.value for secret in secrets})
    files = [_file(t.dest, render_file(env, t.src, variables, f"{where}.templates[{i}]"),
                   t.mode, secrets) for i, t in enumerate(service.templates)]
    run_command = render_string(env, service.run, variables, f"{where}.run")
    files.append(_file(".fabship/run", render_file(
        env, "fabship/run.sh.j2", {**variables, "run_command": run_command},
        f"{where}.run"), 0o755, secrets))
    if service.manager == "supervisor":
        files.append(_file(".fabship/supervisord.conf", render_file(
            env, "supervisor/supervisord.conf.j2", variables, f"{where}.manager"), 0o644, ()))
    else:
        files.append(_file(f".fabship/{PurePosixPath(systemd.unit_path(service.name)).name}",
                           render_file(env, "systemd/service.j2", variables,
                                       f"{where}.manager"), 0o644, ()))
    files.append(RenderedFile("release.json", _release_json(variables, files, release, digest,
                                                            deps_key), 0o644, False))
    return HostContext(host, layout, variables["release_dir"], variables["venv"], tuple(files),
                       health_url, variables)
