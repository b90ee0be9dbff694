"""What a host holds, as read by the probe (commands.lock.probe), parsed purely."""
import json
import re
from dataclasses import dataclass

# The form of a release id (deployment.new_release: `20260102T030405.678Z-abc1234`),
# a little liberal in its tail. No other name is a release: not `..`, not a name with a
# line break in it.
RELEASE_ID = re.compile(r"[0-9]{8}T[0-9]{6}\.[0-9]{3}Z-[0-9a-z]{1,40}")


def is_release_id(name):
    """Whether `name` has the form of a release id."""
    return bool(RELEASE_ID.fullmatch(name))


@dataclass(frozen=True)
class Facts:
    """Read-only facts about one host. `known` is False for the dry-run."""

    known: bool = True
    current: str | None = None  # release id `current` points to
    releases: tuple[str, ...] = ()
    served: tuple[str, ...] = ()  # releases that passed their health check once
    has_artifact: bool = False
    has_venv: bool = False
    supervisor_conf: str | None = None  # sha256 of the running release's supervisord.conf

    @property
    def previous(self):
        """The newest release before `current` that once served healthily, if any.

        Failed releases and ones a killed deploy left unserved are never rollback targets.
        """
        older = [r for r in self.served if self.current and r < self.current]
        return older[-1] if older else None

    @property
    def previous_for_revert(self):
        """What a failed deploy goes back to: `current` when it once served, else the
        newest release that did (a killed deploy may have left `current` on one that
        never passed its health check); None when no release ever served."""
        if self.current in self.served:
            return self.current
        return self.served[-1] if self.served else None


UNKNOWN = Facts(known=False)


def parse_facts(text):
    """Facts from the probe's key=value lines.

    The first line of a key counts (a later one cannot override it), and only names of
    the release-id form are releases (see commands.lock.PROBE, which skips the others).
    """
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            values.setdefault(key.strip(), value.strip())
    current = values.get("current", "").rstrip("/").rsplit("/", 1)[-1]

    def ids(key):
        return tuple(sorted(name for name in values.get(key, "").split()
                            if is_release_id(name)))
    return Facts(
        current=current if is_release_id(current) else None,
        releases=ids("releases"),
        served=ids("served"),
        has_artifact=values.get("artifact") == "yes",
        has_venv=values.get("venv") == "yes",
        supervisor_conf=values.get("supervisor_conf") or None,
    )


def parse_lock_owner(text):
    """The owner record printed as `locked-by=<json>` by a refused lock, or None."""
    for line in text.splitlines():
        if line.startswith("locked-by="):
            try:
                owner = json.loads(line[len("locked-by="):])
            except ValueError:
                return {"raw": line[len("locked-by="):]}
            return owner if isinstance(owner, dict) else {"raw": str(owner)}
    return None


def describe_owner(owner):
    """'alice@laptop (pid 123) since 2026-...Z, deploying R' for a lock message."""
    if not owner or "who" not in owner:
        return "an unknown owner (no owner.json)"
    text = f"{owner.get('who')}@{owner.get('where', '?')}"
    if owner.get("pid"):
        text += f" (pid {owner['pid']})"
    if owner.get("since"):
        text += f" since {owner['since']}"
    if owner.get("release"):
        text += f", deploying {owner['release']}"
    return text
