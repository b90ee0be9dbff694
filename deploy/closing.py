"""The text that opens and closes a deploy, the same on a terminal and in CI logs: what
the rollout will do, then the closing table of every host and the closing line."""
from .printer import summary_table

HEADER = ("host", "outcome", "old release", "new release", "seconds", "detail")
SHOWN_HOSTS = 10  # a list of hosts in one line is cut after these


def host_list(hosts, limit=SHOWN_HOSTS):
    """`a, b, c`, cut after `limit` hosts with `, ... (+N)`."""
    hosts = list(hosts)
    more = len(hosts) - limit
    return ", ".join(hosts[:limit]) + (f", ... (+{more})" if more > 0 else "")


def rollout_line(waves, settings):
    """`rollout: canary h1; then 2 batch(es) of up to 2; max_fail 0; parallel 20`."""
    parts, rest = [], [list(wave) for wave in waves]
    if settings.get("canary") and rest:
        parts.append(f"canary {host_list(rest.pop(0))}")
    if rest:
        batches = f"{len(rest)} batch(es) of up to {max(map(len, rest))}"
        parts.append(f"then {batches}" if parts else batches)
    if settings.get("max_fail") is not None:
        parts.append(f"max_fail {settings['max_fail']}")
    if settings.get("pause"):
        parts.append(f"pause {settings['pause']:g}s")
    if settings.get("parallel") is not None:
        parts.append(f"parallel {settings['parallel']}")
    return "rollout: " + "; ".join(parts)


def started_lines(release, data):
    """What a deploy says when it starts: the service, release and hosts, then its waves."""
    return [f"deploying {data.get('service')} release {release} to "
            f"{len(data.get('hosts') or [])} host(s)",
            rollout_line(data.get("waves") or [], data.get("settings") or {})]


def table_row(host, done):
    """One host's row from its host_done data (None: the host was never reached)."""
    if done is None:
        return (host, "untouched", "-", "-", "-", "")
    trips = done.get("trips")
    detail = "; ".join(part for part in (f"{trips} round trips" if trips else "",
                                         done.get("detail") or "") if part)
    return (host, done.get("outcome"), done.get("old") or "-", done.get("new") or "-",
            f"{done.get('seconds') or 0:.1f}", detail)


def closing_line(data, rows):
    """The verdict under the table, from the finished event's data."""
    outcome, failed, reason = data.get("outcome"), data.get("failed") or [], data.get("reason")
    if outcome == "succeeded":
        return f"{data.get('done') or 'deployed'} on {len(rows)} host(s)"
    if outcome == "failed":
        return f"FAILED on {len(failed)} of {len(rows)} host(s): {host_list(failed)}"
    if outcome == "rolled_back":
        return f"ROLLED BACK: {reason}; failed: {host_list(failed)}"
    untouched = sum(1 for row in rows if row[1] == "untouched")
    return (f"INTERRUPTED ({reason}): {len(rows) - untouched} host(s) finished, "
            f"{untouched} untouched; rerun to continue")


class Transcript:
    """Remembers the hosts (from `started`) and their host_done data, for the end."""

    def __init__(self):
        self.order, self.done = [], {}

    def note(self, event):
        """Take what the closing table needs from `event`."""
        if event.kind == "started":
            self.order = list(event.data.get("hosts") or [])
        elif event.kind == "host_done":
            self.done[event.host] = event.data

    def closing(self, data):
        """A blank line, the table and the closing line; [] for a run that ended in an
        error before any rollout (the error itself is reported on stderr)."""
        if data.get("error"):
            return []
        hosts = dict.fromkeys([*self.order, *self.done, *(data.get("hosts") or {})])
        rows = [table_row(host, self.done.get(host)) for host in hosts]
        return ["", *summary_table(rows, HEADER).split("\n"), closing_line(data, rows)]

    def lines(self, event):
        """The opening or closing lines for `event` (after noting it), else None."""
        self.note(event)
        if event.kind == "started":
            return started_lines(event.release, event.data)
        if event.kind == "finished":
            return self.closing(event.data)
        return None
