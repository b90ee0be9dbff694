"""The `ec2:` block of an environment: defaults, the full settings, and every bad value."""
import pytest

from fabship.deploy.config import parse_services
from fabship.deploy.ec2config import IngressRule
from fabship.deploy.errors import ConfigError
from fabship.deploy.target import select
from tests.deploy.helpers import services

EC2 = {"count": 2, "instance_type": "t3.small", "ami": "ami-0123456789abcdef0"}
PATH = "services.hello.environments.prod"


def ec2_env(ec2=None, **env):
    """The prod environment of hello, parsed, with this `ec2:` block (and other env keys)."""
    return services(environments={"prod": {"ec2": {**EC2, **(ec2 or {})}, **env}})[
        "hello"].environments["prod"]


def error(environments):
    """The message of the ConfigError the hello service with these environments raises."""
    with pytest.raises(ConfigError) as err:
        services(environments=environments)
    text = str(err.value)
    assert text.startswith("fabric.yaml: "), text
    return text


def test_defaults():
    """An ec2 block with only the required keys."""
    env = ec2_env()
    s = env.ec2
    assert env.hosts == () and env.root is None
    assert (s.count, s.instance_type, s.ami) == (2, "t3.small", "ami-0123456789abcdef0")
    assert s.region is None and s.address == "private_ip"
    assert s.max_attempts == 8 and s.wait_timeout == 600.0
    assert not s.tags
    assert s.key_name is None and s.security_group is None and s.user is None
    assert s.ssm_parameter is None


def test_every_setting():
    """Every key, parsed and typed; duplicate ingress rules collapse."""
    s = ec2_env({
        "region": "eu-west-1", "count": 0, "key_name": "deploy", "public_key": "~/.ssh/d.pub",
        "subnet": "subnet-0abc1234def567890", "iam_instance_profile": "hello-role",
        "tags": {"team": "web", "cost-center": 4711}, "user_data": "cloud-init.yaml.j2",
        "user": "ec2-user", "address": "tag:ssh-address", "var_tags": "var:",
        "max_attempts": 3, "wait_timeout": 90,
        "security_group": {"name": "hello-prod", "ingress": [
            {"port": 22, "cidr": "10.0.0.0/8"}, {"port": 53, "cidr": "::/0", "protocol": "udp"},
            {"port": 22, "cidr": "10.0.0.0/8"}]},
    }).ec2
    assert s.count == 0 and s.region == "eu-west-1" and s.address == "tag:ssh-address"
    assert dict(s.tags) == {"team": "web", "cost-center": "4711"}  # values become strings
    assert s.security_group.name == "hello-prod"
    assert s.security_group.ingress == (IngressRule(22, "10.0.0.0/8"),
                                        IngressRule(53, "::/0", "udp"))  # duplicate dropped
    assert (s.max_attempts, s.wait_timeout) == (3, 90.0)
    with pytest.raises(AttributeError):
        s.count = 5  # frozen


def test_ssm_parameter():
    """An AMI given as an SSM parameter names that parameter."""
    s = ec2_env({"ami": "resolve:ssm:/aws/service/ami-amazon-linux-latest/"
                        "al2023-ami-kernel-default-x86_64"}).ec2
    assert s.ssm_parameter == ("/aws/service/ami-amazon-linux-latest/"
                               "al2023-ami-kernel-default-x86_64")
    assert ec2_env({"ami": "ami-0abcdef1234567890"}).ec2.ssm_parameter is None


def test_environment_root_overrides_service_root():
    """The environment's root reaches the target."""
    raw_envs = {"prod": {"ec2": EC2, "root": "/opt/{{ name }}-prod"},
                "staging": {"hosts": ["deploy@10.0.0.5"]}}
    parsed = services(environments=raw_envs)
    assert select(parsed, env="prod").root_template == "/opt/{{ name }}-prod"
    assert select(parsed, env="prod").ec2 is parsed["hello"].environments["prod"].ec2
    assert select(parsed, env="staging").root_template == "/srv/{{ name }}"
    with pytest.raises(ConfigError, match=f"{PATH}.root: expected a string, got ''"):
        ec2_env(root="")


