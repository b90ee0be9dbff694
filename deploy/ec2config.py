"""An environment's `ec2:` block -> frozen Ec2Settings. No network, no Jinja2 here."""
import ipaddress
import re
from dataclasses import dataclass, field
from types import MappingProxyType

from .errors import ConfigError

AMI_ID = re.compile(r"^ami-[0-9a-f]{8,17}$")
SSM_AMI = re.compile(r"^resolve:ssm:(/[A-Za-z0-9_.\-/]+)$")
SUBNET = re.compile(r"^subnet-[0-9a-f]{8,17}$")
REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d$")
INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[a-z0-9]+$")
TAG_KEY = re.compile(r"^[A-Za-z0-9 _.:/=+@-]{1,128}$")
GROUP_NAME = re.compile(r"^[A-Za-z0-9 ._:/()#,@\[\]+=&;{}!$*-]{1,255}$")
ADDRESSES = ("private_ip", "public_ip", "public_dns")
RESERVED_TAGS = ("fabship:", "aws:", "managed-by")
EC2_KEYS = ("region", "count", "instance_type", "ami", "key_name", "public_key", "subnet",
            "security_group", "iam_instance_profile", "tags", "user_data", "user", "address",
            "var_tags", "max_attempts", "wait_timeout")


@dataclass(frozen=True)
class IngressRule:
    """One allowed inbound port (tcp or udp) from one CIDR block."""

    port: int
    cidr: str
    protocol: str = "tcp"


@dataclass(frozen=True)
class SecurityGroup:
    """The group fabship creates or reconciles: its name and exact ingress rules."""

    name: str
    ingress: tuple[IngressRule, ...]


@dataclass(frozen=True)
class Ec2Settings:  # pylint: disable=too-many-instance-attributes
    """How an environment's hosts are provisioned on EC2 and addressed for SSH."""

    count: int
    instance_type: str
    ami: str  # ami-... or resolve:ssm:/parameter/name
    region: str | None = None  # None: boto3's own chain (AWS_REGION, profile, ...)
    key_name: str | None = None
    public_key: str | None = None
    subnet: str | None = None
    security_group: SecurityGroup | None = None
    iam_instance_profile: str | None = None
    tags: MappingProxyType = field(default_factory=lambda: MappingProxyType({}))
    user_data: str | None = None  # a template under templates/
    user: str | None = None  # None: Fabric's configured user
    address: str = "private_ip"  # private_ip | public_ip | public_dns | tag:NAME
    var_tags: str | None = None  # tag prefix whose tags become host variables
    max_attempts: int = 8
    wait_timeout: float = 600.0

    @property
    def ssm_parameter(self):
        """The SSM parameter naming the AMI, or None when `ami` is an id."""
        match = SSM_AMI.fullmatch(self.ami)
        return match.group(1) if match else None


def _ingress(reader, raw, path):
    reader.mapping(raw, path, ("port", "cidr", "protocol"))
    port = reader.number(raw.get("port"), f"{path}.port", 1, int)
    if port > 65535:
        reader.fail(f"{path}.port", "a port 1-65535", port)
    cidr = raw.get("cidr")
    try:
        network = ipaddress.ip_network(cidr, strict=True) if isinstance(cidr, str) else None
    except ValueError:
        network = None
    if network is None:
        reader.fail(f"{path}.cidr", "a CIDR block such as 10.0.0.0/8", cidr)
    protocol = raw.get("protocol", "tcp")
    if protocol not in ("tcp", "udp"):
        reader.fail(f"{path}.protocol", "tcp or udp", protocol)
    return IngressRule(port, str(network), protocol)


def _security_group(reader, raw, path):
    reader.mapping(raw, path, ("name", "ingress"))
    name = reader.text(raw.get("name"), f"{path}.name", GROUP_NAME, "a security group name")
    if name.lower().startswith("sg-") or name.lower() == "default":
        reader.fail(f"{path}.name", "a name of fabship's own group (not default, not sg-...)",
                    name)
    rules = reader.listing(raw.get("ingress", []), f"{path}.ingress")
    parsed = tuple(_ingress(reader, rule, f"{path}.ingress[{i}]") for i, rule in enumerate(rules))
    return SecurityGroup(name, tuple(dict.fromkeys(parsed)))


