"""`fabship init`: the files a project needs to gate and ship itself, guessed from its
repository and written only where nothing exists yet (`--force` overwrites).

Guesses (each one a line of fabric.yaml or the gate config to correct):
- the service name: the repository directory's name, made a valid service name;
- the source: `src/` when there is one, else the repository itself (`.`);
- the health path: `/healthz` or `/health` when the source mentions one;
- the requirements: `requirements.txt` when there is one;
- the gates: unit and coverage only when the repository holds tests.
"""
import configparser
import json
import re
import subprocess
import tomllib
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

NAME = re.compile(r"[a-z][a-z0-9_-]*")
SKIP_DIRS = {".git", ".venv", "venv", "env", "node_modules", "reports", "templates",
             "__pycache__", ".tox", ".pytest_cache", "build", "dist"}
HEALTH_PATHS = ("/healthz", "/health")


class InitError(Exception):
    """A reason `fabship init` cannot go on (exit 2)."""


@dataclass(frozen=True)
class Guess:
    """What init found out about the project."""

    root: Path
    service: str
    source: str
    health_path: str
    requirements: str | None
    packages: tuple[str, ...]
    tests: tuple[str, ...]


def repository_root(start):
    """The top of the git checkout holding `start`; InitError outside one."""
    try:
        proc = subprocess.run(["git", "rev-parse", "--show-toplevel"], cwd=start,
                              capture_output=True, text=True, check=False)
    except OSError as exc:
        raise InitError(f"cannot run git: {exc.strerror}") from exc
    if proc.returncode:
        raise InitError(f"{start} is not inside a git repository: fabship ships commits "
                        "(git init, add, commit first)")
    return Path(proc.stdout.strip())


def service_name(text):
    """`text` made a service name (a-z, 0-9, _ and -, starting with a letter)."""
    name = re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")
    name = re.sub(r"^[^a-z]+", "", name)
    return name or "app"


def _files(top, pattern):
    """Files under `top` matching `pattern`, outside the directories never shipped."""
    for path in sorted(top.rglob(pattern)):
        if path.is_file() and not SKIP_DIRS & set(path.relative_to(top).parts[:-1]):
            yield path


def _health_path(source_dir):
    """The health path the code mentions first (as a quoted string), else /health."""
    texts = []
    for path in _files(source_dir, "*.py"):
        try:
            texts.append(path.read_text(encoding="utf-8", errors="replace"))
        except OSError:
            continue
    for candidate in HEALTH_PATHS:
        if any(f'"{candidate}"' in text or f"'{candidate}'" in text for text in texts):
            return candidate
    return "/health"


PLAIN = re.compile(r"[A-Za-z0-9._/-]+")  # names both setup.cfg and TOML hold as they are


def _packages(root, source_dir):
    """What pylint lints: the modules and packages directly in the source directory."""
    found = []
    for path in sorted(source_dir.iterdir()):
        if path.name in SKIP_DIRS or path.name.startswith(".") or path.name == "tests" \
                or not PLAIN.fullmatch(path.name):
            continue
        if path.is_file() and path.suffix == ".py" and path.name != "fabfile.py" \
                and not path.name.startswith("test_"):
            found.append(path.relative_to(root).as_posix())
        elif path.is_dir() and (path / "__init__.py").exists():
            found.append(path.relative_to(root).as_posix())
    return tuple(found)


def _tests(root):
    """The test paths pytest runs: tests/ when there is one, else the files found."""
    if (root / "tests").is_dir() and any(_files(root / "tests", "test*.py")):
        return ("tests",)
    found = [*_files(root, "test_*.py"), *_files(root, "*_test.py")]
    return tuple(sorted({path.relative_to(root).as_posix() for path in found
                         if PLAIN.fullmatch(path.relative_to(root).as_posix())}))


def guess(root, service=None, source=None):
    """The Guess for the repository at `root` (`service`/`source` as given, when given)."""
    if service is not None and not NAME.fullmatch(service):
        raise InitError(f"--service: expected a-z, 0-9, _ and - (starting with a letter), "
                        f"got {service!r}")
    if source is None:
        source = "src" if (root / "src").is_dir() else "."
    source_dir = (root / source).resolve()
    if not source_dir.is_dir() or not source_dir.is_relative_to(root.resolve()):
        raise InitError(f"--source: expected a directory inside {root}, got {source!r}")
    source = source_dir.relative_to(root.resolve()).as_posix() or "."
    packages = _packages(root.resolve(), source_dir)
    if not packages:
        raise InitError(f"no Python module or package in {source!r}: name the directory "
                        "holding your code with --source DIR")
    requirements = "requirements.txt" if (root / "requirements.txt").is_file() else None
    return Guess(root, service or service_name(root.name), source, _health_path(source_dir),
                 requirements, packages, _tests(root))


