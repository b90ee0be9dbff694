"""Fabric's own config, loaded strictly: a bad file or value is one error, exit 2.

`fab` loads its config files (system, user, the project's fabric.yaml, `-f FILE`) and
`FABRIC_*` variables before any task runs, and Invoke raises a traceback on a bad one:
a YAML syntax error, a file that is not UTF-8 or not a mapping, a value that cannot merge
with Fabric's defaults (`run: 3`), a missing `-f` file, a variable that does not fit its
setting. `guard_fab_config`, called as fabfile.py is imported (before Invoke loads the
project's file), turns the running Config into a StrictConfig: each of these becomes one
`fabship: error:` line naming the file and key, and `fab` exits 2.
"""
import inspect
import json
import os
from pathlib import Path

from invoke import Config, Program
from invoke.exceptions import AmbiguousEnvVar, Exit, UncastableEnvVar, UnknownFileType
from invoke.util import yaml

from .errors import ConfigError
from .hosts import name_local_user
from .reader import key_path

# Invoke's config levels, lowest first: (attribute, what an error calls it; None: a file)
LEVELS = (("_defaults", "Fabric's defaults"), ("_collection", "the fabfile"),
          ("_system", None), ("_user", None), ("_project", None),
          ("_env", "the environment"), ("_runtime", None), ("_overrides", "the command line"),
          ("_modifications", "a task"))


class StrictYamlLoader(yaml.SafeLoader):  # pylint: disable=too-many-ancestors
    """YAML's safe loader that refuses a key given twice in one mapping."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int)):
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice in one mapping",
                        key_node.start_mark)
                seen.add(key)
        return super().construct_mapping(node, deep)


def _read_text(path, name):
    """A config file's text; FileNotFoundError passes (Invoke tries the next suffix)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read: {exc.strerror or exc}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{name}: not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                          f"{exc.start})") from None


def _top_level(data, name):
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{name}: expected a mapping of settings at the top level, got "
                          f"a {type(data).__name__}")
    return data


def load_yaml(path, name):
    """A YAML config file -> its mapping; ConfigError naming the file, line and problem."""
    text = _read_text(path, name)
    try:
        data = yaml.load(text, Loader=StrictYamlLoader)  # nosec B506: a safe loader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{name}: {where}{problem} (YAML syntax)") from None
    return _top_level(data, name)


def load_json(path, name):
    """A JSON config file -> its mapping; ConfigError naming the file, line and problem."""
    def pairs(items):
        mapping = dict(items)
        if len(mapping) < len(items):
            twice = next(key for key in mapping if [k for k, _ in items].count(key) > 1)
            raise ConfigError(f"{name}: key {twice!r} given twice in one object")
        return mapping
    try:
        data = json.loads(_read_text(path, name), object_pairs_hook=pairs)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{name}: line {exc.lineno}, column {exc.colno}: {exc.msg} "
                          "(JSON syntax)") from None
    return _top_level(data, name)


def merge_conflict(base, updates, path=()):
    """Merge `updates` into `base` as Invoke's merge_dicts does, without raising.

    Returns (keys, old value, new value) where one is a mapping and the other is not
    (Invoke's AmbiguousMergeError), else None. `base` is scratch: it is changed.
    """
    for key, value in (updates or {}).items():
        here = (*path, key)
        if key in base and isinstance(base[key], dict) != isinstance(value, dict):
            return here, base[key], value
        if isinstance(value, dict):
            found = merge_conflict(base.setdefault(key, {}), value, here)
            if found:
                return found
        else:
            base[key] = value
    return None


