"""Every bad input is one clear error, exit 2, before any host is touched (issue 9).

Pure tests pin each check and its message; real `fab` runs prove the error reaches the
user as one `fabship: error:` line naming the file and key, exit 2, no traceback: in a
bare project for fab's own config loading, and against the sshd fleet (a deployed
project whose host trees are compared before and after) for the rest.
"""
import copy
import json
import os
import shutil
import socket
import subprocess
import time
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from fabric import Config
from invoke.exceptions import Exit

from fabship.deploy.cli import check_fabric_settings
from fabship.deploy.config import parse_services
from fabship.deploy.errors import ConfigError, DeployError
from fabship.deploy.fabconfig import (env_error, guard_fab_config, load_json, load_yaml, make_strict,
                              merge_conflict)
from fabship.deploy.gaterecord import read_record
from fabship.deploy.hosts import in_url, local_user, name_local_user, parse_host
from fabship.deploy.localhosts import SSHD, write_config
from fabship.deploy.reader import count_option, port_number
from fabship.deploy.target import Target, check_hosts, hosts_key, select
from tests.deploy.fleetstate import Builder
from tests.helpers import REPO
from tests.project import FAB


def minimal(**overrides):
    """A minimal valid service, with these keys replaced."""
    return {"source": "s", "run": "r", "environments": {"t": {"hosts": ["a"]}}, **overrides}


def config_error(raw, source="fabric.yaml"):
    """The ConfigError message parse_services raises for services: {hello: raw}."""
    with pytest.raises(ConfigError) as err:
        parse_services({"hello": raw}, source)
    return str(err.value)


# --- health: timeout, port, host, path ---------------------------------------------------

@pytest.mark.parametrize("literal, shown", [(".nan", "nan"), (".inf", "inf"),
                                            ("-.inf", "-inf"), ("1.0e+400", "inf")])
def test_health_timeout_must_be_finite_as_yaml_writes_it(literal, shown):
    raw = yaml.safe_load(f"source: s\nrun: r\nhealth: {{timeout: {literal}}}\n")
    assert config_error(raw) == ("fabric.yaml: services.hello.health.timeout: expected a "
                                 f"number >= 1, got {shown}")


def test_health_timeout_has_an_upper_bound():
    assert config_error(minimal(health={"timeout": 3601})).endswith(
        "health.timeout: expected a number <= 3600, got 3601")
    assert parse_services({"hello": minimal(health={"timeout": 3600})},
                          "f")["hello"].health.timeout == 3600


@pytest.mark.parametrize("port", [0, 65536, -1, "0", "65536", "٨٠٨٠", "８０８０", "80 ", "",
                                  "0x50", "²"])
def test_literal_health_ports_outside_1_to_65535_or_not_ascii_are_refused(port):
    assert "services.hello.health.port: expected a port number" in config_error(
        minimal(health={"port": port}))


@pytest.mark.parametrize("text", ["0", "65536", "٨٠٨٠", "８０８０", " 8080", "8080\n", "",
                                  "80.0", "-1"])
def test_rendered_ports_are_checked_by_port_number(text):
    with pytest.raises(ConfigError) as err:
        port_number(text, "services.hello.health.port")
    assert str(err.value) == ("services.hello.health.port: expected a port number 1-65535 "
                              f"(ASCII digits), got {text!r}")


def test_good_ports_literal_or_template():
    assert port_number("8080", "x") == 8080 and port_number("65535", "x") == 65535
    health = parse_services({"hello": minimal(health={"port": 8080})}, "f")["hello"].health
    assert health.port == "8080"
    templated = parse_services({"hello": minimal(health={"port": "{{ port }}"})}, "f")
    assert templated["hello"].health.port == "{{ port }}"


@pytest.mark.parametrize("host", ["127.0.0.1 ", "local host", "a\nb", "a\x00", "a\tb", "",
                                  "[127.0.0.1]", "::zz", "héllo", "a/b", "{{ bind }}"])
def test_health_host_is_a_hostname_or_ip_literal(host):
    message = config_error(minimal(health={"host": host}))
    assert message.startswith("fabric.yaml: services.hello.health.host: expected "), message


@pytest.mark.parametrize("host, stored, in_the_url", [
    ("127.0.0.1", "127.0.0.1", "127.0.0.1"), ("localhost", "localhost", "localhost"),
    ("::1", "::1", "[::1]"), ("[::1]", "::1", "[::1]"), ("0:0::1", "::1", "[::1]")])
def test_health_host_ipv6_is_stored_bare_and_bracketed_for_urls(host, stored, in_the_url):
    health = parse_services({"hello": minimal(health={"host": host})}, "f")["hello"].health
    assert (health.host, health.url_host) == (stored, in_the_url)


@pytest.mark.parametrize("path", ["/héalth", "/a b", "/a\x07", "/\n", "health", "/ü"])
def test_health_path_is_printable_ascii(path):
    assert config_error(minimal(health={"path": path})).startswith(
        f"fabric.yaml: services.hello.health.path: expected a URL path starting with /, "
        f"got {path!r}")


