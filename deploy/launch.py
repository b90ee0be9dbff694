"""`fab service launch`, `hosts` and `terminate`: an environment's EC2 instances.

launch: read-only facts -> plan (provision.py) -> calls -> wait until running ->
reconcile duplicates -> wait for SSH and pin host keys per instance id -> table.
"""
import time
from pathlib import Path

from .aws import Aws
from .ec2facts import fact_calls, find_instances, gather
from .errors import ConfigError, DeployError
from .instances import TABLE_HEADER, table_rows
from .inventory import where
from .parallel import each
from .printer import batch_lines, summary_table
from .provision import LaunchFacts, LaunchSpec, duplicates, plan_launch, replaced_ids, \
    run_call, terminate_call
from .readiness import SshWait, pin_from_console, say
from .render import environment, render_file
from .steps import Batch

PARALLEL_LAUNCHES = 8
REPLAYS = 3  # a token that replays a terminated instance is replaced at most this often


def _require_ec2(target):
    if target.ec2 is None:
        name = target.environment or "(--hosts)"
        raise ConfigError(f"environment {name!r} of {target.service.name!r} has no `ec2:` "
                          "block; launch, hosts and terminate act on EC2 environments only")
    return target.ec2


def _public_key(project, settings, path):
    """The public key's text, or None when unreadable (needed only to import the pair)."""
    if not settings.public_key:
        return None
    file = Path(settings.public_key).expanduser()
    file = file if file.is_absolute() else project.root / file
    try:
        text = file.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    if not text.startswith(("ssh-", "ecdsa-")) or len(text.split()) < 2:
        raise ConfigError(f"{project.source}: {path}.public_key: {file} is not an OpenSSH "
                          "public key (expected 'ssh-ed25519 AAAA...')")
    return text


def launch_spec(project, target):
    """What the environment asks for, with user data rendered and the public key read."""
    settings = _require_ec2(target)
    path = f"{project.source}: {where(target)}"
    user_data = None
    if settings.user_data:
        variables = {**target.vars, "service": target.service.name,
                     "environment": target.environment}
        user_data = render_file(environment(project.root / "templates"), settings.user_data,
                                variables, f"{path}.user_data")
        if len(user_data.encode()) > 16384:
            raise ConfigError(f"{path}.user_data: renders to {len(user_data.encode())} bytes; "
                              "EC2 takes at most 16384")
    return LaunchSpec(target.service.name, target.environment, settings, user_data,
                      _public_key(project, settings, path))


def dry_run(spec, out):
    """Print every call a launch would make; make none."""
    plan = plan_launch(spec, LaunchFacts(known=False))
    for line in batch_lines(None, Batch("read-only calls (facts)", fact_calls(spec))):
        say(out, line)
    for label, calls in (("create or reconcile", plan.prepare), ("launch", plan.launch),
                         ("terminate", plan.terminate)):
        if calls:
            for line in batch_lines(None, Batch(label, calls)):
                say(out, line)
    say(out, "then: wait until every instance is running, and answers on SSH unless "
              "--no-wait; pin host keys per instance id (from the console output, else at "
              "first contact)")
    out(f"dry-run: launch of {spec.service}/{spec.environment} ({spec.settings.count} "
        "instance(s)); no request was made")
    return 0


def _run_slot(aws, spec, facts, call, out):
    """RunInstances for one slot; a token replaying a terminated instance is replaced."""
    slot = int(call.label.rsplit(" ", 1)[-1])
    replaced = list(replaced_ids(facts.instances, slot))
    for _ in range(REPLAYS):
        started = time.monotonic()
        instance = aws.call(call)["Instances"][0]
        state = instance["State"]["Name"]
        if state not in ("shutting-down", "terminated"):
            say(out, f"launched slot {slot}: {instance['InstanceId']} ({state}, "
                      f"{time.monotonic() - started:.1f}s)")
            return instance["InstanceId"]
        replaced.append(instance["InstanceId"])
        call = run_call(spec, slot, facts, replaced)
    raise DeployError(f"slot {slot}: RunInstances keeps returning terminated instances")


def _execute(aws, spec, facts, plan, out):
    for call in plan.prepare:
        aws.call(call)
        say(out, f"{call.label} ({call.op})")
    results = each(lambda call: _run_slot(aws, spec, facts, call, out), plan.launch,
                   PARALLEL_LAUNCHES)
    errors = [error for _, _, error in results if error]
    if errors:
        raise errors[0]
    for call in plan.terminate:
        aws.call(call)
        say(out, f"{call.label}: {', '.join(call.kwargs['InstanceIds'])}")


