"""fabric.yaml `services:` validation and the choice of service, environment and hosts."""
import pytest

from fabship.deploy.config import parse_services, parse_ssh
from fabship.deploy.errors import ConfigError
from fabship.deploy.hosts import parse_host
from fabship.deploy.target import select
from tests.deploy.helpers import RAW, services


def test_defaults_and_types():
    service = services()["hello"]
    assert service.manager == "supervisor" and service.python == "python3"
    assert service.keep_releases == 4 and service.health.timeout == 15.0
    assert service.health.host == "127.0.0.1"
    staging = service.environments["staging"]
    assert [h.address for h in staging.hosts] == ["deploy@10.0.0.5", "deploy@10.0.0.6:2222"]
    assert staging.hosts[1].vars == {"port": 9090}
    minimal = parse_services({"x": {"source": "s", "run": "r"}}, "f.yaml")["x"]
    assert minimal.root == "/srv/x" and minimal.keep_releases == 5 and not minimal.templates


@pytest.mark.parametrize("change, message", [
    ({"manager": "docker"}, "services.hello.manager: expected supervisor or systemd"),
    ({"templates": [{"src": "a", "dest": "../etc/passwd"}]},
     "services.hello.templates[0].dest: expected a path inside the release"),
    ({"templates": [{"src": "a", "dest": "b", "mode": 640}]},
     "services.hello.templates[0].mode: expected an octal mode as a string"),
    ({"vars": {"bad-name": 1}}, "services.hello.vars.bad-name: expected a variable name"),
    ({"vars": {"x": [1]}}, "services.hello.vars.x: expected a string, number or boolean"),
    ({"secret_env": ["db password"]}, "services.hello.secret_env[0]: expected an environment"),
    ({"health": {"port": True}}, "services.hello.health.port: expected a port number"),
    ({"environments": {"staging": {"hosts": []}}},
     "services.hello.environments.staging.hosts: expected at least one host"),
    ({"environments": {"Prod!": {"hosts": ["a"]}}}, "expected an environment name"),
    ({"run": ""}, "services.hello.run: expected a string, got ''"),
])
def test_errors_name_file_and_key(change, message):
    with pytest.raises(ConfigError) as err:
        services(**change)
    assert str(err.value).startswith("fabric.yaml: ")
    assert message in str(err.value)


def test_no_services():
    with pytest.raises(ConfigError, match="no `services:` declared"):
        parse_services(None, "fabric.yaml")
    with pytest.raises(ConfigError, match="services: expected at least one service"):
        parse_services({}, "fabric.yaml")


def test_ssh_settings():
    assert parse_ssh({}, "f").host_key_policy == "strict"
    assert parse_ssh({"host_key_policy": "accept-new"}, "f").known_hosts == ".pins/known_hosts"
    with pytest.raises(ConfigError, match="ssh.host_key_policy: expected strict or accept-new"):
        parse_ssh({"host_key_policy": "yolo"}, "f")


@pytest.mark.parametrize("text, parts", [
    ("web1", ("web1", None, None)),
    ("deploy@10.0.0.5", ("10.0.0.5", "deploy", None)),
    ("deploy@host.example:2222", ("host.example", "deploy", 2222)),
])
def test_parse_host(text, parts):
    host = parse_host(text)
    assert (host.hostname, host.user, host.port) == parts
    assert host.address == text


@pytest.mark.parametrize("text", ["a b", "x@h:0", "x@h:port", "$(id)@h", "h;rm"])
def test_parse_host_rejects(text):
    with pytest.raises(ValueError):
        parse_host(text)


def test_select_layers_vars_and_defaults():
    target = select(services(), env="staging")
    assert target.vars["greeting"] == "hi" and target.vars["port"] == 8080
    assert select(services()).environment == "staging"  # the only one
    direct = select(services(), hosts="root@127.0.0.1:2201,web2")
    assert [h.address for h in direct.hosts] == ["root@127.0.0.1:2201", "web2"]
    assert direct.environment is None and direct.vars["greeting"] == "hello"


def test_select_errors():
    both = parse_services({"a": {"source": "s", "run": "r"}, "b": {"source": "s", "run": "r"}},
                          "f")
    with pytest.raises(ConfigError, match=r"2 services declared \(a, b\): choose one with "
                                          r"`fab service --name NAME"):
        select(both)
    with pytest.raises(ConfigError, match="declares no environments"):
        select(both, name="a")
    with pytest.raises(ConfigError, match="either --env or --hosts"):
        select(services(), env="staging", hosts="h")
    two_envs = {**RAW["hello"]["environments"], "prod": {"hosts": ["p1"]}}
    with pytest.raises(ConfigError, match=r"2 environments declared \(prod, staging\)"):
        select(services(environments=two_envs))


def test_more_bad_values():
    with pytest.raises(ConfigError, match="health.path: expected a URL path starting with /"):
        services(health={"path": "health"})
    with pytest.raises(ConfigError, match="--hosts: no host in ','"):
        select(services(), hosts=",")
