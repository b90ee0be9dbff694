"""Typed deploy events, and the bus that hands them to its subscribers.

The executor and the fleet runner emit events; the console printer, the JSON-lines log
and the webhook notifier subscribe. Secrets are masked when an event is built, so no
subscriber ever holds one. Subscribers are called one at a time (under one lock), in the
order they were given: a line of output is never mixed with another host's.

Kinds and their data (every event also has `time`, `release` and, where relevant,
`host`):
  started      service, environment, release, commit, deployer, hosts, waves, settings
  stage        host, stage: lock | ship | switch | restart | health | revert | finish
  command      host, step, command (for -v)
  step_done    host, phase, step, seconds
  step_failed  host, phase, step, code, seconds, output (its last lines)
  warning      host, text
  host_switched  host, old, new
  host_healthy   host
  host_failed    host, phase, reason
  host_reverted  host, to, ok, reason
  wave_started   wave, waves, hosts
  wave_done      wave, waves, failed
  rolled_back    hosts, reason (a fleet-wide rollback)
  host_done      host, outcome, old, new, seconds, reached, detail, trips
  finished       outcome: succeeded | failed | rolled_back | interrupted; duration,
                 hosts ({host: outcome}), failed ([host]), reason
"""
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .secrets import mask

KINDS = ("started", "stage", "command", "step_done", "step_failed", "warning",
         "host_switched", "host_healthy", "host_failed", "host_reverted", "wave_started",
         "wave_done", "rolled_back", "host_done", "finished")
DEPLOY_OUTCOMES = ("succeeded", "failed", "rolled_back", "interrupted")


@dataclass(frozen=True)
class Event:
    """One thing that happened. `data` holds only JSON values, secrets masked."""

    kind: str
    time: float  # seconds since the epoch
    release: str
    host: str | None = None
    data: dict = field(default_factory=dict)

    def to_json(self):
        """The event as one JSON-ready dict: time (ISO 8601, UTC, ms), event, release,
        host (when there is one), then the data."""
        stamp = datetime.fromtimestamp(self.time, timezone.utc)
        head = {"time": stamp.strftime("%Y-%m-%dT%H:%M:%S.") +
                f"{stamp.microsecond // 1000:03d}Z", "event": self.kind,
                "release": self.release}
        if self.host is not None:
            head["host"] = self.host
        return {**head, **self.data}


def masked(value, secrets):
    """`value` (JSON data: dicts, lists, strings, numbers) with every secret masked."""
    if isinstance(value, str):
        return mask(value, secrets)
    if isinstance(value, dict):
        return {masked(key, secrets): masked(item, secrets) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(item, secrets) for item in value]
    return value


class EventBus:
    """Builds events (masked) and hands each to every subscriber, one at a time."""

    def __init__(self, release, secrets=(), subscribers=(), clock=time.time):
        self.release, self.secrets, self.clock = release, tuple(secrets), clock
        self.subscribers = list(subscribers)
        self._lock = threading.Lock()

    def subscribe(self, subscriber):
        """Add a callable taking one Event."""
        self.subscribers.append(subscriber)

    def emit(self, kind, host=None, **data):
        """Build the event and deliver it; returns it."""
        if kind not in KINDS:
            raise ValueError(f"unknown event kind {kind!r}")
        event = Event(kind, self.clock(), self.release,
                      None if host is None else masked(host, self.secrets),
                      masked(data, self.secrets))
        with self._lock:
            for subscriber in self.subscribers:
                subscriber(event)
        return event
