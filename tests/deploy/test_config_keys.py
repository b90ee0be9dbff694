"""fabric.yaml validation at every level: each error is one exact line naming file and key."""
import pytest

from fabship.deploy.config import Health, TemplateSpec, parse_services, parse_ssh
from fabship.deploy.errors import ConfigError
from tests.deploy.helpers import RAW

EC2 = {"count": 1, "instance_type": "t3.small", "ami": "ami-0123456789abcdef0"}
ENV = "services.hello.environments.staging"
SERVICE_KEYS = ("root, source, requirements, python, run, manager, templates, health, "
                "keep_releases, vars, secret_env, environments, user, boot, rollout, notify, "
                "processes, zero_downtime, drain, listen")


def hello(**overrides):
    """The raw hello service of the helpers, with keys overridden."""
    return {**RAW["hello"], **overrides}


def staging(**env):
    """The raw hello service with one `staging` environment made of `env`."""
    return hello(environments={"staging": env})


def message(raw, source="fabric.yaml"):
    """The message of the ConfigError parsing `services: raw` raises."""
    with pytest.raises(ConfigError) as err:
        parse_services(raw, source)
    return str(err.value)


@pytest.mark.parametrize("raw, expected", [
    ({"hello": hello(colour="red")},
     f"services.hello.colour: unknown key; expected one of {SERVICE_KEYS}"),
    ({"hello": hello(health={"path": "/h", "retries": 3})},
     "services.hello.health.retries: unknown key; expected one of path, port, host, timeout, "
     "expect"),
    ({"hello": hello(templates=[{"src": "a", "dest": "b"}, {"src": "a", "dest": "c",
                                                            "owner": "root"}])},
     "services.hello.templates[1].owner: unknown key; expected one of src, dest, mode"),
    ({"hello": staging(hosts=["h"], region="eu-west-1")},
     f"{ENV}.region: unknown key; expected one of hosts, ec2, vars, root, rollout, notify"),
    ({"hello": staging(hosts=["h", {"host": "h2", "port": 22}])},
     f"{ENV}.hosts[1].port: unknown key; expected one of host, vars"),
    ({"hello": staging(ec2={**EC2, "volume": 8})},
     f"{ENV}.ec2.volume: unknown key; expected one of region, count, instance_type, ami, "
     "key_name, public_key, subnet, security_group, iam_instance_profile, tags, user_data, "
     "user, address, var_tags, max_attempts, wait_timeout"),
    ({"hello": staging(ec2={**EC2, "security_group": {"name": "web", "vpc": "v"}})},
     f"{ENV}.ec2.security_group.vpc: unknown key; expected one of name, ingress"),
    ({"hello": staging(ec2={**EC2, "security_group": {"name": "web", "ingress": [
        {"port": 22, "cidr": "10.0.0.0/8"}, {"port": 22, "cidr": "10.0.0.0/8", "to": 23}]}})},
     f"{ENV}.ec2.security_group.ingress[1].to: unknown key; expected one of port, cidr, "
     "protocol"),
])
def test_unknown_keys_are_refused_at_every_level(raw, expected):
    """A typo anywhere names the file, the full key path and the keys allowed there."""
    assert message(raw, "deploy/prod.yaml") == f"deploy/prod.yaml: {expected}"


def test_unknown_ssh_key():
    """The top-level `ssh:` block is checked the same way, with its own file name."""
    with pytest.raises(ConfigError) as err:
        parse_ssh({"known_host": "x"}, "fabric.yaml")
    assert str(err.value) == ("fabric.yaml: ssh.known_host: unknown key; expected one of "
                              "host_key_policy, known_hosts, instance_known_hosts, "
                              "command_timeout, keepalive, step_timeout")


