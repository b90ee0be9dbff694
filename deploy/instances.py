"""EC2 instances as fabship sees them: parsed from DescribeInstances, addressed, tabled."""
import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from types import MappingProxyType

from .errors import ConfigError
from .hosts import parse_host

MANAGED = ("managed-by", "fabship")
TOKEN_PREFIX = "fabship-"  # every instance fabship launches carries such a ClientToken
SERVICE_TAG, ENV_TAG, SLOT_TAG = "fabship:service", "fabship:env", "fabship:slot"
LIVE = ("pending", "running")
TAG_VALUE = re.compile(r"[A-Za-z0-9._/:@+=,-]{1,256}")


@dataclass(frozen=True)
class Instance:  # pylint: disable=too-many-instance-attributes
    """One instance of a service's environment."""

    instance_id: str
    slot: int | None
    state: str
    launched: datetime | None = None
    private_ip: str | None = None
    public_ip: str | None = None
    public_dns: str | None = None
    tags: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    client_token: str | None = None
    reason: str | None = None  # why it is in its state (StateReason), if EC2 says

    @property
    def live(self):
        """Pending or running: it holds its slot."""
        return self.state in LIVE

    @property
    def owned(self):
        """Launched by fabship: tags can be copied or forged, the ClientToken cannot."""
        return bool(self.client_token and self.client_token.startswith(TOKEN_PREFIX)
                    and self.slot)


def ownership_tags(service, environment):
    """The tags that mark an instance as this service's, in this environment."""
    return {SERVICE_TAG: service, ENV_TAG: environment, MANAGED[0]: MANAGED[1]}


def describe_filters(service, environment):
    """DescribeInstances filters matching the ownership tags (any state; service None: any)."""
    return [{"Name": f"tag:{key}", "Values": [value]}
            for key, value in ownership_tags(service, environment).items() if value]


def _slot(text):
    return int(text) if isinstance(text, str) and text.isdigit() and int(text) > 0 else None


def parse_instances(reservations):
    """Instances from DescribeInstances' Reservations, ordered by slot, then launch time."""
    found = []
    for reservation in reservations or ():
        for raw in reservation.get("Instances", ()):
            tags = {tag["Key"]: tag.get("Value", "") for tag in raw.get("Tags", ())}
            found.append(Instance(
                instance_id=raw["InstanceId"], slot=_slot(tags.get(SLOT_TAG)),
                state=raw.get("State", {}).get("Name", "unknown"),
                launched=raw.get("LaunchTime"),
                private_ip=raw.get("PrivateIpAddress") or None,
                public_ip=raw.get("PublicIpAddress") or None,
                public_dns=raw.get("PublicDnsName") or None,
                tags=MappingProxyType(tags), client_token=raw.get("ClientToken") or None,
                reason=raw.get("StateReason", {}).get("Message") or None))
    return tuple(sorted(found, key=lambda i: (i.slot or 0, _launched_key(i), i.instance_id)))


def _launched_key(instance):
    return instance.launched.timestamp() if instance.launched else 0.0


def by_slot(instances):
    """{slot: [live instances fabship launched, oldest first]}."""
    slots = {}
    for instance in sorted(instances, key=lambda i: (_launched_key(i), i.instance_id)):
        if instance.live and instance.owned:
            slots.setdefault(instance.slot, []).append(instance)
    return slots


def foreign(instances):
    """Live instances that carry fabship's tags but were not launched by it: never touched."""
    return tuple(i for i in instances if i.live and not i.owned)


def owned_live(instances):
    """The pending or running instances fabship launched."""
    return [i for i in instances if i.live and i.owned]


def warn_foreign(instances, out):
    """Say which tagged instances fabship leaves alone."""
    strangers = foreign(instances)
    if strangers:
        out(f"ignored {len(strangers)} instance(s) that carry this environment's tags but "
            f"were not launched by fabship (no fabship ClientToken): "
            f"{', '.join(i.instance_id for i in strangers)}")


def address_of(instance, how):
    """The instance's address as `how` says (private_ip, public_ip, public_dns, tag:NAME)."""
    if how.startswith("tag:"):
        return instance.tags.get(how[4:]) or None
    return getattr(instance, how)


def host_of(instance, settings, where, declared=()):
    """The deploy Host of a running instance; ConfigError when it has no such address.

    `declared`: the variable names a `var_tags` tag may set (the environment's vars).
    """
    address = address_of(instance, settings.address)
    if not address:
        raise ConfigError(f"{where}.address: instance {instance.instance_id} (slot "
                          f"{instance.slot}) has no {settings.address}; choose another "
                          "address (public_ip, private_ip, public_dns or tag:NAME)")
    try:
        host = parse_host(address, {**tag_vars(instance, settings.var_tags, where, declared),
                                    "slot": instance.slot, "instance_id": instance.instance_id})
    except ValueError as exc:
        raise ConfigError(f"{where}.address: instance {instance.instance_id}: {exc}") from exc
    user = host.user or settings.user
    return type(host)(host.hostname, user, host.port, host.vars, instance.instance_id)


def tag_vars(instance, prefix, where, declared=()):
    """Host variables from the instance's tags named PREFIX<var> (when var_tags is set).

    Anyone allowed to tag instances writes these: only variables the environment
    declares (with defaults) may be set, and only to one plain word or path.
    """
    if not prefix:
        return {}
    found = {}
    for key, value in instance.tags.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            if name not in declared:
                raise ConfigError(f"{where}.var_tags: instance {instance.instance_id} has tag "
                                  f"{key!r}, but {name!r} is not a variable declared (with a "
                                  f"default) in the environment's vars")
            if not TAG_VALUE.fullmatch(value):
                raise ConfigError(f"{where}.var_tags: instance {instance.instance_id}: tag "
                                  f"{key!r} must be letters, digits and ._/:@+=,- (one line, "
                                  "at most 256)")
            whole = value.isascii() and value.isdigit() and (value == "0" or value[0] != "0")
            found[name] = int(value) if whole else value
    return found


def age(launched, now=None):
    """A short age: 42s, 7m, 3h, 2d."""
    if launched is None:
        return "-"
    seconds = max(0, int(((now or datetime.now(timezone.utc)) - launched).total_seconds()))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


TABLE_HEADER = ("slot", "instance", "state", "address", "age")


def table_rows(instances, how, now=None):
    """Rows of the instance table: slot, instance id, state, address, age."""
    return [(str(i.slot or "?"), i.instance_id, i.state, address_of(i, how) or "-",
             age(i.launched, now)) for i in instances]