# --- hosts: whitespace, IPv6, duplicates ----------------------------------------------------

@pytest.mark.parametrize("text", ["a\n", "a ", " a", "a\t", "a\r", "u@a\n", "u@a:22\n",
                                  "a\x00", "u\n@a", "a\u2028", "::1", "u@::1:22", "[::1",
                                  "[::1]x", "[::1]:", "[127.0.0.1]:22", "[::g]", "a:٢٢",
                                  "a:", "@a"])
def test_host_strings_with_whitespace_controls_or_bad_forms_are_refused(text):
    with pytest.raises(ValueError):
        parse_host(text)
    raw = minimal(environments={"t": {"hosts": ["ok", text]}})
    assert config_error(raw).startswith(
        "fabric.yaml: services.hello.environments.t.hosts[1]: bad ")


def test_a_bare_ipv6_address_says_to_use_brackets():
    with pytest.raises(ValueError, match=r"an IPv6 address goes in brackets: \[::1\]:22"):
        parse_host("deploy@::1")


@pytest.mark.parametrize("text, parts, address", [
    ("[::1]", ("::1", None, None), "[::1]"),
    ("[::1]:2222", ("::1", None, 2222), "[::1]:2222"),
    ("deploy@[::1]:2222", ("::1", "deploy", 2222), "deploy@[::1]:2222"),
    ("u@[fd00:0::5]", ("fd00::5", "u", None), "u@[fd00::5]"),
    ("web1.example:22", ("web1.example", None, 22), "web1.example:22"),
])
def test_ipv6_hosts_parse_and_their_address_round_trips(text, parts, address):
    host = parse_host(text)
    assert (host.hostname, host.user, host.port) == parts
    assert host.address == address and parse_host(host.address) == host
    assert in_url(host.hostname) == ("[" + parts[0] + "]" if ":" in parts[0] else parts[0])


def default_resolve(user="deployer", port=22):
    """resolve(host) as Fabric does it with these defaults and no ~/.ssh/config."""
    return lambda host: (host.user or user, host.hostname, host.port or port)


@pytest.mark.parametrize("hosts, first, second, same", [
    (["a", "a:22"], "[0] 'a'", "[1] 'a:22'", "deployer@a:22"),
    (["b", "deployer@a", "a"], "[1] 'deployer@a'", "[2] 'a'", "deployer@a:22"),
    (["a:2222", "A:2222"], "[0] 'a:2222'", "[1] 'A:2222'", "deployer@a:2222"),
    (["[::1]:2", "deployer@[0::1]:2"], "[0] '[::1]:2'", "[1] 'deployer@[::1]:2'",
     "deployer@[::1]:2"),
])
def test_duplicate_hosts_in_an_environment_name_both_entries(hosts, first, second, same):
    services = parse_services({"hello": minimal(environments={"t": {"hosts": hosts}})},
                              "fabric.yaml")
    target = select(services, env="t")
    where = hosts_key(target, "fabric.yaml")
    with pytest.raises(ConfigError) as err:
        check_hosts(target, where, default_resolve())
    assert str(err.value) == (f"fabric.yaml: services.hello.environments.t.hosts: {first} and "
                              f"{second} are the same host, {same}; list each host once")


def test_duplicates_in_hosts_flag_and_hosts_that_differ():
    services = parse_services({"hello": minimal()}, "f")
    target = select(services, hosts="a, a:22")
    with pytest.raises(ConfigError, match=r"^--hosts: 'a' and 'a:22' are the same host"):
        check_hosts(target, hosts_key(target, "f"), default_resolve())
    distinct = select(services, hosts="a,a:2222,other@a,b,[::1],[::2]")
    check_hosts(distinct, "--hosts", default_resolve())
    # the same user spelt out and by default, once the default user is someone else
    check_hosts(select(services, hosts="deployer@a,a"), "--hosts", default_resolve("me"))
    with pytest.raises(ConfigError, match="--hosts: no host in"):
        select(services, hosts=" , ")
    with pytest.raises(ConfigError, match=r"--hosts: bad address 'b\\n'"):
        select(services, hosts="a,b\n")


def test_duplicate_instances_are_named_by_instance_id():
    one, two = (replace(parse_host("ec2-user@10.0.0.5"), instance_id=i) for i in ("i-1", "i-2"))
    target = Target(parse_services({"hello": minimal()}, "f")["hello"], "prod", (one, two),
                    {}, ec2=object())
    with pytest.raises(ConfigError) as err:
        check_hosts(target, hosts_key(target, "f"), default_resolve())
    assert str(err.value) == ("f: services.hello.environments.prod.ec2: 'ec2-user@10.0.0.5' "
                              "(i-1) and 'ec2-user@10.0.0.5' (i-2) are the same host, "
                              "ec2-user@10.0.0.5:22; list each host once")


