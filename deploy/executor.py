"""Runs plans over the SSH transport; per-host failure is data, not a crash.

Each Batch of a host's plan is one round trip (deploy/batch.py); a failure from the
switch on runs the plan's rollback; the finish runs every step even after one fails.
"""
import threading
import time
from dataclasses import dataclass

from .batch import run_batch
from .commands.boot import WARNING
from .parallel import each
from .printer import batch_title, prefixed, step_done, step_failed
from .secrets import mask


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
