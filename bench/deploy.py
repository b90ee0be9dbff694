"""Deploy wall time against a fleet of real sshd hosts on loopback, at N = 1, 5, 10.

Usage: .venv/bin/python bench/deploy.py [--sizes 1,5,10]
Prints, per fleet size: first deploy, steady-state deploy (code changed, requirements
unchanged), no-change redeploy and rollback, in wall seconds, plus SSH round trips per
host (remote commands; the connection handshake is not counted).
"""
import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# pylint: disable=wrong-import-position
from tests.fleet import start_fleet  # noqa: E402
from tests.project import Project, fleet_hosts, hello_service  # noqa: E402

TRIPS = re.compile(r"(\d+) round trips")


def timed(project, *args):
    """(seconds, round trips per host) of one fab run that must succeed."""
    started = time.monotonic()
    proc = project.fab(*args)
    took = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(f"fab {' '.join(args)} failed:\n{proc.stdout[-3000:]}{proc.stderr}")
    trips = sorted({int(n) for n in TRIPS.findall(proc.stdout)})
    return took, "/".join(map(str, trips)) or "-"


def bench_size(fleet, size, cache):
    """One project deploying to the first `size` hosts of the fleet."""
    project = Project(fleet.base / f"bench{size}", fleet, cache)
    project.hosts = fleet_hosts(fleet)[:size]
    service = hello_service(f"{fleet.base}/bench{size}-hosts", drain=10)  # the default
    service["environments"] = {"bench": {"hosts": project.hosts}}
    project.write_config({"hello": service})
    project.commit("first")
    results = {"first deploy": timed(project, "service", "deploy")}
    app = project.root / "services" / "hello" / "hello" / "app.py"
    app.write_text(app.read_text().replace("<h1>{greeting}</h1>", "<h1>{greeting}.</h1>"))
    project.commit("code change")
    results["steady-state deploy"] = timed(project, "service", "deploy")
    results["no-change redeploy"] = timed(project, "service", "deploy")
    results["rollback"] = timed(project, "service", "rollback")
    return results


def main():
    """Run every size and print one table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,5,10")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    fleet = start_fleet(max(sizes))
    cache = Path(tempfile.mkdtemp(prefix="fabship-bench-cache-"))
    try:
        table = {size: bench_size(fleet, size, cache) for size in sizes}
    finally:
        fleet.stop()
    print(f"{'operation':22s}" + "".join(f"{f'N={size}':>16s}" for size in sizes))
    for operation in table[sizes[0]]:
        cells = "".join(f"{table[s][operation][0]:7.2f}s ({table[s][operation][1]:>2s} rt)"
                        for s in sizes)
        print(f"{operation:22s}{cells}")
    if 1 in table and 10 in table:
        ratio = table[10]["steady-state deploy"][0] / table[1]["steady-state deploy"][0]
        print(f"steady-state N=10 / N=1: {ratio:.2f}x (target: <= 2.5x)")


if __name__ == "__main__":
    main()
