"""The planner, the command builders and the printer: pure, exact, no hosts."""
import hashlib
import json
import subprocess

import pytest

from fabship.deploy.artifact import Artifact
from fabship.deploy.commands import lock, release, supervisor, systemd
from fabship.deploy.errors import ConfigError
from fabship.deploy.batch import FENCED, batch_script, upload_tar
from fabship.deploy.facts import UNKNOWN, Facts, describe_owner, parse_facts, parse_lock_owner
from fabship.deploy.layout import Layout
from fabship.deploy.planner import build_host_plan, owner_record, probe_batch
from fabship.deploy.printer import UNKNOWN_REVERT, plan_lines, summary_table
from fabship.deploy.secrets import Secret
from fabship.deploy.steps import Batch, Run, Upload, to_json
from tests.deploy.helpers import RELEASE, contexts

SOURCE = Artifact("d" * 64, b"source-bytes")
DEPS = Artifact("e" * 64, b"wheels")
LAYOUT = Layout("/srv/hello")


def labels(batch):
    """The labels of a batch's (or a phase's) steps."""
    return [step.label for step in batch.steps]


def phases(part):
    """[(name, stage, [step labels])] of a plan's phases (rollout, revert)."""
    return [(phase.name, phase.stage, labels(phase)) for phase in part]


def rollout_steps(plan):
    """Every step of the rollout's round trip, in order."""
    return [step for phase in plan.rollout for step in phase.steps]


def test_context_renders_per_host_vars_and_builtins():
    """Each host's context: its vars, the release paths, the launcher files."""
    _, (first, second) = contexts()
    conf = {f.dest: f for f in first.files}
    assert conf["hello.conf"].text.splitlines()[1:] == [
        "[hello]", "bind = 0.0.0.0", "port = 8080", "greeting = hi",
        "; seconds requests in flight get after SIGTERM (fabship's drain)", "drain = 10.0"]
    assert "port = 9090" in {f.dest: f for f in second.files}["hello.conf"].text
    assert first.release_dir == "/srv/hello/releases/20261123T120000.000Z-abc1234"
    assert first.venv == "/srv/hello/venvs/" + "k" * 16
    assert first.health_url == "http://127.0.0.1:8080/health"
    assert second.health_url == "http://127.0.0.1:9090/health"
    run = conf[".fabship/run"].text
    assert run.endswith(f"exec {first.venv}/bin/python -I {first.release_dir}/.fabship/launch.py\n")
    assert json.loads(conf[".fabship/argv.json"].text) == [
        f"{first.venv}/bin/python", "-m", "hello", "--config", f"{first.release_dir}/hello.conf"]
    saved = json.loads(conf["release.json"].text)
    assert saved["release"] == RELEASE.release_id and saved["deployer"] == "alice"


def test_first_deploy_plan_uploads_everything():
    """Nothing on the host: every upload, then switch, restart, verify; a failure in ship
    needs no revert, a failed first release is stopped."""
    target, (ctx, _) = contexts()
    plan = build_host_plan(target.service, ctx, Facts(), (SOURCE, DEPS), RELEASE)
    assert (plan.host, plan.release, plan.previous) == (
        "deploy@10.0.0.5", RELEASE.release_id, None)
    assert phases(plan.rollout) == [
        ("ship", None, [
            "create the layout's directories", "remove releases left half-assembled",
            "upload release artifact dddddddddddd", "upload the deps bundle (wheels)",
            "write hello.conf", "write .fabship/run", "write .fabship/launch.py",
            "write .fabship/argv.json", "write .fabship/env",
            "write .fabship/supervisord.conf", "write release.json", "keep the artifact",
            "unpack the artifact into the release",
            "build the venv from the shipped wheels (offline)", "link the venv",
            "link shared/", "move the release into place"]),
        ("switch", None, ["switch current (rename)"]),
        ("switch", "restart", [
            "reload supervisord's config",
            "replace the 2 processes one at a time, each health-checked (supervisord started "
            "if not running)",
            "start supervisord at boot (crontab @reboot)"]),
        ("verify", "health", [
            f"health check: http://127.0.0.1:8080/health names {RELEASE.release_id} (4 "
            "answers in a row)"])]
    # one round trip, fenced by this run's lock: no "check the lock is still ours" step
    batch = plan.batch("ship, switch, restart, health check", plan.rollout)
    assert batch.steps == tuple(rollout_steps(plan)) and len(batch.steps) == 22
    assert batch.fence == plan.fence == ("/srv/hello/.lock", owner_record(RELEASE))
    assert batch.steps[17].argv == release.switch(LAYOUT, ctx.release_dir)
    # a failure in ship (the 17 steps before the switch) needs no revert; from the switch on
    assert plan.revert_from == "switch"
    assert [plan.needs_revert(name) for name in ("ship", "switch", "verify")] == [
        False, True, True]
    assert phases(plan.revert) == [("revert", None, ["stop the program", "remove current"])]


