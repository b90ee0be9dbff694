"""The read-only EC2 calls a launch makes first, and the LaunchFacts they give.

They also check the settings (AMI, instance type, subnet) before anything is created,
so a bad value stops the launch with nothing launched.
"""
from .instances import describe_filters, parse_instances
from .provision import LaunchFacts, parse_rules
from .steps import Ec2Call


def instances_call(service, environment):
    """DescribeInstances of the environment's instances (any state)."""
    return Ec2Call("ec2", "DescribeInstances",
                   (("Filters", describe_filters(service, environment)),),
                   "find the environment's instances by tag")


def fact_calls(spec):
    """Every read-only call, in order, as the dry-run prints them."""
    s = spec.settings
    calls = [instances_call(spec.service, spec.environment)]
    if s.ssm_parameter:
        calls.append(Ec2Call("ssm", "GetParameter", (("Name", s.ssm_parameter),),
                             "resolve the AMI from its SSM parameter"))
    calls += [Ec2Call("ec2", "DescribeImages", (("ImageIds", [
        "<the resolved image id>" if s.ssm_parameter else s.ami]),), "check the AMI exists"),
        Ec2Call("ec2", "DescribeInstanceTypes", (("InstanceTypes", [s.instance_type]),),
                "check the instance type exists")]
    if s.subnet:
        calls.append(Ec2Call("ec2", "DescribeSubnets", (("SubnetIds", [s.subnet]),),
                             "check the subnet, find its VPC"))
    elif s.security_group:
        calls.append(Ec2Call("ec2", "DescribeVpcs", (
            ("Filters", [{"Name": "isDefault", "Values": ["true"]}]),),
            "find the default VPC (for the security group)"))
    if s.security_group:
        calls.append(Ec2Call("ec2", "DescribeSecurityGroups", (("Filters", [
            {"Name": "group-name", "Values": [s.security_group.name]},
            {"Name": "vpc-id", "Values": ["<the VPC, if there is one>"]}]),),
            "find the security group"))
    if s.key_name:
        calls.append(Ec2Call("ec2", "DescribeKeyPairs", (("Filters", [
            {"Name": "key-name", "Values": [s.key_name]}]),), "find the key pair"))
    return tuple(calls)


def find_instances(aws, service, environment):
    """Every instance of the environment (any state), parsed."""
    return parse_instances(aws.pages("ec2", "DescribeInstances", "Reservations",
                                     Filters=describe_filters(service, environment)))


def gather(aws, spec):
    """LaunchFacts from the read-only calls (raises CloudError on a bad setting)."""
    s = spec.settings
    instances = find_instances(aws, spec.service, spec.environment)
    ami = s.ami
    if s.ssm_parameter:
        ami = aws.request("ssm", "GetParameter", Name=s.ssm_parameter)["Parameter"]["Value"]
    aws.request("ec2", "DescribeImages", ImageIds=[ami])
    aws.request("ec2", "DescribeInstanceTypes", InstanceTypes=[s.instance_type])
    vpc = None
    if s.subnet:
        vpc = aws.request("ec2", "DescribeSubnets", SubnetIds=[s.subnet])["Subnets"][0]["VpcId"]
    elif s.security_group:
        vpcs = aws.request("ec2", "DescribeVpcs",
                           Filters=[{"Name": "isDefault", "Values": ["true"]}])["Vpcs"]
        vpc = vpcs[0]["VpcId"] if vpcs else None
    group_id, rules, owned = None, frozenset(), True
    if s.security_group:
        filters = [{"Name": "group-name", "Values": [s.security_group.name]}]
        if vpc:
            filters.append({"Name": "vpc-id", "Values": [vpc]})
        groups = aws.request("ec2", "DescribeSecurityGroups", Filters=filters)["SecurityGroups"]
        if groups:
            group_id, rules = groups[0]["GroupId"], parse_rules(groups[0].get("IpPermissions"))
            tags = {t["Key"]: t.get("Value") for t in groups[0].get("Tags", ())}
            owned = tags.get("managed-by") == "fabship"
    key_exists = False
    if s.key_name:
        key_exists = bool(aws.request("ec2", "DescribeKeyPairs", Filters=[
            {"Name": "key-name", "Values": [s.key_name]}])["KeyPairs"])
    return LaunchFacts(True, instances, ami, vpc, group_id, rules, key_exists, owned)
