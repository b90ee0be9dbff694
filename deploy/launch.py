"""`fab service launch`, `hosts` and `terminate`: an environment's EC2 instances.

launch: read-only facts -> plan (provision.py) -> calls -> wait until running ->
reconcile duplicates -> wait for SSH and pin host keys per instance id -> table.
"""
import time
from pathlib import Path

from .aws import Aws, CloudError
from .ec2facts import fact_calls, find_instances, gather
from .ec2hosts import require_ec2
from .errors import ConfigError, DeployError
from .instances import TABLE_HEADER, owned_live, table_rows, warn_foreign
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
    settings = require_ec2(target)
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
    """RunInstances for one slot; a token replaying a terminated instance is replaced.

    So is a token EC2 still remembers for other parameters (IdempotentParameterMismatch:
    the slot's old instance left DescribeInstances, the AMI or group changed since).
    """
    slot = int(call.label.rsplit(" ", 1)[-1])
    replaced = list(replaced_ids(facts.instances, slot))
    for attempt in range(REPLAYS):
        started = time.monotonic()
        try:
            instance = aws.call(call)["Instances"][0]
        except CloudError as exc:
            if exc.code != "IdempotentParameterMismatch":
                raise
            replaced.append(f"mismatch-{attempt}")
            call = run_call(spec, slot, facts, replaced)
            continue
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


def _settle(aws, spec, out, pins):
    """The live instances after the calls; a slot's duplicates terminated, oldest kept.

    A retried RunInstances whose first answer was lost makes a second instance where
    the API does not deduplicate by ClientToken (the emulator).
    """
    found = find_instances(aws, spec.service, spec.environment)
    extra = duplicates(found)
    if extra:
        aws.call(terminate_call([i.instance_id for i in extra], "terminate duplicates"))
        pins.forget(i.instance_id for i in extra)
        say(out, "terminated duplicate instance(s) of a slot: " +
             ", ".join(i.instance_id for i in extra))
        gone = {i.instance_id for i in extra}
        found = [i for i in found if i.instance_id not in gone]
    return owned_live(found)


def _missing(aws, spec, final, out):
    """Slots 1..count without a running instance, said with EC2's reason; True if any."""
    running = {i.slot for i in final if i.state == "running"}
    missing = [slot for slot in range(1, spec.settings.count + 1) if slot not in running]
    if missing:
        found = find_instances(aws, spec.service, spec.environment)
        for slot in missing:
            why = [f"{i.instance_id} {i.state}" + (f" ({i.reason})" if i.reason else "")
                   for i in found if i.slot == slot and i.owned] or ["no instance"]
            out(f"slot {slot} has no running instance: {', '.join(why)}")
    return bool(missing)


def launch(project, target, options, out=print):
    """Bring the environment to `count` running instances; exit 0 when it is there."""
    spec = launch_spec(project, target)
    if options.get("dry"):
        return dry_run(spec, out)
    settings = spec.settings
    aws = Aws(settings.region, settings.max_attempts)
    facts = gather(aws, spec)
    plan = plan_launch(spec, facts, options.get("allow_terminate", False))
    if facts.group_id and not facts.group_owned:
        raise ConfigError(f"{project.source}: {where(target)}.security_group.name: the group "
                          f"{settings.security_group.name!r} ({facts.group_id}) exists but is "
                          "not fabship's (no managed-by: fabship tag), and fabship reconciles "
                          "the rules of its own groups only; choose another name")
    if any(c.op == "ImportKeyPair" for c in plan.prepare) and spec.public_key is None:
        raise ConfigError(f"{project.source}: {where(target)}.public_key: the key pair "
                          f"{settings.key_name!r} does not exist, and no readable public key "
                          f"is configured to import it from ({settings.public_key or 'none'})")
    say(out, f"{spec.service}/{spec.environment}: {len(plan.launch)} to launch, "
              f"{settings.count} wanted")
    started = time.monotonic()
    pins = project.instance_pins
    _execute(aws, spec, facts, plan, out)
    for call in plan.terminate:
        pins.forget(call.kwargs["InstanceIds"])
    final = owned_live(facts.instances)
    if plan.calls:  # something changed: look again
        final = _settle(aws, spec, out, pins)
    if any(i.state != "running" for i in final):
        aws.wait_running([i.instance_id for i in final], settings.wait_timeout)
        final = owned_live(find_instances(aws, spec.service, spec.environment))
    if options.get("no_wait"):
        pin_from_console(aws, pins, final, out)
    elif final:
        SshWait(project, target, aws, out).wait([i.instance_id for i in final],
                                                settings.wait_timeout)
        final = owned_live(find_instances(aws, spec.service, spec.environment))
    out(summary_table(table_rows(final, settings.address), TABLE_HEADER))
    out(f"{len(final)} instance(s) of {spec.service}/{spec.environment} ({len(plan.launch)} "
        f"launched, {time.monotonic() - started:.1f}s, {aws.requests} API requests)")
    warn_foreign(facts.instances, out)
    if _missing(aws, spec, final, out):
        return 1
    if plan.kept_surplus:
        out(f"{len(plan.kept_surplus)} instance(s) above count {settings.count} were kept "
            f"(slots {', '.join(str(i.slot) for i in plan.kept_surplus)}): rerun with "
            "--allow-terminate to terminate them, highest slot first")
        return 1
    return 0
