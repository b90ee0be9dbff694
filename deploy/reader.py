"""Type checks for config values that name the file and key path in every error."""
import math
import re
from types import MappingProxyType

from .errors import ConfigError
from .hosts import parse_host

NAME = re.compile(r"^[a-z][a-z0-9_-]{0,62}$")
VAR_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
ENV_NAME = re.compile(r"^[A-Z_][A-Z0-9_]*$")
SCALARS = (str, int, float, bool)


class Reader:
    """Type checks that name the file and key path in their errors."""

    def __init__(self, source):
        self.source = source

    def fail(self, path, expected, value):
        """Raise the one error shape every check uses."""
        raise ConfigError(f"{self.source}: {path}: expected {expected}, got {value!r}")

    def mapping(self, value, path, allowed=None):
        """A mapping, optionally with only `allowed` keys."""
        if not isinstance(value, dict):
            self.fail(path, "a mapping", value)
        if allowed is not None:
            for key in value:
                if key not in allowed:
                    raise ConfigError(f"{self.source}: {path}.{key}: unknown key; "
                                      f"expected one of {', '.join(allowed)}")
        return value

    def text(self, value, path, pattern=None, what="a string"):
        """A non-empty string, optionally matching `pattern`."""
        if not isinstance(value, str) or not value.strip():
            self.fail(path, what, value)
        if pattern is not None and not pattern.fullmatch(value):
            self.fail(path, what, value)
        return value

    def number(self, value, path, low, kind=float):
        """A number (int when kind is int) no smaller than `low`."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) \
            and math.isfinite(value)
        if ok and kind is int:
            ok = isinstance(value, int)
        if not ok or value < low:
            what = "a whole number" if kind is int else "a number"
            self.fail(path, f"{what} >= {low}", value)
        return kind(value)

    def variables(self, value, path):
        """A mapping of variable name -> scalar value."""
        self.mapping(value, path)
        for key, item in value.items():
            if not isinstance(key, str) or not VAR_NAME.fullmatch(key):
                self.fail(f"{path}.{key}", "a variable name (letters, digits, _)", key)
            if not isinstance(item, SCALARS):
                self.fail(f"{path}.{key}", "a string, number or boolean", item)
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
        self.text(value, path, what="a host as [user@]address[:port]")
        try:
            return parse_host(value, host_vars)
        except ValueError as exc:
            raise ConfigError(f"{self.source}: {path}: {exc}") from exc