def test_a_host_without_user_needs_a_known_local_user():
    target = select(parse_services({"hello": minimal()}, "f"), hosts="u@a,b")
    with pytest.raises(ConfigError) as err:
        check_hosts(target, "--hosts", default_resolve(user=None))
    assert str(err.value) == (
        "--hosts: 'b' names no user, and this machine's user is unknown (no passwd entry, "
        "no USER or LOGNAME); write it as user@b or set `user:` in fabric.yaml")


# --- text: lone surrogates and control characters, wherever a string goes -------------------

SURROGATE = "\\ud800"  # as a double-quoted YAML scalar writes it
KEYS_WITH_TEXT = [
    ("run", 'run: "x{s}"', "services.hello.run"),
    ("source", 'source: "s{s}"', "services.hello.source"),
    ("python", 'python: "py{s}"', "services.hello.python"),
    ("requirements", 'requirements: "r{s}.txt"', "services.hello.requirements"),
    ("root", 'root: "/srv/{s}"', "services.hello.root"),
    ("var", 'vars: {{greeting: "hi{s}"}}', "services.hello.vars.greeting"),
    ("var key", 'vars: {{"g{s}": 1}}', "services.hello.vars['g\\ud800']"),
    ("template src", 'templates: [{{src: "a{s}", dest: b}}]', "services.hello.templates[0].src"),
    ("template dest", 'templates: [{{src: a, dest: "b{s}"}}]',
     "services.hello.templates[0].dest"),
    ("health path", 'health: {{path: "/h{s}"}}', "services.hello.health.path"),
    ("health host", 'health: {{host: "h{s}"}}', "services.hello.health.host"),
    ("health port", 'health: {{port: "{{{{ port }}}}{s}"}}', "services.hello.health.port"),
    ("secret_env", 'secret_env: ["A{s}"]', "services.hello.secret_env[0]"),
    ("host", 'environments: {{t: {{hosts: ["a{s}"]}}}}', "services.hello.environments.t.hosts[0]"),
    ("host var", 'environments: {{t: {{hosts: [{{host: a, vars: {{x: "{s}"}}}}]}}}}',
     "services.hello.environments.t.hosts[0].vars.x"),
    ("environment var", 'environments: {{t: {{hosts: [a], vars: {{x: "{s}"}}}}}}',
     "services.hello.environments.t.vars.x"),
    ("environment root", 'environments: {{t: {{hosts: [a], root: "/r{s}"}}}}',
     "services.hello.environments.t.root"),
    ("environment name", 'environments: {{"t{s}": {{hosts: [a]}}}}',
     "services.hello.environments['t\\ud800']"),
    ("ec2 ami", 'environments: {{t: {{ec2: {{count: 1, instance_type: t3.micro, '
                'ami: "ami-1{s}"}}}}}}', "services.hello.environments.t.ec2.ami"),
]


def yaml_service(line, char):
    """A service as fabric.yaml text, with `line` (holding {s}) replacing its default."""
    key = line.split(":", 1)[0].strip('"')
    base = {"source": "source: s", "run": "run: r",
            "environments": "environments: {t: {hosts: [a]}}"}
    base[key] = line.format(s=char)
    return yaml.safe_load("\n".join(base.values()) + "\n")


@pytest.mark.parametrize("line, where", [case[1:] for case in KEYS_WITH_TEXT],
                         ids=[case[0] for case in KEYS_WITH_TEXT])
def test_a_lone_surrogate_anywhere_is_an_error_naming_the_key(line, where):
    raw = yaml_service(line, SURROGATE)
    message = config_error(raw)
    assert message.startswith(f"fabric.yaml: {where}: "), message
    message.encode("utf-8")  # the message itself can be printed


@pytest.mark.parametrize("line, where", [case[1:] for case in KEYS_WITH_TEXT],
                         ids=[case[0] for case in KEYS_WITH_TEXT])
def test_control_characters_are_errors_naming_the_key(line, where):
    raw = yaml_service(line, "\\x1b[31m")
    message = config_error(raw)
    where = where.replace("\\ud800", "\\x1b[31m")
    assert message.startswith(f"fabric.yaml: {where}: "), message
    assert "\x1b" not in message  # shown escaped, never sent to the terminal


def test_multiline_text_may_hold_line_breaks_only_where_it_makes_sense():
    ok = parse_services({"hello": minimal(run="python -m app\n  --flag\tx\n",
                                          vars={"pem": "-----\nabc\n-----\n"})}, "f")
    assert ok["hello"].run.endswith("x\n")
    assert "it holds a control character ('\\n')" in config_error(minimal(source="s\n"))


# --- template dests ---------------------------------------------------------------------

@pytest.mark.parametrize("dest", ["release.json", ".fabship", ".fabship/run",
                                  ".fabship/supervisord.conf", "shared", "shared/env",
                                  "shared/log/app.log"])
