"""fabric.yaml `services:` -> frozen, validated objects. No network, no Jinja2 here.

Every error is a ConfigError naming the file and the key path, e.g.
`fabric.yaml: services.hello.health.timeout: expected a number, got 'soon'`.
"""
import math
import re
from dataclasses import dataclass
from types import MappingProxyType

from .commands import systemd
from .ec2config import Ec2Settings, parse_ec2
from .errors import ConfigError
from .hosts import Host, address, in_url
from .reader import ENV_NAME, NAME, Reader, key_path
from .notifyconfig import NotifySettings, parse_notify
from .processconfig import KEYS as PROCESS_KEYS, ProcessSettings, parse_processes
from .rolloutconfig import RolloutSettings, parse_rollout

MANAGERS = ("supervisor", "systemd")
RESERVED = ("release.json", ".fabship", "shared")  # fabship's own paths in a release
URL_PATH = re.compile(r"/[!-~]*")  # printable ASCII, no spaces: percent-encode the rest
MAX_HEALTH_TIMEOUT = 3600
BOOTS = ("cron", "none")


@dataclass(frozen=True)
class TemplateSpec:
    """One template: `src` under templates/, rendered to `dest` in the release."""

    src: str
    dest: str
    mode: int | None  # None: 0644, or 0600 when the text holds a secret


@dataclass(frozen=True)
class Health:
    """How the host checks the new release: GET http://host:port/path until it answers."""

    path: str
    port: str  # a template, e.g. "{{ port }}"; reader.port_number checks its render
    host: str  # a host name or IP address; IPv6 without brackets
    timeout: float
    expect: tuple = ("release",)  # ("release",), ("status",) or ("field", path, value)

    @property
    def url_host(self):
        """The host as the health URL needs it: `[::1]` for IPv6."""
        return in_url(self.host)


@dataclass(frozen=True)
class Environment:
    """A named set of hosts (listed, or the EC2 instances of `ec2`) with its own variables."""

    name: str
    hosts: tuple[Host, ...]
    vars: MappingProxyType
    ec2: Ec2Settings | None = None
    root: str | None = None  # overrides the service's root (a template)
    rollout: RolloutSettings = RolloutSettings()  # the service's, with this env's keys
    notify: NotifySettings | None = None  # the environment's, else the service's


@dataclass(frozen=True)
class Service:  # pylint: disable=too-many-instance-attributes
    """One deployable service, as declared under `services:`."""

    name: str
    root: str  # a template; default /srv/<name>
    source: str
    requirements: str | None
    python: str
    run: str
    manager: str
    templates: tuple[TemplateSpec, ...]
    health: Health
    keep_releases: int
    vars: MappingProxyType
    secret_env: tuple[str, ...]
    environments: MappingProxyType
    user: str | None = None  # systemd: who the unit runs as (None: the SSH user, not root)
    boot: str = "cron"  # supervisor: how supervisord comes back after a reboot (or none)
    rollout: RolloutSettings = RolloutSettings()
    notify: NotifySettings | None = None  # webhooks for deploy events
    processes: ProcessSettings = ProcessSettings()


SERVICE_KEYS = ("root", "source", "requirements", "python", "run", "manager", "templates",
                "health", "keep_releases", "vars", "secret_env", "environments", "user",
                "boot", "rollout", "notify", *PROCESS_KEYS)


def parse_environment(reader, name, raw, path, service):  # pylint: disable=R0913,R0917
    """One entry of `environments:`; `service` = (rollout, notify) of the service: its
    `rollout:` keys override the service's; its `notify:` replaces the service's."""
    parent = path[:-len(f".{name}")]  # path ends with the name, which may hold anything
    reader.text(name, key_path(parent, name), NAME, "an environment name (a-z, 0-9, _ or -)")
    reader.mapping(raw, path, ("hosts", "ec2", "vars", "root", "rollout", "notify"))
    root = raw.get("root")
    common = {"name": name, "vars": reader.variables(raw.get("vars", {}), f"{path}.vars"),
              "root": None if root is None else reader.text(root, f"{path}.root"),
              "rollout": parse_rollout(raw.get("rollout"), f"{reader.source}: {path}.rollout",
                                       service[0]),
              "notify": parse_notify(reader, raw["notify"], f"{path}.notify")
              if "notify" in raw else service[1]}
    if "ec2" in raw:
        if "hosts" in raw:
            raise ConfigError(f"{reader.source}: {path}: give either hosts or ec2, not both")
        return Environment(hosts=(), ec2=parse_ec2(reader, raw["ec2"], f"{path}.ec2"),
                           **common)
    if "hosts" not in raw:
        reader.fail(path, "a list of `hosts:` or an `ec2:` block", raw)
    hosts = reader.listing(raw.get("hosts"), f"{path}.hosts")
    if not hosts:
        reader.fail(f"{path}.hosts", "at least one host (or an `ec2:` block)", hosts)
    return Environment(
        hosts=tuple(reader.host(h, f"{path}.hosts[{i}]") for i, h in enumerate(hosts)),
        **common)


