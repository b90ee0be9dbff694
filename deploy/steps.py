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
    """Steps sent to one host as one remote command (one round trip)."""

    label: str
    steps: tuple = field(default_factory=tuple)


@dataclass(frozen=True)
class HostPlan:
    """Everything one host will do, decided before anything runs."""

    host: str
    batches: tuple[Batch, ...]
    rollback_from: tuple[int, int]  # (batch, step): a failure there or later rolls back
    rollback: tuple[Batch, ...]
    on_success: tuple[Batch, ...]
    on_failure: tuple[Batch, ...]


def to_json(obj):
    """A plan (or any step) as JSON-ready dicts, with the step type named.

    An upload's text is given as shown (secrets masked), never as written.
    """
    if isinstance(obj, (list, tuple)):
        return [to_json(item) for item in obj]
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