def test_reserved_template_dests_are_refused(dest):
    raw = minimal(templates=[{"src": "a.j2", "dest": dest}])
    assert config_error(raw) == (
        "fabric.yaml: services.hello.templates[0].dest: expected a path that is not "
        "fabship's own (release.json, .fabship/ and shared/ are reserved), got " + repr(dest))


@pytest.mark.parametrize("dest", ["/etc/app.conf", "..", "../x", "a/../../x", "a/..", ".",
                                  "./a", "a/./b", "a//b", "a/", "a\\b", "..\\x", "a/\x00",
                                  "a\nb", " "])
def test_template_dests_that_leave_the_release_or_are_malformed_are_refused(dest):
    raw = minimal(templates=[{"src": "a.j2", "dest": dest}])
    assert config_error(raw).startswith(
        "fabric.yaml: services.hello.templates[0].dest: expected a "), dest


@pytest.mark.parametrize("src", ["../secret", "/etc/passwd", "a/../../b", "a\\b"])
def test_template_srcs_stay_under_templates(src):
    raw = minimal(templates=[{"src": src, "dest": "x"}])
    assert config_error(raw) == ("fabric.yaml: services.hello.templates[0].src: expected a "
                                 f"path inside templates/, got {src!r}")


@pytest.mark.parametrize("dests, message", [
    (["a.conf", "b.conf", "a.conf"],
     "templates[2].dest: expected a path apart from templates[0]'s dest 'a.conf', "
     "got 'a.conf'"),
    (["conf", "conf/app.ini"],
     "templates[1].dest: expected a path apart from templates[0]'s dest 'conf', "
     "got 'conf/app.ini'"),
    (["conf/app.ini", "conf"],
     "templates[1].dest: expected a path apart from templates[0]'s dest 'conf/app.ini', "
     "got 'conf'"),
])
def test_two_templates_cannot_write_the_same_file(dests, message):
    raw = minimal(templates=[{"src": f"t{i}.j2", "dest": d} for i, d in enumerate(dests)])
    assert config_error(raw) == f"fabric.yaml: services.hello.{message}"


def test_allowed_dests_include_nested_and_lookalike_names():
    dests = ["app.conf", "conf/release.json", "shared.conf", ".fabshipx", "conf/app.ini",
             "confx"]
    raw = minimal(templates=[{"src": f"t{i}.j2", "dest": d} for i, d in enumerate(dests)])
    parsed = parse_services({"hello": raw}, "f")["hello"]
    assert [t.dest for t in parsed.templates] == dests


# --- the gate record ------------------------------------------------------------------------

@pytest.mark.parametrize("content, problem", [
    (b"{not json", "(not JSON: Expecting property name"),
    (b"\xff\xfe\x00garbage\x80", "(not UTF-8: byte 0xff at offset 0)"),
    (b"", "(not JSON: Expecting value"),
    (b"[1, 2]", "(expected a JSON object, got list)"),
    (b"null", "(expected a JSON object, got NoneType)"),
    (b'{"commit": 123}', "(commit: expected a commit id, got 123)"),
    (b'{"commit": "\\ud800"}', "(commit: expected a commit id, got '\\ud800')"),
    (b'{"gates": ["unit"]}', "(gates: expected an object of gate -> result, got ['unit'])"),
    (b'{"gates": {"unit": "passed"}}',
     "(gates.unit: expected an object with a status string, got 'passed')"),
    (b'{"gates": {"unit": {"status": 1}}}',
     "(gates.unit: expected an object with a status string, got {'status': 1})"),
    (b'{"passed": "yes"}', "(passed: expected true or false, got 'yes')"),
    (b'{"dirty": 0}', "(dirty: expected true or false, got 0)"),
])
def test_a_corrupt_gate_record_is_bad_input_naming_the_file(tmp_path, content, problem):
    path = tmp_path / "gates.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError) as err:
        read_record(path, "HINT")
    assert err.value.exit_code == 2
    assert str(err.value).startswith(f"{path}") or str(err.value).startswith(
        f"no readable gate record at {path}")
    assert problem in str(err.value) and str(err.value).endswith("; HINT")


def test_a_missing_gate_record_is_not_bad_input(tmp_path):
    with pytest.raises(DeployError, match="no readable gate record at"):
        read_record(tmp_path / "gates.json", "HINT")
    (tmp_path / "gates.json").mkdir()
    with pytest.raises(ConfigError, match="Is a directory"):
        read_record(tmp_path / "gates.json", "HINT")


# --- history --limit, the local user --------------------------------------------------------

@pytest.mark.parametrize("value", ["abc", "0", "-5", "1.5", "", " 3", "٣", "9999999999"])
def test_counts_on_the_command_line_are_whole_numbers_from_1(value):
    with pytest.raises(ConfigError) as err:
        count_option(value, "--limit", 20)
    assert str(err.value) == f"--limit: expected a whole number >= 1, got {value!r}"


