"""Desired EC2 state vs facts -> the calls of a launch; and how the dry-run prints one."""
import re
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from types import MappingProxyType

import pytest

from fabship.deploy.ec2config import Ec2Settings, IngressRule, SecurityGroup
from fabship.deploy.instances import Instance
from fabship.deploy.printer import call_lines
from fabship.deploy.provision import GROUP_REF, LaunchFacts, LaunchSpec, client_token, parse_rules, \
    plan_launch

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
GROUP = SecurityGroup("hello-prod", (IngressRule(22, "10.0.0.0/8"), IngressRule(443, "0.0.0.0/0")))
WANTED = frozenset({("tcp", 22, "10.0.0.0/8"), ("tcp", 443, "0.0.0.0/0")})
SETTINGS = Ec2Settings(count=3, instance_type="t3.small", ami="ami-0123456789abcdef0",
                       key_name="deploy", subnet="subnet-0abc1234def567890", security_group=GROUP,
                       tags=MappingProxyType({"team": "web"}))
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGEL7RTuRlH1Tr5nyNPZBvSEQq7RvRaReygUpo1WrdiV d"
SPEC = LaunchSpec("hello", "prod", SETTINGS, "#cloud-config\npackages: [python3]\n", PUBLIC_KEY)


def spec(**settings):
    """SPEC with these settings changed."""
    return replace(SPEC, settings=replace(SETTINGS, **settings))


def inst(slot, state="running", minutes=60, suffix=0):
    """An instance of a slot, launched `minutes` before NOW."""
    return Instance(f"i-0{slot:02d}{suffix:02d}0000000000000", slot, state,
                    NOW - timedelta(minutes=minutes), client_token=f"fabship-{slot}{suffix}")


def facts(*instances, **changes):
    """Known facts: the group and key exist, the group has exactly the wanted rules."""
    return replace(LaunchFacts(True, tuple(instances), SETTINGS.ami, "vpc-0f00ba11", "sg-0aaa",
                               WANTED, True), **changes)


def ops(calls):
    """The operation names of these calls."""
    return [call.op for call in calls]


def test_launches_only_the_missing_slots():
    """Only slots without a pending or running instance launch."""
    plan = plan_launch(SPEC, facts(inst(1), inst(2, "stopped"), inst(3, "pending")))
    assert [call.label for call in plan.launch] == ["launch slot 2"]
    assert not plan.prepare and not plan.terminate and not plan.kept_surplus
    assert plan_launch(SPEC, facts(inst(1), inst(2), inst(3))).calls == ()
    every = plan_launch(SPEC, facts(inst(2, "terminated"), inst(3, "shutting-down")))
    assert [call.label for call in every.launch] == ["launch slot 1", "launch slot 2",
                                                     "launch slot 3"]


def test_run_instances_parameters():
    """One instance per call, tagged as fabship's, with every setting."""
    call = plan_launch(SPEC, facts(inst(1), inst(3))).launch[0]
    params = call.kwargs
    tags = [{"Key": "Name", "Value": "hello-prod-2"}, {"Key": "team", "Value": "web"},
            {"Key": "fabship:service", "Value": "hello"}, {"Key": "fabship:env", "Value": "prod"},
            {"Key": "managed-by", "Value": "fabship"}, {"Key": "fabship:slot", "Value": "2"}]
    assert params == {
        "ImageId": "ami-0123456789abcdef0", "InstanceType": "t3.small", "MinCount": 1,
        "MaxCount": 1, "ClientToken": client_token(SPEC, 2), "KeyName": "deploy",
        "SecurityGroupIds": ["sg-0aaa"], "SubnetId": "subnet-0abc1234def567890",
        "UserData": "#cloud-config\npackages: [python3]\n",
        "TagSpecifications": [{"ResourceType": "instance", "Tags": tags},
                              {"ResourceType": "volume", "Tags": tags}]}
    assert call.unless is None
    token = params["ClientToken"]
    assert token.startswith("fabship-") and len(token) <= 64 and token.isascii()


@pytest.mark.parametrize("profile, expected", [
    ("hello-role", {"Name": "hello-role"}),
    ("arn:aws:iam::123456789012:instance-profile/hello-role",
     {"Arn": "arn:aws:iam::123456789012:instance-profile/hello-role"}),
])
def test_instance_profile_by_name_or_arn(profile, expected):
    """An ARN is passed as Arn, anything else as Name."""
    call = plan_launch(spec(iam_instance_profile=profile), facts()).launch[0]
    assert call.kwargs["IamInstanceProfile"] == expected


def test_optional_parameters_are_left_out():
    """Settings not given add no parameters and no calls."""
    bare = LaunchSpec("hello", "prod", Ec2Settings(1, "t3.small", "ami-0123456789abcdef0"))
    plan = plan_launch(bare, LaunchFacts(True))
    assert not plan.prepare
    assert set(plan.launch[0].kwargs) == {"ImageId", "InstanceType", "MinCount", "MaxCount",
                                          "ClientToken", "TagSpecifications"}


