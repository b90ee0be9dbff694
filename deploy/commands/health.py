"""The health check, run on the host itself with the release's Python."""
import posixpath

CHECK = r"""
import sys, time, urllib.request, urllib.error
url, release, timeout = sys.argv[1], sys.argv[2], float(sys.argv[3])
deadline, last = time.monotonic() + timeout, "no answer"
while True:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            body = response.read(2000).decode("utf-8", "replace")
            last = f"{response.status} {body.strip()}"
            if response.status == 200 and release in body:
                print(f"healthy: {last}")
                sys.exit(0)
    except urllib.error.HTTPError as exc:
        last = f"{exc.code} {exc.read(2000).decode('utf-8', 'replace').strip()}"
    except OSError as exc:
        last = f"no answer ({getattr(exc, 'reason', exc)})"
    if time.monotonic() >= deadline:
        print(f"unhealthy after {timeout:g}s; last response: {last}")
        sys.exit(1)
    time.sleep(0.2)
"""


def url(host, port, path):
    """The URL the host polls."""
    return f"http://{host}:{port}{path}"


def check(venv, health_url, release_id, timeout):
    """Poll until 200 and the body names release_id, or fail after timeout seconds."""
    return (posixpath.join(venv, "bin", "python"), "-c", CHECK, health_url, release_id,
            f"{timeout:g}")
