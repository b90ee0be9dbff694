"""One formatter for the dry-run's plan and the real run's log: host-prefixed lines."""
import json
import shlex

from .secrets import mask
from .steps import Ec2Call, Run

CONTENT_INDENT = "        | "


def _size(n):
    return f"{n} B" if n < 1024 else f"{n / 1024:.1f} KiB"


def step_title(step):
    """What a step does, with the fact it waits on in a dry-run."""
    return step.label + (f"  [skipped when {step.unless}]" if step.unless else "")


def _param(value):
    return json.dumps(value, default=str, sort_keys=False)


def call_lines(call):
    """An AWS call as the dry-run shows it: its label, then the operation and parameters.

    A long or multi-line text parameter (UserData) is shown as content below the call.
    """
    shown, contents = [], []
    for name, value in call.params:
        if isinstance(value, str) and ("\n" in value or len(value) > 200):
            shown.append(f"{name}=<{_size(len(value.encode()))}, below>")
            contents += [f"      {name}:"] + [CONTENT_INDENT + line for line in
                                               value.splitlines()]
        else:
            shown.append(f"{name}={_param(value)}")
    return [f"  - {step_title(call)}", f"      {call.api} {call.op} " + " ".join(shown),
            *contents]


def step_lines(step, secrets=()):
    """The dry-run's lines for one step: what it does, then exactly how."""
    if isinstance(step, Ec2Call):
        return call_lines(step)
    if isinstance(step, Run):
        return [f"  - {step_title(step)}",
                f"      $ {mask(shlex.join(step.argv), secrets)}"]
    lines = [f"  - {step_title(step)}",
             f"      upload {step.path} (mode {step.mode:04o}, "
             f"{_size(step.size) if step.size or step.text is not None else 'built on demand'}"
             f"{', holds secrets' if step.secret else ''})"]
    if step.text is not None:
        shown = step.shown if step.shown is not None else step.text
        lines += [CONTENT_INDENT + line for line in mask(shown, secrets).splitlines()]
    return lines


def batch_title(number, batch):
    """`round trip N: label` (just the label for conditional batches)."""
    return f"round trip {number}: {batch.label}" if number else batch.label


def batch_lines(number, batch, secrets=()):
    """A numbered round trip and its steps."""
    lines = [batch_title(number, batch)]
    for step in batch.steps:
        lines += step_lines(step, secrets)
    return lines


def step_done(step, seconds):
    """The real run's line for a completed step."""
    return f"  ok  {step_title(step)} ({seconds:.1f}s)"


def step_failed(title, code, seconds, output):
    """The real run's lines for a failed step and the end of its output."""
    return [f"  FAILED  {title} (exit {code}, {seconds:.1f}s)",
            *(f"  | {line}" for line in output.splitlines()[-15:])]


def prefixed(host, lines):
    """Every line prefixed with [host]."""
    return [f"[{host}] {part}" for line in lines for part in line.split("\n")]


UNKNOWN_REVERT = ("switch back to the newest release that served, restart it and check "
                  "it (on a first deploy: stop the program and remove current)")


def plan_lines(host, probe, plan, secrets=()):
    """The dry-run's text for one host: every command, every upload with its content,
    by phase: the rollout's round trip, the revert, then each finish."""
    lines = batch_lines(1, probe, secrets)
    ships = any(phase.name == "ship" for phase in plan.rollout)
    lines.append(batch_title(2, plan.batch("ship, switch, restart, health check" if ships else
                                           f"switch to {plan.release}, restart, health check",
                                           ())))
    if plan.fence:
        lines.append("  (each step runs only while this run holds the deploy lock)")
    for phase in plan.rollout:
        lines.append(f" {phase.name}" + (f" ({phase.stage})" if phase.stage else "") + ":")
        for step in phase.steps:
            lines += step_lines(step, secrets)
    lines.append(f"on a failure in {plan.revert_from} or later, or a fleet rollback: revert")
    if not plan.revert:
        lines.append(f"  - {UNKNOWN_REVERT}")
    for phase in plan.revert:
        for step in phase.steps:
            lines += step_lines(step, secrets)
    for key, phase in plan.finish.items():
        lines.append(f"finish, once the rollout is decided, when the host {key}"
                     if key != "untouched" else "finish, when the host was never switched")
        for step in phase.steps:
            lines += step_lines(step, secrets)
    return prefixed(host, lines)


def wave_lines(waves, settings):
    """The rollout's order, as the dry-run prints it."""
    lines = [f"rollout: canary {settings.canary}, batch {settings.batch}, max_fail "
             f"{settings.max_fail} (stop and roll back after more than "
             f"{settings.budget(sum(map(len, waves)))} failed host(s)), pause "
             f"{settings.pause:g}s, parallel {settings.parallel}"]
    for number, wave in enumerate(waves, start=1):
        kind = "canary" if number == 1 and settings.canary else "batch"
        lines.append(f"  wave {number} ({kind}): {', '.join(wave)}")
    return lines


def summary_table(rows, header):
    """Rows of cells under a header, aligned; the last column is left ragged."""
    table = [header, *rows]
    last = len(header) - 1
    widths = [max(len(str(row[i])) for row in table) for i in range(last)]
    out = []
    for row in table:
        cells = [str(cell).ljust(width) for cell, width in zip(row[:last], widths)]
        out.append("  ".join(cells + [str(row[last])]).rstrip())
    out.insert(1, "  ".join("-" * w for w in widths + [len(header[last])]))
    return "\n".join(out)