@pytest.mark.parametrize("raw, expected", [
    ({"Hello": hello()}, "services: expected service names made of a-z, 0-9, _ and - "
                         "(starting with a letter), got 'Hello'"),
    ({"hello": ["source"]}, "services.hello: expected a mapping, got ['source']"),
    ({"hello": hello(environments=["staging"])},
     "services.hello.environments: expected a mapping, got ['staging']"),
    ({"hello": hello(templates={"src": "a"})},
     "services.hello.templates: expected a list, got {'src': 'a'}"),
    ({"hello": hello(manager="docker")},
     "services.hello.manager: expected supervisor or systemd, got 'docker'"),
    ({"hello": hello(root="")}, "services.hello.root: expected a string, got ''"),
    ({"hello": {"run": "r"}}, "services.hello.source: expected a string, got None"),
    ({"hello": hello(requirements=" ")},
     "services.hello.requirements: expected a string, got ' '"),
    ({"hello": hello(python=3)}, "services.hello.python: expected a string, got 3"),
    ({"hello": {"source": "s"}}, "services.hello.run: expected a string, got None"),
    ({"hello": hello(keep_releases=1)},
     "services.hello.keep_releases: expected a whole number >= 2, got 1"),
    ({"hello": hello(keep_releases=2.5)},
     "services.hello.keep_releases: expected a whole number >= 2, got 2.5"),
    ({"hello": hello(vars=["a"])}, "services.hello.vars: expected a mapping, got ['a']"),
    ({"hello": hello(secret_env="TOKEN")},
     "services.hello.secret_env: expected a list, got 'TOKEN'"),
    ({"hello": hello(secret_env=["TOKEN", "db_password"])},
     "services.hello.secret_env[1]: expected an environment variable name (A-Z, 0-9, _), "
     "got 'db_password'"),
    ({"hello": hello(secret_env=[None])},
     "services.hello.secret_env[0]: expected an environment variable name (A-Z, 0-9, _), "
     "got None"),
])
def test_service_values_name_the_key(raw, expected):
    """Every value of a service is checked, and its error names the key path exactly."""
    assert message(raw) == f"fabric.yaml: {expected}"


@pytest.mark.parametrize("template, expected", [
    ({"src": "a", "dest": "b", "mode": 640},
     "mode: expected an octal mode as a string, e.g. '0640', got 640"),
    ({"src": "a", "dest": "b", "mode": "0999"},
     "mode: expected an octal mode as a string, e.g. '0640', got '0999'"),
    ({"src": "a", "dest": "b", "mode": "06400"},
     "mode: expected an octal mode as a string, e.g. '0640', got '06400'"),
    ({"src": "a", "dest": "b", "mode": "640\n"},
     "mode: expected an octal mode as a string, e.g. '0640', got '640\\n'"),
    ({"src": "a", "dest": "/etc/b"}, "dest: expected a path inside the release, got '/etc/b'"),
    ({"src": "a", "dest": "x/../../b"},
     "dest: expected a path inside the release, got 'x/../../b'"),
    ({"src": "a"}, "dest: expected a string, got None"),
    ({"dest": "b"}, "src: expected a string, got None"),
    ("a.j2", "a mapping"),
])
def test_template_entries_name_the_key(template, expected):
    """A bad template entry names its index and key."""
    text = message({"hello": hello(templates=[{"src": "ok", "dest": "ok"}, template])})
    if expected == "a mapping":
        assert text == "fabric.yaml: services.hello.templates[1]: expected a mapping, got 'a.j2'"
    else:
        assert text == f"fabric.yaml: services.hello.templates[1].{expected}"


def test_template_modes_and_paths_that_are_fine():
    """Octal strings with or without the leading 0; dest may hold dots that are not `..`."""
    parsed = parse_services({"hello": hello(templates=[
        {"src": "a.j2", "dest": "conf/a..b", "mode": "0640"},
        {"src": "b.j2", "dest": ".env", "mode": "600"},
        {"src": "c.j2", "dest": "c"}])}, "f")["hello"].templates
    assert parsed == (TemplateSpec("a.j2", "conf/a..b", 0o640), TemplateSpec("b.j2", ".env", 0o600),
                      TemplateSpec("c.j2", "c", None))