@pytest.mark.parametrize("change, message", [
    ({"count": "three"}, "ec2.count: expected a whole number >= 0, got 'three'"),
    ({"count": -1}, "ec2.count: expected a whole number >= 0, got -1"),
    ({"count": True}, "ec2.count: expected a whole number >= 0, got True"),
    ({"count": 1.5}, "ec2.count: expected a whole number >= 0, got 1.5"),
    ({"ami": "ubuntu"}, "ec2.ami: expected an AMI id (ami-...) or resolve:ssm:/parameter/name"),
    ({"ami": "resolve:ssm:relative"}, "ec2.ami: expected an AMI id (ami-...) or resolve:ssm:"),
    ({"ami": None}, "ec2.ami: expected an AMI id"),
    ({"instance_type": "big"}, "ec2.instance_type: expected an instance type such as t3.small"),
    ({"region": "mars"}, "ec2.region: expected a region such as eu-west-1, got 'mars'"),
    ({"subnet": "net-1"}, "ec2.subnet: expected a subnet id (subnet-...), got 'net-1'"),
    ({"address": "ip"}, "ec2.address: expected private_ip, public_ip, public_dns or tag:NAME"),
    ({"address": "tag:"}, "ec2.address: expected private_ip, public_ip, public_dns or tag:NAME"),
    ({"user": "root; id"}, "ec2.user: expected a user name"),
    ({"max_attempts": 0}, "ec2.max_attempts: expected a whole number >= 1, got 0"),
    ({"wait_timeout": "10m"}, "ec2.wait_timeout: expected a number >= 1, got '10m'"),
    ({"key_name": ""}, "ec2.key_name: expected a key pair name"),
    ({"tags": ["team=web"]}, "ec2.tags: expected a mapping"),
    ({"tags": {"fabship:x": "1"}}, "ec2.tags.fabship:x: expected a tag key not starting with "
                                   "fabship:, aws: or managed-by"),
    ({"tags": {"aws:x": "1"}}, "ec2.tags.aws:x: expected a tag key not starting with"),
    ({"tags": {"managed-by": "me"}}, "ec2.tags.managed-by: expected a tag key not starting"),
    ({"tags": {"team": ["a", "b"]}}, "ec2.tags.team: expected a string or number of at most "
                                     "256 characters, got ['a', 'b']"),
    ({"tags": {"team": True}}, "ec2.tags.team: expected a string or number"),
    ({"tags": {"team": "x" * 257}}, "ec2.tags.team: expected a string or number"),
    ({"tags": {"bad|key": "1"}}, "ec2.tags.bad|key: expected a tag key"),
    ({"volume": 20}, "ec2.volume: unknown key; expected one of region, count"),
    ({"public_key": "~/.ssh/id.pub"}, "ec2.public_key: given without key_name"),
])
def test_ec2_errors_name_the_key(change, message):
    """A bad value names the file and the full key path."""
    assert f"{PATH}.{message}" in error({"prod": {"ec2": {**EC2, **change}}})


@pytest.mark.parametrize("group, message", [
    ({"name": "sg-123"}, "security_group.name: expected a name of fabship's own group"),
    ({"name": "SG-web"}, "security_group.name: expected a name of fabship's own group"),
    ({"name": "default"}, "security_group.name: expected a name of fabship's own group "
                          "(not default, not sg-...), got 'default'"),
    ({"name": ""}, "security_group.name: expected a security group name"),
    ({"name": "web", "ingress": {"port": 22}}, "security_group.ingress: expected a list"),
    ({"name": "web", "ingress": [{"port": 22, "cidr": "10.0.0.300/8"}]},
     "security_group.ingress[0].cidr: expected a CIDR block such as 10.0.0.0/8, "
     "got '10.0.0.300/8'"),
    ({"name": "web", "ingress": [{"port": 22, "cidr": "10.0.0.0/8"},
                                 {"port": 22, "cidr": "10.0.0.1/8"}]},
     "security_group.ingress[1].cidr: expected a CIDR block such as 10.0.0.0/8, "
     "got '10.0.0.1/8'"),
    ({"name": "web", "ingress": [{"port": 22}]}, "security_group.ingress[0].cidr: expected a"),
    ({"name": "web", "ingress": [{"port": 0, "cidr": "0.0.0.0/0"}]},
     "security_group.ingress[0].port: expected a whole number >= 1, got 0"),
    ({"name": "web", "ingress": [{"port": 70000, "cidr": "0.0.0.0/0"}]},
     "security_group.ingress[0].port: expected a port 1-65535, got 70000"),
    ({"name": "web", "ingress": [{"port": "ssh", "cidr": "0.0.0.0/0"}]},
     "security_group.ingress[0].port: expected a whole number >= 1, got 'ssh'"),
    ({"name": "web", "ingress": [{"port": 8, "cidr": "0.0.0.0/0", "protocol": "icmp"}]},
     "security_group.ingress[0].protocol: expected tcp or udp, got 'icmp'"),
    ({"name": "web", "ingress": [{"port": 22, "cidr": "0.0.0.0/0", "from": "x"}]},
     "security_group.ingress[0].from: unknown key; expected one of port, cidr, protocol"),
])
def test_security_group_errors(group, message):
    """A bad security group or ingress rule names its key path."""
    assert f"{PATH}.ec2.{message}" in error({"prod": {"ec2": {**EC2, "security_group": group}}})


def test_hosts_and_ec2_are_exclusive_and_one_is_needed():
    """An environment has hosts or ec2."""
    assert f"{PATH}: give either hosts or ec2, not both" in error(
        {"prod": {"hosts": ["deploy@10.0.0.5"], "ec2": EC2}})
    assert f"{PATH}: expected a list of `hosts:` or an `ec2:` block" in error(
        {"prod": {"vars": {"a": 1}}})
    assert f"{PATH}.hosts: expected at least one host (or an `ec2:` block)" in error(
        {"prod": {"hosts": []}})
    assert f"{PATH}.ec2: expected a mapping, got 'yes'" in error({"prod": {"ec2": "yes"}})


def test_errors_name_the_source_file():
    """The file named is the one the config came from."""
    raw = {"hello": {"source": "s", "run": "r",
                     "environments": {"prod": {"ec2": {**EC2, "count": -1}}}}}
    with pytest.raises(ConfigError, match=r"^deploy/prod\.yaml: services\.hello\.environments"
                                          r"\.prod\.ec2\.count: expected a whole number"):
        parse_services(raw, "deploy/prod.yaml")


@pytest.mark.parametrize("key, value", [
    ("region", "eu-west-1\n"), ("ami", "ami-0123456789abcdef0\n"), ("user", "ec2-user\n"),
])
def test_a_trailing_newline_is_not_a_valid_value(key, value):
    """A value with a trailing newline fails its pattern."""
    # `region: |` in YAML gives "eu-west-1\n"; `$` in the patterns matches before it
    assert f"{PATH}.ec2.{key}: expected" in error({"prod": {"ec2": {**EC2, key: value}}})
