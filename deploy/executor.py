"""Runs plans over the SSH transport; per-host failure is data, not a crash.

Each Batch becomes one remote `sh -c` script (one round trip). Its uploads travel on
stdin as one tar stream unpacked with `tar -x -p` where the first upload stands, so file
modes (0600 for secrets) are set as the files are created.

The script marks each step's end with a line (`fabship-<nonce>-done N`,
`fabship-<nonce>-failed N CODE`) on a stream of its own: its stdout, which no step can
write to (every step's stdout goes to stderr, with the script's own output, and the
marks' descriptor is closed for it). The controller reads the two streams apart, so
program output (a health body, a program that read the nonce from `ps`) is only output,
never progress or a failure. The nonce of the round trip is a second check.
"""
import io
import os
import re
import shlex
import tarfile
import threading
import time
from dataclasses import dataclass

from .commands.boot import WARNING
from .parallel import each
from .printer import batch_title, prefixed, step_done, step_failed
from .secrets import mask

from .steps import Run, Upload


def new_nonce():
    """A fresh random token for one round trip's marks."""
    return os.urandom(8).hex()


@dataclass(frozen=True)
class Marks:
    """The progress marks of one round trip, and their pure parsers.

    A mark is a whole line of the marks stream; anything else there is plain output.
    """

    nonce: str

    @property
    def prefix(self):
        """What every mark line starts with."""
        return f"fabship-{self.nonce}-"

    def _match(self, line):
        return re.fullmatch(re.escape(self.prefix) + r"(done|failed)((?: [0-9]+)+)", line)

    def done(self, line):
        """The step index a whole line marks as done, or None."""
        found = self._match(line)
        if not found or found.group(1) != "done" or len(found.group(2).split()) != 1:
            return None
        return int(found.group(2))

    def failures(self, marks, count):
        """[(index, exit code)] of the failed mark lines in `marks`, for steps 0..count-1."""
        found = []
        for line in marks.splitlines():
            mark = self._match(line)
            parts = [int(number) for number in mark.group(2).split()] if mark else []
            if mark and mark.group(1) == "failed" and len(parts) == 2 and parts[0] < count:
                found.append((parts[0], parts[1]))
        return found

    def other(self, marks):
        """The lines of the marks stream that are no marks (none from fabship's script)."""
        return "".join(line for line in marks.splitlines(keepends=True)
                       if not self._match(line.rstrip("\n")))


@dataclass(frozen=True)
class BatchResult:
    """How one round trip ended; `failed_index` is the (first) failing step's position.

    `failures` lists every failed step as (index, label, exit code): a batch run with
    keep_going goes on after a failure (the finish: the lock is released regardless).
    """

    ok: bool
    output: str
    failed_index: int | None = None
    failed_step: str | None = None
    code: int = 0
    failures: tuple = ()


def upload_tar(uploads, blobs):
    """A tar stream of the uploads, with absolute paths made relative to /."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for step in uploads:
            data = blobs[step.blob] if step.blob else step.text.encode()
            info = tarfile.TarInfo(step.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), step.mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def batch_script(batch, nonce, keep_going=False):
    """The sh script of one batch; uploads unpack where the first one stands.

    Its stdout carries the marks only: `exec 3>&1 1>&2` keeps stdout as fd 3 and sends
    everything else to stderr; each step runs with fd 3 closed. After each step it prints
    a `fabship-<nonce>-done N` mark (printf is a builtin), so the controller can show
    progress live and knows where a failure happened. A failed step prints
    `fabship-<nonce>-failed N CODE` and ends the script (exit 3), or, with keep_going,
    the script goes on and exits 3 at its end.
    """
    marks = Marks(nonce).prefix
    uploads = [i for i, step in enumerate(batch.steps) if isinstance(step, Upload)]
    lines = ["exec 3>&1 1>&2\numask 022\nfailed=0\n"
             f"fail() {{ printf '{marks}failed %s %s\\n' \"$1\" \"$2\" >&3; "
             + ("failed=3; }" if keep_going else "exit 3; }")]

    def step(command, index, done):
        lines.append(f"if {command} 3>&-; then printf '{marks}done %s\\n' {done} >&3; "
                     f"else fail {index} $?; fi")
    for index, item in enumerate(batch.steps):
        if isinstance(item, Upload) and index == uploads[0]:
            step("tar -x -p --no-same-owner -C / -f -", index, " ".join(map(str, uploads)))
        elif isinstance(item, Run):
            step(shlex.join(item.argv), index, index)
    lines.append("exit $failed")
    return "\n".join(lines) + "\n"


def run_batch(transport, batch, blobs, on_done=None, keep_going=False):
    """Send one batch; on_done(index) as each step completes; attribute a failure.

    The transport's `run_streams` keeps the marks (stdout) apart from the output
    (stderr). A transport with only `run` (combined output: a test double running the
    local sh) gives its stdout first; marks are then whole lines of it.
    """
    uploads = [step for step in batch.steps if isinstance(step, Upload)]
    stdin = upload_tar(uploads, blobs) if uploads else None
    marks = Marks(new_nonce())

    def on_line(line):
        index = marks.done(line)
        if on_done and index is not None and index < len(batch.steps):
            on_done(index)
    command = shlex.join(["sh", "-c", batch_script(batch, marks.nonce, keep_going)])
    streams = getattr(transport, "run_streams", None)
    if streams:
        code, marked, output = streams(command, stdin=stdin, on_line=on_line)
    else:
        code, marked = transport.run(command, stdin=stdin, on_line=on_line)
        output = ""
    return _result(batch, marks, code, marked, output)


def _result(batch, marks, code, marked, output):
    """The BatchResult of a round trip's exit code, marks stream and output."""
    clean = (marks.other(marked) + output).strip()
    if code == 0:
        return BatchResult(True, clean)
    failures = tuple((index, batch.steps[index].label, exit_code)
                     for index, exit_code in marks.failures(marked, len(batch.steps)))
    if not failures:  # no mark at all: the shell was killed, or the tar stream failed
        return BatchResult(False, clean, len(batch.steps), batch.label, code)
    index, label, exit_code = failures[0]
    return BatchResult(False, clean, index, label, exit_code, failures)


