"""The health check, run on the host itself with the release's Python.

One plain HTTP/1.0 GET per attempt on a socket (the standard library's HTTP clients cost
several times the start-up: the check runs on every host of a deploy at once), every
0.05 s from the first moment, so a program that has just been started is seen serving
within 0.05 s. No redirect is followed and no proxy is used: the check asks the program
on the host itself.

What a healthy answer is (`health.expect`, one JSON argument): `release`, a 200 whose
body names the release; `status`, any 200; `field`, a 200 whose JSON body has `value` at
the field path. The last two cannot tell an old process from the new one by the answer,
so they also need the socket listening on the port to be held by the process the
manager started (its pid, or a process below it, from /proc): a stray old process
answering 200 is not the new release.

Processes sharing one socket (zero downtime): the check of one process just replaced
(`alone`) counts only the answers on connections that process accepted. It connects,
waits until the kernel shows the server's end of the connection accepted (its inode in
/proc/net/tcp), and sends the request only when that socket is among the process's
descriptors; a connection another process took is closed unasked. So each new process
proves it serves, whatever `health.expect` says.
"""
import json

# poll(url, expect, timeout, gone, pids): the loop of every health check. `gone()`
# (asked every 0.25 s) names why the program will never answer (supervisor.healthy asks
# supervisord), or is None; `pids()` are the pids the manager runs the program as.
POLL = r'''
import json
import os
import socket
import sys
import time
from urllib.parse import urlsplit


def complete(reply):
    """The whole answer is in: its headers and as many body bytes as they announce."""
    head, gap, body = reply.partition(b"\r\n\r\n")
    for line in head.split(b"\r\n")[1:] if gap else ():
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length" and value.strip().isdigit():
            return len(body) >= int(value)
    return False


class Elsewhere(Exception):
    """Another process than the one under check accepted the connection."""


def endpoint(text):
    """(address, port) of a /proc/net/tcp{,6} column: IPv4 as a.b.c.d, IPv6 as its 16
    bytes (an IPv4-mapped one as a.b.c.d)."""
    address, port = text.split(":")
    raw = b"".join(int(address[i:i + 8], 16).to_bytes(4, "little")
                   for i in range(0, len(address), 8))
    if len(raw) == 16 and raw[:12] == bytes(10) + b"\xff\xff":
        raw = raw[12:]
    return (socket.inet_ntoa(raw) if len(raw) == 4 else raw), int(port, 16)


def plain(address):
    """An address as endpoint() gives it, from getsockname()/getpeername()'s host."""
    try:
        return socket.inet_ntoa(socket.inet_aton(address))
    except OSError:
        raw = socket.inet_pton(socket.AF_INET6, address.split("%")[0])
        return socket.inet_ntoa(raw[12:]) if raw[:12] == bytes(10) + b"\xff\xff" else raw


def server_end(conn):
    """socket:[inode] of the server's end of conn, once a process has accepted it (""
    while it waits in the backlog): the row whose local end is conn's peer and whose
    remote end is conn itself."""
    mine, peer = conn.getsockname(), conn.getpeername()
    mine, peer = (plain(mine[0]), mine[1]), (plain(peer[0]), peer[1])
    for fields in tcp_rows():
        if endpoint(fields[1]) == peer and endpoint(fields[2]) == mine:
            return "" if fields[9] == "0" else f"socket:[{fields[9]}]"
    return ""


def held(inode, pids):
    """Whether a process among pids (or below them) holds inode; None when it is not seen
    and some of their descriptors cannot be read (another user's). A process that is
    gone holds nothing."""
    links, hidden = descriptors(pids)
    return True if inode in links else None if hidden else False


def accepted_by(conn, pids):
    """Whether a process among `pids` (or below them) accepted conn: True; False when
    another did; None when their descriptors cannot be read (another user's: no telling)."""
    deadline = time.monotonic() + 1
    inode = server_end(conn)
    while not inode and time.monotonic() < deadline:
        time.sleep(0.005)
        inode = server_end(conn)
    if not inode:
        raise ValueError("no process accepted the connection within 1s")
    if not pids:
        return False
    found = held(inode, pids)
    if found is False:  # accept() shows the inode a moment before the descriptor
        time.sleep(0.01)
        found = held(inode, pids)
    return found


def get(parts, request, only=None):
    """(status, body) of one GET: the body up to the server's close, its length or 64 KB.
    With `only` (pids), raises Elsewhere unless one of those processes accepted it."""
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=2) as conn:
        if only is not None and accepted_by(conn, only) is False:
            raise Elsewhere()
        conn.sendall(request)
        reply = b""
        while len(reply) < 65536 and not complete(reply):
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, body = reply.partition(b"\r\n\r\n")
    status = head.split(b" ", 2)[1:2]
    if not head.startswith(b"HTTP/") or not status or not status[0].isdigit():
        raise ValueError(f"no HTTP answer ({reply[:80]!r})")
    return int(status[0]), body[:2000].decode("utf-8", "replace").strip()


def tcp_rows():
    """The rows of /proc/net/tcp and tcp6 (IPv4, IPv6), split into fields."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table, encoding="ascii") as handle:
                rows = handle.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            fields = row.split()
            if len(fields) > 9:
                yield fields


def listening(port):
    """{socket:[inode]: owner uid} of the TCP sockets listening on `port` (IPv4, IPv6)."""
    return {f"socket:[{fields[9]}]": fields[7] for fields in tcp_rows()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port}


def uid_of(pid):
    """The real uid of a process, as text ("" when it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii", errors="replace") as handle:
            for line in handle:
                if line.startswith("Uid:"):
                    return line.split()[1]
    except OSError:
        pass
    return ""


def below(pids):
    """pids and every process below them (read from /proc)."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat", encoding="ascii", errors="replace") as handle:
                parent = int(handle.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(parent, []).append(int(entry))
    found, todo = set(pids), list(pids)
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def descriptors(pids):
    """(what the descriptors of pids and the processes below them point to, the uids of
    those among them whose descriptors this user may not read: another user's)."""
    links, hidden = set(), set()
    for pid in below(pids):
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except PermissionError:  # another user's process: only its uid can be compared
            hidden.add(uid_of(pid))
            continue
        except OSError:  # gone
            continue
        for fd in fds:
            try:
                links.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
            except OSError:
                continue
    return links, hidden


def held_by(port, pids):
    """None when every socket listening on `port` (any address, IPv4 or IPv6: the answer
    may have come from any of them) is held by a process among `pids` or below them
    (one whose descriptors this user may not read, another user's: a socket of that uid);
    otherwise why not."""
    if not pids:
        return "the manager names no running process"
    sockets, (held, hidden) = listening(port), descriptors(pids)
    if sockets and all(inode in held or uid in hidden for inode, uid in sockets.items()):
        return None
    return (f"a socket listening on port {port} is not held by the process started now "
            f"(pid {', '.join(map(str, sorted(pids)))})")


def healthy(expect, status, body, parts, pids):
    """None when the answer is the healthy one `expect` describes; otherwise why not."""
    if status != 200:
        return "not 200"
    if expect["kind"] == "release":
        return None if expect["release"] in body else "the body does not name the release"
    if expect["kind"] == "field":
        try:
            value = json.loads(body)
        except (ValueError, RecursionError):
            return "the body is not JSON"
        for key in expect["path"]:
            if not isinstance(value, dict) or key not in value:
                return f"no field {'.'.join(expect['path'])}"
            value = value[key]
        if value != expect["value"] or isinstance(value, bool) != isinstance(
                expect["value"], bool):  # true is not 1
            return f"{'.'.join(expect['path'])} is {json.dumps(value)}"
    return held_by(parts.port or 80, pids())


def rank(answer):
    """Error answers first, then other 200s, then no answer: what a failure says."""
    status = answer.split(" ", 1)[0]
    return 2 if not status.isdigit() else 1 if status == "200" else 0


def wait(url, expect, timeout, gone=lambda: None, pids=lambda: [], alone=False):  # pylint: disable=R0913,R0917
    """(True, "healthy: ...") once GETs of url answer as `expect` says (`times` in a row:
    processes sharing a socket each get asked); (False, why) after timeout or when gone.
    With `alone`, only answers from the processes `pids()` names count: a connection
    another process accepts (processes share the socket) is closed unasked."""
    parts = urlsplit(url)
    request = (f"GET {parts.path or '/'}{'?' if parts.query else ''}{parts.query} "
               f"HTTP/1.0\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n").encode()
    start = time.monotonic()
    last, asked, streak, seen = "no answer", start, 0, {}
    while True:
        elsewhere, only = False, pids() if alone else None
        try:
            status, body = get(parts, request, only)
            last = f"{status} {body}"
            why = healthy(expect, status, body, parts, pids)
            streak = streak + 1 if why is None else 0
            if streak >= expect.get("times", 1):
                return True, f"healthy: {last}"
            if why is not None and status == 200 and expect["kind"] != "release":
                last += f" ({why})"
        except Elsewhere:
            elsewhere = True
            last = ("connections accepted by other processes than pid "
                    f"{', '.join(map(str, only)) or '(none running)'}")
        except OSError as exc:
            last, streak = f"no answer ({exc.strerror or exc})", 0
        except ValueError as exc:
            last, streak = str(exc), 0
        if not streak:  # the latest distinct answers: processes sharing a socket differ
            seen.pop(last, None)
            seen[last] = None
            while len(seen) > 3:
                seen.pop(next(iter(seen)))
        said = " | ".join(sorted(seen, key=rank))
        now = time.monotonic()
        if now - asked >= 0.25:
            asked, why = now, gone()
            if why:
                return False, f"unhealthy after {now - start:.1f}s: {why}; last response: {said}"
        if now - start >= timeout:
            return False, f"unhealthy after {timeout:g}s; last response: {said}"
        if not streak:  # another process took it: ask again soon
            time.sleep(0.01 if elsewhere else 0.05)


def poll(url, expect, timeout, gone=lambda: None, pids=lambda: []):
    """Exit 0 once healthy (see wait), printing how; 1 otherwise."""
    ok, said = wait(url, json.loads(expect), timeout, gone, pids)
    print(said)
    sys.exit(0 if ok else 1)
'''
def url(host, port, path):
    """The URL the host polls."""
    return f"http://{host}:{port}{path}"


def expectation(expect, release_id, times=1):
    """The one JSON argument of a check: what a healthy answer is (config.Health.expect:
    ("release",), ("status",) or ("field", path, value)), and how many in a row."""
    kind, more = expect[0], {"times": times} if times > 1 else {}
    if kind == "release":
        return json.dumps({"kind": kind, "release": release_id, **more})
    if kind == "field":
        return json.dumps({"kind": kind, "path": expect[1].split("."), "value": expect[2],
                           **more})
    return json.dumps({"kind": kind, **more})


def describe(expect, health_url, release_id):
    """The step's label: what the check waits for."""
    if expect[0] == "release":
        return f"health check: {health_url} names {release_id}"
    if expect[0] == "field":
        return (f"health check: {health_url} answers {expect[1]} = {json.dumps(expect[2])} "
                "from the program started now")
    return f"health check: {health_url} answers 200 from the program started now"
