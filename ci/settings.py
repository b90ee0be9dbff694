"""Read the gate settings from a project's setup.cfg (or pyproject.toml) into a frozen
object."""
import configparser
import shlex
import tomllib
from dataclasses import dataclass
from pathlib import Path

GATE_NAMES = ("unit", "coverage", "lint", "metrics")
KNOWN_KEYS = {
    "ci": ("packages", "tests", "reports", "gates", "pytest_args"),
    "ci:lint": ("min_score",),
    "ci:metrics": ("max_duplicate_lines",),
}


class CiConfigError(Exception):
    """setup.cfg is missing or holds a bad value; the message names file and key."""


@dataclass(frozen=True)
class CiSettings:  # pylint: disable=too-many-instance-attributes
    """Everything the gates need to know about one project."""

    root: Path
    packages: tuple[str, ...]
    tests: tuple[str, ...]
    reports: Path  # relative to root unless given absolute
    gates: tuple[str, ...]
    fail_under: float
    min_score: float
    max_duplicate_lines: int | None
    pytest_args: tuple[str, ...] = ()  # more pytest options (e.g. xdist's -n 2)
    source: str = "setup.cfg"  # or pyproject.toml: where the settings were read

    def name(self, key):
        """How the settings' file names `[ci] key`, for an error."""
        return Table(self.source, {}).name("ci", key)

    @property
    def reports_dir(self):
        """The reports directory as an absolute path."""
        return self.root / self.reports


def _words(value):
    """A list of words: a tuple as it is (pyproject), text split at commas and spaces."""
    if isinstance(value, tuple):
        return value
    return tuple(word for word in value.replace(",", " ").split() if word)


def _number(table, where, key, limits, default=None):
    """`key` of section `where` as a number within limits = (low, high, float or int)."""
    raw = table.get(where, {}).get(key)
    if raw is None:
        return default
    low, high, kind = limits
    raw = raw.strip()
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        limit = f" from {low}" + (f" to {high}" if high != float("inf") else " up")
        raise CiConfigError(f"{table.name(where, key)}: expected {what}{limit}, got {raw!r}")
    return value


def _arguments(table):
    """`pytest_args`, split as a shell would (quotes allowed, nothing expanded)."""
    raw = table["ci"].get("pytest_args", "")
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise CiConfigError(f"{table.name('ci', 'pytest_args')}: expected pytest options as a "
                            f"shell would split them ({exc}), got {raw.strip()!r}") from None


def parse_gate_names(text, source):
    """Split a comma list of gate names and reject unknown ones."""
    names = _words(text)
    unknown = [name for name in names if name not in GATE_NAMES]
    if unknown:
        raise CiConfigError(f"{source}: unknown gate {unknown[0]!r}; "
                            f"known gates: {', '.join(GATE_NAMES)}")
    if not names:
        raise CiConfigError(f"{source}: no gate named; known gates: {', '.join(GATE_NAMES)}")
    return tuple(name for name in GATE_NAMES if name in names)


class Table(dict):
    """{section: {key: text}} in setup.cfg's terms, and how its file names a key."""

    def __init__(self, source, sections):
        super().__init__(sections)
        self.source = source

    def name(self, section, key=None):
        """`setup.cfg: [ci:lint] min_score`, or `pyproject.toml: [tool.fabship.ci.lint]
        min_score` when the settings came from there."""
        if self.source == "pyproject.toml":
            section = PYPROJECT_NAMES[section]
        return f"{self.source}: [{section}]" + (f" {key}" if key else "")


# setup.cfg's sections and where pyproject.toml keeps the same keys
PYPROJECT_NAMES = {"ci": "tool.fabship.ci", "ci:lint": "tool.fabship.ci.lint",
                   "ci:metrics": "tool.fabship.ci.metrics",
                   "coverage:report": "tool.coverage.report"}


def _setup_cfg(root):
    """setup.cfg's sections, or None when there is no setup.cfg or it has no [ci]."""
    path = root / "setup.cfg"
    if not path.exists() and (root / "pyproject.toml").exists():
        return None
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            cfg.read_file(handle)
    except OSError as exc:
        raise CiConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except configparser.Error as exc:
        raise CiConfigError(f"{path}: not a valid INI file: {exc.message}") from exc
    if not cfg.has_section("ci"):
        return None
    return Table("setup.cfg", {name: dict(cfg[name]) for name in cfg.sections()})


