"""Wall time and API requests of `fab service launch --no-wait` against moto's server.

Usage: .venv/bin/python bench/launch.py [--sizes 3,10]
For each size: a first launch (creates key pair, group, instances), a second launch
(nothing to do), and the dry-run; requests are counted at a proxy in front of moto, so
botocore's retries would count too. `fab -l` gives the process start-up cost alone.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# pylint: disable=wrong-import-position
from tests.awsrig import FAB, LaunchProject, Proxy, ec2_block, rig_env, \
    threaded_moto  # noqa: E402


def timed(project, proxy, *task, dry=False):
    """(seconds, requests at the proxy) of one `fab ... service --env E TASK` run."""
    proxy.reset()
    started = time.monotonic()
    proc = project.fab(*task, dry=dry, endpoint=proxy.endpoint, timeout=600)
    seconds = time.monotonic() - started
    if proc.returncode:
        raise SystemExit(f"{' '.join(task)} exited {proc.returncode}:\n{proc.stderr}")
    return seconds, proxy.requests


def startup(root, endpoint):
    """Seconds of `fab -l` in a project: the cost of starting fab at all."""
    started = time.monotonic()
    subprocess.run([FAB, "-l"], cwd=root, env=rig_env(endpoint), capture_output=True,
                   check=True)
    return time.monotonic() - started


def measure(moto, proxy, root, size):
    """One row: the first, no-op and dry-run launches of a fresh environment of `size`."""
    name = f"bench{size}"
    project = LaunchProject(root / name, name, proxy.endpoint,
                            ec2_block(name, moto.image_id(), size))
    dry = timed(project, proxy, "launch", "--no-wait", dry=True)
    first = timed(project, proxy, "launch", "--no-wait")
    again = timed(project, proxy, "launch", "--no-wait")
    live = len(moto.slots(name))
    if live != size:
        raise SystemExit(f"count {size}: {live} live instances after launch")
    return size, f"{first[0]:.2f}", first[1], f"{again[0]:.2f}", again[1], dry[1]


def main():
    """One row per size, then fab's start-up time."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="3,10",
                        help="comma list of instance counts (default 3,10)")
    sizes = [int(size) for size in parser.parse_args().sizes.split(",")]
    header = ("count", "first s", "first req", "no-op s", "no-op req", "dry req")
    with tempfile.TemporaryDirectory() as tmp, threaded_moto() as moto, \
            Proxy(moto.endpoint) as proxy:
        rows = [measure(moto, proxy, Path(tmp), size) for size in sizes]
        base = startup(Path(tmp) / f"bench{sizes[0]}", proxy.endpoint)
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *rows)]
    for row in (header, *rows):
        print("  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)))
    print(f"fab start-up alone (fab -l in a project): {base:.2f}s")


if __name__ == "__main__":
    main()
