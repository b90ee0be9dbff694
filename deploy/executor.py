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

from .parallel import each

from .printer import batch_lines, prefixed
from .steps import Run, Upload

PRELUDE = ('umask 022\nfail() { printf "\\nfabship-step-failed %s %s\\n" "$1" "$2"; '
           'exit 3; }\n')
FAILED_MARK = re.compile(r"^fabship-step-failed (\d+) (\d+)$", re.MULTILINE)


@dataclass(frozen=True)
class BatchResult:
    """How one round trip ended."""

    ok: bool
    output: str
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
    """The sh script of one batch; uploads unpack where the first one stands."""
    lines, unpacked = [PRELUDE], False
    for index, step in enumerate(batch.steps):
        if isinstance(step, Upload):
            if not unpacked:
                lines.append(f"tar -x -p --no-same-owner -C / -f - || fail {index} $?")
                unpacked = True
        elif isinstance(step, Run):
            lines.append(f"{shlex.join(step.argv)} || fail {index} $?")
    return "\n".join(lines) + "\n"


def run_batch(transport, batch, blobs):
    """Send one batch; attribute a failure to its step."""
    uploads = [step for step in batch.steps if isinstance(step, Upload)]
    stdin = upload_tar(uploads, blobs) if uploads else None
    code, output = transport.run(shlex.join(["sh", "-c", batch_script(batch)]), stdin=stdin)
    if code == 0:
        return BatchResult(True, output)
    found = FAILED_MARK.findall(output)
    label = batch.steps[int(found[-1][0])].label if found else batch.label
    clean = FAILED_MARK.sub("", output).strip()
    return BatchResult(False, clean, label, int(found[-1][1]) if found else code)


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

    def _run(self, batch):
        started = time.monotonic()
        number = self.transport.trips + 1
        for line in prefixed(self.transport.address,
                             batch_lines(number, batch, self.secrets, show_content=False)):
            self.out(line)
        result = run_batch(self.transport, batch, self.blobs)
        took = time.monotonic() - started
        if result.ok:
            self.out(f"[{self.transport.address}]   ok ({took:.1f}s)")
        else:
            self.out(f"[{self.transport.address}]   FAILED at '{result.failed_step}' "
                     f"(exit {result.code}, {took:.1f}s)")
            for line in result.output.splitlines()[-15:]:
                self.out(f"[{self.transport.address}]   | {line}")
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
            if index >= plan.switch_index:
                rollback_failure = self._run_all(plan.rollback)
                status = "rollback-failed" if rollback_failure else "rolled-back"
            break
        finish = plan.on_failure if failure else plan.on_success
        self._run_all(finish)
        detail = ""
        if failure:
            last = failure.output.strip().splitlines()[-1:] or [""]
            detail = f"{failure.failed_step}: {last[0]}"
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