def test_client_token_is_stable_and_specific():
    """Same inputs, same token; any launch setting changes it."""
    token = client_token(SPEC, 1)
    assert token == client_token(SPEC, 1)
    assert plan_launch(SPEC, facts()).launch[0].kwargs["ClientToken"] == token
    others = [client_token(SPEC, 2), client_token(replace(SPEC, environment="staging"), 1),
              client_token(replace(SPEC, service="world"), 1),
              client_token(spec(instance_type="t3.large"), 1),
              client_token(replace(SPEC, user_data="#cloud-config\n"), 1),
              client_token(spec(tags=MappingProxyType({"team": "api"})), 1),
              client_token(spec(ami="ami-0fedcba9876543210"), 1)]
    assert token not in others and len(set(others)) == len(others)
    assert client_token(spec(count=7), 1) == token  # growing the fleet keeps retries retries


def test_a_replaced_slot_gets_a_fresh_token():
    """A slot whose instance was terminated is a new launch."""
    gone = inst(1, "terminated", minutes=30)
    call = plan_launch(SPEC, facts(gone, inst(2), inst(3))).launch[0]
    token = call.kwargs["ClientToken"]
    assert token != client_token(SPEC, 1)
    assert token == client_token(SPEC, 1, (gone.instance_id,))
    twice = plan_launch(SPEC, facts(gone, inst(1, "terminated", suffix=1), inst(2), inst(3)))
    assert twice.launch[0].kwargs["ClientToken"] not in (token, client_token(SPEC, 1))
    other_slot = plan_launch(SPEC, facts(inst(1), inst(2, "terminated"), inst(3)))
    assert other_slot.launch[0].kwargs["ClientToken"] == client_token(
        SPEC, 2, (inst(2).instance_id,))


def test_surplus_is_kept_unless_terminating_is_allowed():
    """Slots above count go only when allowed."""
    live = (inst(1), inst(2), inst(3), inst(4), inst(5))
    kept = plan_launch(spec(count=3), facts(*live))
    assert not kept.terminate and not kept.launch
    assert [i.slot for i in kept.kept_surplus] == [5, 4]
    gone = plan_launch(spec(count=3), facts(*live), allow_terminate=True)
    assert not gone.kept_surplus
    assert ops(gone.terminate) == ["TerminateInstances"]
    assert gone.terminate[0].kwargs == {"InstanceIds": [live[4].instance_id, live[3].instance_id]}
    assert "highest first" in gone.terminate[0].label


def test_a_duplicate_slot_keeps_its_oldest_instance():
    """Newer instances of a slot are terminated."""
    old, new = inst(2, minutes=120), inst(2, minutes=5, suffix=1)
    plan = plan_launch(SPEC, facts(inst(1), old, new, inst(3)))
    assert not plan.launch
    assert [c.kwargs for c in plan.terminate] == [{"InstanceIds": [new.instance_id]}]
    surplus = (inst(4, minutes=50), inst(4, minutes=10, suffix=1))
    both = plan_launch(SPEC, facts(inst(1), inst(2), inst(3), *surplus), allow_terminate=True)
    assert [c.kwargs["InstanceIds"] for c in both.terminate] == [[surplus[1].instance_id],
                                                                 [surplus[0].instance_id]]


def test_a_missing_group_is_created_and_used_by_reference():
    """Its id comes from the create call."""
    plan = plan_launch(SPEC, facts(inst(1), inst(2), group_id=None, group_rules=frozenset()))
    create, allow = plan.prepare
    assert create.op == "CreateSecurityGroup" and create.unless is None
    assert create.kwargs["GroupName"] == "hello-prod" and create.kwargs["VpcId"] == "vpc-0f00ba11"
    assert create.saves == ((GROUP_REF.name, "GroupId"),)
    assert allow.op == "AuthorizeSecurityGroupIngress" and allow.kwargs["GroupId"] == GROUP_REF
    assert allow.kwargs["IpPermissions"] == [
        {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "IpRanges": [{"CidrIp": "10.0.0.0/8"}]},
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]
    assert plan.launch[0].kwargs["SecurityGroupIds"] == [GROUP_REF]


PERMISSIONS = [  # as DescribeSecurityGroups returns them
    {"IpProtocol": "tcp", "FromPort": 22, "ToPort": 22, "PrefixListIds": [],
     "IpRanges": [{"CidrIp": "10.0.0.0/8", "Description": "office"}],
     "Ipv6Ranges": [], "UserIdGroupPairs": []},
    {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389, "PrefixListIds": [],
     "IpRanges": [{"CidrIp": "0.0.0.0/0"}], "Ipv6Ranges": [{"CidrIpv6": "::/0"}],
     "UserIdGroupPairs": []},
    {"IpProtocol": "udp", "FromPort": 8000, "ToPort": 8100, "PrefixListIds": [],
     "IpRanges": [], "Ipv6Ranges": [],
     "UserIdGroupPairs": [{"GroupId": "sg-0bbb", "UserId": "123456789012"}]},
]


