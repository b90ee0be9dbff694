"""The executor's progress marks, fence and finish, run by the local sh (a real shell, no SSH).

A round trip's script marks each step with a random nonce of that round trip, so output
that looks like a mark (a health body, a program's output) is only output; a fenced round
trip runs each step only while this run holds the host's lock; the finish runs every step
even after one fails, so the lock is always given back.
"""
import json
import shlex
import subprocess

import pytest

from fabship.deploy.batch import (FENCED, BatchResult, Marks, batch_command, batch_script, new_nonce,
                          run_batch)
from fabship.deploy.commands import lock
from fabship.deploy.events import EventBus
from fabship.deploy.executor import HostExecutor
from fabship.deploy.outcome import HostState, Outcome
from fabship.deploy.steps import Batch, HostPlan, Phase, Run

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


# --- the fence: a step runs only while this run holds the host's lock ---------------------

# This run's owner record and another run's; quotes, `$(...)`, a backslash: data, not shell.
OWNER = json.dumps({"who": "alice", "where": "laptop", "pid": 4242,
                    "since": "2026-11-23T12:00:00Z", "action": "deploy",
                    "release": "20261123T120000.000Z-abc1234",
                    "note": "o'hara $(touch pwned) `id` \\ end"})
OTHER = json.dumps({"who": "bob", "where": "ci", "pid": 7, "since": "2026-11-23T12:05:00Z",
                    "action": "deploy", "release": "20261123T120500.000Z-def5678"})


def take_lock(root, owner=OWNER, force=False):
    """Take the deploy lock of `root` as a deploy's first round trip does."""
    subprocess.run(lock.acquire(str(root), owner, force), check=True,
                   capture_output=True)


def touch(path, label=None):
    """A step leaving a witness file."""
    return Run(("touch", str(path)), label or f"touch {path.name}")


def test_a_fenced_batch_runs_while_the_lock_is_ours(tmp_path):
    """owner.json holds this run's owner record: every step runs; the lock directory and
    the owner record are the script's positional arguments, never part of its text."""
    take_lock(tmp_path)
    fence = (str(tmp_path / ".lock"), OWNER)
    batch = Batch("fenced", (touch(tmp_path / "a"), touch(tmp_path / "b")), fence)
    done = []
    result = run_batch(LocalShell(), batch, {}, done.append)
    assert result == BatchResult(True, "") and not result.fenced
    assert done == [0, 1] and (tmp_path / "a").exists() and (tmp_path / "b").exists()
    assert not list(tmp_path.rglob("pwned"))
    for keep_going in (False, True):
        script = batch_script(batch, "n0nce", keep_going)
        assert script.count('if ! ours "$1" "$2" 2>&1; then fail ') == 2
        assert OWNER not in script and shlex.quote(OWNER) not in script
        assert ".lock" not in script and "alice" not in script and "o'hara" not in script
        assert batch_command(batch, "n0nce", keep_going) == shlex.join(
            ["sh", "-c", script, "fabship", str(tmp_path / ".lock"), OWNER])
    unfenced = Batch("plain", batch.steps)
    assert "ours" not in batch_script(unfenced, "n0nce")
    assert batch_command(unfenced, "n0nce") == shlex.join(
        ["sh", "-c", batch_script(unfenced, "n0nce"), "fabship"])


def test_the_fence_needs_no_program(tmp_path):
    """The lock check is made of shell builtins: it holds, and a lost lock is seen, on a
    PATH with no program at all (no `[`, `cat` or `test` to run)."""
    take_lock(tmp_path)
    (tmp_path / "empty").mkdir()
    for owner, expected in ((OWNER, (0, "fabship-n0nce-done 0\n")),
                            (OTHER, (3, f"fabship-n0nce-failed 0 {FENCED}\n"))):
        batch = Batch("fenced", (Run((":",), "a builtin step"),),
                      (str(tmp_path / ".lock"), owner))
        proc = subprocess.run(["/bin/sh", "-c", batch_script(batch, "n0nce"), "fabship",
                               *batch.fence], capture_output=True, text=True, check=False,
                              env={"PATH": str(tmp_path / "empty")})
        assert (proc.returncode, proc.stdout) == expected, proc.stderr
        assert "not found" not in proc.stderr


def break_lock(root):
    """A step standing for another run's `--break-lock` (its round trip 1)."""
    return Run(lock.acquire(str(root), OTHER, True), "another run breaks the lock")


def rewrite_owner(root):
    """A step rewriting owner.json in place to another owner."""
    return Run(("sh", "-c", 'printf "%s\\n" "$1" > "$2"', "-", OTHER,
                str(root / ".lock" / "owner.json")), "another run rewrites owner.json")


