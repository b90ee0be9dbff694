"""The launcher: `run` split into argv at render time, exec'd with no shell, secrets in env.

The split is pure; the launch is real: launch.py runs under this Python and execs a small
program that writes down exactly what it received.
"""
import json
import os
import subprocess
import sys

import pytest

from fabship.deploy import launcher
from fabship.deploy.errors import ConfigError
from fabship.deploy.render import environment
from fabship.deploy.secrets import MASK, Secret
from tests.helpers import REPO

ENV = environment(REPO / "templates")
HOSTILE = "pa$$w;touch /tmp/x'\"`"


def split(run, **variables):
    """argv of `run` with these variables."""
    return launcher.split(ENV, run, variables, "services.app.run")


def test_each_expression_stays_inside_one_argument():
    """Spaces, quotes, `$(...)`, `;` and backquotes in values never split or run."""
    hostile = "$(touch /tmp/pwned); rm -rf / `id` 'q' \"d\" \\ \n end"
    assert split("{{ py }}/bin/python -m app --name {{ name }} --x={{ name }}!",
                 py="/srv/v", name=hostile) == [
        "/srv/v/bin/python", "-m", "app", "--name", hostile, f"--x={hostile}!"]
    assert split("app {{ empty }} {{ n | upper }}", empty="", n="a b") == ["app", "", "A B"]


def test_the_templates_own_quoting_decides_where_arguments_end():
    """Literal text is split like sh words: quotes group, backslashes escape."""
    assert split("app 'two words' \"{{ a }} and {{ b }}\" back\\ slash", a="1 2", b="3") == [
        "app", "two words", "1 2 and 3", "back slash"]
    assert split("{% if debug %}app --debug{% else %}app{% endif %}", debug=True) == [
        "app", "--debug"]


@pytest.mark.parametrize("run, message", [
    ("app 'open", "cannot split the command into arguments (No closing quotation); quote"),
    ("{{ empty }}", "the command is empty once rendered"),
    ("   ", "the command is empty once rendered"),
    ("app {{ nope }}", "'nope' is undefined"),
    ("app {{ 1 // 0 }}", "template expression failed: ZeroDivisionError"),
    ("app {% if %}", "Expected an expression"),
])
def test_bad_commands_name_the_key(run, message):
    """Every failure is a ConfigError naming `run`."""
    with pytest.raises(ConfigError) as err:
        split(run, empty="")
    assert str(err.value).startswith("services.app.run: " + message)


def test_a_nul_character_cannot_reach_an_argument():
    """exec(2) cannot pass NUL: refused at render time, not when the program starts."""
    with pytest.raises(ConfigError, match="an argument holds a NUL character"):
        split("app {{ v }}", v="a\x00b")


def test_a_secret_on_the_command_line_is_refused():
    """Command lines are world-readable on a host; the secret goes to the environment."""
    secrets = (Secret("TOKEN", HOSTILE), Secret("OTHER", "other-value"))
    with pytest.raises(ConfigError) as err:
        launcher.command(ENV, "app --token {{ TOKEN | upper }}", {}, secrets,
                         "services.app.run")
    message = str(err.value)
    assert message.startswith("services.app.run: the command line would hold secret TOKEN: "
                              "command lines are visible to every user of the host")
    assert HOSTILE not in message and HOSTILE.upper() not in message
    assert launcher.command(ENV, "app {% if TOKEN %}--auth{% endif %}", {}, secrets,
                            "services.app.run") == ["app", "--auth"]


def test_the_environment_file_holds_the_secrets_and_shows_them_masked():
    """JSON: every byte survives; the shown text names each secret, masked."""
    text, shown = launcher.environment_file((Secret("TOKEN", HOSTILE), Secret("B", "é\n")))
    assert json.loads(text) == {"TOKEN": HOSTILE, "B": "é\n"}
    assert json.loads(shown) == {"TOKEN": MASK, "B": MASK}
    assert HOSTILE not in shown


def test_launch_execs_the_argv_with_the_secrets_in_its_environment(tmp_path):
    """Byte for byte, from the release directory, and nothing the values hold runs."""
    release = tmp_path / "release"
    (release / ".fabship").mkdir(parents=True)
    witness = tmp_path / "pwned"
    hostile_var = f"$(touch {witness}); touch {witness}; `touch {witness}`"
    dump = tmp_path / "dump.json"
    program = ("import json, os, sys; json.dump({'argv': sys.argv[1:], 'cwd': os.getcwd(), "
               "'token': os.environ['TOKEN']}, open(sys.argv[1], 'w'))")
    argv = split("{{ py }} -c {{ program }} {{ dump }} {{ v }}", py=sys.executable,
                 program=program, dump=str(dump), v=hostile_var)
    (release / ".fabship" / "argv.json").write_text(json.dumps(argv))
    text, _ = launcher.environment_file((Secret("TOKEN", HOSTILE + f";touch {witness}"),))
    (release / ".fabship" / "env").write_text(text)
    (release / ".fabship" / "launch.py").write_text(launcher.LAUNCH_PY)
    proc = subprocess.run([sys.executable, "-I", str(release / ".fabship" / "launch.py")],
                          capture_output=True, text=True, check=False, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(dump.read_text()) == {
        "argv": [str(dump), hostile_var], "cwd": str(release),
        "token": HOSTILE + f";touch {witness}"}
    assert not witness.exists()


def test_launch_says_what_it_could_not_run(tmp_path):
    """A missing program: one line naming it, exit 127 (as sh would), no traceback."""
    (tmp_path / ".fabship").mkdir()
    (tmp_path / ".fabship" / "argv.json").write_text(json.dumps(["/no/such/program", "x"]))
    (tmp_path / ".fabship" / "env").write_text("{}")
    (tmp_path / ".fabship" / "launch.py").write_text(launcher.LAUNCH_PY)
    proc = subprocess.run([sys.executable, "-I", str(tmp_path / ".fabship" / "launch.py")],
                          capture_output=True, text=True, check=False,
                          env={**os.environ, "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 127
    assert proc.stderr == ("fabship launcher: cannot run '/no/such/program': "
                           "No such file or directory\n")


def test_launch_says_which_file_it_could_not_read(tmp_path):
    """An unreadable .fabship/env (here missing; for a unit user who cannot read it, see
    test_systemd_mode): one line naming it, exit 1, no traceback."""
    (tmp_path / ".fabship").mkdir()
    (tmp_path / ".fabship" / "argv.json").write_text(json.dumps(["/bin/true"]))
    (tmp_path / ".fabship" / "launch.py").write_text(launcher.LAUNCH_PY)
    proc = subprocess.run([sys.executable, "-I", str(tmp_path / ".fabship" / "launch.py")],
                          capture_output=True, text=True, check=False)
    assert (proc.returncode, proc.stdout) == (1, "")
    assert proc.stderr == (f"fabship launcher: cannot read {tmp_path}/.fabship/env: "
                           "No such file or directory\n")