def test_counts_default_and_parse():
    assert count_option(None, "--limit", 20) == 20
    assert count_option("3", "--limit", 20) == 3 and count_option(7, "--limit", 20) == 7


def test_local_user_names_this_process_user():
    assert local_user()  # as root in the test rig: root, from USER or the passwd entry
    environ = {}
    assert name_local_user(environ) is None and not environ  # it has a name already


# --- fab's own config files, loaded strictly (pure parts) -----------------------------------

@pytest.mark.parametrize("text, message", [
    ("services: [\n", "f.yaml: line 2, column 1: expected the node content, but found "
                      "'<stream end>' (YAML syntax)"),
    ("a: 1\na: 2\n", "f.yaml: line 2, column 1: key 'a' given twice in one mapping "
                     "(YAML syntax)"),
    ("- 1\n", "f.yaml: expected a mapping of settings at the top level, got a list"),
    ("just text\n", "f.yaml: expected a mapping of settings at the top level, got a str"),
    ("a: !!python/object:os.system x\n", "f.yaml: line 1, column 4: could not determine a "
                                         "constructor for the tag"),
])
def test_yaml_config_errors_name_file_line_and_problem(tmp_path, text, message):
    path = tmp_path / "f.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_yaml(path, "f.yaml")
    assert str(err.value).startswith(message), str(err.value)
    assert "\n" not in str(err.value)


def test_yaml_and_json_config_files_that_load(tmp_path):
    path = tmp_path / "f.yaml"
    path.write_text("base: &b {x: 1}\nmerged: {<<: *b, x: 2}\n")
    assert load_yaml(path, "f") == {"base": {"x": 1}, "merged": {"x": 2}}
    path.write_text("")
    assert load_yaml(path, "f") == {}
    path.write_bytes(b"a: \xe9\n")
    with pytest.raises(ConfigError, match=r"^f: not UTF-8 text \(byte 0xe9 at offset 3\)$"):
        load_yaml(path, "f")
    with pytest.raises(FileNotFoundError):  # Invoke tries the next suffix
        load_yaml(tmp_path / "none.yaml", "f")
    path.write_text('{"a": {"b": 1}}')
    assert load_json(path, "f") == {"a": {"b": 1}}
    for text, message in (('{"a": 1, "a": 2}', "f: key 'a' given twice in one object"),
                          ('{"a": ', "f: line 1, column 7: Expecting value (JSON syntax)"),
                          ("[1]", "f: expected a mapping of settings at the top level")):
        path.write_text(text)
        with pytest.raises(ConfigError, match="^" + message.replace("(", r"\(")
                           .replace(")", r"\)").replace("[", r"\[")):
            load_json(path, "f")


def test_unreadable_config_files_are_named(tmp_path):
    with pytest.raises(ConfigError, match=r"^d.yaml: cannot read: Is a directory$"):
        load_yaml(tmp_path, "d.yaml")


def strict_config(root):
    """A Fabric Config made strict as `fab` gets it, with `root` as the project."""
    config = make_strict(Config(lazy=True))
    config.set_project_location(str(root))
    return config


def exit_message(call):
    with pytest.raises(Exit) as err:
        call()
    assert err.value.code == 2
    return err.value.message


def test_strict_config_in_process(tmp_path):
    """What `fab` meets, without a subprocess: each file type, -f, FABRIC_* clashes."""
    assert guard_fab_config() is None  # pytest is no `fab`: nothing to guard
    (tmp_path / "fabric.json").write_text('{"run": []}')
    config = strict_config(tmp_path)
    assert make_strict(config) is config
    assert exit_message(config.load_project) == (
        "fabship: error: fabric.json: run: expected a mapping (as in Fabric's defaults), "
        "got []")
    (tmp_path / "fabric.json").unlink()
    (tmp_path / "fabric.py").write_text("x = 1 / 0\n")
    assert exit_message(strict_config(tmp_path).load_project) == (
        "fabship: error: fabric.py: cannot load: ZeroDivisionError: division by zero")
    (tmp_path / "fabric.py").unlink()
    (tmp_path / "fabric.yaml").write_text("run_echo: true\nservices: {}\n")
    config = strict_config(tmp_path)
    config.load_project()
    assert config.merge_error() is None
    assert exit_message(config.load_shell_env) == (
        "fabship: error: fabric.yaml: run_echo: clashes with run.echo (both would be set by "
        "FABRIC_RUN_ECHO); rename it")
    runtime = tmp_path / "settings.txt"
    runtime.write_text("a: 1\n")
    config.set_runtime_path(str(runtime))
    assert exit_message(config.load_runtime) == (
        f"fabship: error: {runtime}: not a config file: expected .yaml, .yml, .json or .py")