def _skeleton(name):
    return resources.files("fabship").joinpath("skeleton", name).read_text(encoding="utf-8")


def _fill(text, found):
    module = re.sub(r"[^A-Za-z0-9_]", "_", found.packages[0].rsplit("/", 1)[-1]
                    .removesuffix(".py"))
    requirements = f"    requirements: {json.dumps(found.requirements)}\n" \
        if found.requirements else ""
    pip = f" -r {found.requirements}" if found.requirements else ""
    for key, value in (("SERVICE", found.service), ("SOURCE", json.dumps(found.source)),
                       ("HEALTH_PATH", found.health_path), ("MODULE", module),
                       ("REQUIREMENTS", requirements), ("PIP_REQUIREMENTS", pip)):
        text = text.replace(f"@@{key}@@", value)
    return text


# A first run of the gates passes on code nobody tuned for them; each line says to raise
# its threshold (fabship's own repository gates at 9.5, 0 and 90).
LINT = "# the pylint score (0-10): raise it as the code improves\nmin_score = 5.0"
DUPLICATES = "# lower it as duplication goes\nmax_duplicate_lines = 20"
COVERAGE = "# coverage %: recorded; raise it once tests cover the code\nfail_under = 0"


def _toml_list(items):
    return "[" + ", ".join(json.dumps(item) for item in items) + "]"


def gate_settings(found, style, coverage=True):
    """The gate configuration text: setup.cfg sections, or pyproject.toml tables (with a
    coverage threshold when the gates run tests and `coverage`: none is set yet)."""
    gates = ("unit", "coverage", "lint", "metrics") if found.tests else ("lint", "metrics")
    if style == "pyproject":
        words = _toml_list
        text = ("\n[tool.fabship.ci]  # fabship-ci's gates (fabship init)\n"
                f"packages = {words(found.packages)}\n"
                + (f"tests = {words(found.tests)}\n" if found.tests else "")
                + f"gates = {words(gates)}\n\n[tool.fabship.ci.lint]\n{LINT}\n\n"
                f"[tool.fabship.ci.metrics]\n{DUPLICATES}\n")
        if found.tests and coverage:
            text += f"\n[tool.coverage.report]\n{COVERAGE}\n"
        return text
    text = ("\n# fabship-ci's gates (fabship init)\n[ci]\npackages =\n"
            + "".join(f"    {item}\n" for item in found.packages)
            + ("tests =\n" + "".join(f"    {item}\n" for item in found.tests)
               if found.tests else "")
            + f"gates = {', '.join(gates)}\n\n[ci:lint]\n{LINT}\n\n"
            f"[ci:metrics]\n{DUPLICATES}\n")
    if found.tests and coverage:
        text += f"\n[coverage:report]\n{COVERAGE}\n"
    return text


def _existing(path):
    """The text of setup.cfg or pyproject.toml ("" when missing); InitError when it is not
    UTF-8 or does not parse: init adds to it only what keeps it valid."""
    if not path.is_file():
        return ""
    try:
        text = path.read_text(encoding="utf-8")
        if path.suffix == ".toml":
            tomllib.loads(text)
        else:
            configparser.ConfigParser(interpolation=None).read_string(text, str(path))
    except UnicodeDecodeError:
        raise InitError(f"{path.name} is not UTF-8 text; nothing was written") from None
    except (tomllib.TOMLDecodeError, configparser.Error) as exc:
        raise InitError(f"{path.name} does not parse ({exc}); fix it first, nothing was "
                        "written") from None
    return text


def _has_gate_config(root):
    """Where the project keeps gate settings already: 'setup.cfg', 'pyproject.toml', None."""
    if re.search(r"^\[ci\]", _existing(root / "setup.cfg"), re.M):
        return "setup.cfg"
    if re.search(r"^\[tool\.fabship\.ci\]", _existing(root / "pyproject.toml"), re.M):
        return "pyproject.toml"
    return None


