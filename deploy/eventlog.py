"""The JSON-lines event log: `reports/deploys/<release-id>.jsonl`, or stdout (`--json`).

One line per event, written and flushed as it happens, so a killed deploy still leaves
everything up to its end. Secrets were masked when the events were built.
"""
import json
from pathlib import Path


class JsonLines:  # pylint: disable=too-few-public-methods
    """A subscriber writing each event as one JSON line to an open text stream."""

    def __init__(self, stream):
        self.stream = stream

    def __call__(self, event):
        self.stream.write(json.dumps(event.to_json(), default=str) + "\n")
        self.stream.flush()

    def close(self):
        """Nothing to release for a borrowed stream (stdout)."""


class EventLog(JsonLines):  # pylint: disable=too-few-public-methods
    """The deploy's own log file under `reports/deploys/`."""

    def __init__(self, root, release_id):
        self.path = Path(root) / "reports" / "deploys" / f"{release_id}.jsonl"
        self.path.parent.mkdir(parents=True, exist_ok=True)
        super().__init__(self.path.open("a", encoding="utf-8"))

    def close(self):
        """Close the file."""
        self.stream.close()
