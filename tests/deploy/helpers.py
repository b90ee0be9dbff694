"""Building blocks for the pure-layer tests: a parsed service and a host context."""
from fabship.deploy.commands import health
from fabship.deploy.config import parse_services
from fabship.deploy.context import ReleaseInfo, build_context
from fabship.deploy.render import environment
from fabship.deploy.target import select
from tests.helpers import REPO

RAW = {
    "hello": {
        "root": "/srv/{{ name }}",
        "source": "services/hello",
        "requirements": "services/hello/requirements.txt",
        "run": "{{ venv }}/bin/python -m hello --config {{ release_dir }}/hello.conf",
        "templates": [{"src": "hello/hello.conf.j2", "dest": "hello.conf"}],
        "health": {"path": "/health", "port": "{{ port }}", "timeout": 15},
        "keep_releases": 4,
        "vars": {"name": "hello", "port": 8080, "bind": "0.0.0.0", "greeting": "hello"},
        "environments": {
            "staging": {"hosts": ["deploy@10.0.0.5", {"host": "deploy@10.0.0.6:2222",
                                                      "vars": {"port": 9090}}],
                        "vars": {"greeting": "hi"}},
        },
    },
}

RELEASE = ReleaseInfo("20261123T120000.000Z-abc1234", "abc1234" + "0" * 33, "alice",
                      "laptop", 4242, "2026-11-23T12:00:00Z", False, {"unit": "passed"})


def services(**overrides):
    """Parsed services from RAW with the hello service's keys overridden."""
    raw = {"hello": {**RAW["hello"], **overrides}}
    return parse_services(raw, "fabric.yaml")


def contexts(secrets=(), project=None, **overrides):
    """(target, [HostContext]) for the staging hosts, as the deploy builds them.

    `project` is a templates/ directory searched before fabship's own.
    """
    target = select(services(**overrides), env="staging")
    env = environment(project or REPO / "templates")
    return target, [build_context(env, target, host, RELEASE, ("d" * 64, "k" * 16, secrets))
                    for host in target.hosts]


def plain_check(venv, url, release_id, timeout):
    """health.POLL's poll with no manager to ask, run by the venv's Python: until url
    names release_id, or fail after timeout seconds."""
    return (f"{venv}/bin/python", "-c", health.POLL + "\npoll(sys.argv[1], sys.argv[2], "
            "float(sys.argv[3]))\n", url, health.expectation(("release",), release_id),
            f"{timeout:g}")