@pytest.mark.parametrize("overrides, message", [
    ({"user": "a b"}, "Fabric's config: user: expected a user name (letters, digits, _.-), "
                      "got 'a b'"),
    ({"user": 3}, "Fabric's config: user: expected a user name"),
    ({"port": True}, "Fabric's config: port: expected a port number 1-65535, got True"),
    ({"timeouts": {"connect": 0}}, "Fabric's config: timeouts.connect: expected a number of "
                                   "seconds > 0, got 0"),
    ({"timeouts": {"connect": float("inf")}}, "Fabric's config: timeouts.connect: expected"),
])
def test_fabric_connection_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError) as err:
        check_fabric_settings(Config(overrides=overrides))
    assert str(err.value).startswith(message)
    check_fabric_settings(Config(overrides={"user": "deploy", "timeouts": {"connect": 5}}))


def test_merge_conflicts_are_found_as_invoke_merges():
    defaults = {"run": {"echo": False, "env": {}}, "user": "me"}
    assert merge_conflict(copy.deepcopy(defaults), {"run": 3}) == (("run",), defaults["run"], 3)
    assert merge_conflict(copy.deepcopy(defaults), {"run": {"echo": {"a": 1}}}) == (
        ("run", "echo"), False, {"a": 1})
    assert merge_conflict(copy.deepcopy(defaults), {"run": {"env": [1]}}) == (
        ("run", "env"), {}, [1])
    base = copy.deepcopy(defaults)
    assert merge_conflict(base, {"run": {"echo": True}, "services": {"a": None}}) is None
    assert base["run"]["echo"] is True and base["services"] == {"a": None}


def test_environment_variables_that_do_not_fit_their_setting():
    config = {"port": 22, "timeouts": {"connect": None}, "run": {"watchers": [], "echo": False},
              "ratio": 1.5}
    assert env_error(config, "FABRIC_", {"FABRIC_PORT": "2222", "FABRIC_RUN_ECHO": "x",
                                         "FABRIC_TIMEOUTS_CONNECT": "5"}) is None
    assert str(env_error(config, "FABRIC_", {"FABRIC_PORT": "abc"})) == (
        "environment variable FABRIC_PORT='abc': expected a whole number for the setting port")
    assert str(env_error(config, "FABRIC_", {"FABRIC_RATIO": "x"})) == (
        "environment variable FABRIC_RATIO='x': expected a number for the setting ratio")
    assert str(env_error(config, "FABRIC_", {"FABRIC_RUN_WATCHERS": "a"})) == (
        "environment variable FABRIC_RUN_WATCHERS: the setting run.watchers is a list, which "
        "a variable cannot set")


# --- real `fab` runs: fab's config files -----------------------------------------------------

def refused(proc, message, code=2):
    """One `fabship: error:` line holding `message`, exit `code`, no traceback."""
    out = proc.stdout + proc.stderr
    assert proc.returncode == code, out
    assert "Traceback" not in out, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("fabship: error: "), out
    assert message in lines[0], lines[0]
    return lines[0]


@pytest.fixture(name="bare", scope="module")
def bare_project(tmp_path_factory):
    """A project with fabship's fabfile and whatever fabric.yaml a test writes."""
    root = tmp_path_factory.mktemp("bare")
    shutil.copy(REPO / "fabfile.py", root / "fabfile.py")
    return root


def fab(root, *args, env=None, **popen):
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SSH_")}
    environ.update(env or {})
    return subprocess.run([FAB, *args], cwd=root, capture_output=True, text=True, timeout=60,
                          env=environ, check=False, **popen)


SERVICES = "services: {hello: {source: s, run: r, environments: {t: {hosts: [a]}}}}\n"
LOADING = [
    ("yaml syntax", "services: [\n", (), {},
     "fabric.yaml: line 2, column 1: expected the node content"),
    ("top-level list", "- services\n", (), {},
     "fabric.yaml: expected a mapping of settings at the top level, got a list"),
    ("not utf-8", b"services: {h\xe9llo: {}}\n", (), {},
     "fabric.yaml: not UTF-8 text (byte 0xe9 at offset 12)"),
    ("run: 3", "run: 3\n" + SERVICES, (), {},
     "fabric.yaml: run: expected a mapping (as in Fabric's defaults), got 3"),
    ("empty service", "services: {hello: }\n", (), {},
     "fabric.yaml: services.hello: expected a mapping, got None"),
    ("ssh: 3", "ssh: 3\n" + SERVICES, (), {}, "fabric.yaml: ssh: expected a mapping, got 3"),
    ("-f missing", SERVICES, ("-f", "nope.yaml"), {}, "nope.yaml: no such config file (-f)"),
    ("-f merge", SERVICES, ("-f", "{runtime}"), {},
     "runtime.yaml: services.hello: expected a mapping (as in fabric.yaml), got 3"),
    ("env var", SERVICES, (), {"FABRIC_PORT": "ssh"},
     "environment variable FABRIC_PORT='ssh': expected a whole number for the setting port"),
    ("fabric port", "port: 0\n" + SERVICES, (), {},
     "fabric.yaml: port: expected a port number 1-65535, got 0"),
]


@pytest.mark.parametrize("text, flags, env, message", [case[1:] for case in LOADING],
                         ids=[case[0] for case in LOADING])
