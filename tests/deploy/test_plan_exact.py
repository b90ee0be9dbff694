"""Whole host plans, step by step: every label, argv, upload and condition, exactly.

A plan is what the dry-run prints and the executor runs, so each line of it is checked.
Scripts are named by their constant (`SWITCH /srv/hello ...`), long values by a token.
"""
import json
import shlex

from fabship.deploy.artifact import Artifact
from fabship.deploy.commands import boot, health, lock, release, supervisor, systemd
from fabship.deploy.facts import UNKNOWN, Facts, parse_facts
from fabship.deploy.rollback import rollback_plan
from fabship.deploy.planner import build_host_plan, owner_record, probe_batch
from fabship.deploy.secrets import Secret
from fabship.deploy.steps import Batch, Run
from tests.deploy.helpers import RELEASE, contexts

SOURCE = Artifact("d" * 64, b"source-bytes")
DEPS = Artifact("e" * 64, b"wheels")
R0, R1 = "20250101T000000.000Z-aaaaaaa", "20250102T000000.000Z-bbbbbbb"  # r0, r1
SCRIPTS = {"set -e" + getattr(module, name): name
           for module in (lock, release, supervisor) for name in dir(module)
           if name.isupper() and isinstance(getattr(module, name), str)}
SCRIPTS.update({"set -e" + boot.INSTALL: "BOOT_INSTALL", "set -e" + systemd.INSTALL:
                "UNIT_INSTALL", "set -e" + systemd.STOP: "UNIT_STOP"})
PYTHON = {systemd.CHECK: "UNITS_CHECK", systemd.ROLL: "UNITS_ROLL"}
UNIT = "fabship-hello-73182f8e.service"  # sha256("/srv/hello") starts 73182f8e
SOCKET, TEMPLATE = "fabship-hello-73182f8e.socket", "fabship-hello-73182f8e@.service"
INSTANCES = "fabship-hello-73182f8e@1.service fabship-hello-73182f8e@2.service"
TOKENS = {shlex.quote(owner_record(RELEASE)): "OWNER",
          shlex.quote(owner_record(RELEASE, "rollback")): "ROLLBACK_OWNER",
          "/srv/hello/releases/." + RELEASE.release_id + ".tmp": "STAGING",
          "/srv/hello/artifacts/" + SOURCE.name: "ARTIFACT",
          "/srv/hello/venvs/" + "k" * 16: "VENV", "/srv/hello/current/.fabship/": "CUR/",
          RELEASE.release_id: "R", R0: "r0", R1: "r1", "/srv/hello/": "ROOT/"}


def short(text):
    """text with the long values replaced by their tokens."""
    for value, token in TOKENS.items():
        text = text.replace(value, token)
    return text


def outline(step):
    """One step as `label | command` (or `| upload path mode what size`), plus `| unless`."""
    if isinstance(step, Run):
        argv = step.argv
        if argv[:2] == ("sh", "-c") and argv[2] in SCRIPTS and argv[3] == "fabship":
            what = f"{SCRIPTS[argv[2]]} {shlex.join(argv[4:])}"
        elif argv[1] == "-c" and argv[2] in PYTHON:
            what = f"{PYTHON[argv[2]]} {shlex.join((argv[0], *argv[3:]))}"
        else:
            what = shlex.join(argv)
    else:
        kind = step.blob or ("secret" if step.secret else "text")
        what = f"upload {step.path} {step.mode:o} {kind} {step.size}"
    return short(f"{step.label} | {what}" + (f" | unless {step.unless}" if step.unless else ""))


def phases(part):
    """[(phase name, stage, [step outlines])] of one part of a plan (rollout, revert)."""
    return [(phase.name, phase.stage, [outline(s) for s in phase.steps]) for phase in part]


def finishes(plan):
    """{key: (phase name, stage, [step outlines])} of the plan's finish phases, in order."""
    return [(key, phase.name, phase.stage, [outline(s) for s in phase.steps])
            for key, phase in plan.finish.items()]


def steps_of(part):
    """Every step of a part of a plan, in order."""
    return [step for phase in part for step in phase.steps]


