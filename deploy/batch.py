"""One round trip: a Batch as one remote `sh -c` script, its marks and its result.

Each Batch becomes one remote `sh -c` script (one round trip). Its uploads travel on
stdin as one tar stream unpacked with `tar -x -p` where the first upload stands, so file
modes (0600 for secrets) are set as the files are created.

The script marks each step's end with a line (`fabship-<nonce>-done N`,
`fabship-<nonce>-failed N CODE`) on a stream of its own: its stdout, which no step can
write to (every step's stdout goes to stderr, with the script's own output, and the
marks' descriptor is closed for it). The controller reads the two streams apart, so
program output (a health body, a program that read the nonce from `ps`) is only output,
never progress or a failure. The nonce of the round trip is a second check.

A fenced batch checks, before every step, that this run still holds the host's deploy
lock (shell builtins only: no process per check). The lock directory and the owner
record are the script's positional arguments, never part of its text. A lost lock is
reported as the step's failure with code FENCED (no exit status can be 256) and ends the
script at once, even a keep-going one: nothing more is done on a host another run owns.
"""
import io
import os
import re
import shlex
import tarfile
import time
from dataclasses import dataclass

from .steps import Run, Upload

FENCED = 256  # the "exit code" of a step not run because the lock was taken over
OURS = r"""
ours() {
  if [ ! -L "$1" ] && [ ! -L "$1/owner.json" ] &&
     { IFS= read -r held < "$1/owner.json"; } 2>/dev/null && [ "$held" = "$2" ]; then
    return 0
  fi
  echo "the deploy lock was taken over (--break-lock); stopping before anything else changes"
  return 1
}
"""


def new_nonce():
    """A fresh random token for one round trip's marks."""
    return os.urandom(8).hex()


@dataclass(frozen=True)
class Marks:
    """The progress marks of one round trip, and their pure parsers.

    A mark is a whole line of the marks stream; anything else there is plain output.
    """

    nonce: str

    @property
    def prefix(self):
        """What every mark line starts with."""
        return f"fabship-{self.nonce}-"

    def _match(self, line):
        return re.fullmatch(re.escape(self.prefix) + r"(done|failed)((?: [0-9]+)+)", line)

    def done(self, line):
        """The step index a whole line marks as done, or None."""
        found = self._match(line)
        if not found or found.group(1) != "done" or len(found.group(2).split()) != 1:
            return None
        return int(found.group(2))

    def failures(self, marks, count):
        """[(index, exit code)] of the failed mark lines in `marks`, for steps 0..count-1."""
        found = []
        for line in marks.splitlines():
            mark = self._match(line)
            parts = [int(number) for number in mark.group(2).split()] if mark else []
            if mark and mark.group(1) == "failed" and len(parts) == 2 and parts[0] < count:
                found.append((parts[0], parts[1]))
        return found

    def other(self, marks):
        """The lines of the marks stream that are no marks (none from fabship's script)."""
        return "".join(line for line in marks.splitlines(keepends=True)
                       if not self._match(line.rstrip("\n")))


@dataclass(frozen=True)
class BatchResult:
    """How one round trip ended; `failed_index` is the (first) failing step's position.

    `failures` lists every failed step as (index, label, exit code): a batch run with
    keep_going goes on after a failure (the finish: the lock is released regardless).
    """

    ok: bool
    output: str
    failed_index: int | None = None
    failed_step: str | None = None
    code: int = 0
    failures: tuple = ()

    @property
    def fenced(self):
        """The round trip stopped because another run took the host's lock over."""
        return any(code == FENCED for _, _, code in self.failures)


