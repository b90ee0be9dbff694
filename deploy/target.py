"""Which service, environment and hosts one `fab service ...` invocation acts on."""
from dataclasses import dataclass, replace
from types import MappingProxyType

from .config import Service
from .errors import ConfigError
from .hosts import in_url, parse_host


@dataclass(frozen=True)
class Target:  # pylint: disable=too-many-instance-attributes
    """A service and the hosts to act on, with the environment's variables."""

    service: Service
    environment: str | None
    hosts: tuple
    vars: MappingProxyType  # service vars < environment vars (host vars come later)
    ec2: object = None  # Ec2Settings: the hosts are this environment's EC2 instances
    root: str | None = None  # the root template (the environment's, else the service's)
    rollout: object = None  # RolloutSettings: the environment's, else the service's
    notify: object = None  # NotifySettings (webhooks): the environment's, else the service's

    @property
    def root_template(self):
        """The service root on hosts, as a template."""
        return self.root or self.service.root


def _pick(kind, options, wanted, flag):
    if wanted is None:
        if len(options) == 1:
            return next(iter(options))
        listing = ", ".join(sorted(options)) or "none"
        raise ConfigError(f"{len(options)} {kind}s declared ({listing}): "
                          f"choose one with `fab service {flag} NAME ...`")
    if wanted not in options:
        raise ConfigError(f"unknown {kind} {wanted!r}; declared: "
                          f"{', '.join(sorted(options)) or 'none'}")
    return wanted


def select(services, name=None, env=None, hosts=None):
    """Resolve the selection; raise ConfigError naming what is ambiguous or unknown."""
    service = services[_pick("service", services, name, "--name")]
    if hosts:
        if env is not None:
            raise ConfigError("give either --env or --hosts, not both")
        try:  # spaces around the commas are fine; anything else is part of a host
            parsed = tuple(parse_host(h.strip(" ")) for h in hosts.split(",") if h.strip(" "))
        except ValueError as exc:
            raise ConfigError(f"--hosts: {exc}") from exc
        if not parsed:
            raise ConfigError(f"--hosts: no host in {hosts!r}; expected user@addr[:port],...")
        return Target(service, None, parsed, service.vars, rollout=service.rollout,
                      notify=service.notify)
    if not service.environments and env is None:
        raise ConfigError(f"service {service.name!r} declares no environments: "
                          "name hosts with `fab service --hosts user@addr[:port],... deploy`")
    chosen = service.environments[_pick("environment", service.environments, env, "--env")]
    merged = MappingProxyType({**service.vars, **chosen.vars})
    return Target(service, chosen.name, chosen.hosts, merged, chosen.ec2, chosen.root,
                  chosen.rollout, chosen.notify)


def limit(target, spec, where):
    """`--limit HOST[,HOST]`: only these of the target's hosts, in the target's order.

    `where` names the host list in errors. A host is named as the config lists it
    (`user@addr:port`), or by its address with or without the port and user, or by its
    EC2 instance id. ConfigError for a name that matches no host, or more than one.
    """
    names = [name.strip(" ") for name in spec.split(",") if name.strip(" ")] \
        if isinstance(spec, str) else []
    if not names:
        raise ConfigError(f"--limit: expected HOST[,HOST...], got {spec!r}")
    chosen = set()
    for name in names:
        matches = [i for i, host in enumerate(target.hosts) if name in _names(host)]
        if len(matches) != 1:
            known = ", ".join(host.address for host in target.hosts)
            raise ConfigError(f"--limit: {name!r} " + (
                "matches no host" if not matches else "matches several hosts") +
                f" of {where}; the hosts: {known}")
        chosen.add(matches[0])
    return replace(target, hosts=tuple(h for i, h in enumerate(target.hosts) if i in chosen))


def _names(host):
    """Every name --limit knows a host by."""
    bare = in_url(host.hostname)
    names = {host.address, host.hostname, bare}
    if host.port:
        names |= {f"{bare}:{host.port}", f"{host.hostname}:{host.port}"}
    if host.user:
        names |= {f"{host.user}@{bare}", f"{host.user}@{host.hostname}"}
    if host.instance_id:
        names.add(host.instance_id)
    return names


def hosts_key(target, source):
    """Where a target's hosts were declared, as errors name it."""
    if target.environment is None:
        return "--hosts"
    where = f"{source}: services.{target.service.name}.environments.{target.environment}"
    return f"{where}.ec2" if target.ec2 is not None else f"{where}.hosts"


def check_hosts(target, where, resolve):
    """Each host once, each with a user: ConfigError naming the entries otherwise.

    `resolve(host)` gives (user, address, port) as the connection will resolve them
    (Fabric's defaults, ~/.ssh/config). Two entries are one host when these are equal
    (`a`, `a:22`, `me@a` when the default user is `me`): a deploy would lock, switch and
    record it twice. A user of None means none is known (a uid with no passwd entry and
    no USER), so the entry must name its user.
    """
    seen = {}
    for index, host in enumerate(target.hosts):
        user, name, port = resolve(host)
        if user is None:
            raise ConfigError(
                f"{where}: {_entry(target, index)} names no user, and this machine's user "
                "is unknown (no passwd entry, no USER or LOGNAME); write it as "
                f"user@{host.address} or set `user:` in fabric.yaml")
        name = name.lower()
        first = seen.setdefault((user, name, port), index)
        if first != index:
            raise ConfigError(
                f"{where}: {_entry(target, first)} and {_entry(target, index)} are the same "
                f"host, {user}@{in_url(name)}:{port}; list each host once")


def _entry(target, index):
    host = target.hosts[index]
    if host.instance_id:
        return f"{host.address!r} ({host.instance_id})"
    return f"{host.address!r}" if target.environment is None else f"[{index}] {host.address!r}"
