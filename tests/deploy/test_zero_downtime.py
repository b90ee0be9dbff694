"""Zero downtime (issue 12) on real sshd hosts: supervisord holds each host's socket and a
deploy replaces the two processes one at a time. A load generator sends requests all
along, a new connection each, and counts refusals, resets and non-2xx answers.
"""
import http.client
import json
import threading
import time

from tests.deploy.fleetstate import break_health, change_code, deploy_fails, deploy_ok, \
    port, release_of

SICK = 'self.set_status(503)\n        self.write({"status": "sick"})'


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


def test_a_steady_deploy_and_a_rollback_fail_no_request(build):
    """Under continuous load, a deploy and then `fab service rollback` each leave 0 failed
    requests; a 2-second request in flight across the switch ends with 200."""
    project, (first,) = build.deployed(1)
    change_code(project, "zero downtime")
    slow = []

    def long_requests():  # one after another, so one is in flight at every switch
        while not load.done.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", port(project, 0), timeout=20)
            try:
                conn.request("GET", "/wait?seconds=2")
                answer = conn.getresponse()
                slow.append((answer.status, json.loads(answer.read())["release"]))
            finally:
                conn.close()
    with Load(project) as load:
        waiter = threading.Thread(target=long_requests, daemon=True)
        waiter.start()
        release, _ = deploy_ok(project)
        time.sleep(2.5)  # the last long request ends
    waiter.join(timeout=30)
    assert load.sent > 100 and (load.failed, load.kinds) == (0, {}), (load.sent, load.kinds)
    assert slow and {status for status, _ in slow} == {200}, slow
    assert {name for _, name in slow} == {first, release}  # some began on the old release
    for index in range(3):
        assert answers(project, index) == {release}

    with Load(project) as load:
        proc = project.fab("service", "rollback")
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert load.sent > 50 and (load.failed, load.kinds) == (0, {}), (load.sent, load.kinds)
    for index in range(3):
        assert answers(project, index) == {first}


def test_a_failing_release_takes_one_process_share_then_every_process_is_old(build):
    """The new release answers 503: its first process fails its check, the host goes back.
    Only that process's answers failed (no refusal, no reset), fewer than the requests
    made meanwhile, and every process serves the old release at the end."""
    project, (first,) = build.deployed(1)
    break_health(project, SICK)
    with Load(project) as load:
        started = time.monotonic()
        proc = deploy_fails(project)
        took = time.monotonic() - started
    failed = release_of(proc)
    assert "hello:hello_0: unhealthy after" in proc.stdout, proc.stdout
    kinds = set(load.kinds)
    assert kinds <= {"503 b'{\"status\": \"sick\"}'"}, load.kinds  # never refused or reset
    assert load.failed < load.sent / 2, (load.failed, load.sent, took)
    for index in range(3):
        assert answers(project, index) == {first} != {failed}
