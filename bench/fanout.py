"""Steady-state deploy against N real sshd hosts on loopback, next to two floors.

Usage: .venv/bin/python bench/fanout.py [--sizes 1,10,20,40] [--repeat 3] [--steps]
                                        [--baseline DIR] [--empty-home]

For each fleet size N, after a first deploy (not timed), `--repeat` times and in turn:
- fabship: a steady-state deploy (code changed, requirements unchanged,
  `fab service deploy --skip-gates`), every host at once (rollout canary 0, batch 100%,
  parallel N when fabship has rollout options);
- the restart floor: one plain `ssh` per host, all at once, doing the same work: the
  source (git archive of services/hello) streamed on stdin and extracted into a new
  release (with release.json naming its id), `current` swapped (ln -sfn + mv -T), the
  program restarted through the host's running supervisord (`supervisorctl restart`)
  and /health polled with curl until it names the new release;
- the bare floor: the same without the restart and the health check.
The table gives the medians, the ratios, and the peak RSS of the fab process. At the
largest N it also times the steady deploy with `--canary 1 --batch 25%` (a canary and 4
batches) against `--canary 0 --batch 100%`. `--steps` adds, per N, each step's median
seconds over the hosts and when (seconds after fab started) the median host ended it.
`--baseline DIR` also times the steady deploy with the fabship code of DIR (another
checkout, e.g. `git archive HEAD | tar -x -C DIR`, put first on PYTHONPATH), in turn with
this tree's: a before/after under the same load. `--empty-home` gives every SSH session
an empty HOME (sshd's SetEnv, as the test suite's hosts have): the login shell sshd runs
each command with (bash reads ~/.bashrc then) skips this machine's startup files, which a
real host's deploy user does not have (here: pyenv init, ~0.17 s of CPU per command, paid on every host for each
round trip). Numbers only, no assertions. Every sshd and supervisord is stopped at the end.
"""
import argparse
import json
import os
import re
import resource
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# pylint: disable=wrong-import-position
from tests.fleet import start_fleet  # noqa: E402
from tests.project import FAB, Project, fleet_hosts, hello_service  # noqa: E402

APP = "services/hello/hello/app.py"
PLAIN_STEP = re.compile(r"\[(?P<host>[^\]]+)\]\s+ok\s+(?P<step>.*) \((?P<seconds>[0-9.]+)s\)$")
TIME = "/usr/bin/time"
# The floor's work on a host, one `sh -c` per host. Values only as $1..$4.
FLOOR = r"""
set -e
root=$1 id=$2 url=$3 restart=$4
rel=$root/releases/$id cur=$root/current
mkdir "$rel.tmp"
tar -xzf - -C "$rel.tmp"
printf '{"release": "%s", "commit": "floor"}\n' "$id" > "$rel.tmp/release.json"
cp -P "$cur/hello.conf" "$rel.tmp/"
mkdir "$rel.tmp/.fabship"
for name in venv launch.py argv.json env supervisord.conf; do
  cp -P "$cur/.fabship/$name" "$rel.tmp/.fabship/"
done
printf '#!/bin/sh\nexec %s/.fabship/venv/bin/python -I %s/.fabship/launch.py\n' \
  "$rel" "$rel" > "$rel.tmp/.fabship/run"
mv -T "$rel.tmp" "$rel"
ln -sfn "$rel" "$root/.current.floor"
mv -T "$root/.current.floor" "$cur"
[ "$restart" = 1 ] || exit 0
"$rel/.fabship/venv/bin/python" -m supervisor.supervisorctl \
  -c "$rel/.fabship/supervisord.conf" restart 'hello:*' >/dev/null
tries=0
until curl -fsS --max-time 2 "$url" 2>/dev/null | grep -qF "$id"; do
  tries=$((tries + 1))
  if [ "$tries" -ge 300 ]; then echo "unhealthy: $url"; exit 1; fi
  sleep 0.1
done
"""


def release_id(tag):
    """A release id of fabship's form (the host's probe trusts only those names)."""
    now = datetime.now(timezone.utc)
    return now.strftime("%Y%m%dT%H%M%S.") + f"{now.microsecond // 1000:03d}Z-{tag}"


