"""Type checks for config values that name the file and key path in every error."""
import math
import re
import unicodedata
from types import MappingProxyType

from .errors import ConfigError
from .hosts import parse_host, port_number as _port

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SCALARS = (str, int, float, bool)
LINE_BREAKS = "\n\t"  # the control characters a multi-line text (a command, a var) may hold


def flaw(text, allowed=""):
    """What makes `text` unusable in files, commands and logs, or None.

    A lone surrogate (YAML's "\\ud800") cannot be written as UTF-8 at all; a control
    character (other than those `allowed`) would corrupt a path, a command or a terminal.
    """
    for char in text:
        kind = unicodedata.category(char)
        if kind == "Cs":
            return f"a lone surrogate ({char!r}) that cannot be written as UTF-8"
        if kind == "Cc" and char not in allowed:
            return f"a control character ({char!r})"
    return None


def key_path(path, key):
    """`path.key`, or `path[<repr>]` when the key itself is not printable text."""
    if isinstance(key, str) and key.isprintable() and flaw(key) is None:
        return f"{path}.{key}"
    return f"{path}[{key!r}]"


def port_number(text, where):
    """The port a (rendered) config value names: ASCII digits, 1-65535; else ConfigError.

    `where` is the key path the error names, e.g. `services.hello.health.port`.
    """
    try:
        return _port(text)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None


def count_option(value, flag, default):
    """A command-line count (`--limit 5`): a whole number >= 1; ConfigError naming the flag."""
    if value is None:
        return default
    text = str(value)
    if not re.fullmatch(r"[0-9]{1,9}", text) or int(text) < 1:
        raise ConfigError(f"{flag}: expected a whole number >= 1, got {text!r}")
    return int(text)


class Reader:
    """Type checks that name the file and key path in their errors."""

    def __init__(self, source):
        self.source = source

    def fail(self, path, expected, value, why=None):
        """Raise the one error shape every check uses."""
        raise ConfigError(f"{self.source}: {path}: expected {expected}, got {value!r}"
                          + (f": it holds {why}" if why else ""))

    def mapping(self, value, path, allowed=None):
        """A mapping, optionally with only `allowed` keys."""
        if not isinstance(value, dict):
            self.fail(path, "a mapping", value)
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise ConfigError(f"{self.source}: {key_path(path, key)}: unknown key; "
                                      f"expected one of {', '.join(allowed)}")
        return value

    def text(self, value, path, pattern=None, what="a string", multiline=False):
        """A non-empty string of printable text, optionally matching `pattern`.

        `multiline` text (a command) may hold line breaks and tabs; nothing else may hold
        a control character, and no text a lone surrogate.
        """
        if not isinstance(value, str) or not value.strip():
            self.fail(path, what, value)
        why = flaw(value, LINE_BREAKS if multiline else "")
        if why:
            self.fail(path, what, value, why)
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(path, what, value)
        return value

    def number(self, value, path, low, kind=float, high=None):
        """A finite number (int when kind is int) from `low` to `high` (if given)."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and (isinstance(value, int) or math.isfinite(value))  # a huge int: no overflow
        if ok and kind is int:
            ok = isinstance(value, int)
        what = "a whole number" if kind is int else "a number"
        if not ok or value < low:
            self.fail(path, f"{what} >= {low}", value)
        if high is not None and value > high:
            self.fail(path, f"{what} <= {high}", value)
        return kind(value)

    def port(self, value, path):
        """A TCP port, 1-65535: a whole number, or a string of ASCII digits."""
        text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        try:
            return _port(text)
        except ValueError:
            return self.fail(path, "a port number 1-65535 (ASCII digits)", value)

    def variables(self, value, path):
        """A mapping of variable name -> scalar value."""
        self.mapping(value, path)
        for key, item in value.items():
            where = key_path(path, key)
            if not isinstance(key, str) or not VAR_NAME.fullmatch(key):
                self.fail(where, "a variable name (letters, digits, _)", key)
            if not isinstance(item, SCALARS):
                self.fail(where, "a string, number or boolean", item)
            why = flaw(item, LINE_BREAKS) if isinstance(item, str) else None
            if why:
                self.fail(where, "text", item, why)
        return MappingProxyType(dict(value))

    def listing(self, value, path):
        """A list."""
        if not isinstance(value, list):
            self.fail(path, "a list", value)
        return value

    def host(self, value, path):
        """`user@addr[:port]` or {host: ..., vars: {...}}."""
        host_vars = {}
        if isinstance(value, dict):
            self.mapping(value, path, ("host", "vars"))
            host_vars = self.variables(value.get("vars", {}), f"{path}.vars")
            value = value.get("host")
        if not isinstance(value, str) or not value:
            self.fail(path, "a host as [user@]address[:port]", value)
        try:
            return parse_host(value, host_vars)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {path}: {exc}") from exc