def short(value):
    """A value as an error shows it: its repr, cut at 60 characters."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class StrictConfig(Config):
    """Mixed into the running Fabric Config: bad files and values -> ConfigError -> exit 2."""

    def _file_name(self, path):
        """The project's fabric.yaml by its name (as config_source); other files by path."""
        prefix, path = getattr(self, "_project_prefix", None), Path(path)
        ours = prefix and path.parent == Path(prefix) and path.stem == (self.file_prefix
                                                                         or self.prefix)
        return path.name if ours else str(path)

    def _level_name(self, attribute, label):
        return label or self._file_name(getattr(self, f"{attribute}_path"))

    def _levels(self):
        """(name, data) of every level that holds data, lowest first."""
        for attribute, label in LEVELS:
            if label is None and not getattr(self, f"{attribute}_found", None):
                continue
            yield self._level_name(attribute, label), getattr(self, attribute, None) or {}

    def _load_yaml(self, path):
        return _strictly(load_yaml, path, self._file_name(path))

    _load_yml = _load_yaml

    def _load_json(self, path):
        return _strictly(load_json, path, self._file_name(path))

    def _load_py(self, path):
        try:
            return super()._load_py(path)
        except Exception as exc:  # pylint: disable=broad-except
            # the file is Python code: whatever it raises, the file is at fault
            raise _exit(ConfigError(f"{self._file_name(path)}: cannot load: "
                                    f"{type(exc).__name__}: {exc}")) from None

    def _load_file(self, prefix, absolute=False, merge=True):
        try:
            super()._load_file(prefix, absolute, merge)
        except UnknownFileType:
            path = getattr(self, f"_{prefix}_path", None)
            raise _exit(ConfigError(f"{path}: not a config file: expected .yaml, .yml, "
                                    ".json or .py")) from None
        if prefix == "runtime" and self._runtime_path and not self._runtime_found:
            raise _exit(ConfigError(f"{self._runtime_path}: no such config file (-f)"))

    def origin(self, *keys, levels=None):
        """The level that gives the setting at `keys` its value (the highest holding it)."""
        def value(data):
            for key in keys:
                data = data.get(key) if isinstance(data, dict) else None
            return data
        levels = list(self._levels() if levels is None else levels)
        return next((name for name, data in reversed(levels) if value(data) is not None),
                    "Fabric's defaults")

    def merge(self):
        """Invoke's merge; a mapping that meets a single value names the file and key."""
        try:
            super().merge()
        except (ValueError, AttributeError, TypeError) as exc:
            raise _exit(self.merge_error() or ConfigError(
                f"cannot merge the config files: {exc}")) from None

    def merge_error(self):
        """The ConfigError naming the level and key where the merge fails, or None."""
        base, seen = {}, []
        for name, data in self._levels():
            found = merge_conflict(base, data)
            if found:
                keys, old, new = found
                kind = "a mapping" if isinstance(old, dict) else "a single value, not a mapping"
                where = str(keys[0])
                for key in keys[1:]:
                    where = key_path(where, key)
                return ConfigError(f"{name}: {where}: expected {kind} (as in "
                                   f"{self.origin(*keys, levels=seen)}), got {short(new)}")
            seen.append((name, data))
        return None

    def load_shell_env(self):
        """FABRIC_* variables; one that does not fit its setting names itself."""
        try:
            super().load_shell_env()
        except (AmbiguousEnvVar, UncastableEnvVar, ValueError, TypeError) as exc:
            raise _exit(env_error(self._config, self._env_prefix, os.environ)
                        or self.env_clash() or ConfigError(
                            f"the environment's {self._env_prefix}* variables: {exc}")) from None

    def env_clash(self):
        """Two settings whose FABRIC_* variable names are the same (`run.echo`, `run_echo`)."""
        names = {}
        for keys in _leaves(self._config):
            name = "_".join(str(key) for key in keys).upper()
            if name in names:
                return ConfigError(f"{self.origin(*keys)}: {'.'.join(map(str, keys))}: clashes "
                                   f"with {'.'.join(map(str, names[name]))} (both would be "
                                   f"set by {self._env_prefix}{name}); rename it")
            names[name] = keys
        return None


def _leaves(config, path=()):
    for key, value in config.items():
        if isinstance(value, dict):
            yield from _leaves(value, (*path, key))
        else:
            yield (*path, key)


def env_error(config, prefix, environ, path=()):
    """ConfigError for the first PREFIX_KEY variable Invoke cannot cast, or None."""
    for key, value in config.items():
        here = (*path, str(key))
        if isinstance(value, dict):
            found = env_error(value, prefix, environ, here)
            if found:
                return found
            continue
        name, dotted = prefix + "_".join(here).upper(), ".".join(here)
        if name not in environ or value is None or isinstance(value, (bool, str)):
            continue
        if isinstance(value, (list, tuple)):
            return ConfigError(f"environment variable {name}: the setting {dotted} is a list, "
                               "which a variable cannot set")
        try:
            type(value)(environ[name])
        except (TypeError, ValueError):
            kind = {int: "a whole number", float: "a number"}.get(type(value),
                                                                  type(value).__name__)
            return ConfigError(f"environment variable {name}={environ[name]!r}: expected "
                               f"{kind} for the setting {dotted}")
    return None


def _exit(error):
    return Exit(f"fabship: error: {error}", code=error.exit_code)


def _strictly(load, path, name):
    try:
        return load(path, name)
    except ConfigError as exc:
        raise _exit(exc) from None


def guard_fab_config():
    """Make the running `fab` load its config strictly (see the module docstring).

    Called when `fab` imports fabfile.py: Invoke loads the project's fabric.yaml right
    after, the `-f` file and FABRIC_* variables later. Returns the Config, or None when
    the fabfile was imported outside `fab`. A uid without passwd entry gets a name first
    (hosts.name_local_user), or no connection could be made.
    """
    name_local_user()
    frame = inspect.currentframe()
    try:
        while frame is not None:
            program = frame.f_locals.get("self")
            if isinstance(program, Program) and getattr(program, "config", None) is not None:
                return make_strict(program.config)
            frame = frame.f_back
        return None
    finally:
        del frame


def make_strict(config):
    """Turn a (Fabric or Invoke) Config into a StrictConfig of its own class, in place."""
    if not isinstance(config, StrictConfig):
        config.__class__ = type(f"Strict{type(config).__name__}",
                                (StrictConfig, type(config)), {})
    return config