@pytest.mark.parametrize("keep_going", [False, True])
@pytest.mark.parametrize("takeover", [break_lock, rewrite_owner])
def test_a_lock_taken_over_mid_batch_stops_the_next_step(tmp_path, takeover, keep_going):
    """Another run takes the lock over while a step runs: the next step does not run,
    even in a keep-going round trip; the failure is FENCED, and the lock stays the other
    run's."""
    take_lock(tmp_path)
    before, witness, after = tmp_path / "before", tmp_path / "witness", tmp_path / "after"
    batch = Batch("fenced", (touch(before), takeover(tmp_path), touch(witness, "next step"),
                             touch(after)), (str(tmp_path / ".lock"), OWNER))
    done = []
    result = run_batch(LocalShell(), batch, {}, done.append, keep_going=keep_going)
    assert result.fenced and not result.ok
    assert (result.failed_index, result.failed_step, result.code) == (2, "next step", FENCED)
    assert result.failures == ((2, "next step", FENCED),)
    assert done == [0, 1] and before.exists()
    assert not witness.exists() and not after.exists()
    assert result.output.endswith("the deploy lock was taken over (--break-lock); stopping "
                                  "before anything else changes")
    assert (tmp_path / ".lock" / "owner.json").read_text() == OTHER + "\n"


def test_keep_going_goes_past_a_failure_but_never_past_the_fence(tmp_path):
    """A finish goes on after an ordinary failure, and stops at a lost lock."""
    take_lock(tmp_path)
    batch = Batch("finish", (Run(("false",), "history"), touch(tmp_path / "pruned", "prune"),
                             break_lock(tmp_path), touch(tmp_path / "unlocked", "unlock")),
                  (str(tmp_path / ".lock"), OWNER))
    result = run_batch(LocalShell(), batch, {}, keep_going=True)
    assert result.failures == ((0, "history", 1), (3, "unlock", FENCED))
    assert result.fenced and (result.failed_index, result.code) == (0, 1)
    assert (tmp_path / "pruned").exists() and not (tmp_path / "unlocked").exists()
    assert not BatchResult(False, "", 0, "history", 1, ((0, "history", 1),)).fenced


def lock_as_symlink(root):
    """.lock is a link to a directory whose owner.json names this run."""
    real = root / "elsewhere"
    real.mkdir()
    (real / "owner.json").write_text(OWNER + "\n")
    (root / ".lock").symlink_to(real)


def owner_as_symlink(root):
    """.lock/owner.json is a link to a file naming this run."""
    (root / ".lock").mkdir()
    (root / "owner-elsewhere.json").write_text(OWNER + "\n")
    (root / ".lock" / "owner.json").symlink_to(root / "owner-elsewhere.json")


def no_lock(root):
    """The lock was given back (or never taken)."""
    assert not (root / ".lock").exists()


def no_owner(root):
    """The lock directory without owner.json."""
    (root / ".lock").mkdir()


def other_owner(root):
    """Another run holds the lock."""
    take_lock(root, OTHER)


@pytest.mark.parametrize("keep_going", [False, True])
@pytest.mark.parametrize("planted", [lock_as_symlink, owner_as_symlink, no_lock, no_owner,
                                     other_owner])
def test_a_lock_that_is_not_plainly_ours_is_lost(tmp_path, planted, keep_going):
    """A link for the lock directory or owner.json (even one to this run's record), no lock,
    no owner, another owner: the very first step does not run."""
    planted(tmp_path)
    witness = tmp_path / "witness"
    batch = Batch("fenced", (touch(witness, "first"), touch(tmp_path / "second")),
                  (str(tmp_path / ".lock"), OWNER))
    done = []
    result = run_batch(LocalShell(), batch, {}, done.append, keep_going=keep_going)
    assert result.fenced and result.failures == ((0, "first", FENCED),)
    assert not done and not witness.exists() and not (tmp_path / "second").exists()


# --- the executor: rollout, finish, events, HostState ------------------------------------

def plan(finish_steps, fence=None):
    """A one-host plan that ships fine and finishes (served) with `finish_steps`."""
    return HostPlan("local", "r1", None, (Phase("ship", (Run(("true",), "ship"),)),), (),
                    {"served": Phase("finish", finish_steps)}, fence)


def executor(the_plan, events):
    """A HostExecutor over the local sh, its events appended to `events`."""
    return HostExecutor(LocalShell(), the_plan, EventBus("r1", subscribers=[events.append]),
                        {}, HostState("local", old=None, new="r1"))


