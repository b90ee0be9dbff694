"""The health check, run on the host itself with the release's Python.

One plain HTTP/1.0 GET per attempt on a socket (the standard library's HTTP clients cost
several times the start-up: the check runs on every host of a deploy at once), every
0.05 s from the first moment, so a program that has just been started is seen serving
within 0.05 s. No redirect is followed and no proxy is used: the check asks the program
on the host itself.
"""
import posixpath

# poll(url, release, timeout, gone): the loop of every health check. `gone()` (asked
# every 0.25 s) names why the program will never answer (supervisor.healthy asks
# supervisord), or is None.
POLL = r'''
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


def get(parts, request):
    """(status, body) of one GET: the body up to the server's close, its length or 64 KB."""
    with socket.create_connection((parts.hostname, parts.port or 80), timeout=2) as conn:
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


def poll(url, release, timeout, gone=lambda: None):
    """Exit 0 once a GET of url answers 200 naming release; 1 after timeout or when gone."""
    parts = urlsplit(url)
    request = (f"GET {parts.path or '/'}{'?' if parts.query else ''}{parts.query} "
               f"HTTP/1.0\r\nHost: {parts.netloc}\r\nConnection: close\r\n\r\n").encode()
    start = time.monotonic()
    last, asked = "no answer", start
    while True:
        try:
            status, body = get(parts, request)
            last = f"{status} {body}"
            if status == 200 and release in body:
                print(f"healthy: {last}")
                sys.exit(0)
        except OSError as exc:
            last = f"no answer ({exc.strerror or exc})"
        except ValueError as exc:
            last = str(exc)
        now = time.monotonic()
        if now - asked >= 0.25:
            asked, why = now, gone()
            if why:
                print(f"unhealthy after {now - start:.1f}s: {why}; last response: {last}")
                sys.exit(1)
        if now - start >= timeout:
            print(f"unhealthy after {timeout:g}s; last response: {last}")
            sys.exit(1)
        time.sleep(0.05)
'''
CHECK = POLL + "\npoll(sys.argv[1], sys.argv[2], float(sys.argv[3]))\n"


def url(host, port, path):
    """The URL the host polls."""
    return f"http://{host}:{port}{path}"


def check(venv, health_url, release_id, timeout):
    """Poll until 200 and the body names release_id, or fail after timeout seconds."""
    return (posixpath.join(venv, "bin", "python"), "-c", CHECK, health_url, release_id,
            f"{timeout:g}")
