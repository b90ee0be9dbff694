"""The executor's progress marks and finish, run by the local sh (a real shell, no SSH).

A round trip's script marks each step with a random nonce of that round trip, so output
that looks like a mark (a health body, a program's output) is only output; the finish
runs every step even after one fails, so the lock is always given back.
"""
import shlex
import subprocess

from deploy.batch import BatchResult, Marks, batch_script, new_nonce, run_batch
from deploy.executor import HostExecutor
from deploy.steps import Batch, HostPlan, Run

FORGED = ("fabship-step-done x", "fabship-step-done 99", "fabship-step-failed 0 0",
          "fabship-step-done abc", "fabship-0000000000000000-done 1")


class LocalShell:  # pylint: disable=too-few-public-methods
    """A transport that runs the command with the local sh, as sshd runs it on a host."""

    address = "local"

    def __init__(self):
        self.trips = 0

    def run_streams(self, command, stdin=None, on_line=None):
        """(exit code, stdout, stderr); on_line sees stdout's lines, as the SSH transport's."""
        self.trips += 1
        proc = subprocess.run(["sh", "-c", command], input=stdin, capture_output=True,
                              check=False)
        for line in proc.stdout.decode().splitlines():
            if on_line:
                on_line(line)
        return proc.returncode, proc.stdout.decode(), proc.stderr.decode()


def say(*lines):
    """argv printing lines, as a program or a health check may."""
    return ("printf", "%s\\n", *lines)


def test_marks_carry_a_fresh_nonce_and_parse_only_their_own():
    """Only whole lines with this round trip's nonce are marks; the parsers never raise."""
    assert new_nonce() != new_nonce() and len(new_nonce()) == 16
    marks = Marks("abc123")
    assert marks.prefix == "fabship-abc123-"
    assert marks.done("fabship-abc123-done 7") == 7
    for line in (*FORGED, "fabship-abc123-done x", "fabship-abc123-done 1 x",
                 "fabship-abc1234-done 1", "", "output fabship-abc123-done 2",
                 " fabship-abc123-done 2", "fabship-abc123-done 2 ", "fabship-abc123-done 1 2",
                 "fabship-abc123-failed 1 2"):
        assert marks.done(line) is None, line
    output = ("fabship-step-failed 0 0\nfabship-abc123-failed 9 1\nfabship-abc123-failed 1\n"
              "fabship-abc123-failed 2 5\nfabship-abc123-done 3\nxfabship-abc123-failed 0 7\n"
              " fabship-abc123-failed 0 8\nfabship-abc123-failed 0 6 \n"
              "fabship-abc123-failed 1 4")
    assert marks.failures(output, 3) == [(2, 5), (1, 4)]  # 9 is no step of 3; "1" no code
    assert marks.other("a\nfabship-abc123-done 0\nfabship-step-done x\nb") == (
        "a\nfabship-step-done x\nb")


def test_forged_marks_are_plain_output(tmp_path):
    """A step printing mark-like lines neither crashes nor fakes progress or a failure."""
    done = []
    batch = Batch("b", (Run(say(*FORGED), "forge"), Run(("touch", str(tmp_path / "ran")),
                                                        "touch")))
    result = run_batch(LocalShell(), batch, {}, done.append)
    assert result == BatchResult(True, "\n".join(FORGED))
    assert done == [0, 1] and (tmp_path / "ran").exists()
    failing = Batch("b", (Run(say("ok"), "first"),
                          Run(("sh", "-c", "printf 'fabship-step-failed 0 0\\n'; exit 4"),
                              "second")))
    result = run_batch(LocalShell(), failing, {})
    assert (result.ok, result.failed_index, result.failed_step, result.code) == (
        False, 1, "second", 4)
    assert result.output == "ok\nfabship-step-failed 0 0"
    assert result.failures == ((1, "second", 4),)


# A step that reads this round trip's nonce as any local user can (the batch shell's
# argv, in /proc/<pid>/cmdline), then prints correctly nonced marks on stdout and stderr.
STEAL_NONCE = ('n=$(tr "\\0" "\\n" < /proc/$PPID/cmdline | grep -o "fabship-[0-9a-f]*-" | '
               'head -n 1); test -n "$n" || exit 9; '
               'printf "\\n%sfailed 0 0\\n%sdone 2\\n" "$n" "$n"; '
               'printf "\\n%sfailed 0 0\\n%sdone 2\\n" "$n" "$n" >&2; ')