def parse_template(reader, raw, path):
    """One entry of `templates:`."""
    reader.mapping(raw, path, ("src", "dest", "mode"))
    mode = raw.get("mode")
    if mode is not None:
        if not isinstance(mode, str) or not re.fullmatch(r"0?[0-7]{3}", mode):
            reader.fail(f"{path}.mode", "an octal mode as a string, e.g. '0640'", mode)
        mode = int(mode, 8)
    dest = relative_path(reader, raw.get("dest"), f"{path}.dest", "the release")
    if dest == "release.json" or dest.split("/")[0] in RESERVED[1:]:
        reader.fail(f"{path}.dest", "a path that is not fabship's own (release.json, "
                    ".fabship/ and shared/ are reserved)", dest)
    return TemplateSpec(relative_path(reader, raw.get("src"), f"{path}.src", "templates/"),
                        dest, mode)


def relative_path(reader, value, path, inside):
    """A relative path that stays inside `inside`: no `..`, `.` or empty parts, no `\\`."""
    text = reader.text(value, path)
    if "\\" in text or {"", ".", ".."} & set(text.split("/")):
        reader.fail(path, f"a path inside {inside}", text)
    return text


def check_dests(reader, templates, path):
    """Each template writes its own file: no dest twice, none inside another's file."""
    for index, spec in enumerate(templates):
        for before, other in enumerate(templates[:index]):
            if spec.dest == other.dest or spec.dest.startswith(other.dest + "/") \
                    or other.dest.startswith(spec.dest + "/"):
                reader.fail(f"{path}[{index}].dest", f"a path apart from templates[{before}]"
                            f"'s dest {other.dest!r}", spec.dest)


def parse_health(reader, raw, path):
    """The `health:` mapping."""
    reader.mapping(raw, path, ("path", "port", "host", "timeout", "expect"))
    port = raw.get("port", "{{ port }}")
    if isinstance(port, bool) or not isinstance(port, (int, str)):
        reader.fail(f"{path}.port", "a port number or template", port)
    if isinstance(port, str) and ("{{" in port or "{%" in port):
        reader.text(port, f"{path}.port")
    else:  # a literal is checked now; a template's render, per host (reader.port_number)
        port = reader.port(port, f"{path}.port")
    host = reader.text(raw.get("host", "127.0.0.1"), f"{path}.host")
    try:
        host = address(host)
    except ValueError:
        reader.fail(f"{path}.host", "a host name or IP address (letters, digits, . and -, "
                    "or an IP literal)", host)
    return Health(
        path=reader.text(raw.get("path", "/health"), f"{path}.path", URL_PATH,
                         "a URL path starting with /"),  # ASCII: percent-encode the rest
        port=str(port), host=host,
        timeout=reader.number(raw.get("timeout", 30), f"{path}.timeout", 1,
                              high=MAX_HEALTH_TIMEOUT),
        expect=parse_expect(reader, raw.get("expect", "release"), f"{path}.expect"),
    )


FIELD_PATH = re.compile(r"[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)*")


def parse_expect(reader, raw, path):
    """`health.expect`: release, status, or {field: a.b, value: V} (V a string, number,
    boolean or null, compared with the JSON value at that path)."""
    if raw in ("release", "status"):
        return (raw,)
    if not isinstance(raw, dict):
        reader.fail(path, "release, status or {field: PATH, value: VALUE}", raw)
    reader.mapping(raw, path, ("field", "value"))
    field = reader.text(raw.get("field"), f"{path}.field", FIELD_PATH,
                        "a field path: names joined by dots (status, data.state)")
    if "value" not in raw:
        reader.fail(f"{path}.value", "the value the field must hold", None)
    value = raw["value"]
    if value is not None and not isinstance(value, (str, int, float, bool)) or (
            isinstance(value, float) and not math.isfinite(value)):
        reader.fail(f"{path}.value", "a string, number, boolean or null", value)
    return ("field", field, value)


