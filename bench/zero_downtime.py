"""A steady deploy to 5 real sshd hosts under load, with and without zero downtime.

Usage: .venv/bin/python bench/zero_downtime.py [--hosts 5] [--repeat 3]
                                             [--manager supervisor|systemd]

For each mode (`zero_downtime: true`, the default: the manager holds the socket and the
2 processes are replaced one at a time; and `zero_downtime: false`: one process,
restarted), after a first deploy (not timed): load threads GET /health from every host,
a new connection per request, before and during `--repeat` steady deploys (code changed,
requirements unchanged). Prints the requests sent and failed during the deploys, p50 and
p99 latency before and during them, and the deploy's median duration. Numbers only, no
assertions. Every sshd and supervisord is stopped at the end. `--manager systemd` runs
the hosts beside a real systemd booted in its own namespaces (tests/systemdhost.py;
root only), which is killed at the end with every unit.
"""
import argparse
import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# pylint: disable=wrong-import-position
from tests.fleet import start_fleet  # noqa: E402
from tests.project import FAB, Project, fleet_hosts, hello_service  # noqa: E402
from tests.systemdhost import SystemdHost, can_boot  # noqa: E402

APP = "services/hello/hello/app.py"


class Load:
    """Threads GETting /health from each port, one connection per request: (latency
    seconds, failure or None) per request, in `samples`."""

    def __init__(self, ports):
        self.ports, self.samples = ports, []
        self.lock, self.done = threading.Lock(), threading.Event()
        self.threads = [threading.Thread(target=self._run, args=(port,), daemon=True)
                        for port in ports]

    def _run(self, port):
        while not self.done.is_set():
            started = time.monotonic()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
            try:
                conn.request("GET", "/health")
                answer = conn.getresponse()
                answer.read()
                failure = None if answer.status == 200 else str(answer.status)
            except OSError as exc:
                failure = type(exc).__name__
            finally:
                conn.close()
            with self.lock:
                self.samples.append((time.monotonic() - started, failure))
            time.sleep(0.01)

    def take(self):
        """The samples so far, emptied."""
        with self.lock:
            taken, self.samples = self.samples, []
        return taken

    def start(self):
        """Begin sending."""
        for thread in self.threads:
            thread.start()

    def stop(self):
        """Stop sending."""
        self.done.set()
        for thread in self.threads:
            thread.join(timeout=30)


def quantile(values, share):
    """The `share` quantile of values, in milliseconds."""
    ordered = sorted(values)
    return 1000 * ordered[min(len(ordered) - 1, int(share * len(ordered)))] if ordered else 0


def run_mode(fleet, size, zero, repeat, cache, manager="supervisor"):  # pylint: disable=R0913,R0914,R0917
    """One mode: (sent, failed, p50/p99 before, p50/p99 during, median deploy seconds)."""
    name = "zd" if zero else "plain"
    project = Project(fleet.base / f"bench-{name}", fleet, cache)
    project.hosts = fleet_hosts(fleet)[:size]
    service = hello_service(f"{fleet.base}/bench-{name}-hosts", zero_downtime=zero,
                            manager=manager, drain=10)  # fabship's default
    if manager == "systemd":  # the units run as the SSH user, root here, said explicitly
        service["user"] = "root"
        del service["boot"]
    if not zero:
        service["processes"] = 1
    service["health"]["timeout"] = 60
    service["environments"] = {"bench": {"hosts": project.hosts}}
    project.service = service
    project.write_config({"hello": service})
    project.commit("first")

    def deploy():
        started = time.monotonic()
        proc = subprocess.run([FAB, "-i", str(fleet.client_key), "service", "deploy",
                               "--skip-gates"], cwd=project.root, capture_output=True,
                              text=True, timeout=600, check=False)
        if proc.returncode:
            raise SystemExit(f"deploy failed:\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
        return time.monotonic() - started
    deploy()
    load = Load([host["vars"]["port"] for host in project.hosts])
    load.start()
    time.sleep(3)
    before = load.take()
    durations = []
    for number in range(repeat):
        app = project.root / APP
        app.write_text(app.read_text() + f"\n# change {number}\n")
        project.commit(f"change {number}")
        durations.append(deploy())
    during = load.take()
    load.stop()
    return (len(during), sum(1 for _, failure in during if failure),
            quantile([t for t, f in before if not f], 0.5),
            quantile([t for t, f in before if not f], 0.99),
            quantile([t for t, f in during if not f], 0.5),
            quantile([t for t, f in during if not f], 0.99), statistics.median(durations))


def main():
    """Both modes; one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hosts", type=int, default=5)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--manager", choices=("supervisor", "systemd"), default="supervisor")
    args = parser.parse_args()
    systemd = None
    if args.manager == "systemd":
        if can_boot():
            raise SystemExit(f"--manager systemd: {can_boot()}")
        systemd = SystemdHost(Path(tempfile.mkdtemp(prefix="fabship-zd-systemd-")) / "log")
    fleet = start_fleet(args.hosts, enter=systemd.enter if systemd else ())
    cache = Path(tempfile.mkdtemp(prefix="fabship-zd-cache-"))
    print(f"steady deploy to {args.hosts} hosts under load (GET /health, a new connection "
          f"each), manager {args.manager}; medians of {args.repeat} deploys")
    print(f"{'mode':<22s} {'sent':>6s} {'failed':>6s} {'p50 before':>10s} {'p99 before':>10s} "
          f"{'p50 during':>10s} {'p99 during':>10s} {'deploy':>8s}")
    try:
        for zero in (True, False):
            row = run_mode(fleet, args.hosts, zero, args.repeat, cache, args.manager)
            label = "zero_downtime: true" if zero else "zero_downtime: false"
            print(f"{label:<22s} {row[0]:>6d} {row[1]:>6d} {row[2]:>8.1f}ms {row[3]:>8.1f}ms "
                  f"{row[4]:>8.1f}ms {row[5]:>8.1f}ms {row[6]:>7.2f}s", flush=True)
    finally:
        if systemd:
            systemd.stop()
        fleet.stop()
        subprocess.run(["rm", "-rf", str(cache)], check=False)


if __name__ == "__main__":
    main()
