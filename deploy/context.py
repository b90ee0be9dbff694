"""Everything known about each host before any connection: paths, variables, files.

Variables: service vars < environment vars < host vars < built-ins (host, service,
environment, release_id, release_dir, root, venv, commit) < secrets (by env var name).
"""
import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass

from . import launcher
from .commands import health, systemd
from .errors import ConfigError
from .layout import Layout
from .reader import port_number
from .render import Renderer, environment, render_string
from .secrets import holds_secret


SAFE_ROOT = re.compile(r"^/[A-Za-z0-9._/-]+$")
SOCKET, MAX_SOCKET_PATH = "supervisor.sock", 107  # sun_path holds 108 bytes with its NUL


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
    """A file written into the release; `shown` is the same render with secrets masked."""

    dest: str  # relative to the release directory
    text: str
    mode: int
    secret: bool
    shown: str


@dataclass(frozen=True)
class HostContext:
    """One host's paths, rendered files and health URL for this release."""

    host: object
    layout: Layout
    release_dir: str
    venv: str
    files: tuple[RenderedFile, ...]
    health_url: str


def _file(renderer, dest, source, mode, what):
    """A RenderedFile from templates/<source>; a text holding a secret gets mode 0600."""
    real, shown = renderer.render(source, what)
    secret = real != shown or holds_secret(real, renderer.secrets)
    return RenderedFile(dest, real, 0o600 if secret else (mode or 0o644), secret, shown)


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
    root = render_string(env, target.root_template, variables, f"{where}.root")
    if not SAFE_ROOT.fullmatch(root) or {"", ".", ".."} & set(root.split("/")[1:]):
        raise ConfigError(f"{where}.root: expected an absolute path of letters, digits and "
                          f"._/- (it goes into process manager configs), got {root!r}")
    if service.manager == "supervisor" and len(f"{root}/{SOCKET}".encode()) > MAX_SOCKET_PATH:
        raise ConfigError(f"{where}.root: {root!r} is too long: supervisord's socket "
                          f"{root}/{SOCKET} must fit in {MAX_SOCKET_PATH} bytes")
    port = port_number(render_string(env, service.health.port, variables,
                                     f"{where}.health.port"), f"{where}.health.port")
    variables["root"] = root
    variables.update(_process_vars(env, service, variables, port))
    return variables, Layout(root), health.url(service.health.url_host, port,
                                               service.health.path)


def _ipv4(text):
    """Whether text is a dotted IPv4 address (ipaddress takes no other IPv4 form)."""
    try:
        return isinstance(ipaddress.ip_address(text), ipaddress.IPv4Address)
    except ValueError:
        return False


def _process_vars(env, service, variables, port):
    """processes, zero_downtime, drain and listen (HOST:PORT of the socket supervisord
    holds: `listen` rendered, else the health check's host and port)."""
    processes, where = service.processes, f"services.{service.name}.listen"
    if not processes.zero_downtime:  # the program binds its own socket
        return {"processes": 1, "zero_downtime": False, "drain": processes.drain}
    listen = (render_string(env, processes.listen, variables, where)
              if processes.listen else f"{service.health.host}:{port}")
    host, _, number = listen.rpartition(":")
    if service.manager == "systemd" and not _ipv4(host):
        raise ConfigError(f"{where}: expected IPV4:PORT (systemd's ListenStream= takes an "
                          f"address, no host name; set `listen:` when health.host is not "
                          f"an IPv4 address), got {listen!r}")
    if not re.fullmatch(r"[A-Za-z0-9.-]+", host):
        raise ConfigError(f"{where}: expected HOST:PORT with an IPv4 address or a host name "
                          f"(supervisord's socket; set `listen:` when health.host is IPv6), "
                          f"got {listen!r}")
    return {"processes": processes.count, "zero_downtime": processes.zero_downtime,
            "drain": processes.drain, "listen": f"{host}:{port_number(number, where)}"}


def _launcher_files(renderer, service):
    """The launcher (.fabship/run, launch.py), the program's argv, and its secrets."""
    where = f"services.{service.name}.run"
    argv = json.dumps(launcher.command(renderer.env, service.run, renderer.plain,
                                       renderer.secrets, where), indent=1) + "\n"
    env, env_shown = launcher.environment_file(renderer.secrets)
    return [_file(renderer, ".fabship/run", "fabship/run.sh.j2", 0o755, where),
            RenderedFile(launcher.LAUNCH, launcher.LAUNCH_PY, 0o644, False,
                         launcher.LAUNCH_PY),
            RenderedFile(launcher.ARGV, argv, 0o644, False, argv),
            RenderedFile(launcher.ENV, env, 0o600, bool(renderer.secrets), env_shown)]


def _release_files(renderer, service):
    """The service's templates, the launcher, and the manager's config, rendered."""
    where = f"services.{service.name}"
    files = [_file(renderer, t.dest, t.src, t.mode, f"{where}.templates[{i}]")
             for i, t in enumerate(service.templates)]
    files += _launcher_files(renderer, service)
    if service.manager == "supervisor":
        files.append(_file(renderer, ".fabship/supervisord.conf",
                           "supervisor/supervisord.conf.j2", 0o644, f"{where}.manager"))
    else:
        for unit, template in systemd.unit_files(service.name, renderer.plain["root"],
                                                 service.processes.zero_downtime):
            files.append(_file(renderer, f".fabship/{unit}", template, 0o644,
                               f"{where}.manager"))
            systemd.refuse_secret(files[-1].secret, f"{where}.manager")
    return files


def build_context(env, target, host, release, shipped, *,  # pylint: disable=too-many-arguments
                  deploy_user=None):
    """The HostContext of one host; shipped = (artifact digest, deps key, secrets).

    `deploy_user` is the SSH user when the host names none (Fabric's `user`).
    """
    digest, deps_key, secrets = shipped
    service = target.service
    variables, layout, health_url = host_basics(
        env, target, host, {"commit": release.commit, "release_id": release.release_id})
    variables.update(release_dir=layout.release(release.release_id),
                     venv=layout.venv(deps_key))
    if service.manager == "systemd":
        variables["unit_user"] = systemd.unit_user(service.user, host.user or deploy_user,
                                                   f"services.{service.name}.user")
        variables.update(socket_unit=systemd.socket_name(service.name, layout.root),
                         instance_template=systemd.template_name(service.name, layout.root),
                         first_instance=systemd.instance_names(service.name, layout.root,
                                                               1)[0])
    files = _release_files(Renderer(env, variables, secrets), service)
    info = _release_json(variables, files, release, digest, deps_key)
    files.append(RenderedFile("release.json", info, 0o644, False, info))
    return HostContext(host, layout, variables["release_dir"], variables["venv"], tuple(files),
                       health_url)


def target_hosts(project, target):
    """[(host, layout, health URL)] of every host of the target (no secret needed)."""
    env = environment(project.root / "templates")
    return [(host, *host_basics(env, target, host)[1:]) for host in target.hosts]