def test_steady_state_plan_skips_what_the_host_holds():
    """The host holds the artifact and venv; the revert goes back to `current`, which served."""
    target, (ctx, _) = contexts()
    r0, r1 = "20250101T000000.000Z-aaaaaaa", "20250102T000000.000Z-bbbbbbb"
    facts = parse_facts(f"current=/srv/hello/releases/{r1}\nreleases={r0} {r1} \n"
                        f"served={r1}\nartifact=yes\nvenv=yes\n")
    plan = build_host_plan(target.service, ctx, facts, (SOURCE, None), RELEASE)
    prepare = [step.label for step in rollout_steps(plan)]
    assert "upload release artifact dddddddddddd" not in prepare
    assert "upload the deps bundle (wheels)" not in prepare
    assert "build the venv from the shipped wheels (offline)" not in prepare
    assert "reload supervisord's config" in prepare  # the running config is unknown
    conf = next(f.text for f in ctx.files if f.dest == ".fabship/supervisord.conf")
    same = parse_facts(f"current=/srv/hello/releases/{r1}\nreleases={r0} {r1}\nsupervisor_conf="
                       f"{hashlib.sha256(conf.encode()).hexdigest()}\n")
    unchanged = build_host_plan(target.service, ctx, same, (SOURCE, None), RELEASE)
    assert "reload supervisord's config" not in [s.label for s in rollout_steps(unchanged)]
    assert plan.previous == r1  # `current` served: the revert goes back to it
    assert phases(plan.revert) == [
        ("revert", None, [f"switch current back to {r1}"]),
        ("revert", "restart", [
            "reload supervisord's config",
            "replace the 2 processes one at a time, each health-checked (supervisord started "
            "if not running)",
            "start supervisord at boot (crontab @reboot)"]),
        ("revert", "health", [f"health check: http://127.0.0.1:8080/health names {r1} (4 "
                              "answers in a row)"])]
    prune = plan.finish["served"].steps[2]
    # the new release, `current` and the revert target (here `current` again) are kept
    assert prune.argv[4:] == ("/srv/hello/releases", "4", "name", RELEASE.release_id, r1)