class Bench:
    """One project deploying to the first `size` hosts of the fleet."""

    def __init__(self, fleet, size, cache, rollout):  # pylint: disable=R0913,R0917
        self.fleet, self.size, self.rollout = fleet, size, rollout
        self.project = Project(fleet.base / f"fanout{size}", fleet, cache)
        self.project.hosts = fleet_hosts(fleet)[:size]
        service = hello_service(f"{fleet.base}/fanout{size}-hosts", drain=10)  # the default
        service["environments"] = {"bench": {"hosts": self.project.hosts}}
        # The tests' 6 s gives a failing release up soon; a first start on a loaded
        # machine (40 hosts compiling their bytecode at once) may take longer.
        service["health"]["timeout"] = 120
        if rollout["canary"]:
            service["rollout"] = {"canary": 0, "batch": "100%", "parallel": max(size, 20)}
        else:
            service.pop("rollout", None)
        self.project.service = service
        self.project.write_config({"hello": service})
        self.project.commit("first")
        self.changes = 0

    def seed(self, venv):
        """Give every host a hard-linked copy of a complete venv (one a deploy built), as
        a host holds it after a deploy with the same requirements: no build per host."""
        for index in range(self.size):
            venvs = self.project.host_root(index) / "venvs"
            venvs.mkdir(parents=True)
            subprocess.run(["cp", "-al", str(venv), str(venvs)], check=True)

    def venv(self):
        """The complete venv host 0 holds."""
        return next(path.parent for path in
                    (self.project.host_root(0) / "venvs").glob("*/.complete"))

    def change_code(self):
        """Commit a code change that serves exactly as before."""
        self.changes += 1
        app = self.project.root / APP
        app.write_text(app.read_text() + f"\n# change {self.changes}\n")
        self.project.commit(f"change {self.changes}")

    def fab(self, *args, code=None):
        """Run `fab -i KEY ARGS` (with the fabship code of the checkout `code`, or this
        tree's): (seconds, peak RSS in MB, [(arrival, line)])."""
        environ = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
        if code:
            environ["PYTHONPATH"] = str(code)
        with tempfile.NamedTemporaryFile("r", suffix=".rusage") as usage:
            command = [FAB, "-i", str(self.fleet.client_key), *args]
            if os.access(TIME, os.X_OK):
                command = [TIME, "-v", "-o", usage.name, *command]
            else:  # the wrapper's children are fab alone: its ru_maxrss is fab's
                command = [sys.executable, "-c", RUSAGE_WRAPPER, usage.name, *command]
            started = time.monotonic()
            status, lines, errors = stamped(command, self.project.root, environ)
            took = time.monotonic() - started
            found = re.search(r"Maximum resident set size \(kbytes\): (\d+)|^rss=(\d+)",
                              usage.read(), re.M)
        if status:
            text = "\n".join(line for _, line in lines)
            raise SystemExit(f"fab {' '.join(args)} failed:\n{text[-3000:]}{errors[-2000:]}")
        rss = int(next(g for g in found.groups() if g)) / 1024 if found else float("nan")
        return took, rss, lines

    def deploy(self, *options, code=None):
        """A steady-state deploy: (seconds, RSS MB, per-step timings)."""
        self.change_code()
        json_out = ("--json",) if self.rollout["json"] else ()
        took, rss, lines = self.fab("service", "deploy", "--skip-gates", *json_out, *options,
                                    code=code)
        return took, rss, step_timings(lines)

    def _ssh(self, index, rid, restart):
        """The plain `ssh` running the floor's script on host `index`."""
        host = self.project.hosts[index]
        user, address = host["host"].split("@")
        ip, port = address.rsplit(":", 1)
        url = f"http://{ip}:{host['vars']['port']}/health"
        remote = shlex.join(["sh", "-c", FLOOR, "floor", str(self.project.host_root(index)),
                             rid, url, "1" if restart else "0"])
        return ["ssh", "-F", "/dev/null", "-i", str(self.fleet.client_key), "-p", port,
                "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes",
                "-o", "StrictHostKeyChecking=yes",
                "-o", f"UserKnownHostsFile={self.project.root / '.fabship-known_hosts'}",
                f"{user}@{ip}", remote]

    def floor(self, restart):
        """One plain ssh per host, all at once: seconds until the last one is done."""
        started = time.monotonic()
        source = subprocess.run(["git", "archive", "--format=tar.gz", "HEAD:services/hello"],
                                cwd=self.project.root, capture_output=True, check=True).stdout
        rid = release_id("floor" + ("r" if restart else "b"))
        procs = [subprocess.Popen(  # pylint: disable=consider-using-with
            self._ssh(index, rid, restart), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT) for index in range(len(self.project.hosts))]
        outputs = [b""] * len(procs)

        def talk(index):
            outputs[index] = procs[index].communicate(source, timeout=120)[0]
        threads = [threading.Thread(target=talk, args=(i,)) for i in range(len(procs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        took = time.monotonic() - started
        for host, proc, output in zip(self.project.hosts, procs, outputs):
            if proc.returncode:
                raise SystemExit(f"floor failed on {host['host']}: {output.decode()[-2000:]}")
        return took


def stamped(command, cwd, environ):
    """Run `command`: (exit code, [(seconds since start, stdout line)], stderr)."""
    lines, errors = [], []
    started = time.monotonic()
    with subprocess.Popen(command, cwd=cwd, env=environ, text=True, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE) as proc:
        reader = threading.Thread(target=lambda: errors.append(proc.stderr.read()))
        reader.start()
        for line in proc.stdout:
            lines.append((time.monotonic() - started, line.rstrip("\n")))
        proc.wait()
        reader.join()
    return proc.returncode, lines, errors[0]


RUSAGE_WRAPPER = """
import resource, subprocess, sys
code = subprocess.call(sys.argv[2:])
with open(sys.argv[1], "w") as out:
    out.write(f"rss={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
sys.exit(code)
"""


def step_name(label):
    """A step's label without its release-specific parts (URL, ids, digests)."""
    return re.sub(r"\b[0-9a-f]{12}\b", "<digest>", label.split(":")[0]).strip()


def step_timings(lines):
    """{step: ([seconds per host], [arrival per host])} from fab's output lines."""
    steps = {}
    for arrival, line in lines:
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") != "step_done":
                continue
            step, seconds = event["step"], float(event["seconds"])
        else:
            found = PLAIN_STEP.search(line)
            if not found:
                continue
            step, seconds = found.group("step"), float(found.group("seconds"))
        got = steps.setdefault(step_name(step), ([], []))
        got[0].append(seconds)
        got[1].append(arrival)
    return steps


def rollout_options(repo):
    """Which options `fab service deploy` has: {"canary": bool, "json": bool}."""
    proc = subprocess.run([FAB, "service", "deploy", "--help"], cwd=repo, text=True,
                          capture_output=True, check=False)
    return {"canary": "--canary" in proc.stdout, "json": "--json" in proc.stdout}


def median(values):
    """The median, or nan for no values."""
    return statistics.median(values) if values else float("nan")


def bench_size(bench, repeat, baseline=None):
    """Per size: `repeat` steady deploys (and baseline ones) and floors, taken in turn."""
    runs = {"fabship": [], "restart floor": [], "bare floor": [], "rss": [], "steps": [],
            "baseline": [], "baseline steps": []}
    bench.fab("service", "deploy", "--skip-gates")  # the first deploy (not timed)
    for _ in range(repeat):
        if baseline:
            took, _, steps = bench.deploy(code=baseline)
            runs["baseline"].append(took)
            runs["baseline steps"].append(steps)
        took, rss, steps = bench.deploy()
        runs["fabship"].append(took)
        runs["rss"].append(rss)
        runs["steps"].append(steps)
        runs["restart floor"].append(bench.floor(restart=True))
        runs["bare floor"].append(bench.floor(restart=False))
    return runs


def rollout_compare(bench, repeat):
    """{label: [seconds]}: a canary and 4 batches against one batch, in turn."""
    shapes = {"--canary 1 --batch 25%": ("--canary", "1", "--batch", "25%"),
              "--canary 0 --batch 100%": ("--canary", "0", "--batch", "100%")}
    out = {label: [] for label in shapes}
    for _ in range(repeat):
        for label, options in shapes.items():
            out[label].append(bench.deploy(*options)[0])
    return out


def print_steps(size, runs, key="steps"):
    """Each step's median seconds (over hosts and runs), and when the median host ended it."""
    print(f"\nN={size}{' (baseline)' if key != 'steps' else ''}: per-step seconds (median "
          "over hosts and runs), median end (seconds after fab started)")
    merged = {}
    for steps in runs[key]:
        for step, (seconds, arrivals) in steps.items():
            got = merged.setdefault(step, ([], []))
            got[0].extend(seconds)
            got[1].append(median(arrivals))
    for step, (seconds, arrivals) in merged.items():
        print(f"  {step[:58]:58s} {median(seconds):6.2f}s  ends at {median(arrivals):6.2f}s")


def main():
    """Run every size; print one table (and the rollout comparison at the largest N)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10,20,40")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measure (medians)")
    parser.add_argument("--steps", action="store_true", help="per-step timings per N")
    parser.add_argument("--baseline", type=Path, help="a checkout of fabship to compare with")
    parser.add_argument("--empty-home", action="store_true",
                        help="sessions on the hosts get an empty HOME (no shell startup files)")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",")]
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 65536)), hard))
    fleet = start_fleet(max(sizes), own_home=args.empty_home)
    cache = Path(tempfile.mkdtemp(prefix="fabship-fanout-cache-"))
    table, compare, venv = {}, None, None
    rollout = rollout_options(Path(__file__).resolve().parent.parent)
    print(f"steady-state deploy, medians of {args.repeat} run(s); every host at once"
          + ("" if rollout["canary"] else " (no rollout options)")
          + ("; sessions with an empty HOME" if args.empty_home else ""))
    print(f"{'N':>3s} {'fabship':>9s} {'restart fl':>10s} {'bare fl':>9s} "
          f"{'fab/restart':>11s} {'fab/bare':>9s} {'fab RSS':>9s}"
          + (f" {'baseline':>9s} {'base/restart':>12s}" if args.baseline else ""), flush=True)
    try:
        for size in sizes:
            bench = Bench(fleet, size, cache, rollout)
            if venv:
                bench.seed(venv)
            try:
                table[size] = bench_size(bench, args.repeat, args.baseline)
            except SystemExit as exc:  # a failed deploy: say so, go on with the next size
                print(f"{size:3d} failed: {exc}", flush=True)
                continue
            venv = venv or bench.venv()
            print_row(size, table[size], args.baseline)
            if size == max(sizes) and rollout["canary"]:
                compare = rollout_compare(bench, args.repeat)
    finally:
        fleet.stop()
        shutil.rmtree(cache, ignore_errors=True)
    report(table, compare, rollout, args)


def print_row(size, runs, baseline):
    """One line of the table."""
    fab, restart, bare, base = (median(runs[k]) for k in (
        "fabship", "restart floor", "bare floor", "baseline"))
    print(f"{size:3d} {fab:8.2f}s {restart:9.2f}s {bare:8.2f}s {fab / restart:10.2f}x "
          f"{fab / bare:8.2f}x {median(runs['rss']):6.0f} MB"
          + (f" {base:8.2f}s {base / restart:11.2f}x" if baseline else ""), flush=True)


def report(table, compare, rollout, args):
    """The rollout comparison and (with --steps) the step timings, after the table."""
    largest = max(int(size) for size in args.sizes.split(","))
    print(f"\ncanary + 4 batches vs one batch at N={largest}:", end="")
    if not rollout["canary"]:
        print(" n/a (no rollout options yet)")
    elif compare is None:
        print(" not measured (the deploys at that size failed)")
    else:
        print()
        for label, seconds in compare.items():
            print(f"  {label:26s} {median(seconds):6.2f}s")
    if args.steps:
        for size in table:
            print_steps(size, table[size])
            if args.baseline:
                print_steps(size, table[size], "baseline steps")


if __name__ == "__main__":
    main()
