"""The deploy's console: events from the bus as CI log lines, or a live terminal block."""
import io
import re
import threading

import pytest
from rich.console import Console

from fabship.deploy.console import LiveConsole, PlainConsole, console_for
from fabship.deploy.events import EventBus
from tests.deploy.fleetstate import table

HOSTS = ("h1", "h2", "h3")
SETTINGS = {"canary": 1, "batch": "2", "max_fail": "0", "pause": 0, "parallel": 20}
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def plain(verbose=False):
    """(bus, lines): a PlainConsole on a bus for release r2, collecting its lines."""
    lines = []
    return EventBus("r2", subscribers=[PlainConsole(lines.append, verbose)]), lines


def started(bus, hosts=HOSTS, settings=None, waves=None):
    """The deploy's first event: by default a canary host, then batches of 2."""
    if waves is None:
        waves = [hosts[:1]] + [hosts[i:i + 2] for i in range(1, len(hosts), 2)]
    bus.emit("started", service="hello", environment="test", commit="abc", deployer="ann@x",
             hosts=hosts, waves=waves, settings=settings or SETTINGS)


def host_done(bus, host, outcome="deployed", **extra):
    """A host's end: r1 -> r2 in 1.25s, 3 round trips unless told otherwise."""
    data = {"old": "r1", "new": "r2", "seconds": 1.25, "reached": "finish", "detail": "",
            "trips": 3, **extra}
    bus.emit("host_done", host=host, outcome=outcome, **data)


def finished(bus, outcome="succeeded", **extra):
    """The deploy's last event."""
    data = {"duration": 9.5, "hosts": {}, "failed": [], "reason": "", "done": "deployed",
            **extra}
    bus.emit("finished", outcome=outcome, **data)


def test_start_says_what_will_be_deployed_and_in_which_waves():
    """The log opens with the service, release and host count, then the rollout plan."""
    bus, lines = plain()
    started(bus)
    assert lines == ["deploying hello release r2 to 3 host(s)",
                     "rollout: canary h1; then 1 batch(es) of up to 2; max_fail 0; parallel 20"]
    bus, lines = plain()
    started(bus, ["a", "b", "c"], {"canary": 0, "max_fail": "25%", "pause": 1.5, "parallel": 4},
            [["a", "b"], ["c"]])
    assert lines[1] == "rollout: 2 batch(es) of up to 2; max_fail 25%; pause 1.5s; parallel 4"


def test_each_host_line_is_prefixed_with_its_host():
    """Every line about a host starts with `[host] `, in the documented formats."""
    bus, lines = plain()
    bus.emit("step_done", host="h1", phase="ship", step="upload artifact", seconds=0.42)
    bus.emit("step_failed", host="h2", phase="health", step="health check", code=7,
             seconds=3.0, output="first\nsecond")
    bus.emit("warning", host="h1", text="no crontab")
    bus.emit("warning", text="building wheels")
    bus.emit("host_switched", host="h1", old=None, new="r2")
    bus.emit("host_switched", host="h3", old="r1", new="r2")
    bus.emit("host_failed", host="h2", phase="health", reason="health check: 503")
    bus.emit("host_reverted", host="h2", to="r1", ok=True, reason="")
    bus.emit("host_reverted", host="h3", to=None, ok=False, reason="nothing to go back to")
    assert lines == ["[h1]   ok  upload artifact (0.4s)",
                     "[h2]   FAILED  health check (exit 7, 3.0s)",
                     "[h2]   | first", "[h2]   | second",
                     "[h1] no crontab", "building wheels",
                     "[h1] switched nothing -> r2", "[h3] switched r1 -> r2",
                     "[h2] FAILED in health: health check: 503",
                     "[h2] rolled back to r1", "[h3] ROLLBACK FAILED: nothing to go back to"]


