"""`fab service hosts` and `fab service terminate`: an EC2 environment's instances."""
from .aws import Aws
from .ec2facts import instances_call, find_instances
from .errors import ConfigError
from .instances import TABLE_HEADER, table_rows, warn_foreign
from .printer import batch_lines, summary_table
from .provision import terminate_call
from .readiness import say
from .steps import Batch


def require_ec2(target):
    """The environment's Ec2Settings; ConfigError for an environment of listed hosts."""
    if target.ec2 is None:
        name = target.environment or "(--hosts)"
        raise ConfigError(f"environment {name!r} of {target.service.name!r} has no `ec2:` "
                          "block; launch, hosts and terminate act on EC2 environments only")
    return target.ec2


def _dry(calls, out):
    for line in batch_lines(None, Batch("calls", calls)):
        say(out, line)
    out("dry-run: no request was made")
    return 0


def hosts(project, target, options, out=print):
    """The environment's instances (not yet terminated), as a table."""
    del project  # the signature every command shares
    settings = require_ec2(target)
    if options.get("dry"):
        return _dry((instances_call(target.service.name, target.environment),), out)
    aws = Aws(settings.region, settings.max_attempts)
    everything = find_instances(aws, target.service.name, target.environment)
    found = [i for i in everything if i.owned and i.state != "terminated"]
    if found:
        out(summary_table(table_rows(found, settings.address), TABLE_HEADER))
    else:
        out(f"no instances of {target.service.name}/{target.environment}")
    warn_foreign(everything, out)
    return 0


def terminate(project, target, options, out=print):
    """Terminate every instance fabship launched for the environment; asks for `yes`."""
    settings = require_ec2(target)
    name = f"{target.service.name}/{target.environment}"
    if options.get("dry"):
        return _dry((instances_call(target.service.name, target.environment),
                     terminate_call(["<every instance of the environment>"],
                                    f"terminate {name}")), out)
    aws = Aws(settings.region, settings.max_attempts)
    everything = find_instances(aws, target.service.name, target.environment)
    doomed = [i for i in everything if i.owned and i.state not in ("shutting-down",
                                                                    "terminated")]
    warn_foreign(everything, out)
    if not doomed:
        out(f"no instances of {name} to terminate")
        return 0
    out(summary_table(table_rows(doomed, settings.address), TABLE_HEADER))
    if not options.get("yes"):
        out(f"refusing: this would terminate the {len(doomed)} instance(s) of {name} above; "
            "rerun with --yes to do it")
        return 1
    aws.call(terminate_call([i.instance_id for i in doomed], f"terminate {name}"))
    project.instance_pins.forget(i.instance_id for i in doomed)
    out(f"terminated {len(doomed)} instance(s) of {name}")
    return 0
