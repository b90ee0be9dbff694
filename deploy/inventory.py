"""An environment with `ec2:` is its own inventory: its running instances are the hosts.

The dry-run makes no request, so it shows one placeholder host per configured slot.
"""
from dataclasses import replace
from types import MappingProxyType

from .aws import Aws
from .ec2facts import find_instances
from .errors import DeployError
from .hosts import Host
from .instances import host_of


def where(target):
    """The config path of the environment's ec2 block, for errors."""
    return f"services.{target.service.name}.environments.{target.environment}.ec2"


def placeholders(target):
    """One Host per slot, named for what the real run looks up."""
    return tuple(Host(f"<{target.environment} slot {slot}>", target.ec2.user, None,
                      MappingProxyType({"slot": slot, "instance_id": f"<slot {slot} id>"}))
                 for slot in range(1, target.ec2.count + 1))


def running_hosts(target, source, aws=None):
    """Hosts of the environment's running instances, by slot."""
    settings = target.ec2
    aws = aws or Aws(settings.region, settings.max_attempts)
    found = find_instances(aws, target.service.name, target.environment)
    instances = [i for i in found if i.state == "running" and i.owned]
    if not instances:
        raise DeployError(f"{target.service.name}/{target.environment}: no running EC2 "
                          "instances; launch them with "
                          f"`fab service --env {target.environment} launch`")
    return tuple(host_of(i, settings, f"{source}: {where(target)}", target.vars)
                 for i in instances)


def resolve(target, dry, source):
    """The target with its hosts filled in from EC2 (or placeholders in a dry-run)."""
    if target.ec2 is None:
        return target
    hosts = placeholders(target) if dry else running_hosts(target, source)
    return replace(target, hosts=hosts)
