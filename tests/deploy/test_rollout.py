"""Rolling deploys on six real sshd hosts: canary and batches, the failure budget and the
fleet rollback, host faults, signals, a takeover, bounded fan-out, the event log."""
import json
import re
import signal

import pytest

from tests.deploy.fleetstate import RELEASE, Background, by_host, change_code, deploy_fails, \
    deploy_ok, release_of, wait_until
from tests.deploy.hostfaults import CountingProxy, Silent, resume, signal_sshd
from tests.deploy.test_notify import Hook
from tests.helpers import git

FAST = ("--canary", "0", "--batch", "100%")  # the first release: every host at once
WAVES = {"canary": 1, "batch": 2}  # six hosts: [h1] [h2 h3] [h4 h5] [h6]
LISTEN = "{{ bind }}:{{ port }}"  # supervisord's socket follows each host's `bind` (set_bind)


def six(build, hosts=6, **rollout):
    """A project on six hosts (or fewer) with a first release served everywhere;
    (project, release)."""
    project = build.project(hosts=hosts, rollout={**WAVES, **rollout}, listen=LISTEN)
    release, _ = deploy_ok(project, *FAST)
    return project, release


def events(project, release):
    """The deploy's event log, reports/deploys/<release>.jsonl."""
    path = project.root / "reports" / "deploys" / f"{release}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def set_bind(project, index, bind):
    """Commit host `index` listening on another address (the app's `bind`, and the socket
    supervisord holds, see LISTEN): its health check then fails."""
    project.hosts[index]["vars"]["bind"] = bind
    project.service["environments"]["test"]["hosts"] = project.hosts
    project.write_config({"hello": project.service})
    project.commit(f"host {index} binds {bind}")


def serving(project):
    """The release each host's app names on /health (None when it does not answer)."""
    out = []
    for index in range(len(project.hosts)):
        try:
            out.append(project.health(index)["release"])
        except OSError:
            out.append(None)
    return out


def address(project, index):
    """The host as the config lists it."""
    return project.hosts[index]["host"]


def unlocked(project):
    """No host holds a deploy lock."""
    return not any((project.host_root(i) / ".lock").exists() for i in range(len(project.hosts)))


def test_a_clean_rollout_goes_canary_first_then_batches_as_the_dry_run_says(build):
    """The dry-run prints the waves; the real run switches hosts in exactly that order,
    one wave after the other, and its event log tells the story."""
    project, first = six(build)
    change_code(project, "rollout")
    hosts = [address(project, i) for i in range(6)]
    dry = project.fab("--dry", "service", "deploy")
    assert dry.returncode == 0, dry.stdout + dry.stderr
    assert f"wave 1 (canary): {hosts[0]}" in dry.stdout
    assert f"wave 2 (batch): {hosts[1]}, {hosts[2]}" in dry.stdout
    assert f"wave 4 (batch): {hosts[5]}" in dry.stdout
    release, out = deploy_ok(project)
    assert serving(project) == [release] * 6 and unlocked(project)
    log = events(project, release)
    assert all(e["release"] == release and re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", e["time"])
               for e in log)
    assert log[0]["event"] == "started" and log[-1]["event"] == "finished"
    assert log[-1]["outcome"] == "succeeded"
    waves = [e["hosts"] for e in log if e["event"] == "wave_started"]
    assert waves == [hosts[:1], hosts[1:3], hosts[3:5], hosts[5:]]
    wave_of = {host: n for n, wave in enumerate(waves) for host in wave}
    seen = [wave_of[e["host"]] for e in log if e["event"] == "host_switched"]
    assert seen == sorted(seen) and len(seen) == 6  # no host of a wave before the last ended
    done = {e["host"]: e for e in log if e["event"] == "host_done"}
    assert {h: (d["old"], d["new"], d["outcome"]) for h, d in done.items()} == {
        h: (first, release, "deployed") for h in hosts}
    assert re.search(r"deployed on 6 host\(s\)", out)


def test_json_prints_the_event_stream_instead_of_the_human_output(build):
    """`--json`: stdout is the same JSON lines as the event log, nothing else."""
    project = build.project(hosts=2)
    proc = project.fab("service", "deploy", "--json")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    lines = [json.loads(line) for line in proc.stdout.splitlines()]
    release = lines[0]["release"]
    assert lines == events(project, release)
    assert lines[-1]["event"] == "finished" and lines[-1]["outcome"] == "succeeded"


