"""What one deploy or rollback run holds open: its event bus and subscribers (console or
`--json`, the event log, webhooks), its signal guard and its pool of connections."""
import os
import sys

from .console import PlainConsole, console_for
from .errors import FabshipError
from .eventlog import EventLog, JsonLines
from .interrupt import Interrupt
from .knownhosts import KnownHosts
from .events import EventBus
from .pool import Pool
from .rollout import FleetRun, Interrupted
from .secrets import Secret
from .session import open_host


class Session:  # pylint: disable=too-many-instance-attributes
    """A context manager; `bus`, `interrupt` and `fleet_run(...)` inside the block."""

    def __init__(self, project, target, release, secrets, options,  # pylint: disable=R0913,R0917
                 out=None):
        self.project, self.target, self.release = project, target, release
        self.bus = EventBus(release.release_id, (*secrets, *_tokens(target)))
        if options.get("json"):
            self.console = JsonLines(sys.stdout)
        elif out is not None:
            self.console = PlainConsole(out, options.get("verbose", False))
        else:
            self.console = console_for(sys.stdout, options.get("verbose", False))
        self.log = EventLog(project.root, release.release_id)
        self.notifier = _notifier(target, release, options, self.say)
        self.closers = [self.console, self.log]
        for subscriber in (self.console, self.log, self.notifier):
            if subscriber is not None:
                self.bus.subscribe(subscriber)
        self.interrupt = Interrupt()
        self.known = KnownHosts(project.known_hosts)
        self.pool = None

    def check_interrupt(self, when):
        """Raise Interrupted if a signal came (the locks must be given back first)."""
        if self.interrupt.requested:
            raise Interrupted(f"stopped by {self.interrupt.name} {when}; every lock was "
                              "given back", self.interrupt.exit_code)

    def say(self, text):
        """A line for the user (and the log) that belongs to no host."""
        self.bus.emit("warning", text=text)

    def _open(self, host):
        conn = open_host(self.project, self.known, host)
        if conn.pinned:
            self.bus.emit("warning", host=host.address,
                          text=f"pinned host key {conn.pinned} (first contact)")
        return conn

    def fleet_run(self, jobs, settings, owner, break_lock,  # pylint: disable=R0913,R0917
                  labels=("deployed", "rolled-back")):
        """The FleetRun of this session (its pool bounded by `settings.parallel`)."""
        self.pool = Pool(self._open, settings.parallel)
        return FleetRun(jobs, self.pool, self.bus, settings, self.interrupt, owner,
                        break_lock, labels)

    def __enter__(self):
        for warning in self.known.warnings:
            self.say(warning)
        self.interrupt.__enter__()
        return self

    def __exit__(self, kind, exc, trace):
        try:
            if isinstance(exc, FabshipError):
                outcome = "interrupted" if isinstance(exc, Interrupted) else "failed"
                self.bus.emit("finished", outcome=outcome, duration=0, hosts={}, failed=[],
                              reason=str(exc), done="", error=True)
        finally:
            self.interrupt.__exit__(kind, exc, trace)
            if self.pool is not None:
                self.pool.close()
            if self.notifier is not None:  # posts still under way: at most max_time more
                self.notifier.close(self.target.notify.max_time)
            for closer in self.closers:
                closer.close()


def _notifier(target, release, options, say):
    """The webhook notifier when the environment (or service) configures one."""
    settings = getattr(target, "notify", None)
    if settings is None or options.get("dry"):
        return None
    from .notify import Notifier  # pylint: disable=import-outside-toplevel
    context = {"service": target.service.name, "environment": target.environment,
               "commit": release.commit, "deployer": f"{release.deployer}@{release.origin}"}
    return Notifier(settings, context, os.environ, say)


def _tokens(target):
    """The webhook tokens set in the environment: masked like secrets in every event."""
    settings = getattr(target, "notify", None)
    names = [hook.token_env for hook in settings.webhooks if hook.token_env] if settings else []
    return tuple(Secret(name, os.environ[name]) for name in names if os.environ.get(name))
