"""Glue between Fabric's context and the deploy: project, selection, errors -> exit codes."""
import sys
from pathlib import Path

from invoke.exceptions import Exit

from .config import parse_services, parse_ssh
from .deployment import Project
from .errors import FabshipError
from .inventory import resolve
from .target import select

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


def project_of(c):
    """The Project the tasks act on: the directory holding the fabfile and fabric.yaml."""
    config = c.config
    prefix = getattr(config, "_project_prefix", None)
    root = Path(prefix) if prefix else Path.cwd()
    source = config_source(config)
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


def run_command(c, action, inventory=True, **options):
    """Call action(project, target, options); turn FabshipError into message + exit code.

    With `inventory`, an EC2 environment's hosts are its running instances, looked up
    first (placeholders in a dry-run).
    """
    dry = bool(c.config.run.dry)
    try:
        project = project_of(c)
        target = target_of(c, project)
        if inventory:
            target = resolve(target, dry, project.source)
        code = action(project, target, {"dry": dry, **options})
    except FabshipError as exc:
        print(f"fabship: error: {exc}", file=sys.stderr)
        raise Exit(code=exc.exit_code) from None
    if code:
        raise Exit(code=code)
