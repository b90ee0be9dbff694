"""The fleet runner: check every host up front, roll out in waves, keep the failure
budget, roll the fleet back when it runs out, then finish every host.

1. Every host is locked and probed (round trip 1), at most `parallel` at once. A held
   lock or an unreachable host stops the deploy here, before any switch, and the locks
   taken are given back.
2. The waves (canary first, then batches) run one after another; within a wave, hosts
   run in parallel, bounded. A host that fails after its switch goes back at once.
3. One failure past `max_fail` stops the rollout: every host this run switched goes back
   to its previous release (a fleet rollback); hosts never reached stay as they were.
4. Only then is every host finished (mark served, history, prune, unlock): a fleet
   rollback needs no re-locking. Hosts another run took over, and hosts that stopped
   answering, are left alone.

A signal (interrupt.Interrupt) stops it between hosts: the ones in flight end, the rest
stay untouched, every host is finished. Only DeployError (transport, deploy) becomes a
host's outcome; any other exception is a bug and propagates.
"""
import shlex
import time
from dataclasses import dataclass

from .batch import run_batch
from .commands import lock
from .errors import DeployError, FabshipError
from .executor import HostExecutor
from .facts import describe_owner, parse_facts, parse_lock_owner
from .outcome import HostState, Outcome
from .parallel import each
from .planner import probe_batch
from .rolloutconfig import waves as make_waves

FINISH_KEYS = {Outcome.DEPLOYED: "served", Outcome.FAILED: "failed",
               Outcome.ROLLED_BACK: "failed", Outcome.ROLLBACK_FAILED: "failed",
               Outcome.UNTOUCHED: "untouched"}  # taken over, unreachable: left alone


class Interrupted(FabshipError):
    """A signal stopped the run before any host was switched."""

    def __init__(self, message, code):
        super().__init__(message)
        self.exit_code = code


@dataclass(frozen=True)
class HostJob:
    """What the runner needs to lock and probe one host."""

    host: object  # hosts.Host
    layout: object  # layout.Layout
    wanted: tuple = ("-", "-")  # what the probe looks for: artifact name, venv key


@dataclass
class FleetResult:
    """How the rollout ended: the deploy's outcome, exit code and every host's state."""

    outcome: str  # succeeded, failed, rolled_back, interrupted
    code: int
    states: list
    reason: str = ""