def test_failure_budget_met_then_exceeded(build):
    """max_fail 1: one failing host is reported and the rollout completes; two failing
    hosts stop it: every host it switched serves its old release again, and the host it
    never reached is untouched, byte for byte."""
    project, first = six(build, max_fail=1)
    set_bind(project, 2, "127.0.0.9")  # h3 (wave 2) answers elsewhere: its check fails
    proc = deploy_fails(project)
    second = release_of(proc)
    assert serving(project) == [second, second, first, second, second, second]
    assert by_host(project, proc.stdout, "outcome") == ["deployed"] * 2 + ["rolled-back"] + \
        ["deployed"] * 3
    assert "ROLLED BACK" not in proc.stdout and unlocked(project)

    set_bind(project, 4, "127.0.0.9")  # and h5 (wave 3): two failures, past the budget
    last = project.host_root(5)
    before = sorted((p.relative_to(last), p.lstat().st_mtime_ns) for p in last.rglob("*")
                    if "log" not in p.parts and p.name != "supervisor.sock")
    proc = deploy_fails(project)
    third = release_of(proc)
    assert serving(project) == [second, second, first, second, second, second]
    after = sorted((p.relative_to(last), p.lstat().st_mtime_ns) for p in last.rglob("*")
                   if "log" not in p.parts and p.name != "supervisor.sock")
    assert after == before  # h6, never reached
    assert by_host(project, proc.stdout, "outcome") == [
        "rolled-back", "rolled-back", "rolled-back", "rolled-back", "rolled-back", "untouched"]
    assert "ROLLED BACK" in proc.stdout and unlocked(project)
    log = events(project, third)
    back = next(e for e in log if e["event"] == "rolled_back")
    assert back["hosts"] == [address(project, i) for i in (0, 1, 3)]
    assert log[-1]["outcome"] == "rolled_back"
    assert sorted(log[-1]["failed"]) == sorted(address(project, i) for i in (2, 4))


def test_a_killed_sshd_and_a_frozen_host_fail_their_hosts_not_the_rollout(build):
    """One host's sshd is killed mid-rollout, another freezes mid-step (TCP open, no
    bytes): both fail after their timeouts; the others deploy; nothing hangs."""
    project, _ = six(build, max_fail=2)
    project.write_config({"hello": project.service},
                         ssh={"known_hosts": ".fabship-known_hosts", "keepalive": 1})
    change_code(project, "faults")
    servers = project.fleet.servers
    run = Background(project, "service", "deploy")
    frozen = []
    try:
        wait_until(lambda: re.search(r"^wave 2/", run.text, re.M), lambda: run.text, 60)
        signal_sshd(servers[3], signal.SIGKILL)  # h4, wave 3
        wait_until(lambda: f"[{address(project, 5)}]   ok" in run.text, lambda: run.text, 60)
        frozen = signal_sshd(servers[5], signal.SIGSTOP, with_listener=False)  # h6, mid-step
        code = run.wait(timeout=120)
    finally:
        resume(frozen)
        project.fleet.start(servers[3])
    assert code == 1, run.text
    outcomes = by_host(project, run.text, "outcome")
    assert outcomes[:3] + outcomes[4:5] == ["deployed"] * 4
    assert outcomes[3] == outcomes[5] == "unreachable", run.text
    assert "stopped answering" in run.text


def test_a_host_that_never_answers_stops_the_deploy_before_any_switch(build):
    """A host that accepts TCP but never speaks SSH: the deploy stops at the up-front
    check, gives back the locks it took, and switches nothing."""
    project, first = six(build, hosts=2)
    silent = Silent()
    try:
        project.hosts.append({"host": f"me@127.0.0.1:{silent.port}",
                              "vars": {"host_id": "silent", "port": 1}})
        project.service["environments"]["test"]["hosts"] = project.hosts
        project.write_config({"hello": project.service})
        (project.root / "fabric.yaml").write_text(
            (project.root / "fabric.yaml").read_text() + "timeouts:\n  connect: 2\n")
        change_code(project, "silent")
        proc = project.fab("service", "deploy")
    finally:
        silent.close()
        project.hosts.pop()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "cannot reach every host; nothing was changed" in proc.stderr
    assert f"127.0.0.1:{silent.port}" in proc.stderr
    assert serving(project) == [first] * 2 and unlocked(project)


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_mid_wave_leaves_every_host_serving_one_release_then_a_rerun_ends_it(
        build, signum):
    """Ctrl-C or Jenkins' SIGTERM mid-wave: the host in flight ends, no new one starts,
    every host serves one complete release, no lock is left, exit 130/143; a rerun
    finishes the job."""
    project, first = six(build, hosts=4, batch=1)  # four waves of one host
    change_code(project, "signal")
    run = Background(project, "service", "deploy")
    wait_until(lambda: re.search(r"^wave 2/", run.text, re.M), lambda: run.text, 60)
    run.proc.send_signal(signum)
    code = run.wait(timeout=120)
    assert code == 128 + signum, run.text
    second = RELEASE.search(run.text).group(1)
    now = serving(project)
    assert set(now) <= {first, second} and now[0] == second and now[-1] == first, run.text
    assert [project.current(i) for i in range(4)] == now and unlocked(project)
    assert "INTERRUPTED" in run.text and "untouched" in run.text
    third, _ = deploy_ok(project)
    assert serving(project) == [third] * 4