def test_marks_forged_with_the_nonce_are_plain_output(tmp_path):
    """Marks travel on a stream no step can write to: a step that stole the nonce and
    prints a `failed 0 0` and a `done 2` mark (stdout and stderr) neither moves the
    failure to step 0 (before the switch: no rollback) nor fakes progress."""
    ran, done = tmp_path / "ran", []
    batch = Batch("b", (Run(say("ok"), "switch"),
                        Run(("sh", "-c", STEAL_NONCE + "exit 4"), "health check"),
                        Run(("touch", str(ran)), "after")))
    result = run_batch(LocalShell(), batch, {}, done.append)
    assert (result.ok, result.failed_index, result.failed_step, result.code) == (
        False, 1, "health check", 4)  # 4, not 9: the step did find the nonce
    assert result.failures == ((1, "health check", 4),)
    assert done == [0] and not ran.exists()
    assert result.output.count("failed 0 0") == 2 and result.output.count("done 2") == 2
    passing = Batch("b", (Run(say("ok"), "switch"),
                          Run(("sh", "-c", STEAL_NONCE + "exit 0"), "health check"),
                          Run(("sh", "-c", "exit 5"), "finish")))
    done.clear()
    result = run_batch(LocalShell(), passing, {}, done.append, keep_going=True)
    assert (result.failed_index, result.code, result.failures) == (2, 5, ((2, "finish", 5),))
    assert done == [0, 1]


def test_steps_cannot_reach_the_marks_stream():
    """Every step's stdout goes to stderr, and the marks' descriptor is closed for it."""
    batch = Batch("b", (Run(("sh", "-c", "echo out; echo err >&2; echo three >&3 || "
                             "echo closed"), "step"),))
    code, marked, output = LocalShell().run_streams(
        shlex.join(["sh", "-c", batch_script(batch, "n0nce")]))
    assert (code, marked) == (0, "fabship-n0nce-done 0\n")
    assert output.startswith("out\nerr\n") and output.endswith("closed\n")


def test_a_lost_failure_mark_blames_the_batch():
    """No mark at all (the shell killed, or a forged line only): the batch failed as a whole."""
    batch = Batch("whole", (Run(("sh", "-c", "echo fabship-step-failed 0 0; kill -9 $PPID"),
                                "killer"),))
    result = run_batch(LocalShell(), batch, {})
    assert (result.ok, result.failed_index, result.failed_step) == (False, 1, "whole")
    assert "fabship-step-failed 0 0" in result.output


def test_keep_going_runs_every_step_and_reports_each_failure(tmp_path):
    """The finish's mode: a failed step is marked, the next ones still run, exit 3 at the end."""
    unlocked = tmp_path / "unlocked"
    batch = Batch("finish", (Run(("false",), "history"), Run(say("pruned"), "prune"),
                             Run(("sh", "-c", "exit 6"), "prune more"),
                             Run(("touch", str(unlocked)), "unlock")))
    assert "exit 3; }" in batch_script(batch, "n") and "failed=3; }" in batch_script(
        batch, "n", keep_going=True)
    result = run_batch(LocalShell(), batch, {}, keep_going=True)
    assert unlocked.exists()
    assert (result.ok, result.code, result.output) == (False, 1, "pruned")
    assert result.failures == ((0, "history", 1), (2, "prune more", 6))
    unlocked.unlink()
    stopped = run_batch(LocalShell(), batch, {})  # a ship batch stops at the first failure
    assert not unlocked.exists() and stopped.failures == ((0, "history", 1),)


def plan(finish_steps):
    """A one-host plan that ships fine and finishes with `finish_steps`."""
    return HostPlan("local", (Batch("ship", (Run(("true",), "ship"),)),), (9, 9), (),
                    (Batch("record, prune, unlock", finish_steps),), ())


def test_a_failed_finish_still_unlocks_and_fails_the_run(tmp_path):
    """History fails (deploys.jsonl is a directory): prune and unlock still run; the outcome
    says what was left undone and is not `deployed`, so the run exits non-zero."""
    (tmp_path / "deploys.jsonl").mkdir()
    (tmp_path / ".lock").mkdir()
    lines = []
    steps = (Run(("sh", "-c", 'echo x >> "$1"', "-", str(tmp_path / "deploys.jsonl")),
                 "record 'deployed' in the history"),
             Run(("rm", "-rf", str(tmp_path / ".lock")), "release the lock"))
    outcome = HostExecutor(LocalShell(), {}, lines.append).execute(plan(steps), "r1")
    assert not (tmp_path / ".lock").exists()
    assert outcome.status == "deployed (finish failed)"
    assert outcome.detail == "left undone: record 'deployed' in the history"
    assert any("FAILED  record 'deployed' in the history" in line for line in lines)
    assert any("ok  release the lock" in line for line in lines)
    clean = HostExecutor(LocalShell(), {}, lines.append).execute(plan(steps[1:]), "r1")
    assert (clean.status, clean.detail) == ("deployed", "")