def test_fab_config_files_bad_input_is_one_line_and_exit_2(bare, text, flags, env, message):
    (bare / "fabric.yaml").write_bytes(text if isinstance(text, bytes) else text.encode())
    runtime = bare / "runtime.yaml"
    runtime.write_text("services: {hello: 3}\n")
    flags = [flag.format(runtime=runtime) for flag in flags]
    refused(fab(bare, *flags, "--dry", "service", "status", env=env), message)


# --- real `fab` runs against real hosts: nothing changes ------------------------------------

@pytest.fixture(name="deployed", scope="module")
def deployed_project(make_project):
    """A project deployed once to two hosts of the fleet (venvs seeded)."""
    builder = Builder(make_project)
    project = builder.project(hosts=2)
    proc = project.fab("service", "deploy")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    yield project
    builder.close()


def first_host(project):
    return project.hosts[0]["host"]


def twin(project):
    """The first host again, spelt without the user (who is the default, root)."""
    return {"host": first_host(project).split("@", 1)[1], "vars": {"host_id": "twin",
                                                                 "port": 1}}


FLEET_CASES = [
    ("same host twice", lambda p, s: s["environments"]["test"]["hosts"].append(twin(p)),
     ("--break-lock",), "services.hello.environments.test.hosts: [0] 'root@127.0.0.1:"),
    ("timeout nan", lambda p, s: s["health"].update(timeout="NAN"), (),
     "services.hello.health.timeout: expected a number >= 1, got nan"),
    ("timeout inf", lambda p, s: s["health"].update(timeout="INF"), (),
     "services.hello.health.timeout: expected a number >= 1, got inf"),
    ("port 0", lambda p, s: s["health"].update(port=0), (),
     "services.hello.health.port: expected a port number 1-65535 (ASCII digits), got 0"),
    ("port non-ascii", lambda p, s: s["health"].update(port="٨٠٨٠"), (),
     "services.hello.health.port: expected a port number 1-65535 (ASCII digits), got '٨٠٨٠'"),
    ("health host", lambda p, s: s["health"].update(host="127.0.0.1\t"), (),
     "services.hello.health.host: expected a string, got '127.0.0.1\\t'"),
    ("health path", lambda p, s: s["health"].update(path="/santé"), (),
     "services.hello.health.path: expected a URL path starting with /, got '/santé'"),
    ("newline in host", lambda p, s: s["environments"]["test"]["hosts"][1].update(
        host=p.hosts[1]["host"] + "\n"), (), "services.hello.environments.test.hosts[1]: bad"),
    ("surrogate", lambda p, s: s["vars"].update(greeting="SURROGATE"), (),
     "services.hello.vars.greeting: expected text, got '\\ud800'"),
    ("reserved dest", lambda p, s: s["templates"][0].update(dest="release.json"), (),
     "services.hello.templates[0].dest: expected a path that is not fabship's own"),
]


def write_yaml(project, service):
    """fabric.yaml for this service, with YAML's own spellings of nan, inf and "\\ud800"."""
    project.write_config({"hello": service})
    text = (project.root / "fabric.yaml").read_text()
    text = text.replace("timeout: NAN", "timeout: .nan").replace("timeout: INF", "timeout: .inf")
    (project.root / "fabric.yaml").write_text(text.replace("SURROGATE", '"\\ud800"'))


@pytest.mark.parametrize("change, flags, message", [case[1:] for case in FLEET_CASES],
                         ids=[case[0] for case in FLEET_CASES])
def test_bad_config_changes_no_host(deployed, change, flags, message):
    original = (deployed.root / "fabric.yaml").read_text()
    service = copy.deepcopy(deployed.service)
    change(deployed, service)
    before = deployed.snapshot()
    write_yaml(deployed, service)
    try:
        proc = deployed.fab("service", "deploy", "--skip-gates", *flags)
    finally:
        (deployed.root / "fabric.yaml").write_text(original)
    refused(proc, "fabric.yaml: " + message)
    assert deployed.snapshot() == before


def test_duplicate_hosts_flag_and_bad_limit_change_no_host(deployed):
    before = deployed.snapshot()
    host = first_host(deployed)
    refused(deployed.fab("service", "--hosts", f"{host},{host.split('@')[1]}", "deploy",
                         "--skip-gates", "--break-lock"),
            f"--hosts: '{host}' and '{host.split('@')[1]}' are the same host")
    refused(deployed.fab("service", "history", "--limit", "abc"),
            "--limit: expected a whole number >= 1, got 'abc'")
    assert deployed.snapshot() == before