def decide(state):
    """What the fleet runner decides once the rollout is over (rollout.FleetRun.run)."""
    if state.outcome is None:
        state.outcome = Outcome.DEPLOYED if state.switched else Outcome.UNTOUCHED


def steps(events):
    """(kind, host, phase, step) of the step and warning events, in order."""
    return [(e.kind, e.host, e.data.get("phase"), e.data.get("step", e.data.get("text")))
            for e in events if e.kind in ("step_done", "step_failed", "warning")]


def test_a_failed_finish_still_unlocks_and_fails_the_run(tmp_path):
    """History fails (deploys.jsonl is a directory): prune and unlock still run; the outcome
    says what was left undone and is not `deployed`, so the run exits non-zero."""
    (tmp_path / "deploys.jsonl").mkdir()
    take_lock(tmp_path)
    fence = (str(tmp_path / ".lock"), OWNER)
    finish_steps = (Run(("sh", "-c", 'echo x >> "$1"', "-", str(tmp_path / "deploys.jsonl")),
                        "record 'deployed' in the history"),
                    Run(lock.release(str(tmp_path), OWNER), "release the lock"))
    events = []
    run = executor(plan(finish_steps, fence), events)
    assert run.roll() is True
    assert (run.state.outcome, run.state.reached, run.state.switched) == (None, "verify", True)
    decide(run.state)
    run.finish("served")
    assert not (tmp_path / ".lock").exists()
    assert (run.state.outcome, run.state.finish_failed, run.state.reached) == (
        Outcome.DEPLOYED, True, "finish")
    assert run.state.label() == "deployed (finish failed)"
    assert run.state.detail == "left undone: record 'deployed' in the history"
    assert run.state.trips == 2 and not run.state.failed
    # a failure is reported as its round trip ends: in a keep-going finish, after the
    # steps that ran on after it
    assert steps(events) == [
        ("step_done", "local", "ship", "ship"),
        ("step_done", "local", "finish", "release the lock"),
        ("step_failed", "local", "finish", "record 'deployed' in the history")]
    failed = next(e for e in events if e.kind == "step_failed")
    assert failed.data["code"] != 0 and "Is a directory" in failed.data["output"]
    assert failed.release == "r1"

    take_lock(tmp_path)
    events.clear()
    clean = executor(plan(finish_steps[1:], fence), events)
    assert clean.roll() is True
    decide(clean.state)
    clean.finish("served")
    assert not (tmp_path / ".lock").exists()
    assert (clean.state.label(), clean.state.detail, clean.state.finish_failed) == (
        "deployed", "", False)
    assert steps(events) == [("step_done", "local", "ship", "ship"),
                             ("step_done", "local", "finish", "release the lock")]


def test_a_host_taken_over_mid_rollout_is_left_to_the_other_run(tmp_path):
    """The lock is broken during the switch: nothing more runs there, no revert either
    (the host is the other run's now), and its finish does nothing."""
    take_lock(tmp_path)
    fence = (str(tmp_path / ".lock"), OWNER)
    the_plan = HostPlan(
        "local", "r1", "r0",
        (Phase("ship", (touch(tmp_path / "shipped", "ship"),)),
         Phase("switch", (break_lock(tmp_path), touch(tmp_path / "switched", "switch"))),
         Phase("verify", (touch(tmp_path / "checked", "check"),), "health")),
        (Phase("revert", (touch(tmp_path / "reverted", "revert"),)),),
        {"served": Phase("finish", (touch(tmp_path / "finished", "finish"),)),
         "failed": Phase("finish", (touch(tmp_path / "finished", "finish"),))}, fence)
    events = []
    run = executor(the_plan, events)
    assert run.roll() is False
    assert [(tmp_path / name).exists() for name in (
        "shipped", "switched", "checked", "reverted")] == [True, False, False, False]
    assert (run.state.outcome, run.state.reached, run.state.switched) == (
        Outcome.TAKEN_OVER, "switch", False)
    assert run.state.detail == "another run took the lock over (--break-lock); left to it"
    assert steps(events) == [("step_done", "local", "ship", "ship"),
                             ("step_done", "local", "switch", "another run breaks the lock"),
                             ("step_failed", "local", "switch", "switch")]
    assert next(e for e in events if e.kind == "step_failed").data["code"] == FENCED
    assert [e.data for e in events if e.kind == "host_failed"] == [
        {"phase": "switch", "reason": "switch: the deploy lock was taken over (--break-lock); "
                                      "stopping before anything else changes"}]
    run.finish("failed")
    assert not (tmp_path / "finished").exists() and not run.state.finish_failed
    assert run.state.detail.endswith("; another run took the lock over before the finish")
