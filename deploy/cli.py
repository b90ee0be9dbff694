"""Glue between Fabric's context and the deploy: project, selection, errors -> exit codes."""
import math
import sys
from pathlib import Path

from invoke.exceptions import Exit

from .config import parse_services, parse_ssh
from .deployment import Project
from .errors import ConfigError, FabshipError
from .fabconfig import StrictConfig, guard_fab_config, short
from .hosts import USER
from .inventory import resolve
from .secrets import known_secrets, mask
from .target import check_hosts, hosts_key, select

__all__ = ["guard_fab_config", "remember_selection", "run_command"]
SELECTION_KEY = "fabship_selection"


def _plain(value):
    """Invoke's DataProxy (and nested ones) -> plain dicts and lists."""
    if hasattr(value, "_config"):
        return {key: _plain(value[key]) for key in value}
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    return value


def config_source(config):
    """The file `services:` came from: the -f runtime file, else the project's fabric.yaml."""
    runtime = getattr(config, "_runtime", {}) or {}
    if "services" in runtime and getattr(config, "_runtime_path", None):
        return str(config._runtime_path)  # pylint: disable=protected-access
    path = getattr(config, "_project_path", None)
    return Path(path).name if path else "fabric.yaml"


def check_fabric_settings(config):
    """The Fabric settings a connection uses: `user`, `port`, `timeouts.connect`."""
    user, port = config.get("user"), config.get("port")
    timeout = _plain(config.get("timeouts", {})).get("connect")
    problem = None
    if user is not None and not (isinstance(user, str) and USER.fullmatch(user)):
        problem = ("user",), "a user name (letters, digits, _.-)", user
    elif isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        problem = ("port",), "a port number 1-65535", port
    elif timeout is not None and (isinstance(timeout, bool)
                                  or not isinstance(timeout, (int, float))
                                  or not math.isfinite(timeout) or timeout <= 0):
        problem = ("timeouts", "connect"), "a number of seconds > 0", timeout
    if problem:
        keys, expected, value = problem
        origin = config.origin(*keys) if isinstance(config, StrictConfig) else "Fabric's config"
        raise ConfigError(f"{origin}: {'.'.join(keys)}: expected {expected}, got "
                          f"{short(value)}")


def project_of(c):
    """The Project the tasks act on: the directory holding the fabfile and fabric.yaml."""
    config = c.config
    prefix = getattr(config, "_project_prefix", None)
    root = Path(prefix) if prefix else Path.cwd()
    source = config_source(config)
    check_fabric_settings(config)
    ssh = parse_ssh(_plain(config.get("ssh", {})), source)
    return Project(root.resolve(), source, ssh, config)


def remember_selection(c, name, env, hosts):
    """`fab service ...`: keep the choice for the next task of this invocation."""
    c.config[SELECTION_KEY] = {"name": name, "env": env, "hosts": hosts}


def target_of(c, project):
    """The service, environment and hosts chosen (or the defaults)."""
    services = parse_services(_plain(c.config.get("services")), project.source)
    chosen = _plain(c.config.get(SELECTION_KEY, {})) or {}
    return select(services, chosen.get("name"), chosen.get("env"), chosen.get("hosts"))


def connection_of(config):
    """host -> (user, address, port) as Fabric's Connection resolves them (~/.ssh/config)."""
    ssh_config = getattr(config, "base_ssh_config", None)

    def resolve_host(host):
        try:
            found = ssh_config.lookup(host.hostname) if ssh_config is not None else {}
        except (KeyError, OSError):  # paramiko asks getpass, which may find no user
            found = {}
        port = host.port or found.get("port", config.port)
        return (host.user or found.get("user", config.user),
                found.get("hostname", host.hostname), str(port))
    return resolve_host


def run_command(c, action, inventory=True, **options):
    """Call action(project, target, options); turn FabshipError into message + exit code.

    With `inventory`, an EC2 environment's hosts are its running instances, looked up
    first (placeholders in a dry-run). Every host is checked (listed once, with a user)
    before anything connects.
    """
    dry = bool(c.config.run.dry)
    secrets = ()
    try:
        project = project_of(c)
        target = target_of(c, project)
        secrets = known_secrets(project, target.service)
        if inventory:
            target = resolve(target, dry, project.source)
        check_hosts(target, hosts_key(target, project.source), connection_of(c.config))
        code = action(project, target, {"dry": dry, **options})
    except FabshipError as exc:  # its text may quote a host's output: masked
        print(f"fabship: error: {mask(str(exc), secrets)}", file=sys.stderr)
        raise Exit(code=exc.exit_code) from None
    if code:
        raise Exit(code=code)
