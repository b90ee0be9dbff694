"""Zero downtime under a real systemd (issue 12): a .socket unit holds each host's port and
a deploy restarts the instances of the service's template one at a time.

The sshd hosts run beside a systemd booted as PID 1 of its own namespaces
(tests/systemdhost.py), so the deploy's `systemctl` calls reach a real manager that
binds the socket, passes it as LISTEN_FDS, stops with SIGTERM and waits for the drain.
The load generator sends requests all along, a new connection each.
"""
import subprocess
import time

import pytest

from fabship.deploy.commands import systemd
from tests.deploy.fleetstate import APP, HEALTH_ANSWER, break_health, change_code, \
    deploy_fails, deploy_ok, edit, release_of, reserve_port, venv_seed
from tests.deploy.loadgen import Load, answers, deploy_under_load, rollback_under_load
from tests.fleet import start_fleet
from tests.project import Project, fleet_hosts, hello_service
from tests.systemdhost import SystemdHost, can_boot

SICK = 'self.set_status(503)\n        self.write({"status": "sick"})'


@pytest.fixture(scope="module", name="systemd_fleet")
def systemd_fleet_fixture(tmp_path_factory):
    """(the systemd host, two sshd hosts inside its namespaces)."""
    why = can_boot()
    if why:
        pytest.skip(why)
    host = SystemdHost(tmp_path_factory.mktemp("systemd") / "systemd.log")
    fleet = None
    try:
        fleet = start_fleet(2, enter=host.enter)
        yield host, fleet
    finally:
        host.stop()  # every unit's process and the sshds end with it
        if fleet:
            fleet.stop()


@pytest.fixture(name="make")
def make_fixture(systemd_fleet, wheel_cache, make_project):
    """Factory: a committed project deploying hello under systemd to both hosts, its
    roots seeded with the session's venv, its ports held while the test runs."""
    _, fleet = systemd_fleet
    held, count = [], iter(range(100))

    def make(**overrides):
        name = f"sd{next(count)}-{time.monotonic_ns()}"
        project = Project(fleet.base / name, fleet, wheel_cache)
        held.extend(reserve_port() for _ in fleet.servers)
        project.hosts = fleet_hosts(fleet, [(server, sock.getsockname()[1]) for server, sock
                                            in zip(fleet.servers, held[-2:])])
        service = hello_service(f"{fleet.base}/{name}-hosts", manager="systemd", user="root",
                                **{"drain": 10, **overrides})  # under load: the default
        del service["boot"]  # a supervisor key: the units are enabled instead
        service["environments"] = {"test": {"hosts": project.hosts}}
        project.service = service
        project.write_config({"hello": service})
        project.commit("first")
        venv = venv_seed(make_project)
        for index in range(len(project.hosts)):
            venvs = project.host_root(index) / "venvs"
            venvs.mkdir(parents=True)
            subprocess.run(["cp", "-al", str(venv), str(venvs)], check=True)
        return project
    yield make
    for sock in held:
        sock.close()


def unit_prefix(project, index):
    """`fabship-hello-<8 hex>`: what the project's units on host `index` are named."""
    return systemd.unit_name("hello", str(project.host_root(index)))[:-len(".service")]


def units(host, project, index):
    """{unit: (ActiveState, UnitFileState, MainPID)} of the project's units on host
    `index`, as the systemd there shows them."""
    prefix = unit_prefix(project, index)
    listed = host.systemctl("list-units", "--all", "--plain", "--no-legend", "--full",
                            f"{prefix}*").stdout.split("\n")
    found = {}
    for line in filter(None, listed):
        unit = line.split()[0]
        shown = dict(row.partition("=")[::2] for row in host.systemctl(
            "show", "--property=ActiveState,UnitFileState,MainPID", unit).stdout.splitlines())
        found[unit.replace(prefix, "U")] = (shown["ActiveState"], shown["UnitFileState"],
                                            int(shown.get("MainPID") or 0))
    return found


def listening_inode(project, index):
    """The inode of the socket listening on host `index`'s port (this machine's loopback,
    the namespace's network is the same)."""
    number = project.hosts[index]["vars"]["port"]
    found = []
    with open("/proc/net/tcp", encoding="ascii") as table:
        for row in table.read().splitlines()[1:]:
            fields = row.split()
            if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == number:
                found.append(fields[9])
    assert len(found) == 1, found
    return found[0]


def test_a_steady_deploy_and_a_rollback_fail_no_request(systemd_fleet, make):
    """Under load, a deploy and then `fab service rollback` each leave 0 failed requests;
    2-second requests across the switch end 200; the socket stays the same socket and
    both instances are replaced."""
    host, _ = systemd_fleet
    project = make()
    first, out = deploy_ok(project)
    assert "U.socket" not in out
    before = units(host, project, 0)
    assert set(before) == {"U.socket", "U@1.service", "U@2.service"}, before
    assert before["U.socket"][:2] == ("active", "enabled")
    assert all(state[:2] == ("active", "enabled") and state[2] > 0
               for unit, state in before.items() if unit != "U.socket"), before
    sockets = [listening_inode(project, index) for index in range(2)]
    for index in range(2):
        assert answers(project, index) == {first}

    change_code(project, "zero downtime under systemd")
    deploy_under_load(project, first)
    after = units(host, project, 0)
    assert after["U.socket"] == before["U.socket"]
    for instance in ("U@1.service", "U@2.service"):
        assert after[instance][:2] == ("active", "enabled")
        assert after[instance][2] not in (0, before[instance][2]), (before, after)
    assert [listening_inode(project, index) for index in range(2)] == sockets

    rollback_under_load(project, first)
    assert [listening_inode(project, index) for index in range(2)] == sockets
    status = project.fab("service", "status")  # systemd asked of each instance
    assert status.returncode == 0 and status.stdout.count(" ok ") == 2, status.stdout
    host.systemctl("stop", f"{unit_prefix(project, 1)}@2.service")
    status = project.fab("service", "status")
    assert status.returncode == 1, status.stdout
    assert f"degraded: 1 of 2 processes running ({unit_prefix(project, 1)}@2.service " \
        "inactive)" in status.stdout, status.stdout