def history(status, previous):
    """The append_history step of the finish batches."""
    record = {"release": "R", "commit": RELEASE.commit, "status": status,
              "host": "deploy@10.0.0.5", "deployer": "alice", "origin": "laptop",
              "previous": previous, "skip_gates": False, "started": "2026-11-23T12:00:00Z"}
    return (f"record '{status}' in the history | APPEND_HISTORY ROOT/deploys.jsonl "
            + shlex.quote(json.dumps(record).rstrip("}")))


SHIP = [
    "create the layout's directories | MAKE_DIRS /srv/hello",
    "remove releases left half-assembled | CLEAN_STAGING ROOT/releases",
    "upload release artifact dddddddddddd | upload ARTIFACT.part 644 source 12",
    "upload the deps bundle (wheels) | upload VENV.bundle.tar.gz 644 deps 6",
    "write hello.conf | upload STAGING/hello.conf 644 text 217",
    "write .fabship/run | upload STAGING/.fabship/run 755 text 421",
    "write .fabship/launch.py | upload STAGING/.fabship/launch.py 644 text 929",
    "write .fabship/argv.json | upload STAGING/.fabship/argv.json 644 text 146",
    "write .fabship/env | upload STAGING/.fabship/env 600 text 3",
    "write .fabship/supervisord.conf | upload STAGING/.fabship/supervisord.conf 644 text 1260",
    "write release.json | upload STAGING/release.json 644 text 1040",
    "keep the artifact | mv -fT ARTIFACT.part ARTIFACT",
    "unpack the artifact into the release | tar -xzf ARTIFACT -C STAGING --skip-old-files",
    "build the venv from the shipped wheels (offline) | INSTALL_DEPS VENV VENV.bundle.tar.gz "
    "python3",
    "link the venv | ln -sfnT VENV STAGING/.fabship/venv",
    "link shared/ | ln -sfnT ROOT/shared STAGING/shared",
    "move the release into place | mv -T STAGING ROOT/releases/R",
]
SWITCH = "switch current (rename) | SWITCH /srv/hello ROOT/releases/R"
RESTART = [
    "reload supervisord's config | RELOAD VENV/bin/python CUR/supervisord.conf /srv/hello "
    "''",
    "replace the 2 processes one at a time, each health-checked (supervisord started if not "
    "running) | ROLLING VENV/bin/python CUR/supervisord.conf /srv/hello hello "
    """http://127.0.0.1:8080/health '{"kind": "release", "release": "R"}' 15""",
    "start supervisord at boot (crontab @reboot) | BOOT_INSTALL /srv/hello",
]
HEALTH = ("health check: http://127.0.0.1:8080/health names R (4 answers in a row) | HEALTHY "
          "VENV/bin/python CUR/supervisord.conf /srv/hello hello http://127.0.0.1:8080/health "
          """'{"kind": "release", "release": "R", "times": 4}' 15""")
UPLOADS_ONLY_WHEN_MISSING = {2, 3, 11, 13}
FENCE = ("/srv/hello/.lock", owner_record(RELEASE))


def rollout(ship, restart=None):
    """The rollout's phases: ship, switch, switch (restart), verify (health)."""
    return [("ship", None, ship), ("switch", None, [SWITCH]),
            ("switch", "restart", RESTART if restart is None else restart),
            ("verify", "health", [HEALTH])]


def revert_to(name):
    """The revert phases back to release `name` (a token: r0, r1), under supervisord."""
    back = f"ROOT/releases/{name}/.fabship/venv/bin/python"
    return [
        ("revert", None, [f"switch current back to {name} | SWITCH /srv/hello "
                          f"ROOT/releases/{name}"]),
        ("revert", "restart", [
            f"reload supervisord's config | RELOAD {back} CUR/supervisord.conf /srv/hello ''",
            "replace the 2 processes one at a time, each health-checked (supervisord started "
            f"if not running) | ROLLING {back} CUR/supervisord.conf /srv/hello hello "
            "http://127.0.0.1:8080/health "
            f"""'{{"kind": "release", "release": "{name}"}}' 15""",
            "start supervisord at boot (crontab @reboot) | BOOT_INSTALL /srv/hello"]),
        ("revert", "health", [f"health check: http://127.0.0.1:8080/health names {name} (4 "
                              f"answers in a row) | HEALTHY {back} CUR/supervisord.conf "
                              "/srv/hello hello http://127.0.0.1:8080/health "
                              f"""'{{"kind": "release", "release": "{name}", "times": 4}}' """
                              "15"])]


