"""Bad input: a clear one-paragraph error, the right exit code, no traceback, hosts untouched."""
import json
import socket

import pytest
import yaml

from tests.fleet import keygen


@pytest.fixture(scope="module")
def deployed(make_project):
    """A project deployed once, so 'unchanged' has something to compare."""
    project = make_project("errors")
    proc = project.fab("service", "deploy")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return project


def assert_refused(project, proc, code, message):
    assert proc.returncode == code, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("fabship: error: "), err
    assert message in err, err
    assert "Traceback" not in proc.stdout + proc.stderr
    assert "\n\n" not in err  # one paragraph
    return err


def with_config(project, change):
    """Rewrite fabric.yaml through `change(config)`, returning a restore function."""
    path = project.root / "fabric.yaml"
    original = path.read_text()
    config = yaml.safe_load(original)
    change(config)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return lambda: path.write_text(original)


def hello(config):
    return config["services"]["hello"]


CONFIG_ERRORS = [
    ("unknown key", lambda c: hello(c).update(helth={"path": "/"}),
     "fabric.yaml: services.hello.helth: unknown key; expected one of root, source"),
    ("wrong type", lambda c: hello(c).update(keep_releases="five"),
     "fabric.yaml: services.hello.keep_releases: expected a whole number >= 2, got 'five'"),
    ("wrong type nested", lambda c: hello(c)["health"].update(timeout=[1]),
     "fabric.yaml: services.hello.health.timeout: expected a number >= 1, got [1]"),
    ("shell metacharacters", lambda c: c["services"].update(
        {"hello;rm -rf /": c["services"].pop("hello")}),
     "fabric.yaml: services: expected service names made of a-z"),
    ("bad host", lambda c: hello(c)["environments"]["test"]["hosts"].append("root@bad host"),
     "services.hello.environments.test.hosts[3]: bad address 'bad host'"),
]


@pytest.mark.parametrize("change, message", [case[1:] for case in CONFIG_ERRORS],
                         ids=[case[0] for case in CONFIG_ERRORS])
def test_config_errors_exit_2(deployed, change, message):
    before = deployed.snapshot()
    restore = with_config(deployed, change)
    try:
        proc = deployed.fab("service", "deploy")
    finally:
        restore()
    assert_refused(deployed, proc, 2, message)
    assert deployed.snapshot() == before


@pytest.mark.parametrize("text, message", [
    ("greeting = {{ colour }}\n",
     "services.hello.templates[0]: 'colour' is undefined"),
    ("greeting = {{ greeting\n",
     "templates/hello/hello.conf.j2, line 1): unexpected end of template"),
])
def test_template_errors_exit_2(deployed, text, message):
    template = deployed.root / "templates" / "hello" / "hello.conf.j2"
    original = template.read_text()
    template.write_text(text)
    deployed.commit("bad template")
    before = deployed.snapshot()
    try:
        proc = deployed.fab("service", "deploy")
    finally:
        template.write_text(original)
        deployed.commit("good template")
    assert_refused(deployed, proc, 2, message)
    assert deployed.snapshot() == before


@pytest.mark.parametrize("args, message", [
    (("service", "--name", "nope", "deploy"), "unknown service 'nope'; declared: hello"),
    (("service", "--env", "prod", "deploy"), "unknown environment 'prod'; declared: test"),
    (("service", "--hosts", "root@127.0.0.1:99999", "deploy"), "--hosts: bad port '99999'"),
])
def test_unknown_selection_exits_2(deployed, args, message):
    before = deployed.snapshot()
    assert_refused(deployed, deployed.fab(*args), 2, message)
    assert deployed.snapshot() == before


def test_unreachable_host_changes_nothing(deployed):
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    before = deployed.snapshot()
    restore = with_config(deployed, lambda c: hello(c)["environments"]["test"]["hosts"].append(
        {"host": f"root@127.0.0.1:{port}", "vars": {"host_id": "ghost", "port": 1}}))
    try:  # the edited fabric.yaml is uncommitted, hence --skip-gates
        proc = deployed.fab("service", "deploy", "--skip-gates")
    finally:
        restore()
    err = assert_refused(deployed, proc, 1, "cannot reach every host; nothing was changed")
    assert f"root@127.0.0.1:{port}: cannot connect" in err
    assert deployed.snapshot() == before