def test_revert_goes_back_only_to_a_release_that_served():
    """`current` left by a killed deploy (never served): the revert goes to the newest
    release that served, and prune keeps both; nothing ever served: stop and remove."""
    target, (ctx, _) = contexts()
    r0, r1, r2 = (f"2025010{day}T000000.000Z-aaaaaaa" for day in (1, 2, 3))
    facts = parse_facts(f"current=/srv/hello/releases/{r2}\nreleases={r0} {r1} {r2}\n"
                        f"served={r0} {r1}\n")
    assert (facts.previous, facts.previous_for_revert) == (r1, r1)
    plan = build_host_plan(target.service, ctx, facts, (SOURCE, DEPS), RELEASE)
    assert plan.previous == r1
    assert [labels(phase)[0] for phase in plan.revert] == [
        f"switch current back to {r1}", "reload supervisord's config",
        f"health check: http://127.0.0.1:8080/health names {r1} (4 answers in a row)"]
    assert plan.revert[0].steps[0].argv == release.switch(LAYOUT, LAYOUT.release(r1))
    assert plan.finish["served"].steps[2].argv[4:] == (
        "/srv/hello/releases", "4", "name", RELEASE.release_id, r2, r1)
    unserved = parse_facts(f"current=/srv/hello/releases/{r2}\nreleases={r0} {r2}\n")
    assert unserved.previous_for_revert is None
    first = build_host_plan(target.service, ctx, unserved, (SOURCE, DEPS), RELEASE)
    assert first.previous is None
    assert phases(first.revert) == [("revert", None, ["stop the program", "remove current"])]
    assert first.finish["served"].steps[2].argv[4:] == (
        "/srv/hello/releases", "4", "name", RELEASE.release_id, r2)


def test_dry_run_plan_shows_conditions():
    """Unknown facts: conditional steps keep their condition; the plan prints by phase."""
    target, (ctx, _) = contexts()
    plan = build_host_plan(target.service, ctx, UNKNOWN, (SOURCE, DEPS), RELEASE)
    unless = {s.label: s.unless for s in rollout_steps(plan) if s.unless}
    assert unless == {
        "upload release artifact dddddddddddd": "the host holds artifact dddddddddddd",
        "upload the deps bundle (wheels)": f"venvs/{'k' * 16} is complete",
        "keep the artifact": "the host holds artifact dddddddddddd",
        "build the venv from the shipped wheels (offline)": f"venvs/{'k' * 16} is complete",
        "reload supervisord's config": "supervisord.conf is unchanged"}
    probe = probe_batch(ctx.layout, owner_record(RELEASE), False, (SOURCE.name, "k"))
    lines = plan_lines("deploy@10.0.0.5", probe, plan)
    assert all(line.startswith("[deploy@10.0.0.5] ") for line in lines)
    assert "[deploy@10.0.0.5]         | greeting = hi" in lines
    assert (plan.revert, plan.previous) == ((), None)  # only the host knows its releases
    headers = [f"[deploy@10.0.0.5] {line}" for line in (
        "round trip 1: lock and read facts",
        "round trip 2: ship, switch, restart, health check",
        "  (each step runs only while this run holds the deploy lock)",
        " ship:", " switch:", " switch (restart):", " verify (health):",
        "on a failure in switch or later, or a fleet rollback: revert",
        "finish, once the rollout is decided, when the host served",
        "finish, once the rollout is decided, when the host failed",
        "finish, once the rollout is decided, when the host rolled-back",
        "finish, when the host was never switched")]
    assert all(lines.count(header) == 1 for header in headers)  # by phase, in this order
    assert [lines.index(header) for header in headers] == sorted(
        lines.index(header) for header in headers)
    revert = lines.index(headers[7])
    assert lines[revert + 1] == f"[deploy@10.0.0.5]   - {UNKNOWN_REVERT}"
    assert lines[revert + 2] == headers[8]


def test_systemd_plan_installs_unit_and_restarts():
    """Under systemd the restart phase installs the unit, then restarts it."""
    target, (ctx, _) = contexts(manager="systemd", zero_downtime=False)
    plan = build_host_plan(target.service, ctx, Facts(), (SOURCE, DEPS), RELEASE)
    unit = "fabship-hello-73182f8e.service"
    restart = plan.rollout[2]
    assert (restart.name, restart.stage) == ("switch", "restart")
    names = ("/srv/hello/current", unit, "fabship-hello-73182f8e.socket")
    assert [s.argv for s in restart.steps] == [
        ("sh", "-c", "set -e" + systemd.INSTALL, "fabship", "/etc/systemd/system", *names,
         "fabship-hello-73182f8e@.service", "1"),
        (f"{ctx.venv}/bin/python", "-c", systemd.ROLL, ctx.health_url,
         f'{{"kind": "release", "release": "{RELEASE.release_id}"}}', "15", *names,
         "fabship-hello-73182f8e@1.service")]