def test_hosts_running_at_once_never_share_a_line():
    """Two hosts failing at the same time: each line is whole and names its own host, and
    one host's failure output stays together."""
    bus, lines = plain()

    def fail(host):
        for _ in range(50):
            bus.emit("step_failed", host=host, phase="ship", step="unpack", code=1,
                     seconds=0.1, output=f"{host} one\n{host} two\n{host} three")
    threads = [threading.Thread(target=fail, args=(host,)) for host in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(lines) == 400
    for at in range(0, 400, 4):
        host = lines[at][1]
        assert lines[at:at + 4] == [f"[{host}]   FAILED  unpack (exit 1, 0.1s)",
                                    f"[{host}]   | {host} one", f"[{host}]   | {host} two",
                                    f"[{host}]   | {host} three"]


def test_verbose_adds_the_commands_and_stages():
    """-v shows each command as it runs and each stage a host enters; without it, neither."""
    events = [("stage", {"stage": "ship"}), ("command", {"step": "unpack",
                                                         "command": "tar -xzf a.tgz"}),
              ("step_done", {"phase": "ship", "step": "unpack", "seconds": 1.0})]
    shown = {}
    for verbose in (False, True):
        bus, shown[verbose] = plain(verbose)
        for kind, data in events:
            bus.emit(kind, host="h1", **data)
    assert shown[False] == ["[h1]   ok  unpack (1.0s)"]
    assert shown[True] == ["[h1] ship...", "[h1]   $ tar -xzf a.tgz", "[h1]   ok  unpack (1.0s)"]


def test_waves_and_a_fleet_rollback_are_announced():
    """Each wave names its hosts (a long list is cut), and its end counts the failures."""
    bus, lines = plain()
    hosts = [f"h{i}" for i in range(1, 13)]
    bus.emit("wave_started", wave=2, waves=3, hosts=hosts)
    bus.emit("wave_done", wave=2, waves=3, failed=1)
    bus.emit("rolled_back", hosts=["h1", "h2"], reason="2 host(s) failed, more than max_fail 1")
    assert lines == ["wave 2/3: 12 host(s): h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, ... (+2)",
                     "wave 2/3 done: 1 failed",
                     "failure budget exceeded: rolling back 2 host(s): 2 host(s) failed, "
                     "more than max_fail 1"]


def test_closing_table_has_every_host_in_order_untouched_ones_too():
    """The table lists each host in the deploy's order: outcome, releases, seconds and
    detail with round trips; a host never reached reads `untouched`."""
    bus, lines = plain()
    started(bus)
    host_done(bus, "h3", "failed", new=None, detail="health check: 503", trips=2)
    host_done(bus, "h1", old=None)
    finished(bus, "failed", failed=["h3"], hosts={"h1": "deployed", "h3": "failed"})
    text = "\n".join(lines)
    assert lines[2] == "" and lines[3].split() == ["host", "outcome", "old", "release", "new",
                                                   "release", "seconds", "detail"]
    assert table(text) == [
        {"host": "h1", "outcome": "deployed", "old release": "-", "new release": "r2",
         "seconds": "1.2", "detail": "3 round trips"},
        {"host": "h2", "outcome": "untouched", "old release": "-", "new release": "-",
         "seconds": "-", "detail": ""},
        {"host": "h3", "outcome": "failed", "old release": "r1", "new release": "-",
         "seconds": "1.2", "detail": "2 round trips; health check: 503"}]
    assert lines[-1] == "FAILED on 1 of 3 host(s): h3"


@pytest.mark.parametrize("outcome, extra, closing", [
    ("succeeded", {}, "deployed on 2 host(s)"),
    ("succeeded", {"done": "rolled back"}, "rolled back on 2 host(s)"),
    ("failed", {"failed": ["h1", "h2"]}, "FAILED on 2 of 2 host(s): h1, h2"),
    ("rolled_back", {"failed": ["h2"], "reason": "1 host(s) failed, more than max_fail 0"},
     "ROLLED BACK: 1 host(s) failed, more than max_fail 0; failed: h2"),
    ("interrupted", {"reason": "SIGINT"},
     "INTERRUPTED (SIGINT): 1 host(s) finished, 1 untouched; rerun to continue"),
])
def test_the_closing_line_names_the_outcome(outcome, extra, closing):
    """The last line says how the deploy ended, and what to do after an interrupt."""
    bus, lines = plain()
    started(bus, ["h1", "h2"])
    host_done(bus, "h1")
    if outcome != "interrupted":
        host_done(bus, "h2")
    finished(bus, outcome, **extra)
    assert lines[-1] == closing


def test_a_run_that_failed_before_the_rollout_prints_no_table():
    """An error before any host moved (it goes to stderr): no table of untouched hosts."""
    bus, lines = plain()
    started(bus)
    finished(bus, "failed", error=True, reason="cannot reach every host")
    assert len(lines) == 2


def live(verbose=False):
    """(bus, console, output): a LiveConsole on a forced terminal writing into a buffer."""
    out = io.StringIO()
    console = LiveConsole(Console(file=out, force_terminal=True, width=120), verbose)
    return EventBus("r2", subscribers=[console]), console, out


def screen(console, out):
    """What was written so far (the live block repainted now), without escape codes."""
    if console.live.is_started:
        console.live.refresh()
    return ANSI.sub("", out.getvalue())


def test_live_block_shows_the_wave_and_each_host_in_flight_at_its_stage():
    """On a terminal the user sees `wave 1/2` and a line per host in flight with its stage;
    a host that passed its health check leaves the block."""
    bus, console, out = live()
    try:
        started(bus)
        bus.emit("wave_started", wave=1, waves=2, hosts=["h1"])
        bus.emit("stage", host="h1", stage="ship")
        assert re.search(r"wave 1/2\n  h1  ship", screen(console, out))
        bus.emit("host_healthy", host="h1")
        assert console.render().plain == "wave 1/2"
        assert console.live.is_started
    finally:
        console.close()


def test_live_prints_results_failures_and_the_closing_table_then_stops():
    """Above the block stay each host's result line and failures' output, not the routine
    `ok` lines; at the end the live block is gone and the closing table printed."""
    bus, console, out = live()
    started(bus, ["h1", "h2"])
    bus.emit("wave_started", wave=1, waves=1, hosts=["h1", "h2"])
    bus.emit("step_done", host="h1", phase="ship", step="unpack", seconds=1.0)
    bus.emit("step_failed", host="h2", phase="health", step="health check", code=7,
             seconds=3.0, output="connection refused")
    host_done(bus, "h1")
    host_done(bus, "h2", "failed", new=None)
    finished(bus, "failed", failed=["h2"])
    assert not console.live.is_started
    text = screen(console, out)
    assert "ok  unpack" not in text
    assert "[h2]   | connection refused" in text
    assert "h1  deployed  r1 -> r2  (1.2s)" in text and "h2  failed  r1 -> -  (1.2s)" in text
    assert [row["outcome"] for row in table(text)] == ["deployed", "failed"]
    assert text.rstrip().endswith("FAILED on 1 of 2 host(s): h2")


def test_live_verbose_shows_the_routine_lines_too():
    """With -v the terminal shows the `ok` lines and commands, as the CI log does."""
    bus, console, out = live(verbose=True)
    try:
        bus.emit("command", host="h1", step="unpack", command="tar -xzf a.tgz")
        bus.emit("step_done", host="h1", phase="ship", step="unpack", seconds=1.0)
    finally:
        console.close()
    text = screen(console, out)
    assert "[h1]   $ tar -xzf a.tgz" in text and "[h1]   ok  unpack (1.0s)" in text


def test_close_leaves_the_terminal_as_it_was():
    """A run that raised: close() stops the live block, erases it and shows the cursor."""
    bus, console, out = live()
    started(bus)
    bus.emit("stage", host="h1", stage="lock")
    assert console.live.is_started
    console.close()
    console.close()
    assert not console.live.is_started
    shown = out.getvalue().rsplit("\x1b[?25l", 1)[1]  # since the cursor was hidden
    assert "\x1b[?25h" in shown  # shown again, and the block's two lines erased:
    assert shown.endswith("\x1b[1A\x1b[2K" * 2)
    bus.emit("warning", text="after the end")
    assert not console.live.is_started and "after the end" in screen(console, out)


def test_markup_in_event_data_is_shown_literally():
    """A host name or an output holding `[bold]` is printed as written, not styled."""
    bus, console, out = live()
    host = "[bold]h1[/bold]"
    try:
        bus.emit("stage", host=host, stage="ship")
        assert console.render().plain.endswith(f"{host}  ship")
        bus.emit("warning", host=host, text="[red]careful[/red]")
    finally:
        console.close()
    assert f"[{host}] [red]careful[/red]" in screen(console, out)


class Tty(io.StringIO):
    """A stream that says it is a terminal."""

    def isatty(self):
        return True


def test_console_for_picks_live_on_a_terminal_else_lines(monkeypatch):
    """A terminal gets the live block; a pipe (CI) or TERM=dumb gets plain lines."""
    monkeypatch.setenv("TERM", "xterm")
    assert isinstance(console_for(Tty(), False), LiveConsole)
    stream = io.StringIO()
    lines = console_for(stream, True)
    assert isinstance(lines, PlainConsole) and lines.verbose
    EventBus("r2", subscribers=[lines]).emit("warning", host="h1", text="hi")
    assert stream.getvalue() == "[h1] hi\n"
    monkeypatch.setenv("TERM", "dumb")
    assert isinstance(console_for(Tty(), False), PlainConsole)