LISTS = ("packages", "tests", "gates", "pytest_args")


def _value(section, key, value):
    """A pyproject value as the settings read it: a list of strings as a tuple (pytest
    options as one shell-quoted line), a number or a string as text."""
    where = f"pyproject.toml: [{PYPROJECT_NAMES[section]}] {key}"
    if key in LISTS:
        if isinstance(value, str):
            return value
        if isinstance(value, list) and all(isinstance(item, str) for item in value):
            return shlex.join(value) if key == "pytest_args" else tuple(value)
        raise CiConfigError(f"{where}: expected a list of strings, got {value!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise CiConfigError(f"{where}: expected a number or a string, got {value!r}")
    return str(value)


def _pyproject(root):
    """[tool.fabship.ci] (and .lint, .metrics, [tool.coverage.report]), or None."""
    path = root / "pyproject.toml"
    try:
        with open(path, "rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise CiConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise CiConfigError(f"{path}: not valid TOML: {exc}") from exc
    tool = data.get("tool", {})
    tool = tool if isinstance(tool, dict) else {}
    ci = tool.get("fabship", {}).get("ci") if isinstance(tool.get("fabship"), dict) else None
    if not isinstance(ci, dict):
        return None
    found = {"ci": ci, "ci:lint": ci.get("lint", {}), "ci:metrics": ci.get("metrics", {}),
             "coverage:report": tool.get("coverage", {}).get("report", {})
             if isinstance(tool.get("coverage"), dict) else {}}
    sections = {}
    for name, table in found.items():
        if not isinstance(table, dict):
            raise CiConfigError(f"pyproject.toml: [{PYPROJECT_NAMES[name]}]: expected a table")
        if name == "coverage:report":  # coverage.py's own keys: only fail_under is ours
            table = {key: value for key, value in table.items() if key == "fail_under"}
        sections[name] = {key: _value(name, key, value) for key, value in table.items()
                          if not (name == "ci" and key in ("lint", "metrics"))}
    return Table("pyproject.toml", sections)


def load_settings(root):
    """The gate settings of the project at `root`: setup.cfg's [ci] sections, or, when
    it has none, pyproject.toml's [tool.fabship.ci] tables; CiConfigError otherwise."""
    root = Path(root).resolve()
    table = _setup_cfg(root) or _pyproject(root)
    if table is None:
        raise CiConfigError(f"{root}: no [ci] section in setup.cfg and no [tool.fabship.ci] "
                            "in pyproject.toml; they name the project's packages and tests "
                            "(`fabship init` writes them)")
    ci = table["ci"]
    gates = parse_gate_names(ci.get("gates", ",".join(GATE_NAMES)), table.name("ci", "gates"))
    needed = ("packages", "tests") if {"unit", "coverage"} & set(gates) else ("packages",)
    for key in needed:
        if not _words(ci.get(key, "")):
            raise CiConfigError(f"{table.name('ci', key)}: expected a list of paths, got nothing")
    for section, allowed in KNOWN_KEYS.items():
        unknown = sorted(set(table.get(section, {})) - set(allowed))
        if unknown:
            raise CiConfigError(f"{table.name(section)} unknown key {unknown[0]!r}; "
                                f"expected {', '.join(allowed)}")
    return CiSettings(
        root=root,
        packages=_words(ci["packages"]),
        tests=_words(ci.get("tests", "")),
        reports=Path(ci.get("reports", "reports").strip() or "reports"),
        gates=gates,
        fail_under=_number(table, "coverage:report", "fail_under", (0, 100, float), 0.0),
        min_score=_number(table, "ci:lint", "min_score", (0, 10, float), 10.0),
        max_duplicate_lines=_number(table, "ci:metrics", "max_duplicate_lines",
                                    (0, float("inf"), int)),
        pytest_args=_arguments(table),
        source=table.source,
    )