@pytest.mark.parametrize("zero_downtime", [False, True])
def test_systemd_units_pass_systemd_analyze_verify(tmp_path, zero_downtime):
    """The rendered units are valid for systemd-analyze: the plain unit, or the socket and
    an instance of the template that shares it."""
    _, (ctx, _) = contexts(manager="systemd", zero_downtime=zero_downtime)
    units = {f.dest.rsplit("/", 1)[1]: f.text for f in ctx.files
             if f.dest.endswith((".service", ".socket"))}
    assert sorted(units) == (["fabship-hello-73182f8e.socket",
                              "fabship-hello-73182f8e@.service"] if zero_downtime else
                             ["fabship-hello-73182f8e.service"])
    for name, text in units.items():
        (tmp_path / name).write_text(text)
    checked = [str(tmp_path / name.replace("@.", "@1.")) for name in units]
    if zero_downtime:  # an instance of the template: a link to it, as systemd names one
        (tmp_path / "fabship-hello-73182f8e@1.service").symlink_to(
            tmp_path / "fabship-hello-73182f8e@.service")
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", *checked],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "fabship-hello" not in proc.stderr, proc.stderr


def test_secrets_masked_and_0600(tmp_path):
    """Secret files are 0600 and masked in the printed plan."""
    secret = Secret("DB_PASSWORD", "s3cr3t-value")
    (tmp_path / "db.j2").write_text("env PW={{ DB_PASSWORD }} run\n")
    target, (ctx, _) = contexts(secrets=(secret,), project=tmp_path,
                                templates=[{"src": "db.j2", "dest": "db.env"}])
    files = {f.dest: f for f in ctx.files}
    assert files["db.env"].mode == 0o600 and files["db.env"].secret
    assert files[".fabship/env"].mode == 0o600 and files[".fabship/env"].secret
    assert files[".fabship/run"].mode == 0o755 and not files[".fabship/run"].secret
    assert str(secret) == "********" and "s3cr3t" not in repr(secret)
    plan = build_host_plan(target.service, ctx, UNKNOWN, (SOURCE, DEPS), RELEASE)
    probe = probe_batch(ctx.layout, owner_record(RELEASE), False)
    text = "\n".join(plan_lines("h", probe, plan, (secret,)))
    assert "round trip 2: ship, switch, restart, health check" in text
    assert "s3cr3t-value" not in text and "env PW=******** run" in text
    assert "s3cr3t-value" not in json.dumps(json.loads(files["release.json"].text))


def test_command_builders_quote_everything():
    """Paths and values are arguments, never script text."""
    assert release.make_dirs(LAYOUT) == ("sh", "-c", "set -e" + release.MAKE_DIRS, "fabship",
                                         "/srv/hello")
    switch = release.switch(Layout("/srv/it's here"), "/srv/it's here/releases/r1")
    assert switch[:2] == ("sh", "-c") and switch[3:] == (
        "fabship", "/srv/it's here", "/srv/it's here/releases/r1")
    assert 'mv -T "$root/.current.tmp.$$" "$root/current"' in switch[2]
    assert [line for line in switch[2].splitlines() if '"$root/current"' in line] == [
        'mv -T "$root/.current.tmp.$$" "$root/current"']  # rename(2), never ln over current
    assert lock.release("/srv/hello", '{"who": "me"}')[3:] == (
        "fabship", "/srv/hello", '{"who": "me"}')
    assert supervisor.restart(LAYOUT, "/v", "hello")[3:] == (
        "fabship", "/v/bin/python", "/srv/hello/current/.fabship/supervisord.conf",
        "/srv/hello", "hello")


