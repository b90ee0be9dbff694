"""Host contexts: variables, roots, rendered files, release.json, and the errors naming them.

Project templates live in a temporary templates/ directory searched before fabship's own,
as a project's are.
"""
import hashlib
import json

import pytest

from fabship.deploy.commands import systemd
from fabship.deploy.context import ReleaseInfo, build_context
from fabship.deploy.errors import ConfigError
from fabship.deploy.render import HIDDEN, environment, render_file
from fabship.deploy.secrets import Secret
from fabship.deploy.target import select
from tests.deploy.helpers import RELEASE, contexts, services
from tests.helpers import REPO

SHIPPED = ("d" * 64, "k" * 16)
PORT_ERROR = "services.hello.health.port: expected a port number 1-65535 (ASCII digits)"
SOCKET_ROOT = "/srv/" + "r" * 86  # + "/supervisor.sock" is 107 bytes: the most that fits


def build(project=None, secrets=(), hosts=None, **overrides):
    """[HostContext] of hello's hosts, rendered with the project's templates/ at `project`."""
    target = select(services(**overrides), env=None if hosts else "staging", hosts=hosts)
    env = environment(project or REPO / "templates")
    return [build_context(env, target, host, RELEASE, (*SHIPPED, secrets))
            for host in target.hosts]


def error(project=None, **overrides):
    """The ConfigError message building the contexts raises."""
    with pytest.raises(ConfigError) as err:
        build(project, **overrides)
    return str(err.value)


def files(ctx):
    """{dest: RenderedFile}."""
    return {f.dest: f for f in ctx.files}


def argv(ctx):
    """The program's argv, as the launcher will exec it."""
    return json.loads(files(ctx)[".fabship/argv.json"].text)


def test_builtins_reach_every_template():
    """host, service, environment, commit, release id and paths, per host."""
    _, (first, second) = contexts(run="x [{{ environment }}] {{ host }} {{ service }} "
                                      "{{ commit }} {{ release_id }} {{ root }} "
                                      "{{ release_dir }} {{ venv }}")
    assert argv(first) == ["x", "[staging]", "10.0.0.5", "hello", RELEASE.commit,
                           RELEASE.release_id, "/srv/hello",
                           f"/srv/hello/releases/{RELEASE.release_id}",
                           f"/srv/hello/venvs/{'k' * 16}"]
    assert argv(second)[:4] == ["x", "[staging]", "10.0.0.6", "hello"]
    (direct,) = build(None, hosts="web1", run="x [{{ environment }}]")
    assert argv(direct) == ["x", "[]"]
    assert files(first)[".fabship/run"].text.splitlines()[-1] == (
        f"exec /srv/hello/venvs/{'k' * 16}/bin/python -I "
        f"/srv/hello/releases/{RELEASE.release_id}/.fabship/launch.py")


def test_release_json_records_the_release(tmp_path):
    """What shipped, from where, with which templates (hashes) and which secret files."""
    (tmp_path / "a.j2").write_text("token={{ API_TOKEN }}\n")
    (tmp_path / "b.j2").write_text("plain {{ greeting }}\n")
    (ctx, _) = build(tmp_path, (Secret("API_TOKEN", "t0k3n"),),
                     templates=[{"src": "a.j2", "dest": "a.conf"},
                                {"src": "b.j2", "dest": "b.conf", "mode": "0640"}])
    by_dest = files(ctx)
    info = by_dest["release.json"]
    assert (info.mode, info.secret, info.shown) == (0o644, False, info.text)
    assert info.text.startswith('{\n  "release": ') and info.text.endswith("\n}\n")
    digest = {dest: "sha256:" + hashlib.sha256(by_dest[dest].text.encode()).hexdigest()
              for dest in ("b.conf", ".fabship/run", ".fabship/launch.py", ".fabship/argv.json",
                           ".fabship/supervisord.conf")}
    assert json.loads(info.text) == {
        "release": RELEASE.release_id, "commit": RELEASE.commit, "service": "hello",
        "host": "10.0.0.5", "artifact": "d" * 64, "deps": "k" * 16, "templates": digest,
        "secret_files": [".fabship/env", "a.conf"], "deployer": "alice", "origin": "laptop",
        "started": "2026-11-23T12:00:00Z", "skip_gates": False, "gates": {"unit": "passed"}}
    assert [f.dest for f in ctx.files] == [
        "a.conf", "b.conf", ".fabship/run", ".fabship/launch.py", ".fabship/argv.json",
        ".fabship/env", ".fabship/supervisord.conf", "release.json"]
    assert [(f.mode, f.secret) for f in ctx.files] == [
        (0o600, True), (0o640, False), (0o755, False), (0o644, False), (0o644, False),
        (0o600, True), (0o644, False), (0o644, False)]
    assert by_dest["a.conf"].shown == "token=********\n"
    assert json.loads(by_dest[".fabship/env"].text) == {"API_TOKEN": "t0k3n"}
    assert json.loads(by_dest[".fabship/env"].shown) == {"API_TOKEN": "********"}


