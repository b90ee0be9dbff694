"""Inert plan steps: dataclasses that serialise to JSON and carry no behaviour.

A Batch is one remote command (one round trip): its uploads travel on stdin as one
tar stream and are unpacked where the first upload stands; its runs execute in order.
"""
from dataclasses import dataclass, field, fields


@dataclass(frozen=True)
class Run:
    """Run argv on the host (quoted with shlex.join)."""

    argv: tuple[str, ...]
    label: str
    unless: str | None = None  # a fact the dry-run cannot know: skipped when it holds
    timeout: float | None = None  # the step's own bound (a health check's), if it has one


@dataclass(frozen=True)
class Upload:  # pylint: disable=too-many-instance-attributes
    """Write a file on the host: rendered `text`, or the bytes of a built `blob`."""

    path: str
    label: str
    mode: int = 0o644
    text: str | None = None
    blob: str | None = None  # name of a built artifact, looked up by the executor
    size: int = 0
    secret: bool = False  # the text holds a secret: mode 0600
    shown: str | None = None  # the text as plans and logs show it (secrets masked)
    unless: str | None = None


@dataclass(frozen=True)
class Batch:
    """Steps sent to one host as one remote command (one round trip).

    With a `fence` (the lock directory, this run's owner record), every step runs only
    while this run still holds the host's deploy lock: a run taken over with
    `--break-lock` stops before its next effect.
    """

    label: str
    steps: tuple = field(default_factory=tuple)
    fence: tuple[str, str] | None = None


PHASES = ("ship", "switch", "verify", "finish", "revert")


@dataclass(frozen=True)
class Phase:
    """A named part of a host's plan; `stage` is what progress shows while it runs."""

    name: str  # one of PHASES
    steps: tuple
    stage: str | None = None

    @property
    def shown(self):
        """The stage progress shows: `stage`, else the phase's name."""
        return self.stage or self.name


@dataclass(frozen=True)
class HostPlan:  # pylint: disable=too-many-instance-attributes
    """Everything one host will do, decided before anything runs.

    `rollout` (ship, switch, verify) is sent as one round trip; a failure in a phase
    from `revert_from` on needs `revert` (back to `previous`, a release that served).
    `finish` holds the closing phase for each way the host can end: served, failed,
    rolled-back, untouched; the fleet runner runs it once the rollout is decided.
    """

    host: str
    release: str
    previous: str | None
    rollout: tuple[Phase, ...]
    revert: tuple[Phase, ...]
    finish: dict
    fence: tuple[str, str] | None = None
    revert_from: str = "switch"

    def needs_revert(self, phase):
        """Whether a failure in `phase` has changed what the host serves."""
        order = PHASES[:3]  # ship, switch, verify: the rollout's phases, in order
        return phase in order and order.index(phase) >= order.index(self.revert_from)

    def batch(self, label, phases):
        """`phases` as one round trip, fenced by this run's lock."""
        return Batch(label, tuple(step for phase in phases for step in phase.steps),
                     self.fence)


def to_json(obj):
    """A plan (or any step) as JSON-ready dicts, with the step type named.

    An upload's text is given as shown (secrets masked), never as written.
    """
    if isinstance(obj, (list, tuple)):
        return [to_json(item) for item in obj]
    if isinstance(obj, dict):
        return {key: to_json(value) for key, value in obj.items()}
    if hasattr(obj, "__dataclass_fields__"):
        data = {f.name: to_json(getattr(obj, f.name)) for f in fields(obj)}
        if data.get("shown") is not None:
            data["text"] = data.pop("shown")
        return {"type": type(obj).__name__, **data}
    return obj


@dataclass(frozen=True)
class Ref:
    """A value an earlier Ec2Call produces (e.g. the id of a group it creates)."""

    name: str

    def __str__(self):
        return f"<{self.name}>"


@dataclass(frozen=True)
class Ec2Call:
    """One AWS API call: `api` (ec2, ssm), the operation's name, its parameters.

    `saves` names the Ref a response value fills: (ref name, response key).
    """

    api: str
    op: str
    params: tuple  # ((name, value), ...) so the step stays hashable and ordered
    label: str
    unless: str | None = None
    saves: tuple = ()

    @property
    def kwargs(self):
        """The parameters as a dict, for the client call."""
        return dict(self.params)
