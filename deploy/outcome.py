"""How each host ended a rollout, typed: which phase it reached and what it serves."""
from dataclasses import dataclass
from enum import Enum


class Outcome(Enum):
    """A host's result. The value is what tables, logs and events show."""

    DEPLOYED = "deployed"  # serves the new release
    FAILED = "failed"  # failed before the switch: still serves what it served
    ROLLED_BACK = "rolled-back"  # switched, then back on its previous release
    ROLLBACK_FAILED = "rollback-failed"  # switched, and going back failed too
    UNTOUCHED = "untouched"  # locked and checked, never switched (budget, interrupt)
    TAKEN_OVER = "taken-over"  # another run took its lock over: left to that run
    UNREACHABLE = "unreachable"  # the connection failed: what it serves is unknown


@dataclass
class HostState:  # pylint: disable=too-many-instance-attributes
    """One host's progress through a rollout, as the fleet runner tracks it."""

    host: str
    old: str | None = None  # what `current` named before
    new: str | None = None  # the release this run ships
    outcome: Outcome | None = None  # None until the host's rollout is decided
    reached: str = "lock"  # lock, ship, switch, verify, revert, finish
    detail: str = ""
    seconds: float = 0.0
    trips: int = 0
    switched: bool = False
    finish_failed: bool = False
    fleet_rollback: bool = False  # rolled back because the fleet's budget ran out

    @property
    def failed(self):
        """Counts against the failure budget."""
        return self.outcome in (Outcome.FAILED, Outcome.ROLLED_BACK, Outcome.ROLLBACK_FAILED,
                                Outcome.UNREACHABLE, Outcome.TAKEN_OVER) \
            and not self.fleet_rollback

    def label(self, done="deployed", reverted=Outcome.ROLLED_BACK.value):
        """The outcome as the closing table shows it: `done` names a success, `reverted`
        a host back where it started (a rollback says `rollback-failed` then)."""
        if self.outcome is None:
            return Outcome.UNTOUCHED.value
        text = {Outcome.DEPLOYED: done, Outcome.ROLLED_BACK: reverted}.get(
            self.outcome, self.outcome.value)
        # a failed host's detail says what its finish left undone
        return text + (" (finish failed)" if self.finish_failed and
                       self.outcome is Outcome.DEPLOYED else "")

    def note(self, text):
        """Add to the detail."""
        self.detail = f"{self.detail}; {text}" if self.detail else text
