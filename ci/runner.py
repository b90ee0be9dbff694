"""Run the gate jobs concurrently, each a subprocess logging to its own file."""
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class JobOutcome:
    """How one job ended."""

    name: str
    returncode: int
    seconds: float
    log: Path

    def tail(self, lines=25):
        """The last lines of the job's log, for a failure message."""
        try:
            text = self.log.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.rstrip().splitlines()[-lines:])


def run_job(job, cwd):
    """Run one job to completion; its stdout and stderr go to its log."""
    log = Path(cwd) / job.log
    log.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(log, "w", encoding="utf-8") as handle:
        proc = subprocess.run(job.argv, cwd=cwd, stdout=handle, stderr=subprocess.STDOUT,
                              stdin=subprocess.DEVNULL, check=False)
    return JobOutcome(job.name, proc.returncode, time.monotonic() - started, log)


def run_jobs(jobs, cwd, progress=print):
    """Run independent jobs at once; return {job name: JobOutcome}."""
    outcomes = {}
    with ThreadPoolExecutor(max_workers=max(len(jobs), 1)) as pool:
        futures = {}
        for job in jobs:
            progress(f"ci: started {job.name}: {' '.join(job.argv[1:])}")
            futures[job.name] = pool.submit(run_job, job, cwd)
        for name, future in futures.items():
            outcome = future.result()
            progress(f"ci: {name} finished in {outcome.seconds:.1f}s (exit {outcome.returncode})")
            outcomes[name] = outcome
    return outcomes