STOP_FIRST = [("revert", None, [
    "stop the program | STOP VENV/bin/python CUR/supervisord.conf /srv/hello hello",
    "remove current | rm -f ROOT/current"])]


def finish(previous, protected):
    """The finish phases (served, failed, rolled-back, untouched) of a plan whose host was
    on `previous` (the history's "previous"), its prune keeping `protected`."""
    unlock = "release the lock | RELEASE /srv/hello OWNER"
    return [("served", "finish", None, [
        "mark the release as served | touch ROOT/releases/R/.fabship/served",
        history("deployed", previous),
        f"prune releases to the newest 4 | PRUNE ROOT/releases 4 name {protected}",
        "prune old artifacts | PRUNE ROOT/artifacts 4 time " + SOURCE.name, unlock]),
            ("failed", "finish", None, [history("failed", previous), unlock]),
            ("rolled-back", "finish", None, [history("rolled-back", previous), unlock]),
            ("untouched", "finish", None, [unlock])]


def assert_one_fenced_round_trip(plan):
    """The rollout is sent as one round trip, every step fenced by this run's lock."""
    batch = plan.batch("ship, switch, restart, health check", plan.rollout)
    assert batch == Batch("ship, switch, restart, health check", tuple(steps_of(plan.rollout)),
                          FENCE)
    assert plan.fence == FENCE and plan.revert_from == "switch"
    assert [plan.needs_revert(name) for name in ("ship", "switch", "verify")] == [
        False, True, True]  # a failure in ship changes nothing served


def test_first_deploy_plan_exactly():
    """Nothing on the host: upload and build everything; a failure stops the program."""
    target, (ctx, _) = contexts()
    plan = build_host_plan(target.service, ctx, Facts(), (SOURCE, DEPS), RELEASE)
    assert (plan.host, plan.release, plan.previous) == (
        "deploy@10.0.0.5", RELEASE.release_id, None)
    assert phases(plan.rollout) == rollout(SHIP)
    assert_one_fenced_round_trip(plan)
    assert phases(plan.revert) == STOP_FIRST
    assert finishes(plan) == finish(None, "R")


def steady_plan(served):
    """(plan, its ship lines) for a host on r1 holding the artifact and venv, where the
    releases `served` once served; the rollout is checked to be the steady one."""
    target, (ctx, _) = contexts()
    facts = parse_facts(f"current=/srv/hello/releases/{R1}\nreleases={R0} {R1}\n"
                        f"served={served}\nartifact=yes\nvenv=yes\n")
    plan = build_host_plan(target.service, ctx, facts, (SOURCE, DEPS), RELEASE)
    ship = [line for i, line in enumerate(SHIP) if i not in UPLOADS_ONLY_WHEN_MISSING]
    assert phases(plan.rollout) == rollout(ship)
    return plan, ship


def test_steady_state_plan_exactly():
    """The host holds the artifact and venv: no uploads; a failure reverts to current,
    which served (the prune keeps the new release, current and the revert target)."""
    plan, ship = steady_plan(f"{R0} {R1}")
    assert len(ship) == 13 and steps_of(plan.rollout)[13].label == "switch current (rename)"
    assert_one_fenced_round_trip(plan)
    assert plan.previous == R1
    assert phases(plan.revert) == revert_to("r1")
    assert finishes(plan) == finish("r1", "R r1")


