"""Desired EC2 state vs what exists -> inert Ec2Call steps. Pure: no boto3, no network.

A launch plan has three parts, run in order: `prepare` (key pair, security group and
its rules), `launch` (one RunInstances per missing slot, each with a ClientToken) and
`terminate` (duplicates of a slot, and surplus slots only when allowed).
"""
import hashlib
import json
from dataclasses import dataclass, field

from .ec2config import Ec2Settings
from .instances import SLOT_TAG, TOKEN_PREFIX, by_slot, ownership_tags
from .steps import Ec2Call, Ref

GROUP_REF = Ref("security group id")
AMI_REF = Ref("image id from SSM")


@dataclass(frozen=True)
class LaunchFacts:  # pylint: disable=too-many-instance-attributes
    """What the read-only calls found. `known` is False in a dry-run."""

    known: bool = True
    instances: tuple = ()
    ami: str | None = None
    vpc: str | None = None
    group_id: str | None = None
    group_rules: frozenset = frozenset()  # {(protocol, port, cidr)}
    key_exists: bool = False
    group_owned: bool = True  # the existing group carries fabship's tags


@dataclass(frozen=True)
class LaunchSpec:
    """What the environment asks for: the settings plus the rendered user data."""

    service: str
    environment: str
    settings: Ec2Settings
    user_data: str | None = None
    public_key: str | None = None  # the public key's text, when one is configured


@dataclass(frozen=True)
class LaunchPlan:
    """The calls of one launch, and the surplus instances kept without --allow-terminate."""

    prepare: tuple = ()
    launch: tuple = ()
    terminate: tuple = ()
    kept_surplus: tuple = field(default_factory=tuple)

    @property
    def calls(self):
        """Every call, in order."""
        return (*self.prepare, *self.launch, *self.terminate)


def settings_key(spec):
    """A digest of everything a launch sends, so changed settings get fresh tokens."""
    s = spec.settings
    data = [s.instance_type, s.ami, s.key_name, s.subnet, s.iam_instance_profile,
            s.security_group.name if s.security_group else None, sorted(s.tags.items()),
            spec.user_data]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()


def client_token(spec, slot, replaced=()):
    """The slot's ClientToken: a retried call is the same call; a replaced slot is not.

    `replaced` are the ids of the slot's terminated instances: each makes a fresh token.
    """
    text = json.dumps([spec.service, spec.environment, slot, settings_key(spec),
                       sorted(replaced)])
    return TOKEN_PREFIX + hashlib.sha256(text.encode()).hexdigest()[:48]


def parse_rules(permissions):
    """{(protocol, port, cidr)} of a group's IpPermissions (single-port rules only)."""
    rules = set()
    for perm in permissions or ():
        protocol, low, high = perm.get("IpProtocol"), perm.get("FromPort"), perm.get("ToPort")
        if protocol == "-1":  # all traffic: no ports
            low = high = None
        ranges = [r.get("CidrIp") for r in perm.get("IpRanges", ())]
        ranges += [r.get("CidrIpv6") for r in perm.get("Ipv6Ranges", ())]
        for cidr in ranges:
            rules.add((protocol, low if low == high else (low, high), cidr))
        for pair in perm.get("UserIdGroupPairs", ()):
            rules.add((protocol, low if low == high else (low, high), pair.get("GroupId")))
    return frozenset(rules)


def _permission(rule):
    protocol, port, cidr = rule
    low, high = port if isinstance(port, tuple) else (port, port)
    perm = {"IpProtocol": protocol}
    if low is not None:
        perm.update(FromPort=low, ToPort=high)
    if cidr and cidr.startswith("sg-"):
        perm["UserIdGroupPairs"] = [{"GroupId": cidr}]
    elif cidr and ":" in cidr:
        perm["Ipv6Ranges"] = [{"CidrIpv6": cidr}]
    else:
        perm["IpRanges"] = [{"CidrIp": cidr}]
    return perm


def _group_calls(spec, facts):
    group = spec.settings.security_group
    if group is None:
        return ()
    wanted = frozenset((r.protocol, r.port, r.cidr) for r in group.ingress)
    exists = f"the security group {group.name!r} exists"
    calls = []
    if not facts.known or facts.group_id is None:
        calls.append(Ec2Call("ec2", "CreateSecurityGroup", (
            ("GroupName", group.name),
            ("Description", f"fabship: {spec.service} {spec.environment}"),
            *((("VpcId", facts.vpc),) if facts.vpc else ()),
            ("TagSpecifications", [{"ResourceType": "security-group", "Tags": _tags(
                ownership_tags(spec.service, spec.environment))}])),
            f"create security group {group.name}",
            unless=None if facts.known else exists, saves=((GROUP_REF.name, "GroupId"),)))
    group_id = facts.group_id or GROUP_REF
    have = facts.group_rules if facts.known else frozenset()
    add = sorted(wanted - have, key=str)
    drop = sorted(have - wanted, key=str)
    if add:
        calls.append(Ec2Call("ec2", "AuthorizeSecurityGroupIngress", (
            ("GroupId", group_id), ("IpPermissions", [_permission(r) for r in add])),
            "allow " + ", ".join(f"{p}/{port} from {cidr}" for p, port, cidr in add),
            unless=None if facts.known else "the group already has these rules"))
    if drop:
        calls.append(Ec2Call("ec2", "RevokeSecurityGroupIngress", (
            ("GroupId", group_id), ("IpPermissions", [_permission(r) for r in drop])),
            "revoke " + ", ".join(f"{p}/{port} from {cidr}" for p, port, cidr in drop)))
    if not facts.known:
        calls.append(Ec2Call("ec2", "RevokeSecurityGroupIngress", (
            ("GroupId", group_id), ("IpPermissions", "<rules the group has beyond these>")),
            "revoke ingress rules that are not in the config",
            unless="the group has no other rules"))
    return tuple(calls)