def test_skipped_gates_are_recorded():
    """A release shipped with --skip-gates says so in release.json."""
    skipped = ReleaseInfo("r9", "c" * 40, "bob", "ci", 1, "2026-01-01T00:00:00Z", True,
                          {"skipped": True})
    target = select(services(), env="staging")
    ctx = build_context(environment(REPO / "templates"), target, target.hosts[0], skipped,
                        (*SHIPPED, ()))
    info = json.loads(files(ctx)["release.json"].text)
    assert (info["release"], info["skip_gates"], info["gates"]) == ("r9", True, {"skipped": True})


def test_systemd_unit_is_rendered_in_the_release():
    """The unit goes to .fabship/fabship-<name>.service; no supervisord.conf."""
    _, (ctx, _) = contexts(manager="systemd", zero_downtime=False)
    unit = ".fabship/" + systemd.unit_name("hello", "/srv/hello")
    assert [(f.dest, f.mode) for f in ctx.files] == [
        ("hello.conf", 0o644), (".fabship/run", 0o755), (".fabship/launch.py", 0o644),
        (".fabship/argv.json", 0o644), (".fabship/env", 0o600), (unit, 0o644),
        ("release.json", 0o644)]
    assert not files(ctx)[".fabship/env"].secret  # mode 0600 always; no secret in it here
    assert "[Service]" in files(ctx)[unit].text


@pytest.mark.parametrize("root", ["/srv/.", "//srv", "/srv/", "/./srv", "/..", "/srv/x/.."])
def test_roots_with_empty_or_dot_parts_are_refused(root):
    """Every path component must be a real name (no `.`, `..` or empty ones)."""
    assert error(None, root=root) == (
        "services.hello.root: expected an absolute path of letters, digits and ._/- (it goes "
        f"into process manager configs), got {root!r}")


def test_supervisor_socket_must_fit_in_sun_path():
    """supervisord's socket under the root must fit in 107 bytes; systemd has no socket."""
    assert len(f"{SOCKET_ROOT}/supervisor.sock") == 107
    assert build(None, root=SOCKET_ROOT)[0].layout.root == SOCKET_ROOT
    longer = SOCKET_ROOT + "r"
    assert error(None, root=longer) == (
        f"services.hello.root: {longer!r} is too long: supervisord's socket "
        f"{longer}/supervisor.sock must fit in 107 bytes")
    assert build(None, root=longer, manager="systemd")[0].layout.root == longer


@pytest.mark.parametrize("overrides, expected", [
    ({"root": "/srv/{{ nope }}"}, "services.hello.root: 'nope' is undefined"),
    ({"health": {"port": "{{ nope }}"}}, "services.hello.health.port: 'nope' is undefined"),
    ({"health": {"port": "{{ port }}x"}},
     f"{PORT_ERROR}, got '8080x'"),
    ({"health": {"port": "{{ -1 }}"}}, f"{PORT_ERROR}, got '-1'"),  # a literal: config refuses
    ({"health": {"port": "{{ 0 }}"}}, f"{PORT_ERROR}, got '0'"),
    ({"health": {"port": "{{ 65536 }}"}}, f"{PORT_ERROR}, got '65536'"),
    ({"health": {"port": "{{ '\u0668\u0660\u0668\u0660' }}"}},
     f"{PORT_ERROR}, got '\u0668\u0660\u0668\u0660'"),
    ({"run": "{{ nope }}"}, "services.hello.run: 'nope' is undefined"),
])
def test_values_rendered_per_host_name_their_key(overrides, expected):
    """A value that fails to render or is not what it must be names its key."""
    assert error(None, **overrides) == expected


def test_template_errors_name_the_template_entry(tmp_path):
    """Each template is named by its index; fabship's own files by the key they serve."""
    (tmp_path / "ok.j2").write_text("ok\n")
    (tmp_path / "bad.j2").write_text("{{ nope }}\n")
    assert error(tmp_path, templates=[{"src": "ok.j2", "dest": "a"},
                                      {"src": "bad.j2", "dest": "b"}]) == (
        "services.hello.templates[1]: 'nope' is undefined")
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "supervisor" / "supervisord.conf.j2").write_text("{{ nope }}")
    assert error(tmp_path, templates=[]) == "services.hello.manager: 'nope' is undefined"
    (tmp_path / "systemd").mkdir()
    (tmp_path / "systemd" / "service.j2").write_text("{{ nope }}")
    assert error(tmp_path, templates=[], manager="systemd") == (
        "services.hello.manager: 'nope' is undefined")
    (tmp_path / "fabship").mkdir()
    (tmp_path / "fabship" / "run.sh.j2").write_text("{{ nope }}")
    assert error(tmp_path, templates=[]) == "services.hello.run: 'nope' is undefined"


