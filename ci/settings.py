"""Read the gate settings from a project's setup.cfg into a frozen object."""
import configparser
import shlex
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

    @property
    def reports_dir(self):
        """The reports directory as an absolute path."""
        return self.root / self.reports


def _words(value):
    return tuple(word for word in value.replace(",", " ").split() if word)


def _number(cfg, where, key, limits, default=None):
    """Parse `[where] key` as a number within limits = (low, high, float or int)."""
    if not cfg.has_option(where, key):
        return default
    low, high, kind = limits
    raw = cfg.get(where, key).strip()
    try:
        value = kind(raw)
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        what = "a whole number" if kind is int else "a number"
        limit = f" from {low}" + (f" to {high}" if high != float("inf") else " up")
        raise CiConfigError(f"setup.cfg: [{where}] {key}: expected {what}{limit}, got {raw!r}")
    return value


def _arguments(cfg):
    """`[ci] pytest_args`, split as a shell would (quotes allowed, nothing expanded)."""
    raw = cfg.get("ci", "pytest_args", fallback="")
    try:
        return tuple(shlex.split(raw))
    except ValueError as exc:
        raise CiConfigError(f"setup.cfg: [ci] pytest_args: expected pytest options as a "
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


def load_settings(root):
    """Read `<root>/setup.cfg`; raise CiConfigError on anything wrong."""
    root = Path(root).resolve()
    path = root / "setup.cfg"
    cfg = configparser.ConfigParser(interpolation=None)
    try:
        with open(path, encoding="utf-8") as handle:
            cfg.read_file(handle)
    except OSError as exc:
        raise CiConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    except configparser.Error as exc:
        raise CiConfigError(f"{path}: not a valid INI file: {exc.message}") from exc
    if not cfg.has_section("ci"):
        raise CiConfigError(f"{path}: no [ci] section; it names the project's packages and tests")
    for key in ("packages", "tests"):
        if not _words(cfg.get("ci", key, fallback="")):
            raise CiConfigError(f"setup.cfg: [ci] {key}: expected a list of paths, got nothing")
    for section, allowed in KNOWN_KEYS.items():
        unknown = sorted(set(cfg[section]) - set(allowed)) if cfg.has_section(section) else []
        if unknown:
            raise CiConfigError(f"setup.cfg: [{section}] unknown key {unknown[0]!r}; "
                                f"expected {', '.join(allowed)}")
    gates = parse_gate_names(cfg.get("ci", "gates", fallback=",".join(GATE_NAMES)),
                             "setup.cfg: [ci] gates")
    return CiSettings(
        root=root,
        packages=_words(cfg.get("ci", "packages")),
        tests=_words(cfg.get("ci", "tests")),
        reports=Path(cfg.get("ci", "reports", fallback="reports").strip() or "reports"),
        gates=gates,
        fail_under=_number(cfg, "coverage:report", "fail_under", (0, 100, float), 0.0),
        min_score=_number(cfg, "ci:lint", "min_score", (0, 10, float), 10.0),
        max_duplicate_lines=_number(cfg, "ci:metrics", "max_duplicate_lines",
                                    (0, float("inf"), int)),
        pytest_args=_arguments(cfg),
    )