def _key_calls(spec, facts):
    s = spec.settings
    if s.key_name is None or (facts.known and facts.key_exists):
        return ()
    material = spec.public_key if spec.public_key is not None else (
        f"<{s.public_key} (not readable: needed only if the key pair is missing)>"
        if s.public_key else "<no public_key configured>")
    return (Ec2Call("ec2", "ImportKeyPair", (
        ("KeyName", s.key_name), ("PublicKeyMaterial", material),
        ("TagSpecifications", [{"ResourceType": "key-pair", "Tags": _tags(
            ownership_tags(spec.service, spec.environment))}])),
        f"import key pair {s.key_name}" + (f" from {s.public_key}" if s.public_key else ""),
        unless=None if facts.known else f"the key pair {s.key_name!r} exists"),)


def _tags(mapping):
    return [{"Key": key, "Value": str(value)} for key, value in mapping.items()]


def instance_tags(spec, slot):
    """Every tag a slot's instance carries: Name, the user's tags, fabship's own."""
    return {"Name": f"{spec.service}-{spec.environment}-{slot}", **spec.settings.tags,
            **ownership_tags(spec.service, spec.environment), SLOT_TAG: str(slot)}


def run_call(spec, slot, facts, replaced=()):
    """RunInstances for one slot."""
    s = spec.settings
    ami = facts.ami or (AMI_REF if s.ssm_parameter else s.ami)
    tags = _tags(instance_tags(spec, slot))
    params = [("ImageId", ami), ("InstanceType", s.instance_type), ("MinCount", 1),
              ("MaxCount", 1), ("ClientToken", client_token(spec, slot, replaced))]
    if s.key_name:
        params.append(("KeyName", s.key_name))
    if s.security_group:
        params.append(("SecurityGroupIds", [facts.group_id or GROUP_REF]))
    if s.subnet:
        params.append(("SubnetId", s.subnet))
    if s.iam_instance_profile:
        kind = "Arn" if s.iam_instance_profile.startswith("arn:") else "Name"
        params.append(("IamInstanceProfile", {kind: s.iam_instance_profile}))
    if spec.user_data is not None:
        params.append(("UserData", spec.user_data))
    params.append(("TagSpecifications", [{"ResourceType": "instance", "Tags": tags},
                                         {"ResourceType": "volume", "Tags": tags}]))
    return Ec2Call("ec2", "RunInstances", tuple(params), f"launch slot {slot}",
                   unless=None if facts.known else f"slot {slot} has a pending or running "
                   "instance")


def replaced_ids(instances, slot):
    """Ids of the slot's instances that no longer hold it (terminated, stopped)."""
    return tuple(i.instance_id for i in instances
                 if i.slot == slot and i.owned and not i.live)


def terminate_call(ids, label):
    """TerminateInstances for these ids."""
    return Ec2Call("ec2", "TerminateInstances", (("InstanceIds", list(ids)),), label)


def duplicates(instances):
    """Live instances beyond the first (oldest) of each slot: left by token-less retries."""
    return tuple(extra for group in by_slot(instances).values() for extra in group[1:])


def plan_launch(spec, facts, allow_terminate=False):
    """The LaunchPlan that brings the environment to `count` live instances."""
    count = spec.settings.count
    live = by_slot(facts.instances)
    if facts.known:
        missing = [slot for slot in range(1, count + 1) if slot not in live]
        launch = tuple(run_call(spec, slot, facts, replaced_ids(facts.instances, slot))
                       for slot in missing)
    else:
        launch = tuple(run_call(spec, slot, facts) for slot in range(1, count + 1))
    surplus = tuple(group[0] for slot, group in sorted(live.items(), reverse=True)
                    if slot > count)
    terminate = []
    extra = duplicates(facts.instances)
    if extra:
        terminate.append(terminate_call([i.instance_id for i in extra],
                                        "terminate duplicate instances of a slot"))
    if surplus and allow_terminate:
        terminate.append(terminate_call(
            [i.instance_id for i in surplus],
            f"terminate surplus slots {', '.join(str(i.slot) for i in surplus)} "
            "(highest first)"))
    if not facts.known:
        terminate.append(Ec2Call("ec2", "TerminateInstances", (
            ("InstanceIds", f"<instances of slots above {count}, highest first>"),),
            f"terminate surplus slots above {count}",
            unless="no slot above count exists, or --allow-terminate is not given"))
    return LaunchPlan(_key_calls(spec, facts) + _group_calls(spec, facts), launch,
                      tuple(terminate), () if allow_terminate else surplus)