def test_a_failing_release_takes_one_process_share_and_leaves_the_other(systemd_fleet, make):
    """The new release answers 503: its first instance fails its check and the host goes
    back. Only 503s failed (never a refusal or reset), fewer than half the requests; the
    second instance was never touched; every process serves the old release. Then a
    release that exits at start fails at once, saying why."""
    host, _ = systemd_fleet
    project = make()
    first, _ = deploy_ok(project)
    before = units(host, project, 1)
    break_health(project, SICK)
    with Load(project) as load:
        proc = deploy_fails(project)
    failed = release_of(proc)
    assert "@1.service: unhealthy after" in proc.stdout, proc.stdout
    assert set(load.kinds) <= {"503 b'{\"status\": \"sick\"}'"}, load.kinds
    assert load.failed < load.sent / 2, (load.failed, load.sent)
    # the failed step's output (each instance it replaced, in order) ends at the first: the
    # second never ran the new release (the revert then replaced both with the old one)
    assert "@2.service:" not in proc.stdout, proc.stdout
    assert units(host, project, 1)["U@2.service"][:2] == before["U@2.service"][:2]
    for index in range(2):
        assert answers(project, index) == {first} != {failed}

    # a release that exits at start: its instance is seen failing (systemd's state, well
    # before the 30 s health timeout), and the host goes back on every process
    project.service["health"]["timeout"] = 30
    project.write_config({"hello": project.service})
    main = project.root / "services/hello/hello/__main__.py"
    main.write_text(main.read_text().replace("import sys\n", "import sys\n\nsys.exit(3)\n", 1))
    project.commit("crash at start")
    started = time.monotonic()
    proc = deploy_fails(project)
    took = time.monotonic() - started
    assert "@1.service is activating (auto-restart; result exit-code, exit status 3)" in \
        proc.stdout, proc.stdout
    assert took < 25, took
    for index in range(2):
        assert answers(project, index) == {first}


def test_switching_zero_downtime_the_process_count_and_the_port(systemd_fleet, make):
    """zero_downtime: false runs one plain unit; turning zero downtime on replaces it with
    the socket and 3 instances (saying the switch is not without downtime); processes: 2
    stops and disables the third, and a new port restarts the socket once, saying so;
    off again removes the socket and instances. First, a release failing its check across
    the switch goes back to the plain unit the old release runs."""
    host, _ = systemd_fleet
    project = make(zero_downtime=False)
    first, _ = deploy_ok(project)
    plain = {"U.service": ("active", "enabled")}
    assert {unit: state[:2] for unit, state in units(host, project, 0).items()} == plain
    # a release that fails its check across the switch: the revert installs what the old
    # release runs (its plain unit), not what the config now says
    project.service.update(zero_downtime=True, processes=2)
    project.write_config({"hello": project.service})
    break_health(project, SICK)
    proc = deploy_fails(project)
    assert "@1.service: unhealthy after" in proc.stdout, proc.stdout
    found = units(host, project, 0)
    assert {unit: state[:2] for unit, state in found.items() if state[0] == "active"} == \
        plain, found
    for index in range(2):
        assert answers(project, index) == {first}
    edit(project, APP, SICK, HEALTH_ANSWER, "heal health")
    moved = [reserve_port() for _ in project.hosts]
    on = "U.service: stopped and removed (zero downtime: U.socket takes the port; this one " \
        "switch is not without downtime)"
    steps = [({"zero_downtime": True, "processes": 3}, [on],
              {"U.socket", "U@1.service", "U@2.service", "U@3.service"}),
             ({"processes": 2}, ["U@3.service: stopped and disabled (processes: 2)",
                                 "U.socket changed: restarting it and every process (this "
                                 "once not without downtime)"],
              {"U.socket", "U@1.service", "U@2.service"}),
             ({"zero_downtime": False, "processes": 1},
              ["U.socket: stopped and removed with its processes"], {"U.service"})]
    try:
        for keys, said, running in steps:
            project.service.update(keys)
            if keys == {"processes": 2}:  # and every host moves to another port: the
                for entry, sock in zip(project.hosts, moved):  # socket's ListenStream=
                    entry["vars"]["port"] = sock.getsockname()[1]
            project.write_config({"hello": project.service})
            project.commit(f"processes {keys}")
            release, out = deploy_ok(project)
            for line in said:
                assert f"fabship: warning: {line}" in out.replace(unit_prefix(project, 0),
                                                                  "U"), out
            found = units(host, project, 0)
            assert {unit for unit, state in found.items()
                    if state[0] == "active"} == running, found
            assert all(found[unit][1] == "enabled" for unit in running), found
            for index in range(2):
                assert answers(project, index) == {release}
    finally:
        for sock in moved:
            sock.close()