def test_a_render_that_fails_only_when_masked_is_hidden_not_refused(tmp_path):
    """A valid template never fails for its masked render: its content is hidden instead.

    In `run`, the same dependence on a secret puts it on the command line: refused.
    """
    (tmp_path / "t.j2").write_text("{{ 1 // (API_TOKEN | length - 8) }}\n")
    secrets = (Secret("API_TOKEN", "short"),)
    (ctx, _) = build(tmp_path, secrets, templates=[{"src": "t.j2", "dest": "t"}])
    written = files(ctx)["t"]
    assert (written.text, written.mode, written.secret, written.shown) == (
        "-1\n", 0o600, True, HIDDEN)
    message = error_with(secrets, templates=[], run="x {{ 1 // (API_TOKEN | length - 8) }}")
    assert message.startswith("services.hello.run: the command line would hold secret "
                              "API_TOKEN: command lines are visible")


def error_with(secrets, project=None, **overrides):
    """The ConfigError message of building contexts with these secrets."""
    with pytest.raises(ConfigError) as err:
        build(project, secrets, **overrides)
    return str(err.value)


def test_template_errors_never_carry_a_secret_value(tmp_path):
    """Errors come from the masked render; a failure only real values raise names none."""
    secrets = (Secret("API_TOKEN", "pa$$w;touch /tmp/x'\"\\`"),)
    (tmp_path / "lookup.j2").write_text("{{ {'a': 1}[API_TOKEN] }}\n")
    message = error_with(secrets, tmp_path, templates=[{"src": "lookup.j2", "dest": "t"}])
    assert message == ("services.hello.templates[0]: 'dict object' has no attribute "
                       "'********'")
    (tmp_path / "real.j2").write_text(
        "{% if API_TOKEN != '********' %}{{ {'a': 1}[API_TOKEN | upper] }}{% endif %}\n")
    message = error_with(secrets, tmp_path, templates=[{"src": "real.j2", "dest": "t"}])
    assert message == ("services.hello.templates[0]: the template fails with the real "
                       "secret values (UndefinedError), though not with them masked; the "
                       "values are not shown")
    message = error_with(secrets, run="x {{ {'a': 1}[API_TOKEN] }}")
    assert "pa$$w" not in message and "PA$$W" not in message


def test_an_ipv6_health_host_is_bracketed_in_the_url():
    """health.host `::1` is stored bare; the URL the host polls needs `[::1]`."""
    (ctx, _) = build(None, health={"host": "::1", "port": "{{ port }}"},
                     listen="127.0.0.1:{{ port }}")  # supervisord's socket: IPv4
    assert ctx.health_url == "http://[::1]:8080/health"
    with pytest.raises(ConfigError, match="set `listen:` when health.host is IPv6"):
        build(None, health={"host": "::1", "port": "{{ port }}"})
    (ctx, _) = build(None, health={"host": "::1", "port": "{{ port }}"}, zero_downtime=False)
    assert ctx.health_url == "http://[::1]:8080/health"
    (ctx, _) = build(None, health={"host": "localhost", "port": 81})
    assert ctx.health_url == "http://localhost:81/health"


def test_fabships_own_templates_come_from_the_package_and_a_project_file_wins(tmp_path):
    """fabship's templates are package data (Jinja2's PackageLoader); a project template of
    the same name, committed or in a directory, is used instead."""
    name = "supervisor/supervisord.conf.j2"
    packaged = environment({}).loader.get_source(environment({}), name)
    assert packaged[1].endswith("fabship/templates/supervisor/supervisord.conf.j2")
    assert "[supervisord]" in packaged[0]
    committed = environment({name: "mine {{ root }}\n"})
    assert render_file(committed, name, {"root": "/r"}, "x") == "mine /r\n"
    (tmp_path / "supervisor").mkdir()
    (tmp_path / "supervisor" / "supervisord.conf.j2").write_text("dir {{ root }}\n")
    assert render_file(environment(tmp_path), name, {"root": "/r"}, "x") == "dir /r\n"
    assert "[supervisord]" in environment(tmp_path / "none").get_template(name).render(
        **{key: "v" for key in ("root", "service", "venv", "release_dir", "listen")},
        drain=1, processes=2, zero_downtime=True)
