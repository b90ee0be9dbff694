"""A load generator for zero downtime tests: threads GETting every host's port, a new
connection per request, counting refusals, resets and non-2xx answers."""
import http.client
import json
import threading
import time

from tests.deploy.fleetstate import deploy_ok, port


class Load:
    """Threads GETting `path` from every host's port until stopped, one connection each."""

    def __init__(self, project, path="/health", timeout=10):
        self.ports = [port(project, index) for index in range(len(project.hosts))]
        self.path, self.timeout = path, timeout
        self.sent, self.failed, self.kinds = 0, 0, {}
        self.lock, self.done = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(number,), daemon=True)
                        for number in self.ports]

    def _one(self, number):
        conn = http.client.HTTPConnection("127.0.0.1", number, timeout=self.timeout)
        try:
            conn.request("GET", self.path)
            answer = conn.getresponse()
            body = answer.read()
            return None if 200 <= answer.status < 300 else f"{answer.status} {body[:60]!r}"
        except ConnectionRefusedError:
            return "refused"
        except (ConnectionResetError, http.client.RemoteDisconnected, BrokenPipeError):
            return "reset"
        except OSError as exc:
            return type(exc).__name__
        finally:
            conn.close()

    def _run(self, number):
        while not self.done.is_set():
            failure = self._one(number)
            with self.lock:
                self.sent += 1
                if failure is not None:
                    self.failed += 1
                    self.kinds[failure] = self.kinds.get(failure, 0) + 1
            time.sleep(0.01)

    def __enter__(self):
        for thread in self.threads:
            thread.start()
        time.sleep(0.3)  # load is on before the deploy starts
        return self

    def __exit__(self, *_):
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=30)


def answers(project, index, count=20):
    """The releases /health names over `count` requests (new connections)."""
    seen = set()
    for _ in range(count):
        conn = http.client.HTTPConnection("127.0.0.1", port(project, index), timeout=5)
        try:
            conn.request("GET", "/health")
            seen.add(json.loads(conn.getresponse().read())["release"])
        finally:
            conn.close()
    return seen


class LongRequests:
    """`GET /wait?seconds=2` on host `index`, one after another while `load` runs, so one
    is in flight at every switch; `seen` holds (status, release) of each."""

    def __init__(self, project, index, load):
        self.number, self.load, self.seen = port(project, index), load, []
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self.load.done.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.number, timeout=20)
            try:
                conn.request("GET", "/wait?seconds=2")
                answer = conn.getresponse()
                self.seen.append((answer.status, json.loads(answer.read())["release"]))
            finally:
                conn.close()

    def start(self):
        """Start asking."""
        self.thread.start()
        return self

    def join(self):
        """Wait for the last request (the load is stopped)."""
        self.thread.join(timeout=30)


def none_failed(load, least):
    """Assert that the load sent more than `least` requests and none failed."""
    assert load.sent > least and (load.failed, load.kinds) == (0, {}), (load.sent, load.kinds)


def deploy_under_load(project, first):
    """A steady deploy while the load runs and 2-second requests cross the switch: no
    request failed, each slow one ended 200 (some began on release `first`), and every
    host names the new release. Returns its id."""
    with Load(project) as load:
        slow = LongRequests(project, 0, load).start()
        release, _ = deploy_ok(project)
        time.sleep(2.5)  # the last long request ends
    slow.join()
    none_failed(load, 100)
    assert slow.seen and {status for status, _ in slow.seen} == {200}, slow.seen
    assert {name for _, name in slow.seen} == {first, release}  # some began on the old one
    for index in range(len(project.hosts)):
        assert answers(project, index) == {release}
    return release


def rollback_under_load(project, first):
    """`fab service rollback` while the load runs: no request failed, and every host
    names release `first`."""
    with Load(project) as load:
        proc = project.fab("service", "rollback")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    none_failed(load, 50)
    for index in range(len(project.hosts)):
        assert answers(project, index) == {first}
