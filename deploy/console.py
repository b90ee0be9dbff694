"""What the user sees of a deploy: the bus's events as whole lines (CI logs), or on a
terminal a live block of the hosts in flight with the results printed above it."""
import os

from rich.console import Console
from rich.live import Live
from rich.text import Text

from .closing import Transcript, host_list
from .printer import prefixed, step_failed

HOST_LINES = {  # lines about event.host, prefixed `[host] ` when shown
    "step_done": lambda d: [f"  ok  {d['step']} ({d['seconds']:.1f}s)"],
    "step_failed": lambda d: step_failed(d["step"], d["code"], d["seconds"],
                                         d.get("output") or ""),
    "warning": lambda d: [d["text"]],
    "host_switched": lambda d: [f"switched {d.get('old') or 'nothing'} -> {d.get('new')}"],
    "host_failed": lambda d: [f"FAILED in {d['phase']}: {d['reason']}"],
    "host_reverted": lambda d: [f"rolled back to {d['to']}" if d.get("ok") else
                                f"ROLLBACK FAILED: {d['reason']}"],
    "wave_started": lambda d: [f"wave {d['wave']}/{d['waves']}: {len(d['hosts'])} host(s): "
                               f"{host_list(d['hosts'])}"],
    "wave_done": lambda d: [f"wave {d['wave']}/{d['waves']} done: {d['failed']} failed"],
    "rolled_back": lambda d: [f"failure budget exceeded: rolling back {len(d['hosts'])} "
                              f"host(s): {d['reason']}"],
}
VERBOSE_LINES = {  # only with -v
    "command": lambda d: [f"  $ {d['command']}"],
    "stage": lambda d: [f"{d['stage']}..."],
}
LIVE_QUIET = ("step_done", "host_switched", "wave_started")  # the live block shows these
MAX_IN_FLIGHT = 20  # host lines in the live block; the rest are counted


def event_lines(event, verbose=False):
    """The plain lines for one event (those about a host prefixed `[host] `); [] for
    events shown only at the start or the end (started, host_done, finished)."""
    make = HOST_LINES.get(event.kind) or (VERBOSE_LINES.get(event.kind) if verbose else None)
    if make is None:
        return []
    lines = make(event.data)
    if event.host is not None:
        return prefixed(event.host, lines)
    return [part for line in lines for part in line.split("\n")]


class PlainConsole:
    """Subscriber for CI logs: `out(line)` gets whole lines, one host's per line."""

    def __init__(self, out, verbose=False):
        self.out, self.verbose, self.transcript = out, verbose, Transcript()

    def __call__(self, event):
        lines = self.transcript.lines(event)
        for line in event_lines(event, self.verbose) if lines is None else lines:
            self.out(line)

    def close(self):
        """Nothing to undo: every line is out already."""


class LiveConsole:
    """Subscriber for a terminal: a live block (the wave, one line per host in flight
    with its stage) under the lines that stay (results, failures, warnings)."""

    def __init__(self, console=None, verbose=False):
        self.console, self.verbose = console or Console(), verbose
        self.live = Live(console=self.console, refresh_per_second=8, transient=True)
        self.transcript, self.title, self.flight = Transcript(), "starting", {}
        self.closed = False

    def __call__(self, event):
        lines = self.transcript.lines(event)
        if event.kind == "finished":
            self.close()
        elif lines is None:
            lines = self._result(event)
            if lines is None:
                lines = [] if event.kind in LIVE_QUIET and not self.verbose else \
                    event_lines(event, self.verbose)
        for line in lines:
            self.console.print(Text(line), soft_wrap=True)
        self._track(event)
        if not self.closed:
            if not self.live.is_started:
                self.live.start()
            self.live.update(self.render())

    def _result(self, event):
        """The line that stays when a host is done: `host  outcome  old -> new  (12.3s)`."""
        if event.kind != "host_done":
            return None
        data = event.data
        width = max(map(len, self.transcript.order or [event.host]))
        return [f"{event.host.ljust(width)}  {data.get('outcome')}  {data.get('old') or '-'}"
                f" -> {data.get('new') or '-'}  ({data.get('seconds') or 0:.1f}s)"]

    def _track(self, event):
        """Follow which hosts are in flight, and at what stage."""
        kind, data = event.kind, event.data
        if kind == "started":
            self.title = f"checking {len(data.get('hosts') or [])} host(s)"
        elif kind == "wave_started":
            self.title = f"wave {data['wave']}/{data['waves']}"
            self.flight = dict.fromkeys(data["hosts"], "waiting")
        elif kind == "wave_done":
            self.flight.clear()
        elif kind == "rolled_back":
            self.title = "rolling back"
        elif kind == "stage":
            self.flight[event.host] = data["stage"]
            if data["stage"] == "finish":
                self.title = "finishing"
        elif kind in ("host_healthy", "host_reverted", "host_done"):
            self.flight.pop(event.host, None)
        elif kind == "host_failed" and event.host in self.flight:
            self.flight[event.host] = "failed"

    def render(self):
        """The live block: the title, then each host in flight and its stage."""
        block = Text()
        block.append(self.title, style="bold")
        hosts = list(self.flight.items())
        width = max((len(host) for host, _ in hosts), default=0)
        for host, stage in hosts[:MAX_IN_FLIGHT]:
            block.append(f"\n  {host.ljust(width)}  ")
            block.append(stage, style="cyan")
        if len(hosts) > MAX_IN_FLIGHT:
            block.append(f"\n  ... and {len(hosts) - MAX_IN_FLIGHT} more")
        return block

    def close(self):
        """Stop the live block (the terminal is left as it was); safe to call again."""
        self.closed = True
        if self.live.is_started:
            self.live.stop()


def console_for(stream, verbose):
    """The live console on a terminal (TERM not dumb), else whole lines to `stream`."""
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty() and os.environ.get("TERM") != "dumb":
        return LiveConsole(Console(file=stream), verbose)
    return PlainConsole(lambda line: print(line, file=stream, flush=True), verbose)