def test_a_takeover_during_the_victims_health_check_leaves_the_takers_release(build):
    """A run taken over with --break-lock while in its health check stops: it neither
    switches back nor finishes under the new owner; the taker's release serves."""
    project = build.project(hosts=2, health={"path": "/health", "port": "{{ port }}",
                                             "timeout": 8}, listen=LISTEN)
    deploy_ok(project)
    set_bind(project, 0, "127.0.0.9")  # the victim's release never passes its check on h1
    victim = Background(project, "service", "deploy")
    wait_until(lambda: re.search(r"\]   ok  switch current", victim.text), lambda: victim.text)
    git(project.root, "revert", "--no-edit", "HEAD")
    project.commit("fixed")
    taker, _ = deploy_ok(project, "--break-lock")
    assert victim.wait(timeout=60) == 1
    assert serving(project) == [taker, taker]
    assert [project.current(i) for i in range(2)] == [taker, taker] and unlocked(project)
    assert "taken-over" in by_host(project, victim.text, "outcome")
    assert "ok  switch current back" not in victim.text  # its revert was fenced off
    assert "FAILED  switch current back" not in victim.text or \
        "the deploy lock was taken over" in victim.text


def test_at_most_parallel_connections_are_open_at_once(build):
    """parallel 2 on six hosts: the hosts never see more than 2 SSH connections at once,
    and the deploy still reaches every host."""
    project = build.project(hosts=6, rollout={"canary": 0, "batch": "100%", "parallel": 2})
    proxy = CountingProxy([server.port for server in project.fleet.servers[:6]])
    try:
        for host in project.hosts:
            real = int(host["host"].rsplit(":", 1)[1])
            host["host"] = host["host"].rsplit(":", 1)[0] + f":{proxy.ports[real]}"
        project.service["environments"]["test"]["hosts"] = project.hosts
        project.write_config({"hello": project.service})
        known = project.root / ".fabship-known_hosts"
        known.write_text(known.read_text() + "".join(
            line.replace(f"]:{real} ", f"]:{front} ")
            for line in known.read_text().splitlines(keepends=True)
            for real, front in proxy.ports.items() if f"]:{real} " in line))
        project.commit("through the proxy")
        release, _ = deploy_ok(project)
    finally:
        proxy.close()
    assert serving(project) == [release] * 6
    assert proxy.most == 2 and proxy.total >= 6


def test_webhooks_hear_the_deploy_through_500s_and_a_dead_one_never_holds_it_up(build):
    """A webhook answering 500 twice then 200 gets `started` and `succeeded` with the
    deploy's facts and the bearer token; one that never answers is logged and given up,
    and the deploy still exits 0. A dry-run posts nothing."""
    hook, dead = Hook([(500, {}), (500, {})]), Silent()
    try:
        project = build.project(hosts=2)
        project.service["notify"] = {
            "webhooks": [{"url": hook.url + "?key=k", "token_env": "HOOK_TOKEN"},
                         {"url": f"http://127.0.0.1:{dead.port}/never"}],
            "timeout": 1, "retries": 3, "max_time": 4}
        project.write_config({"hello": project.service})
        project.commit("notify")
        dry = project.fab("--dry", "service", "deploy", env={"HOOK_TOKEN": "t0ken-xyz"})
        assert dry.returncode == 0 and hook.requests == []
        proc = project.fab("service", "deploy", env={"HOOK_TOKEN": "t0ken-xyz"})
    finally:
        hook.close()
        dead.close()
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    release = release_of(proc)
    assert len(hook.requests) == 4  # 500, 500, then `started`; `succeeded` at once
    assert {r.headers["Authorization"] for r in hook.requests} == {"Bearer t0ken-xyz"}
    started, succeeded = hook.payloads()[-2:]
    head = git(project.root, "rev-parse", "HEAD")
    hosts = [address(project, i) for i in range(2)]
    assert started["event"] == "started" and succeeded["event"] == "succeeded"
    for payload in (started, succeeded):
        assert (payload["service"], payload["environment"], payload["release"],
                payload["commit"], payload["hosts"]) == ("hello", "test", release, head, hosts)
    assert succeeded["outcome"] == "succeeded" and succeeded["duration"] > 0
    assert "t0ken-xyz" not in proc.stdout + proc.stderr + json.dumps(hook.payloads())
    assert re.search(rf"notify: http://127\.0\.0\.1:{dead.port}/\.\.\. gave up on 'started'",
                     proc.stdout), proc.stdout[-2000:]
