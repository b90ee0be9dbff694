"""Runs plans over the SSH transport; per-host failure is data, not a crash.

Each Batch becomes one remote `sh -c` script (one round trip). Its uploads travel on
stdin as one tar stream unpacked with `tar -x -p` where the first upload stands, so file
modes (0600 for secrets) are set as the files are created.
"""
import io
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

PRELUDE = ('umask 022\nfail() { printf "\\nfabship-step-failed %s %s\\n" "$1" "$2"; '
           'exit 3; }\n')
DONE = "fabship-step-done "
FAILED_MARK = re.compile(r"^fabship-step-failed (\d+) (\d+)$", re.MULTILINE)
MARKS = re.compile(r"^fabship-step-(done|failed) .*\n?", re.MULTILINE)


@dataclass(frozen=True)
class BatchResult:
    """How one round trip ended; `failed_index` is the failing step's position."""

    ok: bool
    output: str
    failed_index: int | None = None
    failed_step: str | None = None
    code: int = 0


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


def batch_script(batch):
    """The sh script of one batch; uploads unpack where the first one stands.

    After each step it prints a `fabship-step-done N` mark (printf is a builtin), so
    the controller can show progress live and knows where a failure happened.
    """
    uploads = [i for i, step in enumerate(batch.steps) if isinstance(step, Upload)]
    lines = [PRELUDE]
    for index, step in enumerate(batch.steps):
        if isinstance(step, Upload) and index == uploads[0]:
            lines.append(f"tar -x -p --no-same-owner -C / -f - || fail {index} $?")
            lines.append(f"printf '{DONE}%s\\n' {' '.join(map(str, uploads))}")
        elif isinstance(step, Run):
            lines.append(f"{shlex.join(step.argv)} || fail {index} $?")
            lines.append(f"printf '{DONE}%s\\n' {index}")
    return "\n".join(lines) + "\n"


def run_batch(transport, batch, blobs, on_done=None):
    """Send one batch; on_done(index) as each step completes; attribute a failure."""
    uploads = [step for step in batch.steps if isinstance(step, Upload)]
    stdin = upload_tar(uploads, blobs) if uploads else None

    def on_line(line):
        if on_done and line.startswith(DONE):
            on_done(int(line[len(DONE):]))
    code, output = transport.run(shlex.join(["sh", "-c", batch_script(batch)]), stdin=stdin,
                                 on_line=on_line)
    clean = MARKS.sub("", output).strip()
    if code == 0:
        return BatchResult(True, clean)
    found = FAILED_MARK.findall(output)
    if not found:
        return BatchResult(False, clean, len(batch.steps), batch.label, code)
    index = int(found[-1][0])
    return BatchResult(False, clean, index, batch.steps[index].label, int(found[-1][1]))


@dataclass(frozen=True)
class HostOutcome:
    """One host's result, for the summary table and the exit code."""

    host: str
    status: str  # deployed, rolled-back, failed, rollback-failed
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

    def _run(self, batch):
        started = time.monotonic()
        self._say(batch_title(self.transport.trips + 1, batch))
        result = run_batch(self.transport, batch, self.blobs, lambda index: self._say(
            step_done(batch.steps[index], time.monotonic() - started)))
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
        finish_failure = self._run_all(plan.on_failure if failure else plan.on_success)
        detail = ""
        if failure:
            last = mask(failure.output, self.secrets).strip().splitlines()[-1:] or [""]
            detail = f"{failure.failed_step}: {last[0]}"
        if finish_failure:  # the release stands; say what was left undone (e.g. the lock)
            detail = f"{detail}; " if detail else ""
            detail += f"could not finish: {finish_failure.failed_step}"
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