def parse_service(reader, name, raw):
    """One entry of `services:`."""
    path = f"services.{name}"
    reader.text(name, "services", NAME,
                "service names made of a-z, 0-9, _ and - (starting with a letter)")
    reader.mapping(raw, path, SERVICE_KEYS)
    environments = reader.mapping(raw.get("environments", {}), f"{path}.environments")
    templates = tuple(parse_template(reader, t, f"{path}.templates[{i}]") for i, t in
                      enumerate(reader.listing(raw.get("templates", []), f"{path}.templates")))
    check_dests(reader, templates, f"{path}.templates")
    requirements = raw.get("requirements")
    manager = raw.get("manager", "supervisor")
    if manager not in MANAGERS:
        reader.fail(f"{path}.manager", " or ".join(MANAGERS), manager)
    user, boot = _manager_keys(reader, raw, path, manager)
    rollout = parse_rollout(raw.get("rollout"), f"{reader.source}: {path}.rollout")
    notify = parse_notify(reader, raw.get("notify"), f"{path}.notify")
    return Service(
        name=name,
        root=reader.text(raw.get("root", f"/srv/{name}"), f"{path}.root"),
        source=reader.text(raw.get("source"), f"{path}.source"),
        requirements=None if requirements is None else reader.text(
            requirements, f"{path}.requirements"),
        python=reader.text(raw.get("python", "python3"), f"{path}.python"),
        run=reader.text(raw.get("run"), f"{path}.run", multiline=True),
        manager=manager,
        templates=templates,
        health=parse_health(reader, raw.get("health", {}), f"{path}.health"),
        keep_releases=reader.number(raw.get("keep_releases", 5), f"{path}.keep_releases", 2,
                                    int),
        vars=reader.variables(raw.get("vars", {}), f"{path}.vars"),
        secret_env=tuple(reader.text(v, f"{path}.secret_env[{i}]", ENV_NAME,
                                     "an environment variable name (A-Z, 0-9, _)")
                         for i, v in enumerate(reader.listing(raw.get("secret_env", []),
                                                              f"{path}.secret_env"))),
        environments=MappingProxyType({
            env: parse_environment(reader, env, env_raw, f"{path}.environments.{env}",
                                   (rollout, notify))
            for env, env_raw in environments.items()}),
        user=user,
        boot=boot,
        rollout=rollout,
        notify=notify,
        processes=parse_processes(reader, raw, path),
    )


def _manager_keys(reader, raw, path, manager):
    """(user, boot): `user` only under systemd, `boot` only under supervisor."""
    if manager == "supervisor" and "user" in raw:
        raise ConfigError(f"{reader.source}: {path}.user: only with `manager: systemd` "
                          "(supervisord runs the program as the SSH user)")
    if manager == "systemd" and "boot" in raw:
        raise ConfigError(f"{reader.source}: {path}.boot: only with `manager: supervisor` "
                          "(the systemd unit is enabled, so it starts at boot)")
    user = raw.get("user")
    if user is not None:
        reader.text(user, f"{path}.user", systemd.USER,
                    "a user name (a letter or _, then letters, digits, _ or -, at most 31)")
    boot = raw.get("boot", "cron")
    if boot not in BOOTS:
        reader.fail(f"{path}.boot", " or ".join(BOOTS), boot)
    return user, boot


def parse_services(raw, source):
    """The whole `services:` mapping -> {name: Service}."""
    reader = Reader(source)
    if raw is None:
        raise ConfigError(f"{source}: no `services:` declared; see README, Configuration")
    reader.mapping(raw, "services")
    if not raw:
        reader.fail("services", "at least one service", raw)
    return {name: parse_service(reader, name, body) for name, body in raw.items()}


@dataclass(frozen=True)
class SshSettings:
    """Top-level `ssh:`: how host keys are checked, and how long a host may take."""

    host_key_policy: str = "strict"
    known_hosts: str = ".pins/known_hosts"  # the project's known_hosts, relative to it
    instance_known_hosts: str = ".pins/instance_known_hosts"  # EC2 pins, by instance id
    command_timeout: float = 900.0  # seconds one round trip may take (a venv build too)
    keepalive: float = 15.0  # seconds of silence before an SSH keepalive
    step_timeout: float = 600.0  # seconds one remote step may run before it is stopped


SSH_KEYS = ("host_key_policy", "known_hosts", "instance_known_hosts", "command_timeout",
            "keepalive", "step_timeout")


def parse_ssh(raw, source):
    """The top-level `ssh:` mapping (all keys optional)."""
    reader, default = Reader(source), SshSettings()
    reader.mapping(raw, "ssh", SSH_KEYS)
    policy = raw.get("host_key_policy", default.host_key_policy)
    if policy not in ("strict", "accept-new"):
        reader.fail("ssh.host_key_policy", "strict or accept-new", policy)
    return SshSettings(
        policy,
        *(_pin_path(reader, raw.get(key, getattr(default, key)), f"ssh.{key}")
          for key in ("known_hosts", "instance_known_hosts")),
        *(reader.number(raw.get(key, getattr(default, key)), f"ssh.{key}", 1)
          for key in ("command_timeout", "keepalive", "step_timeout")))


def _pin_path(reader, value, path):
    """A pin file's path: relative, inside the project (no `..`, `.` or empty parts)."""
    reader.text(value, path)
    if value.startswith("/") or any(part in ("", ".", "..") for part in value.split("/")):
        reader.fail(path, "a relative path inside the project (no leading /, no `..`, `.` "
                    "or empty parts)", value)
    return value