def _settle(aws, spec, out):
    """The live instances after the calls; a slot's duplicates terminated, oldest kept.

    A retried RunInstances whose first answer was lost makes a second instance where
    the API does not deduplicate by ClientToken (the emulator).
    """
    found = find_instances(aws, spec.service, spec.environment)
    extra = duplicates(found)
    if extra:
        aws.call(terminate_call([i.instance_id for i in extra], "terminate duplicates"))
        say(out, "terminated duplicate instance(s) of a slot: " +
             ", ".join(i.instance_id for i in extra))
        gone = {i.instance_id for i in extra}
        found = [i for i in found if i.instance_id not in gone]
    return [i for i in found if i.live]


def launch(project, target, options, out=print):
    """Bring the environment to `count` running instances; exit 0 when it is there."""
    spec = launch_spec(project, target)
    if options.get("dry"):
        return dry_run(spec, out)
    settings = spec.settings
    aws = Aws(settings.region, settings.max_attempts)
    facts = gather(aws, spec)
    plan = plan_launch(spec, facts, options.get("allow_terminate", False))
    if any(c.op == "ImportKeyPair" for c in plan.prepare) and spec.public_key is None:
        raise ConfigError(f"{project.source}: {where(target)}.public_key: the key pair "
                          f"{settings.key_name!r} does not exist, and no readable public key "
                          f"is configured to import it from ({settings.public_key or 'none'})")
    say(out, f"{spec.service}/{spec.environment}: {len(plan.launch)} to launch, "
              f"{settings.count} wanted")
    started = time.monotonic()
    _execute(aws, spec, facts, plan, out)
    final = [i for i in facts.instances if i.live]
    if plan.calls:  # something changed: look again
        final = _settle(aws, spec, out)
    if any(i.state != "running" for i in final):
        aws.wait_running([i.instance_id for i in final], settings.wait_timeout)
        final = [i for i in find_instances(aws, spec.service, spec.environment) if i.live]
    pin_from_console(aws, project.instance_pins, final, out)
    if not options.get("no_wait") and final:
        SshWait(project, target, aws, out).wait([i.instance_id for i in final],
                                                settings.wait_timeout)
        final = [i for i in find_instances(aws, spec.service, spec.environment) if i.live]
    out(summary_table(table_rows(final, settings.address), TABLE_HEADER))
    out(f"{len(final)} instance(s) of {spec.service}/{spec.environment} ({len(plan.launch)} "
        f"launched, {time.monotonic() - started:.1f}s, {aws.requests} API requests)")
    if plan.kept_surplus:
        out(f"{len(plan.kept_surplus)} instance(s) above count {settings.count} were kept "
            f"(slots {', '.join(str(i.slot) for i in plan.kept_surplus)}): rerun with "
            "--allow-terminate to terminate them, highest slot first")
        return 1
    return 0


def hosts(project, target, options, out=print):
    """The environment's instances (not yet terminated), as a table."""
    del project  # the signature every command shares
    settings = _require_ec2(target)
    if options.get("dry"):
        for line in batch_lines(None, Batch("read-only", fact_calls(
                LaunchSpec(target.service.name, target.environment, settings))[:1])):
            say(out, line)
        out("dry-run: no request was made")
        return 0
    aws = Aws(settings.region, settings.max_attempts)
    found = [i for i in find_instances(aws, target.service.name, target.environment)
             if i.state != "terminated"]
    if not found:
        out(f"no instances of {target.service.name}/{target.environment}")
        return 0
    out(summary_table(table_rows(found, settings.address), TABLE_HEADER))
    return 0


def terminate(project, target, options, out=print):
    """Terminate every instance of the environment; without `yes`, say what it would do."""
    settings = _require_ec2(target)
    name = f"{target.service.name}/{target.environment}"
    if options.get("dry"):
        call = terminate_call(["<every instance of the environment>"], f"terminate {name}")
        for line in batch_lines(None, Batch("calls", (fact_calls(LaunchSpec(
                target.service.name, target.environment, settings))[0], call))):
            say(out, line)
        out("dry-run: no request was made")
        return 0
    aws = Aws(settings.region, settings.max_attempts)
    doomed = [i for i in find_instances(aws, target.service.name, target.environment)
              if i.state not in ("shutting-down", "terminated")]
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