def test_a_corrupt_gate_record_refuses_the_deploy_with_exit_2(deployed):
    record = deployed.root / "reports" / "gates.json"
    original = record.read_bytes()
    before = deployed.snapshot()
    try:
        record.write_bytes(b"\x00\x01binary\xff")
        refused(deployed.fab("service", "deploy"),
                f"no readable gate record at {record.resolve()} (not UTF-8")
        record.write_text(json.dumps({"commit": 7, "passed": True}))
        refused(deployed.fab("service", "deploy"), "(commit: expected a commit id, got 7)")
    finally:
        record.write_bytes(original)
    assert deployed.snapshot() == before


# --- a local user with no passwd entry ------------------------------------------------------

NOBODY = 54321  # a uid with no passwd entry
# A user namespace where this process is NOBODY: getpass.getuser() raises as on a CI agent
# whose uid has no passwd entry, while files (owned by root outside) stay readable.
AS_NOBODY = ["unshare", "--user", f"--map-user={NOBODY}", f"--map-group={NOBODY}"]


def as_nobody(cwd, *argv):
    env = {k: v for k, v in os.environ.items()
           if k not in ("USER", "LOGNAME", "LNAME", "USERNAME") and not k.startswith("SSH_")}
    return subprocess.run([*AS_NOBODY, *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=300, check=False)


def test_no_passwd_entry_fab_starts_and_a_host_without_user_is_one_error(bare):
    probe = as_nobody(bare, str(Path(FAB).with_name("python")), "-c",
                      "import getpass, os\nfrom fabship.deploy.hosts import local_user\n"
                      "try:\n getpass.getuser()\nexcept KeyError:\n"
                      " print('no user', os.getuid(), local_user())")
    assert probe.stdout.strip() == f"no user {NOBODY} uid{NOBODY}", probe.stdout + probe.stderr
    (bare / "fabric.yaml").write_text(
        "services: {hello: {source: s, run: r, environments: "
        "{t: {hosts: [deploy@10.0.0.5, 10.0.0.6]}}}}\n")
    refused(as_nobody(bare, FAB, "--dry", "service", "status"),
            "fabric.yaml: services.hello.environments.t.hosts: [1] '10.0.0.6' names no user, "
            "and this machine's user is unknown (no passwd entry, no USER or LOGNAME)")
    listed = as_nobody(bare, FAB, "-l")
    assert listed.returncode == 0 and "deploy" in listed.stdout, listed.stderr


def test_no_passwd_entry_deploys_with_deployer_uid_n(deployed):
    """A real deploy made by a uid without passwd entry: recorded as uid<N>."""
    proc = as_nobody(deployed.root, FAB, "-i", str(deployed.fleet.client_key), "service",
                     "deploy")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    for index in range(len(deployed.hosts)):
        root = deployed.host_root(index)
        release = json.loads((root / "current" / "release.json").read_text())
        assert release["deployer"] == f"uid{NOBODY}"
        last = json.loads((root / "deploys.jsonl").read_text().splitlines()[-1])
        assert last["deployer"] == f"uid{NOBODY}" and last["status"] == "deployed"


# --- IPv6: [::1]:port reaches a real sshd -----------------------------------------------------

def ipv6_loopback():
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
            return sock.getsockname()[1]
    except OSError:
        return None


@pytest.fixture(name="ipv6_sshd")
def ipv6_sshd_fixture(fleet):
    """One more sshd of the fleet, listening on [::1] only; (port, its known_hosts line)."""
    port = ipv6_loopback()
    if port is None:
        pytest.skip("this machine has no IPv6 loopback")
    config = write_config(fleet.base / "v6", port, fleet.base / "authorized_keys")
    config.write_text(config.read_text().replace("ListenAddress 127.0.0.1",
                                                 "ListenAddress ::1"))
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)],  # pylint: disable=R1732
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("::1", port), timeout=0.5).close()
                break
            except OSError:
                assert proc.poll() is None and time.monotonic() < deadline, "no sshd on ::1"
                time.sleep(0.05)
        kind, key = (fleet.base / "v6" / "ssh_host_ed25519_key.pub").read_text().split()[:2]
        yield port, f"[::1]:{port} {kind} {key}\n"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_an_ipv6_host_in_brackets_deploys_and_reads_history(build, ipv6_sshd):
    """`root@[::1]:PORT`: Fabric connects, the host key is found as [::1]:PORT, the deploy
    lands, and the history names the host as written."""
    port, known = ipv6_sshd
    project = build.project(hosts=1)
    address = f"root@[::1]:{port}"
    project.hosts[0]["host"] = address
    project.service["environments"]["test"]["hosts"] = project.hosts
    project.write_config({"hello": project.service})
    with open(project.root / ".fabship-known_hosts", "a", encoding="utf-8") as handle:
        handle.write(known)
    project.commit("the host over IPv6")
    proc = project.fab("service", "deploy")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr
    assert f"[{address}]" in proc.stdout
    release = json.loads((project.host_root(0) / "current" / "release.json").read_text())
    assert release["host"] == "::1"  # the `host` variable: the address without brackets
    assert project.health(0)["release"] == release["release"]
    history = project.fab("service", "history")
    assert history.returncode == 0 and address in history.stdout, history.stdout