def test_batch_script_runs_in_order_and_unpacks_uploads_once():
    """One script: steps in order, uploads unpacked by one tar."""
    batch = probe_batch(LAYOUT, "{}", True)
    script = batch_script(batch, "n0nce")
    assert script.count("else fail") == 2 and "tar -x" not in script
    assert script.count("printf 'fabship-n0nce-done %s\\n'") == 2
    assert script.startswith("exec 3>&1 1>&2\n") and script.count(" 3>&-; then ") == 2
    mixed = Batch("x", (Run(("mkdir", "-p", "/a b"), "mk"),
                        Upload("/a b/f", "f", mode=0o600, text="x", size=1),
                        Upload("/a b/g", "g", text="y", size=1),
                        Run(("mv", "/a b/f", "/a b/h"), "mv")))
    lines = batch_script(mixed, "n0nce").splitlines()
    assert lines[-4:] == [
        "if mkdir -p '/a b' 3>&-; then printf 'fabship-n0nce-done %s\\n' 0 >&3; "
        "else fail 0 $?; fi",
        "if tar -x -p --no-same-owner -C / -f - 3>&-; then "
        "printf 'fabship-n0nce-done %s\\n' 1 2 >&3; else fail 1 $?; fi",
        "if mv '/a b/f' '/a b/h' 3>&-; then printf 'fabship-n0nce-done %s\\n' 3 >&3; "
        "else fail 3 $?; fi",
        "exit $failed"]
    data = upload_tar([s for s in mixed.steps if isinstance(s, Upload)], {})
    assert b"a b/f" in data
    assert to_json(mixed)["steps"][1] == {
        "type": "Upload", "path": "/a b/f", "label": "f", "mode": 0o600, "text": "x",
        "blob": None, "size": 1, "secret": False, "shown": None, "unless": None}


def test_facts_and_lock_owner_parsing():
    """The probe's facts and a refused lock's owner, parsed."""
    facts = parse_facts("current=\nreleases=\n")
    assert facts.current is None and facts.previous is None and not facts.has_artifact
    a, b, c = (f"2025010{day}T000000.000Z-abc1234" for day in (1, 2, 3))
    facts = parse_facts(f"current=/r/releases/{c}\nreleases={a} {b} {c}\nserved={a} {c} \n")
    assert facts.previous == a  # b never served: not a rollback target
    owner = parse_lock_owner('locked-by={"who": "bob", "where": "ci", "pid": 7, '
                             '"since": "2026-01-01T00:00:00Z", "release": "r9"}\n')
    assert describe_owner(owner) == "bob@ci (pid 7) since 2026-01-01T00:00:00Z, deploying r9"
    assert describe_owner(parse_lock_owner("locked-by={}\n")) == \
        "an unknown owner (no owner.json)"
    assert parse_lock_owner("locked-by=garbage") == {"raw": "garbage"}
    assert parse_lock_owner("nothing") is None


def test_summary_table():
    """Columns aligned, the last one ragged."""
    assert summary_table([("h1", "ok", "3")], ("host", "result", "n")).splitlines() == [
        "host  result  n", "----  ------  -", "h1    ok      3"]


def test_secret_seen_through_a_filter_is_still_secret(tmp_path):
    """A secret quoted by a filter is still masked, in the text and the JSON plan."""
    secret = Secret("DB_PASSWORD", "it's a s3cret")
    (tmp_path / "db.j2").write_text("env PW={{ DB_PASSWORD | shell_quote }} run\n")
    target, (ctx, _) = contexts(secrets=(secret,), project=tmp_path,
                                templates=[{"src": "db.j2", "dest": "db.env"}])
    launcher = next(f for f in ctx.files if f.dest == "db.env")
    assert "it's a s3cret" not in launcher.text  # quoted: no literal match
    assert launcher.secret and launcher.mode == 0o600
    plan = build_host_plan(target.service, ctx, UNKNOWN, (SOURCE, DEPS), RELEASE)
    probe = probe_batch(ctx.layout, owner_record(RELEASE), False)
    text = "\n".join(plan_lines("h", probe, plan, (secret,)))
    assert "s3cret" not in text and "env PW='********' run" in text
    assert "s3cret" not in json.dumps(to_json(plan))