def test_rules_are_reconciled_by_exact_difference():
    """Missing rules are added, others revoked."""
    have = parse_rules(PERMISSIONS)
    assert have == {("tcp", 22, "10.0.0.0/8"), ("tcp", 3389, "0.0.0.0/0"), ("tcp", 3389, "::/0"),
                    ("udp", (8000, 8100), "sg-0bbb")}
    allow, revoke = plan_launch(SPEC, facts(group_rules=have)).prepare
    assert allow.kwargs == {"GroupId": "sg-0aaa", "IpPermissions": [
        {"IpProtocol": "tcp", "FromPort": 443, "ToPort": 443,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]}]}
    assert revoke.op == "RevokeSecurityGroupIngress"
    assert sorted(revoke.kwargs["IpPermissions"], key=str) == sorted([
        {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389,
         "IpRanges": [{"CidrIp": "0.0.0.0/0"}]},
        {"IpProtocol": "tcp", "FromPort": 3389, "ToPort": 3389,
         "Ipv6Ranges": [{"CidrIpv6": "::/0"}]},
        {"IpProtocol": "udp", "FromPort": 8000, "ToPort": 8100,
         "UserIdGroupPairs": [{"GroupId": "sg-0bbb"}]}], key=str)
    assert parse_rules(PERMISSIONS[:1]) < have and parse_rules(None) == frozenset()


def test_an_all_traffic_rule_is_revoked_with_valid_parameters():
    """Revoke -1 without None ports."""
    # the default group's own rule: no FromPort/ToPort at all; boto3 rejects None for them
    everything = {"IpProtocol": "-1", "IpRanges": [], "Ipv6Ranges": [], "PrefixListIds": [],
                  "UserIdGroupPairs": [{"GroupId": "sg-0aaa", "UserId": "123456789012"}]}
    revoke = plan_launch(SPEC, facts(group_rules=WANTED | parse_rules([everything]))).prepare
    assert ops(revoke) == ["RevokeSecurityGroupIngress"]
    for permission in revoke[0].kwargs["IpPermissions"]:
        assert None not in permission.values(), permission


def test_key_pair_is_imported_only_when_missing():
    """The public key's text is imported."""
    assert not plan_launch(SPEC, facts(inst(1), inst(2), inst(3))).prepare
    (call,) = plan_launch(SPEC, facts(inst(1), inst(2), inst(3), key_exists=False)).prepare
    assert call.op == "ImportKeyPair" and call.unless is None
    assert call.kwargs["KeyName"] == "deploy" and call.kwargs["PublicKeyMaterial"] == PUBLIC_KEY
    assert not plan_launch(spec(key_name=None), facts(key_exists=False)).prepare


def test_unknown_facts_make_every_call_conditional():
    """The dry-run guesses no fact."""
    plan = plan_launch(SPEC, LaunchFacts(known=False), allow_terminate=True)
    assert ops(plan.prepare) == ["ImportKeyPair", "CreateSecurityGroup",
                                 "AuthorizeSecurityGroupIngress", "RevokeSecurityGroupIngress"]
    assert [c.label for c in plan.launch] == ["launch slot 1", "launch slot 2", "launch slot 3"]
    assert ops(plan.terminate) == ["TerminateInstances"]
    for call in plan.calls:
        assert call.unless, call
        assert not re.search(r"\bi-[0-9a-f]{8,17}\b", repr(call.params)), call
    assert plan.launch[0].kwargs["SecurityGroupIds"] == [GROUP_REF]


def test_printed_call_shows_every_parameter_and_user_data_below():
    """The dry-run hides nothing."""
    call = plan_launch(SPEC, LaunchFacts(known=False)).launch[0]
    lines = call_lines(call)
    assert lines[0] == "  - launch slot 1  [skipped when slot 1 has a pending or running instance]"
    assert lines[1].startswith('      ec2 RunInstances ImageId="ami-0123456789abcdef0" '
                               'InstanceType="t3.small" MinCount=1 MaxCount=1 ClientToken="')
    for name, _ in call.params:
        assert f" {name}=" in lines[1], name
    assert 'SecurityGroupIds=["<security group id>"]' in lines[1]
    assert "UserData=<34 B, below>" in lines[1] and "#cloud-config" not in lines[1]
    assert lines[2:] == ["      UserData:", "        | #cloud-config",
                         "        | packages: [python3]"]