@pytest.mark.parametrize("health, expected", [
    ("yes", "services.hello.health: expected a mapping, got 'yes'"),
    ({"path": "health"}, "services.hello.health.path: expected a URL path starting with /, "
                         "got 'health'"),
    ({"path": "/a b"}, "services.hello.health.path: expected a URL path starting with /, "
                       "got '/a b'"),
    ({"port": None}, "services.hello.health.port: expected a port number or template, got None"),
    ({"port": [80]}, "services.hello.health.port: expected a port number or template, "
                     "got [80]"),
    ({"port": False}, "services.hello.health.port: expected a port number or template, "
                      "got False"),
    ({"host": ""}, "services.hello.health.host: expected a string, got ''"),
    ({"timeout": 0.5}, "services.hello.health.timeout: expected a number >= 1, got 0.5"),
    ({"timeout": "30s"}, "services.hello.health.timeout: expected a number >= 1, got '30s'"),
])
def test_health_values_name_the_key(health, expected):
    """The health block's keys, each with its own message."""
    assert message({"hello": hello(health=health)}) == f"fabric.yaml: {expected}"


def test_health_defaults_and_given_values():
    """Defaults: GET http://127.0.0.1:{{ port }}/health for 30 seconds; 1 s is allowed."""
    raw = {k: v for k, v in RAW["hello"].items() if k != "health"}
    assert parse_services({"hello": raw}, "f")["hello"].health == Health(
        "/health", "{{ port }}", "127.0.0.1", 30.0)
    given = parse_services({"hello": hello(health={"path": "/", "port": 8080, "host": "::1",
                                                   "timeout": 1})}, "f")["hello"].health
    assert given == Health("/", "8080", "::1", 1.0)


def test_service_defaults():
    """What a minimal service gets: root, python, manager, releases kept, no extras."""
    service = parse_services({"web": {"source": "s", "run": "r"}}, "f")["web"]
    assert (service.root, service.python, service.manager, service.keep_releases) == (
        "/srv/web", "python3", "supervisor", 5)
    assert service.requirements is None and service.templates == ()
    assert not service.vars and service.secret_env == () and not service.environments
    full = parse_services({"web": {"source": "s", "run": "r", "requirements": "req.txt",
                                   "python": "/usr/bin/python3.11", "manager": "systemd",
                                   "keep_releases": 2, "secret_env": ["A_1", "_B"]}},
                          "f")["web"]
    assert (full.requirements, full.python, full.manager, full.keep_releases) == (
        "req.txt", "/usr/bin/python3.11", "systemd", 2)
    assert full.secret_env == ("A_1", "_B") and isinstance(full.keep_releases, int)


@pytest.mark.parametrize("environment, expected", [
    ("hosts", f"{ENV}: expected a mapping, got 'hosts'"),
    ({"hosts": "h1,h2"}, f"{ENV}.hosts: expected a list, got 'h1,h2'"),
    ({"hosts": []}, f"{ENV}.hosts: expected at least one host (or an `ec2:` block), got []"),
    ({"vars": {"a": 1}}, f"{ENV}: expected a list of `hosts:` or an `ec2:` block, "
                         "got {'vars': {'a': 1}}"),
    ({"hosts": ["h"], "vars": []}, f"{ENV}.vars: expected a mapping, got []"),
    ({"hosts": ["h"], "root": 5}, f"{ENV}.root: expected a string, got 5"),
    ({"hosts": ["h", ""]}, f"{ENV}.hosts[1]: expected a host as [user@]address[:port], got ''"),
    ({"hosts": ["h", "a b"]}, f"{ENV}.hosts[1]: bad address 'a b' in host 'a b'"),
    ({"hosts": [{"host": "h", "vars": {"1x": 1}}]},
     f"{ENV}.hosts[0].vars.1x: expected a variable name (letters, digits, _), got '1x'"),
])
def test_environment_values_name_the_key(environment, expected):
    """An environment's hosts, vars and root, and the choice between hosts and ec2."""
    raw = hello(environments={"staging": environment})
    assert message({"hello": raw}) == f"fabric.yaml: {expected}"