def _tags(reader, raw, path):
    reader.mapping(raw, path)
    for key, value in raw.items():
        if not isinstance(key, str) or not TAG_KEY.fullmatch(key):
            reader.fail(f"{path}.{key}", "a tag key (letters, digits, spaces, _.:/=+@-)", key)
        if key.lower().startswith(RESERVED_TAGS):
            reader.fail(f"{path}.{key}", "a tag key not starting with fabship:, aws: or "
                        "managed-by (fabship sets those)", key)
        if not isinstance(value, (str, int, float)) or isinstance(value, bool) \
                or len(str(value)) > 256:
            reader.fail(f"{path}.{key}", "a string or number of at most 256 characters", value)
    return MappingProxyType({key: str(value) for key, value in raw.items()})


def _optional(reader, raw, path, check):
    """raw[key] checked by check = (key, pattern, what); None when absent."""
    key, pattern, what = check
    value = raw.get(key)
    return None if value is None else reader.text(value, f"{path}.{key}", pattern, what)


def _address(reader, value, path):
    if value in ADDRESSES or (isinstance(value, str) and value.startswith("tag:")
                              and TAG_KEY.fullmatch(value[4:])):
        return value
    return reader.fail(path, f"{', '.join(ADDRESSES)} or tag:NAME", value)


def parse_ec2(reader, raw, path):
    """The `ec2:` mapping of one environment."""
    reader.mapping(raw, path, EC2_KEYS)
    ami = reader.text(raw.get("ami"), f"{path}.ami", what="an AMI id (ami-...) or "
                      "resolve:ssm:/parameter/name")
    if not (AMI_ID.fullmatch(ami) or SSM_AMI.fullmatch(ami)):
        reader.fail(f"{path}.ami", "an AMI id (ami-...) or resolve:ssm:/parameter/name", ami)
    group = raw.get("security_group")
    settings = Ec2Settings(
        count=reader.number(raw.get("count"), f"{path}.count", 0, int),
        instance_type=reader.text(raw.get("instance_type"), f"{path}.instance_type",
                                  INSTANCE_TYPE, "an instance type such as t3.small"),
        ami=ami,
        region=_optional(reader, raw, path, ("region", REGION, "a region such as eu-west-1")),
        key_name=_optional(reader, raw, path, ("key_name", re.compile(r"^[ -~]{1,255}$"),
                                               "a key pair name (printable ASCII)")),
        public_key=_optional(reader, raw, path, ("public_key", None, "a file path")),
        subnet=_optional(reader, raw, path, ("subnet", SUBNET, "a subnet id (subnet-...)")),
        security_group=None if group is None else _security_group(
            reader, group, f"{path}.security_group"),
        iam_instance_profile=_optional(reader, raw, path, (
            "iam_instance_profile", re.compile(r"^[\w+=,.@:/-]{1,2048}$"),
            "an instance profile name or ARN")),
        tags=_tags(reader, raw.get("tags", {}), f"{path}.tags"),
        user_data=_optional(reader, raw, path, ("user_data", None, "a template path")),
        user=_optional(reader, raw, path, (
            "user", re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,31}$"), "a user name")),
        address=_address(reader, raw.get("address", "private_ip"), f"{path}.address"),
        var_tags=_optional(reader, raw, path, ("var_tags", TAG_KEY, "a tag key prefix")),
        max_attempts=reader.number(raw.get("max_attempts", 8), f"{path}.max_attempts", 1, int),
        wait_timeout=reader.number(raw.get("wait_timeout", 600), f"{path}.wait_timeout", 1),
    )
    if settings.key_name is None and settings.public_key is not None:
        raise ConfigError(f"{reader.source}: {path}.public_key: given without key_name; "
                          "expected key_name to name the key pair it is imported as")
    return settings