def test_revert_target_is_the_newest_release_that_served():
    """`current` never served (a killed deploy left it): the revert goes to the newest
    release that did, and the prune keeps current too; none served: stop and remove."""
    plan, _ = steady_plan(R0)
    target, (ctx, _) = contexts()
    assert plan.previous == R0
    assert phases(plan.revert) == revert_to("r0")
    assert finishes(plan) == finish("r1", "R r1 r0")  # the history names what it was on
    never = parse_facts(f"current=/srv/hello/releases/{R1}\nreleases={R0} {R1}\n")
    first = build_host_plan(target.service, ctx, never, (SOURCE, DEPS), RELEASE)
    assert first.previous is None and phases(first.revert) == STOP_FIRST
    assert finishes(first) == finish("r1", "R r1")


def test_dry_run_plan_exactly():
    """Unknown facts: every conditional step is kept with its condition shown."""
    target, (ctx, _) = contexts()
    plan = build_host_plan(target.service, ctx, UNKNOWN, (SOURCE, DEPS), RELEASE)
    conditions = {2: "the host holds artifact dddddddddddd", 11: "the host holds artifact "
                  "dddddddddddd", 3: "venvs/kkkkkkkkkkkkkkkk is complete",
                  13: "venvs/kkkkkkkkkkkkkkkk is complete"}
    ship = [line + (f" | unless {conditions[i]}" if i in conditions else "")
            for i, line in enumerate(SHIP)]
    restart = [RESTART[0] + " | unless supervisord.conf is unchanged", *RESTART[1:]]
    assert phases(plan.rollout) == rollout(ship, restart)
    assert_one_fenced_round_trip(plan)
    # which release served is known only on the host: no revert steps (the printer says
    # what the revert does), no revert target
    assert (plan.revert, plan.previous) == ((), None)
    assert finishes(plan) == finish(None, "R")


def test_systemd_plans_exactly():
    """zero_downtime: false under systemd: the unit (named after service and root) is
    installed, enabled and restarted; a failed first release stops and disables it."""
    target, (ctx, _) = contexts(manager="systemd", zero_downtime=False)
    plan = build_host_plan(target.service, ctx, Facts(), (SOURCE, None), RELEASE)
    steps = [outline(step) for step in steps_of(plan.rollout)]
    assert steps[3] == "upload the deps bundle (wheels) | upload VENV.bundle.tar.gz 644 deps 0"
    # a unit for supervisord.conf; no reload, no crontab
    assert len(steps) == len(SHIP) + 1 + len(RESTART) + 1 - 1
    assert [line.split(" | ")[0] for line in steps if "supervisor" in line] == []
    assert sum(line.startswith(f"write .fabship/{UNIT} | upload STAGING/.fabship/{UNIT} "
                               "644 text ") for line in steps) == 1
    names = f"ROOT/current {UNIT} {SOCKET}"
    expect = """'{"kind": "release", "release": "R"}'"""
    assert phases(plan.rollout)[1:] == [
        ("switch", None, [SWITCH]),
        ("switch", "restart", [
            f"install and enable {UNIT}, reload systemd | UNIT_INSTALL /etc/systemd/system "
            f"{names} {TEMPLATE} 1",
            f"restart {UNIT} | UNITS_ROLL VENV/bin/python http://127.0.0.1:8080/health "
            f"{expect} 15 {names} {INSTANCES.split()[0]}"]),
        # systemd is asked for the unit's state and MainPID
        ("verify", "health", ["health check: http://127.0.0.1:8080/health names R | "
                              "UNITS_CHECK VENV/bin/python http://127.0.0.1:8080/health "
                              f"{expect} 15 {names} {INSTANCES.split()[0]}"])]
    assert phases(plan.revert) == [("revert", None, [
        f"stop and disable {UNIT} | UNIT_STOP /etc/systemd/system {names} {TEMPLATE}",
        "remove current | rm -f ROOT/current"])]
    steady = build_host_plan(target.service, ctx,
                             parse_facts(f"current=/x/releases/{R1}\nserved={R1}\n"),
                             (SOURCE, None), RELEASE)
    assert [(name, stage, [line.split(" | ")[0] for line in lines])
            for name, stage, lines in phases(steady.revert)] == [
        ("revert", None, ["switch current back to r1"]),
        ("revert", "restart", [f"install and enable {UNIT}, reload systemd",
                               f"restart {UNIT}"]),
        ("revert", "health", ["health check: http://127.0.0.1:8080/health names r1"])]


