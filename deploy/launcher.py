"""How the program starts on a host: an argv, exec'd with no shell, secrets in its environment.

`run` is split into arguments at render time: the template's own quoting decides where
arguments end, and each `{{ expression }}` lands inside one argument whatever it holds
(spaces, quotes, `$(...)`, `;`). The release carries the argv as JSON and the secrets as
a JSON object in `.fabship/env` (mode 0600); `.fabship/launch.py`, run by the release's
Python, reads both and execs the program. No value ever passes through a shell, and no
secret appears on a command line (`ps`, /proc/PID/cmdline) on the controller or the host.
"""
import json
import shlex

import jinja2

from .errors import ConfigError
from .secrets import MASK

ARGV, ENV, LAUNCH = ".fabship/argv.json", ".fabship/env", ".fabship/launch.py"
MARK = "\x00"  # brackets an expression's index in the text being split

LAUNCH_PY = '''"""fabship launcher: exec the release's argv with its secrets in the environment."""
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def read(name):
    """A JSON file of the release's .fabship/; one line naming it if it cannot be read."""
    path = os.path.join(HERE, name)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except OSError as exc:
        sys.stderr.write(f"fabship launcher: cannot read {path}: {exc.strerror}\\n")
        sys.exit(1)


def main():
    """chdir to the release, then replace this process with the program."""
    argv, env = read("argv.json"), read("env")
    os.chdir(os.path.dirname(HERE))
    try:
        os.execvpe(argv[0], argv, {**os.environ, **env})
    except OSError as exc:
        sys.stderr.write(f"fabship launcher: cannot run {argv[0]!r}: {exc.strerror}\\n")
        sys.exit(127)


main()
'''


def split(env, run, variables, where):
    """argv of the `run` template: each expression's value stays inside one argument."""
    values = []

    def hold(value):
        values.append(str(value))
        return f"{MARK}{len(values) - 1}{MARK}"
    try:
        text = env.overlay(finalize=hold).from_string(run).render(variables)
    except jinja2.TemplateError as exc:
        raise ConfigError(f"{where}: {getattr(exc, 'message', None) or exc}") from None
    except (ArithmeticError, TypeError, ValueError, LookupError, AttributeError) as exc:
        raise ConfigError(f"{where}: template expression failed: {type(exc).__name__}") \
            from None
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot split the command into arguments ({exc}); "
                          "quote arguments with ' or \"") from None
    argv = []
    for word in words:
        parts = word.split(MARK)  # literal, index, literal, index, ..., literal
        argv.append("".join(values[int(p)] if i % 2 else p for i, p in enumerate(parts)))
    if not argv or not argv[0]:
        raise ConfigError(f"{where}: the command is empty once rendered")
    if any(MARK in arg for arg in argv):
        raise ConfigError(f"{where}: an argument holds a NUL character")
    return argv


def command(env, run, variables, secrets, where):
    """The argv; a ConfigError when it would carry a secret on the command line.

    Errors come from the masked render first, so their text never holds a secret.
    """
    masked = {**variables, **{s.name: MASK for s in secrets}}
    try:
        shown, masked_error = split(env, run, masked, where), None
    except ConfigError as exc:
        shown, masked_error = None, exc
    try:
        argv = split(env, run, {**variables, **{s.name: s.value for s in secrets}}, where)
    except ConfigError:
        raise masked_error or ConfigError(
            f"{where}: the command fails to render with the real secret values, though "
            "not with them masked; the values are not shown") from None

    def holds(secret):
        if shown is None:  # renders for real but not masked: it depends on the secrets
            return True
        try:
            return split(env, run, {**masked, secret.name: secret.value}, where) != shown
        except ConfigError:  # renders with this secret masked, not with it real
            return True
    holding = [s.name for s in secrets if holds(s)]
    if holding:
        raise ConfigError(
            f"{where}: the command line would hold secret {', '.join(holding)}: command "
            "lines are visible to every user of the host (ps, /proc/PID/cmdline). The "
            "program gets each secret_env variable in its environment instead (fabship "
            f"writes them to {ENV}, mode 0600): read it from there")
    return argv


def environment_file(secrets):
    """(text, masked text) of .fabship/env: the secrets by name, as one JSON object."""
    return (json.dumps({s.name: s.value for s in secrets}, indent=1) + "\n",
            json.dumps({s.name: MASK for s in secrets}, indent=1) + "\n")
