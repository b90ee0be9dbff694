"""Runs the phases of one host's plan over its connection and reports them as events.

Each call is one round trip (deploy/batch.py). Only transport and deploy errors
(DeployError) become per-host data, in the fleet runner; anything else is a bug and
propagates.
"""
import shlex
import time

from .batch import run_batch
from .commands.boot import WARNING
from .outcome import Outcome
from .steps import Run


def command_text(step):
    """What -v shows for a step: the command line, or the upload."""
    if isinstance(step, Run):
        return shlex.join(step.argv)
    return f"upload {step.path} (mode {step.mode:04o})"


class HostExecutor:
    """One host's rollout, revert and finish; its HostState records how it went."""

    def __init__(self, conn, plan, bus, blobs, state):  # pylint: disable=R0913,R0917
        self.conn, self.plan, self.bus, self.blobs, self.state = conn, plan, bus, blobs, state

    def _emit(self, kind, **data):
        self.bus.emit(kind, host=self.plan.host, **data)

    def _run(self, label, phases, keep_going=False):
        """Send `phases` as one fenced round trip; (result, phase of the failed step)."""
        batch = self.plan.batch(label, phases)
        owners = [phase for phase in phases for _ in phase.steps]
        if not owners:
            return None, None
        clock = {"step": time.monotonic(), "start": time.monotonic(), "next": 0}

        def begin(index):
            clock["next"] = index
            if index < len(owners):
                if index == 0 or owners[index].shown != owners[index - 1].shown:
                    self._emit("stage", stage=owners[index].shown)
                self._emit("command", step=batch.steps[index].label,
                           command=command_text(batch.steps[index]))

        def done(index):
            now = time.monotonic()
            self._emit("step_done", phase=owners[index].name, step=batch.steps[index].label,
                       seconds=round(now - clock["step"], 3))
            clock["step"] = now
            if owners[index].name == "switch" and (index == 0 or
                                                   owners[index - 1].name != "switch"):
                self._emit("host_switched", old=self.state.old, new=self.state.new)
            begin(index + 1)
        begin(0)
        result = run_batch(self.conn, batch, self.blobs, done, keep_going)
        self.state.trips += 1
        self.state.seconds += time.monotonic() - clock["start"]
        for line in result.output.splitlines():
            if line.startswith(WARNING):  # e.g. no crontab: no start at boot
                self._emit("warning", text=line)
        if result.ok:
            return result, None
        # no mark at all (failed_index past the end): the first step not done failed
        failed_in = owners[result.failed_index if result.failed_index < len(owners)
                           else min(clock["next"], len(owners) - 1)]
        self._emit("step_failed", phase=failed_in.name, step=result.failed_step,
                   code=result.code, seconds=round(time.monotonic() - clock["step"], 3),
                   output="\n".join(result.output.splitlines()[-15:]))
        return result, failed_in.name

    def _failure(self, result):
        last = result.output.strip().splitlines()[-1:] or [""]
        return f"{result.failed_step}: {last[0]}"

    def roll(self):
        """Ship, switch, verify. True when the host serves the new release healthily;
        otherwise the host is failed (and reverted, when it had switched)."""
        result, phase = self._run("ship, switch, restart, health check", self.plan.rollout)
        if result is None or result.ok:
            self.state.reached, self.state.switched = "verify", True
            self._emit("host_healthy")
            return True
        self.state.reached = phase
        reason = self._failure(result)
        if result.fenced:
            return self._taken_over(reason)
        self.state.switched = self.plan.needs_revert(phase)
        self.state.note(reason)
        self._emit("host_failed", phase=phase, reason=reason)
        if self.state.switched:
            self.revert()
        else:
            self.state.outcome = Outcome.FAILED
        return False

    def _taken_over(self, reason):
        self.state.outcome = Outcome.TAKEN_OVER
        self.state.note("another run took the lock over (--break-lock); left to it")
        self._emit("host_failed", phase=self.state.reached, reason=reason)
        return False

    def revert(self, fleet=False):
        """Back to the release that served before (or stop a failed first release)."""
        self.state.reached = "revert"
        self.state.fleet_rollback = fleet
        if not any(phase.steps for phase in self.plan.revert):
            self.state.outcome = Outcome.ROLLBACK_FAILED
            self.state.note("no release that served to go back to; the host stays on "
                            f"{self.state.new}")
            self._emit("host_reverted", to=None, ok=False, reason="nothing to go back to")
            return
        result, _ = self._run("revert", self.plan.revert)
        if result.fenced:
            self._taken_over(self._failure(result))
        elif result.ok:
            self.state.outcome = Outcome.ROLLED_BACK
            if fleet:
                self.state.note("fleet rollback: the failure budget ran out")
            self._emit("host_reverted", to=self.plan.previous, ok=True, reason="")
        else:
            self.state.outcome = Outcome.ROLLBACK_FAILED
            reason = self._failure(result)
            self.state.note(f"going back failed: {reason}")
            self._emit("host_reverted", to=self.plan.previous, ok=False, reason=reason)

    def finish(self, key):
        """The finish phase `key` (served, failed, rolled-back, untouched); every step runs
        even after one fails, so the lock is given back."""
        self.state.reached = "finish"
        phase = self.plan.finish[key]
        result, _ = self._run(f"finish: {key}", (phase,), keep_going=True)
        if result is None or result.ok:
            return
        if result.fenced:
            self.state.note("another run took the lock over before the finish")
            return
        self.state.finish_failed = True
        undone = [label for _, label, _ in result.failures] or [result.failed_step]
        self.state.note("left undone: " + "; ".join(undone))