def test_wrong_key_changes_nothing(deployed, tmp_path):
    before = deployed.snapshot()
    proc = deployed.fab("service", "deploy", key=keygen(tmp_path / "stranger"))
    assert_refused(deployed, proc, 1, "authentication failed as user")
    assert deployed.snapshot() == before


def test_changed_host_key_is_refused(deployed, tmp_path):
    impostor = keygen(tmp_path / "impostor")
    kind, key = (tmp_path / "impostor.pub").read_text().split()[:2]
    known = deployed.root / ".fabship-known_hosts"
    original = known.read_text()
    port = deployed.fleet.servers[0].port
    lines = [line for line in original.splitlines() if not line.startswith(f"[127.0.0.1]:{port}")]
    known.write_text("\n".join(lines + [f"[127.0.0.1]:{port} {kind} {key}"]) + "\n")
    before = deployed.snapshot()
    try:
        proc = deployed.fab("service", "deploy")
    finally:
        known.write_text(original)
    assert impostor.exists()
    err = assert_refused(deployed, proc, 1, "HOST KEY CHANGED")
    assert f"127.0.0.1:{port}" in err
    assert deployed.snapshot() == before


def test_unknown_host_key_refused_by_default_then_pinned_with_accept_new(deployed):
    known = deployed.root / ".fabship-known_hosts"
    original = known.read_text()
    known.write_text("")
    try:
        before = deployed.snapshot()
        proc = deployed.fab("service", "status")
        assert_refused(deployed, proc, 1, "unknown host key; add it to known_hosts")
        assert deployed.snapshot() == before
        restore = with_config(deployed, lambda c: c["ssh"].update(host_key_policy="accept-new"))
        try:
            proc = deployed.fab("service", "status")
        finally:
            restore()
        assert proc.returncode == 0, proc.stdout + proc.stderr
        pinned = known.read_text()
        for server in deployed.fleet.servers[:len(deployed.hosts)]:
            assert server.known_hosts_line().split()[2] in pinned
    finally:
        known.write_text(original)


def test_failed_gates_refuse_to_ship(deployed):
    deployed.commit("gates fail", gates_pass=False)
    before = deployed.snapshot()
    try:
        proc = deployed.fab("service", "deploy")
    finally:
        deployed.commit("gates pass")
    assert_refused(deployed, proc, 1, "did not pass its gates (gates failed: unit)")
    assert "--skip-gates" in proc.stderr
    assert deployed.snapshot() == before


def test_skip_gates_ships_and_records_it(deployed):
    deployed.commit("gates fail again", gates_pass=False)
    try:
        proc = deployed.fab("service", "deploy", "--skip-gates")
    finally:
        deployed.commit("gates pass again")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    root = deployed.host_root(0)
    release = json.loads((root / "current" / "release.json").read_text())
    assert release["skip_gates"] is True and release["gates"] == {"skipped": True}
    last = json.loads((root / "deploys.jsonl").read_text().splitlines()[-1])
    assert last["skip_gates"] is True and last["status"] == "deployed"
    history = deployed.fab("service", "history")
    assert "(gates skipped)" in history.stdout


def test_runtime_config_file_layers_over_fabric_yaml_and_is_named(deployed):
    runtime = deployed.root / "override.yaml"
    runtime.write_text("services:\n  hello:\n    keep_releases: many\n")
    before = deployed.snapshot()
    proc = deployed.fab("-f", str(runtime), "service", "deploy")
    assert_refused(deployed, proc, 2, f"{runtime}: services.hello.keep_releases: expected a "
                                      "whole number >= 2, got 'many'")
    runtime.write_text("services:\n  hello:\n    vars: {greeting: layered}\n")
    proc = deployed.fab("-f", str(runtime), "--dry", "service", "deploy", "--skip-gates")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "| greeting = layered" in proc.stdout
    assert deployed.snapshot() == before