@pytest.mark.parametrize("root", ["/srv/my app", "/srv/%(here)s", "/srv/../etc", "srv/x",
                                  "/srv/{{ 'a\\nb' }}"])  # a literal newline: config refuses it
def test_unsafe_roots_are_config_errors(root):
    """A root that is not a plain absolute path is refused."""
    with pytest.raises(ConfigError, match=r"services.hello.root: expected an absolute path"):
        contexts(root=root)


@pytest.mark.parametrize("template, error", [
    ("{{ port + 'x' }}", "template expression failed: TypeError"),
    ("{{ 1 / 0 }}", "template expression failed: ZeroDivisionError"),
])
def test_failing_template_expressions_are_config_errors(template, error):
    """A template expression that raises is a config error naming the key."""
    with pytest.raises(ConfigError, match=f"services.hello.run: {error}"):
        contexts(run=template)


def test_lock_scripts_run_against_a_real_directory(tmp_path):
    """The lock builders' argv, executed by the local sh as a host would; a run taken
    over with --break-lock is fenced (its batches' lock check, no step of its own)."""
    def run(argv):
        return subprocess.run(argv, capture_output=True, text=True, check=False)
    root = str(tmp_path / "srv")

    def fenced_step(owner):
        batch = Batch("b", (Run(("true",), "step"),), (root + "/.lock", owner))
        return run(["sh", "-c", batch_script(batch, "n0nce"), "fabship", *batch.fence])
    assert run(lock.acquire(root, '{"who": "a"}', False)).returncode == 0
    refused = run(lock.acquire(root, '{"who": "b"}', False))
    assert refused.returncode == lock.LOCKED_EXIT
    assert parse_lock_owner(refused.stdout) == {"who": "a"}
    ours = fenced_step('{"who": "a"}')
    assert (ours.returncode, ours.stdout) == (0, "fabship-n0nce-done 0\n")
    assert run(lock.acquire(root, '{"who": "b"}', True)).returncode == 0  # --break-lock
    fenced = fenced_step('{"who": "a"}')
    assert (fenced.returncode, fenced.stdout) == (3, f"fabship-n0nce-failed 0 {FENCED}\n")
    assert "taken over" in fenced.stderr
    assert run(lock.release(root, '{"who": "a"}')).returncode == 0
    assert (tmp_path / "srv" / ".lock").is_dir()  # not a's to give back
    assert run(lock.release(root, '{"who": "b"}')).returncode == 0
    assert not (tmp_path / "srv" / ".lock").exists()


def test_switch_and_prune_scripts_on_a_real_directory(tmp_path):
    """switch renames `current`; prune keeps the newest and the protected."""
    layout = Layout(str(tmp_path))
    for name in ("r1", "r2", "r3", "r4", ".r5.tmp"):
        (tmp_path / "releases" / name).mkdir(parents=True)
    for target in ("r3", "r4", "r2"):
        subprocess.run(release.switch(layout, layout.release(target)), check=True)
        assert (tmp_path / "current").resolve() == tmp_path / "releases" / target
    assert not list(tmp_path.glob(".current.tmp.*"))
    subprocess.run(release.prune(layout.releases, 2, ("r2",)), check=True)
    assert sorted(p.name for p in (tmp_path / "releases").iterdir()) == [
        ".r5.tmp", "r2", "r3", "r4"]  # the newest 2 by name, plus the protected r2
    subprocess.run(release.clean_staging(layout), check=True)
    assert not (tmp_path / "releases" / ".r5.tmp").exists()