def _without_gate_sections(text, headers):
    """`text` without the sections whose header line starts with one of `headers` (and
    the comment line init wrote above them)."""
    kept, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith("["):
            skipping = line.startswith(headers)
        if line.startswith("# fabship-ci's gates (fabship init)"):
            continue
        if not skipping:
            kept.append(line)
    return "".join(kept).rstrip("\n") + "\n" if kept else ""


def _write_gates(found, force, report):
    """Append the gate settings to setup.cfg, or to pyproject.toml when the project has
    only that; an existing gate config is kept unless `force`."""
    root = found.root
    existing = _has_gate_config(root)
    style = "pyproject" if (root / "pyproject.toml").is_file() and not \
        (root / "setup.cfg").is_file() else "setup"
    target = root / ("pyproject.toml" if style == "pyproject" else "setup.cfg")
    if existing and not force:
        report("skipped", f"{existing} (gate settings: it has them already)")
        return
    if target.is_symlink():
        report("skipped", f"{target.name} (a symbolic link: not written through)")
        return
    old = _existing(target)
    if existing:  # --force: fabship's sections replaced; coverage.py's own ones are kept
        old = _without_gate_sections(old, ("[tool.fabship.ci",) if style == "pyproject"
                                     else ("[ci]", "[ci:"))
    coverage = "[tool.coverage.report]" if style == "pyproject" else "[coverage:report]"
    has_coverage = any(line.strip() == coverage for line in old.splitlines())
    if has_coverage and found.tests:
        report("kept", f"{target.name}'s {coverage} (coverage threshold)")
    target.write_text(old + gate_settings(found, style, not has_coverage), encoding="utf-8")
    report("wrote" if not old else "updated", f"{target.name} (gate settings)")


IGNORED = ("reports/", ".fabship/")  # gate reports, the controller's wheel cache


def _ignore(root, report):
    """Add what fabship writes in the project to .gitignore: a gate record is tied to a
    clean commit, so its own reports must not make the tree dirty."""
    path = root / ".gitignore"
    if path.is_symlink():
        report("skipped", ".gitignore (a symbolic link: not written through)")
        return
    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    missing = [line for line in IGNORED if line not in text.splitlines()]
    if not missing:
        return
    path.write_text(text + ("" if not text or text.endswith("\n") else "\n")
                    + "".join(f"{line}\n" for line in missing), encoding="utf-8")
    report("updated" if text else "wrote", f".gitignore ({', '.join(missing)})")


def init(start, service=None, source=None, force=False, out=print):
    """Scaffold the project holding `start`; returns the Guess."""
    found = guess(repository_root(start), service, source)
    root = found.root
    for name in ("setup.cfg", "pyproject.toml", ".gitignore"):  # before anything is written
        if name != ".gitignore":
            _existing(root / name)
        elif (root / name).is_file():
            try:
                (root / name).read_text(encoding="utf-8")
            except UnicodeDecodeError:
                raise InitError(".gitignore is not UTF-8 text; nothing was written") from None

    def report(what, name):
        out(f"  {what:<8s} {name}")
    out(f"fabship init in {root}: service {found.service!r}, source {found.source!r}")
    files = {"fabfile.py": "fabfile.py.tmpl", "fabric.yaml": "fabric.yaml.tmpl",
             "Jenkinsfile": "Jenkinsfile.tmpl",
             f"templates/{found.service}/{found.service}.conf.j2":
                 "templates/service.conf.j2.tmpl"}
    for name, skeleton in files.items():
        path = root / name
        if any(part.is_symlink() for part in (path, *path.parents) if part != root and
               root in part.parents):
            report("skipped", f"{name} (a symbolic link: not written through)")
            continue
        if path.exists() and not force:
            report("skipped", f"{name} (exists; --force overwrites it)")
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_fill(_skeleton(skeleton), found), encoding="utf-8")
        report("wrote", name)
    _write_gates(found, force, report)
    _ignore(root, report)
    if not found.tests:
        out("  no tests found: the unit and coverage gates are off until you add tests "
            "(then list them in the gate settings)")
    out("\nNext: set the hosts and the `run` command in fabric.yaml, then\n"
        "  git add -A && git commit -m 'Ship with fabship'   # fabship ships commits only\n"
        "  fabship-ci                                        # the gates, on that commit\n"
        "  fab service deploy                                # (--dry first: the exact plan)")
    return found