def test_systemd_zero_downtime_plans_exactly():
    """Zero downtime under systemd (the default): the socket and the instances' template
    are installed (the socket started, 2 instances enabled), then the instances restart
    one at a time, each checked; the check wants 4 answers in a row from both."""
    target, (ctx, _) = contexts(manager="systemd")
    plan = build_host_plan(target.service, ctx, Facts(), (SOURCE, None), RELEASE)
    steps = [outline(step) for step in steps_of(plan.rollout)]
    for unit in (SOCKET, TEMPLATE):
        assert sum(line.startswith(f"write .fabship/{unit} | upload STAGING/.fabship/{unit} "
                                   "644 text ") for line in steps) == 1
    assert not [line for line in steps if f"write .fabship/{UNIT}" in line]
    expect = """'{"kind": "release", "release": "R"}'"""
    names = f"ROOT/current {UNIT} {SOCKET}"
    assert phases(plan.rollout)[2:] == [
        ("switch", "restart", [
            f"install {SOCKET} and {TEMPLATE}, reload systemd, start the socket, enable 2 "
            f"processes | UNIT_INSTALL /etc/systemd/system {names} {TEMPLATE} 2",
            "replace the 2 processes one at a time, each health-checked "
            f"({INSTANCES.replace(' ', ', ')}) | UNITS_ROLL VENV/bin/python "
            f"http://127.0.0.1:8080/health {expect} 15 {names} {INSTANCES}"]),
        ("verify", "health", [
            "health check: http://127.0.0.1:8080/health names R (4 answers in a row) | "
            "UNITS_CHECK VENV/bin/python http://127.0.0.1:8080/health "
            f"""'{{"kind": "release", "release": "R", "times": 4}}' 15 {names} """
            f"{INSTANCES}"])]
    assert plan.rollout[2].steps[1].timeout == 2 * (15 + 10 + 10)  # each: check, drain
    assert phases(plan.revert) == [("revert", None, [
        f"stop and disable {SOCKET} and its processes | UNIT_STOP /etc/systemd/system "
        f"{names} {TEMPLATE}", "remove current | rm -f ROOT/current"])]
    steady = build_host_plan(target.service, ctx,
                             parse_facts(f"current=/x/releases/{R1}\nserved={R1}\n"),
                             (SOURCE, None), RELEASE)
    back = phases(steady.revert)
    assert back[1][2][1].endswith(
        """'{"kind": "release", "release": "r1"}' 15 """ + f"{names} {INSTANCES}")
    assert back[1][2][1].startswith("replace the 2 processes one at a time")


def test_rollback_plan_exactly():
    """`fab service rollback` to r0: switch, restart, check, one fenced round trip; a goal
    failing its check goes back to `current` when that one served, else has no revert."""
    target, (ctx, _) = contexts()
    where, owner = (ctx.host, ctx.layout, ctx.health_url), owner_record(RELEASE, "rollback")
    facts = parse_facts(f"current=/srv/hello/releases/{R1}\nreleases={R0} {R1}\n"
                        f"served={R0} {R1}\n")
    plan = rollback_plan(target.service, where, R0, facts, owner)
    assert (plan.host, plan.release, plan.previous) == ("deploy@10.0.0.5", R0, R1)
    assert phases(plan.rollout) == [(name, stage, lines) for name, (_, stage, lines) in zip(
        ("switch", "switch", "verify"), revert_to("r0"))]
    assert plan.fence == ("/srv/hello/.lock", owner) and plan.revert_from == "switch"
    assert plan.batch("b", plan.rollout).steps == tuple(steps_of(plan.rollout))
    assert phases(plan.revert) == revert_to("r1")

    def record(status):
        entry = {"release": "r0", "status": status, "host": "deploy@10.0.0.5",
                 "deployer": "alice", "origin": "laptop", "previous": "r1",
                 "started": "2026-11-23T12:00:00Z"}
        return (f"record '{status}' in the history | APPEND_HISTORY ROOT/deploys.jsonl "
                + shlex.quote(json.dumps(entry).rstrip("}")))
    unlock = "release the lock | RELEASE /srv/hello ROLLBACK_OWNER"
    assert finishes(plan) == [("served", "finish", None, [record("rollback"), unlock]),
                              ("failed", "finish", None, [record("rollback-failed"), unlock]),
                              ("rolled-back", "finish", None,
                               [record("rollback-failed"), unlock]),
                              ("untouched", "finish", None, [unlock])]
    unserved = parse_facts(f"current=/srv/hello/releases/{R1}\nreleases={R0} {R1}\n"
                           f"served={R0}\n")
    blind = rollback_plan(target.service, where, R0, unserved, owner)
    assert (blind.previous, blind.revert) == (None, ())
    assert phases(blind.rollout) == phases(plan.rollout)