@dataclass(frozen=True)
class HostOutcome:
    """One host's result, for the summary table and the exit code."""

    host: str
    status: str  # deployed, rolled-back, failed, rollback-failed; "deployed (finish failed)"
    release: str
    seconds: float
    detail: str
    trips: int


class HostExecutor:  # pylint: disable=too-few-public-methods
    """Runs one host's plan and logs host-prefixed lines."""

    def __init__(self, transport, blobs, out, secrets=()):
        self.transport, self.blobs, self.out, self.secrets = transport, blobs, out, secrets

    def _say(self, *lines):
        for line in prefixed(self.transport.address, lines):
            self.out(line)

    def _run(self, batch, keep_going=False):
        started = time.monotonic()
        self._say(batch_title(self.transport.trips + 1, batch))
        result = run_batch(self.transport, batch, self.blobs, lambda index: self._say(
            step_done(batch.steps[index], time.monotonic() - started)), keep_going)
        self._say(*(line for line in mask(result.output, self.secrets).splitlines()
                    if line.startswith(WARNING)))  # e.g. no crontab: no start at boot
        if not result.ok:
            self._say(*step_failed(result.failed_step, result.code,
                                   time.monotonic() - started,
                                   mask(result.output, self.secrets)))
        return result

    def _run_all(self, batches):
        for batch in batches:
            result = self._run(batch)
            if not result.ok:
                return result
        return None

    def _finish(self, batches):
        """Run every finish step even after one fails (the unlock comes last and must
        run); the labels of the steps left undone."""
        undone = []
        for batch in batches:
            result = self._run(batch, keep_going=True)
            if not result.ok:
                undone += [label for _, label, _ in result.failures] or [result.failed_step]
        return undone

    def execute(self, plan, release_id, done="deployed"):
        """Run the plan: batches, then rollback on a failure after the switch, then finish."""
        started = time.monotonic()
        failure, status = None, done
        for index, batch in enumerate(plan.batches):
            result = self._run(batch)
            if result.ok:
                continue
            failure, status = result, "failed"
            if (index, result.failed_index) >= plan.rollback_from:
                rollback_failure = self._run_all(plan.rollback)
                status = "rollback-failed" if rollback_failure else "rolled-back"
            break
        undone = self._finish(plan.on_failure if failure else plan.on_success)
        detail = ""
        if failure:
            last = mask(failure.output, self.secrets).strip().splitlines()[-1:] or [""]
            detail = f"{failure.failed_step}: {last[0]}"
        if undone:  # the release stands; say what was left undone, and fail the run
            detail = (f"{detail}; " if detail else "") + "left undone: " + "; ".join(undone)
            status += " (finish failed)" if status == done else ""
        return HostOutcome(plan.host, status, release_id, time.monotonic() - started, detail,
                           self.transport.trips)


def run_plans(jobs, blobs, out, secrets=(), done="deployed"):
    """Run [(transport, plan, release id)] on all hosts at once; [(job, outcome, error)]."""
    printing = threading.Lock()

    def say(line):
        with printing:
            out(line)

    def execute(job):
        transport, plan, release_id = job
        return HostExecutor(transport, blobs, say, secrets).execute(plan, release_id, done)
    return each(execute, jobs)