class FleetRun:  # pylint: disable=too-many-instance-attributes
    """One rollout over a pool of connections (see the module's docstring)."""

    def __init__(self, jobs, pool, bus, settings, interrupt,  # pylint: disable=R0913,R0917
                 owner, break_lock=False, labels=("deployed", "rolled-back")):
        self.jobs, self.pool, self.bus, self.settings = list(jobs), pool, bus, settings
        self.interrupt, self.owner, self.break_lock = interrupt, owner, break_lock
        self.labels = labels  # how the table names a success, and a host gone back
        self.hosts = {job.host.address: job.host for job in self.jobs}
        self.states, self.started = {}, time.monotonic()
        self.bug, self.exceeded, self.budget, self.skipped = None, False, 0, 0

    def _each(self, function, items):
        """function(item) for every item, at most `parallel` at once. A bug (anything but
        a DeployError) is kept in `self.bug` and stops new work: the run still finishes
        every host, then raises it (see `raise_bug`)."""
        results = each(function, items, self.settings.parallel)
        for _, _, error in results:
            if error is not None and not isinstance(error, DeployError) and self.bug is None:
                self.bug = error
        return results

    def raise_bug(self):
        """Raise the bug a worker met, if one did."""
        if self.bug is not None:
            raise self.bug

    @property
    def stopping(self):
        """No new host is started: a signal, a bug, or the failure budget ran out."""
        return self.interrupt.requested or self.bug is not None or self.exceeded

    # 1. up front
    def check(self):
        """Lock and probe every host: [Facts]; DeployError (locks given back) if any
        host is locked or unreachable, Interrupted if a signal came meanwhile."""
        def probe(job):
            if self.interrupt.requested:
                return None
            self.bus.emit("stage", host=job.host.address, stage="lock")
            with self.pool.use(job.host) as conn:
                return run_batch(conn, probe_batch(job.layout, self.owner, self.break_lock,
                                                   job.wanted), {})
        results = self._each(probe, self.jobs)
        unreachable, locked, held = [], [], set()
        for job, result, error in results:
            if error is not None:
                unreachable.append(str(error))
            elif result is not None and not result.ok:
                holder = parse_lock_owner(result.output)
                if holder is not None:
                    held.add(job.host.address)
                locked.append(f"{job.host.address}: " + (
                    f"locked by {describe_owner(holder)}" if holder is not None else
                    f"probe failed: {result.output.strip()[-300:]}"))
        if unreachable or locked or self.interrupt.requested or self.bug is not None:
            # every host but those another run holds: the release checks the owner, and a
            # probe that failed half-way may have taken the lock before it did
            self.unlock([job for job in self.jobs if job.host.address not in held])
            self.raise_bug()
            if unreachable:
                raise DeployError("cannot reach every host; nothing was changed:\n  " +
                                  "\n  ".join(unreachable + locked))
            if locked:
                raise DeployError("the deploy lock is held; nothing was changed:\n  " +
                                  "\n  ".join(locked) + "\nIf the owner is gone, take the "
                                  "lock over with `--break-lock`.")
            raise Interrupted(f"stopped by {self.interrupt.name} before any switch; every "
                              "lock was given back", self.interrupt.exit_code)
        return [parse_facts(result.output) for _, result, _ in results]

    def unlock(self, jobs):
        """Give back the locks this run took on these hosts (only ever this run's own: the
        release checks the owner). A host that cannot be reached is warned about."""
        def give_back(job):
            with self.pool.use(job.host) as conn:
                code, output = conn.run(shlex.join(lock.release(job.layout.root, self.owner)))
            if code:
                raise DeployError(f"{job.host.address}: {output.strip()[-200:]}")
        for job, _, error in each(give_back, jobs, self.settings.parallel):
            if error is not None:
                self.bus.emit("warning", host=job.host.address,
                              text=f"could not give the lock back: {error}")

    # 2.-4. the rollout
    def run(self, plans, facts, blobs):
        """Roll `plans` out (in the order of the hosts); the FleetResult."""
        self.states = {plan.host: HostState(plan.host, old=fact.current, new=plan.release,
                                            trips=1)  # the up-front lock and probe
                       for plan, fact in zip(plans, facts)}
        by_host = {plan.host: plan for plan in plans}
        waves = make_waves([plan.host for plan in plans], self.settings)
        self.budget = self.settings.budget(len(plans))
        for number, wave in enumerate(waves, start=1):
            if self.stopping:
                self.skipped += sum(len(rest) for rest in waves[number - 1:])
                break
            self.bus.emit("wave_started", wave=number, waves=len(waves), hosts=wave)
            self._each(lambda host: self._roll(by_host[host], blobs), wave)
            failed = [h for h in wave if self.states[h].failed]
            self.bus.emit("wave_done", wave=number, waves=len(waves), failed=len(failed))
            if number < len(waves) and self.settings.pause and not self.stopping:
                self.interrupt.wait(self.settings.pause)
        if self.exceeded:
            self._fleet_rollback(by_host, blobs)
        for state in self.states.values():
            if state.outcome is None:
                state.outcome = Outcome.DEPLOYED if state.switched else Outcome.UNTOUCHED
        self._each(lambda plan: self._finish(plan, blobs), plans)
        self.raise_bug()
        return self._result()

    def _guard(self, plan, blobs, work):
        """Run work(executor) on the host's connection; a DeployError makes it unreachable."""
        state = self.states[plan.host]
        try:
            with self.pool.use(self.hosts[plan.host]) as conn:
                work(HostExecutor(conn, plan, self.bus, blobs, state))
        except DeployError as exc:
            if state.reached == "finish":  # decided; only the record and unlock are lost
                state.finish_failed = True
                state.note(f"finish failed: {exc}")
                return
            state.outcome = Outcome.UNREACHABLE
            state.note(f"{exc}; what it serves is unknown, its lock is left in place")
            self.bus.emit("host_failed", host=plan.host, phase=state.reached, reason=str(exc))

    def _roll(self, plan, blobs):
        if self.stopping:
            self.skipped += 1
            return
        self._guard(plan, blobs, lambda executor: executor.roll())
        if sum(state.failed for state in self.states.values()) > self.budget:
            self.exceeded = True  # the hosts of this wave not yet started are not started

    def _fleet_rollback(self, by_host, blobs):
        back = [host for host, state in self.states.items()
                if state.outcome is None and state.switched]
        failed = [host for host, state in self.states.items() if state.failed]
        self.bus.emit("rolled_back", hosts=back,
                      reason=f"{len(failed)} host(s) failed, more than max_fail {self.budget}")
        self._each(lambda host: self._guard(
            by_host[host], blobs, lambda executor: executor.revert(fleet=True)), back)

    def _finish(self, plan, blobs):
        state = self.states[plan.host]
        key = FINISH_KEYS.get(state.outcome)
        if state.fleet_rollback and state.outcome is Outcome.ROLLED_BACK:
            key = "rolled-back"  # went back because of the others: recorded as such
        if key is not None:
            self._guard(plan, blobs, lambda executor: executor.finish(key))
        self.bus.emit("host_done", host=plan.host, outcome=state.label(*self.labels),
                      old=state.old, new=state.new, seconds=round(state.seconds, 3),
                      reached=state.reached, detail=state.detail, trips=state.trips)

    def _result(self):
        states = list(self.states.values())
        failed = [s.host for s in states if s.failed or s.finish_failed or (
            s.fleet_rollback and s.outcome is not Outcome.ROLLED_BACK)]
        if self.exceeded:
            outcome, code = "rolled_back", 1
            reason = (f"{sum(s.failed for s in states)} host(s) failed, more than max_fail "
                      f"{self.budget}; every switched host went back")
        elif self.interrupt.requested and self.skipped:  # a signal after the last host
            outcome, code = "interrupted", self.interrupt.exit_code  # changed nothing
            reason = self.interrupt.name
        else:
            outcome, code = ("failed", 1) if failed else ("succeeded", 0)
            reason = ""
        self.bus.emit("finished", outcome=outcome, duration=round(
            time.monotonic() - self.started, 3), hosts={s.host: s.label(*self.labels)
                                                        for s in states},
                      failed=failed, reason=reason, done=self.labels[0])
        return FleetResult(outcome, code, states, reason)