def test_environment_names_are_checked():
    """Environment names follow the service name rule."""
    raw = hello(environments={"Prod": {"hosts": ["h"]}})
    assert message({"hello": raw}) == ("fabric.yaml: services.hello.environments.Prod: expected an "
                            "environment name (a-z, 0-9, _ or -), got 'Prod'")


def test_environment_parts():
    """Hosts with their own vars, the environment's vars and root, all typed."""
    env = parse_services({"hello": staging(hosts=["a", {"host": "u@b:2", "vars": {"x": 1}}],
                                           vars={"y": "2"}, root="/opt/{{ name }}")},
                         "f")["hello"].environments["staging"]
    assert (env.name, env.root, dict(env.vars), env.ec2) == (
        "staging", "/opt/{{ name }}", {"y": "2"}, None)
    assert [(h.address, dict(h.vars)) for h in env.hosts] == [("a", {}), ("u@b:2", {"x": 1})]
    bare = parse_services({"hello": staging(hosts=["a"])}, "f")["hello"].environments["staging"]
    assert bare.root is None and not bare.vars


@pytest.mark.parametrize("raw, expected", [
    (["hello"], "services: expected a mapping, got ['hello']"),
    ({}, "services: expected at least one service, got {}"),
])
def test_services_block(raw, expected):
    """The `services:` mapping itself."""
    assert message(raw) == f"fabric.yaml: {expected}"


@pytest.mark.parametrize("raw, expected", [
    ("strict", "ssh: expected a mapping, got 'strict'"),
    ({"host_key_policy": "yolo"}, "ssh.host_key_policy: expected strict or accept-new, "
                                  "got 'yolo'"),
    ({"known_hosts": ""}, "ssh.known_hosts: expected a string, got ''"),
    ({"instance_known_hosts": 1}, "ssh.instance_known_hosts: expected a string, got 1"),
    *((({key: value}, f"ssh.{key}: expected a relative path inside the project (no leading "
                      f"/, no `..`, `.` or empty parts), got {value!r}")
       for key in ("known_hosts", "instance_known_hosts")
       for value in ("/etc/ssh/ssh_known_hosts", "../known_hosts", ".pins/../../x",
                     "keys//known", ".pins/", "./known", "keys/./known", "..", "/"))),
])
def test_ssh_values_name_the_key(raw, expected):
    """The top-level `ssh:` block's values."""
    with pytest.raises(ConfigError) as err:
        parse_ssh(raw, "conf/fabric.yaml")
    assert str(err.value) == f"conf/fabric.yaml: {expected}"


def test_ssh_defaults_and_given_values():
    """Strict checking against the project's known_hosts unless told otherwise."""
    default = parse_ssh({}, "f")
    assert (default.host_key_policy, default.known_hosts, default.instance_known_hosts) == (
        "strict", ".pins/known_hosts", ".pins/instance_known_hosts")  # committable
    given = parse_ssh({"host_key_policy": "accept-new", "known_hosts": "keys/known",
                       "instance_known_hosts": "keys/ec2"}, "f")
    assert (given.host_key_policy, given.known_hosts, given.instance_known_hosts) == (
        "accept-new", "keys/known", "keys/ec2")
    fine = parse_ssh({"known_hosts": "a/b/.known..hosts", "instance_known_hosts": "..pins"},
                     "f")  # dots inside a name are fine
    assert (fine.known_hosts, fine.instance_known_hosts) == ("a/b/.known..hosts", "..pins")