def upload_tar(uploads, blobs):
    """A tar stream of the uploads, with absolute paths made relative to /."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for step in uploads:
            data = blobs[step.blob] if step.blob else step.text.encode()
            info = tarfile.TarInfo(step.path.lstrip("/"))
            info.size, info.mode, info.mtime = len(data), step.mode, int(time.time())
            tar.addfile(info, io.BytesIO(data))
    return raw.getvalue()


def bounded(step, step_timeout):
    """A Run's command line, stopped by timeout(1) after `step_timeout` seconds (or its
    own bound plus a margin, when longer): TERM to its process group, KILL 5 s later;
    the step then fails with 124 (137 when killed)."""
    if not step_timeout:
        return shlex.join(step.argv)
    limit = max(step_timeout, (step.timeout or 0) + 10)
    return shlex.join(("timeout", "-k", "5", f"{limit:g}", *step.argv))


def batch_script(batch, nonce, keep_going=False, step_timeout=None):
    """The sh script of one batch; uploads unpack where the first one stands.

    Its stdout carries the marks only: `exec 3>&1 1>&2` keeps stdout as fd 3 and sends
    everything else to stderr; each step runs with fd 3 closed. After each step it prints
    a `fabship-<nonce>-done N` mark (printf is a builtin), so the controller can show
    progress live and knows where a failure happened. A failed step prints
    `fabship-<nonce>-failed N CODE` and ends the script (exit 3), or, with keep_going,
    the script goes on and exits 3 at its end. With a fence, a step is run only while
    `ours "$1" "$2"` holds (see the module's docstring). With `step_timeout`, each
    Run is bounded (see `bounded`).
    """
    marks = Marks(nonce).prefix
    uploads = [i for i, step in enumerate(batch.steps) if isinstance(step, Upload)]
    lines = ["exec 3>&1 1>&2\numask 022\nfailed=0\n"
             f"fail() {{ printf '{marks}failed %s %s\\n' \"$1\" \"$2\" >&3; "
             + ("failed=3; }" if keep_going else "exit 3; }")]
    if batch.fence:
        lines.append(OURS.strip())

    def step(command, index, done):
        fenced = (f'if ! ours "$1" "$2" 2>&1; then fail {index} {FENCED}; exit 3; el'
                  if batch.fence else "")
        lines.append(f"{fenced}if {command} 3>&-; then printf '{marks}done %s\\n' {done} "
                     f">&3; else fail {index} $?; fi")
    for index, item in enumerate(batch.steps):
        if isinstance(item, Upload) and index == uploads[0]:
            step("tar -x -p --no-same-owner -C / -f -", index, " ".join(map(str, uploads)))
        elif isinstance(item, Run):
            step(bounded(item, step_timeout), index, index)
    lines.append("exit $failed")
    return "\n".join(lines) + "\n"


def batch_command(batch, nonce, keep_going=False, step_timeout=None):
    """The remote command line: `sh -c SCRIPT fabship [LOCKDIR OWNER]`."""
    return shlex.join(["sh", "-c", batch_script(batch, nonce, keep_going, step_timeout),
                       "fabship", *(batch.fence or ())])


def run_batch(transport, batch, blobs, on_done=None, keep_going=False):
    """Send one batch; on_done(index) as each step completes; attribute a failure.

    The transport's `run_streams` keeps the marks (stdout) apart from the output
    (stderr). A transport with only `run` (combined output: a test double running the
    local sh) gives its stdout first; marks are then whole lines of it. The transport's
    `step_timeout` (ssh.step_timeout), when it has one, bounds every step.
    """
    uploads = [step for step in batch.steps if isinstance(step, Upload)]
    stdin = upload_tar(uploads, blobs) if uploads else None
    marks = Marks(new_nonce())

    def on_line(line):
        index = marks.done(line)
        if on_done and index is not None and index < len(batch.steps):
            on_done(index)
    command = batch_command(batch, marks.nonce, keep_going,
                            getattr(transport, "step_timeout", None))
    streams = getattr(transport, "run_streams", None)
    if streams:
        code, marked, output = streams(command, stdin=stdin, on_line=on_line)
    else:
        code, marked = transport.run(command, stdin=stdin, on_line=on_line)
        output = ""
    return _result(batch, marks, code, marked, output)


def _result(batch, marks, code, marked, output):
    """The BatchResult of a round trip's exit code, marks stream and output."""
    clean = (marks.other(marked) + output).strip()
    if code == 0:
        return BatchResult(True, clean)
    failures = tuple((index, batch.steps[index].label, exit_code)
                     for index, exit_code in marks.failures(marked, len(batch.steps)))
    if not failures:  # no mark at all: the shell was killed, or the tar stream failed
        return BatchResult(False, clean, len(batch.steps), batch.label, code)
    index, label, exit_code = failures[0]
    return BatchResult(False, clean, index, label, exit_code, failures)