def test_systemd_user_reaches_every_unit_install():
    """`user:` is the install's last argument in the deploy, its automatic rollback and
    `fab service rollback`: the release's 0600 files become the user's before a restart."""
    target, (ctx, _) = contexts(manager="systemd", user="app", zero_downtime=False)
    install = (f"install and enable {UNIT}, reload systemd | UNIT_INSTALL /etc/systemd/system "
               f"ROOT/current {UNIT} {SOCKET} {TEMPLATE} 1 app")
    before = "20260101T000000.000Z-abc1234"  # the release `current` names (it served)
    plan = build_host_plan(target.service, ctx, Facts(current=before, served=(before,)),
                           (SOURCE, None), RELEASE)
    now = Facts(current=RELEASE.release_id, releases=(before, RELEASE.release_id),
                served=(before, RELEASE.release_id))  # rolling back from R to `before`
    back = rollback_plan(target.service, (ctx.host, ctx.layout, ctx.health_url), before,
                         now, owner_record(RELEASE))
    for part in (plan.rollout, plan.revert, back.rollout, back.revert):
        steps = [outline(step) for step in steps_of(part)]
        assert steps[steps.index(install) + 1].startswith(f"restart {UNIT} | UNITS_ROLL ")

def test_secret_files_are_uploaded_as_secret_text(tmp_path):
    """A file holding a secret is written 0600 with its text; plans show the masked text."""
    secret = Secret("DB_PASSWORD", "s3cr3t")
    (tmp_path / "db.j2").write_text("PW={{ DB_PASSWORD }}\n")
    target, (ctx, _) = contexts(secrets=(secret,), project=tmp_path,
                                templates=[{"src": "db.j2", "dest": "db.env"}])
    plan = build_host_plan(target.service, ctx, Facts(), (SOURCE, DEPS), RELEASE)
    upload = plan.rollout[0].steps[4]
    assert outline(upload) == "write db.env | upload STAGING/db.env 600 secret 10"
    assert upload.text == "PW=s3cr3t\n"
    assert upload.shown == upload.text.replace("s3cr3t", "********")
    assert upload.size == len(upload.text.encode())


def test_probe_batch_and_owner_record_exactly():
    """Round trip 1 takes the lock (or breaks it), then reads the facts."""
    owner = owner_record(RELEASE)
    assert json.loads(owner) == {"who": "alice", "where": "laptop", "pid": 4242,
                                 "since": "2026-11-23T12:00:00Z", "action": "deploy",
                                 "release": RELEASE.release_id}
    assert json.loads(owner_record(RELEASE, "rollback"))["action"] == "rollback"
    _, (ctx, _) = contexts()
    batch = probe_batch(ctx.layout, owner, True, (SOURCE.name, "k1"))
    assert batch.label == "lock and read facts"
    assert [outline(step) for step in batch.steps] == [
        "take the deploy lock | ACQUIRE /srv/hello OWNER 1",
        "read facts: current release, releases, artifact, venv | PROBE /srv/hello "
        f"{SOURCE.name} k1"]
    assert probe_batch(ctx.layout, owner, False).steps[1].argv[4:] == ("/srv/hello", "-", "-")
    assert probe_batch(ctx.layout, owner, False).steps[0].argv[-1] == "0"
