"""`fabship init` in a fresh git repository: what it guesses, writes, skips and refuses;
and the gate settings it writes read back by the gates (setup.cfg or pyproject.toml)."""
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fabship.ci.settings import CiConfigError, load_settings
from fabship.deploy.config import parse_services
from fabship.main import main
from tests.helpers import git


def repo(path, files):
    """A git repository at path holding `files` ({relative path: text})."""
    for name, text in files.items():
        (path / name).parent.mkdir(parents=True, exist_ok=True)
        (path / name).write_text(text)
    git(path, "init", "-q")
    return path


def init(path, monkeypatch, capsys, *args):
    """`fabship init ARGS` run in path: (exit code, stdout, stderr)."""
    monkeypatch.chdir(path)
    code = main(["init", *args])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_init_writes_every_file_then_skips_them_then_force_overwrites(tmp_path, monkeypatch,
                                                                      capsys):
    """Guesses from the repo; a second run changes nothing and says so; --force rewrites."""
    root = repo(tmp_path / "My Shop.v2", {
        "src/shop/__init__.py": "", "src/shop/web.py": 'PATH = "/healthz"\n',
        "requirements.txt": "flask\n", "tests/test_web.py": "def test_x():\n    pass\n",
        "setup.cfg": "[metadata]\nname = shop\n"})
    code, out, err = init(root, monkeypatch, capsys)
    assert (code, err) == (0, "")
    assert f"fabship init in {root}: service 'my-shop-v2', source 'src'" in out
    for name in ("fabfile.py", "fabric.yaml", "Jenkinsfile",
                 "templates/my-shop-v2/my-shop-v2.conf.j2"):
        assert f"  wrote    {name}\n" in out
    assert "  updated  setup.cfg (gate settings)\n" in out
    assert "  wrote    .gitignore (reports/, .fabship/)\n" in out
    assert out.rstrip().endswith("fab service deploy                                # "
                                 "(--dry first: the exact plan)")
    assert (root / "fabfile.py").read_text().splitlines()[-1].startswith(
        "from fabship.tasks import *")
    service = parse_services(yaml.safe_load((root / "fabric.yaml").read_text())["services"],
                             "fabric.yaml")["my-shop-v2"]
    assert (service.source, service.requirements) == ("src", "requirements.txt")
    assert (service.health.path, service.health.expect) == ("/healthz", ("status",))
    assert [t.src for t in service.templates] == ["my-shop-v2/my-shop-v2.conf.j2"]
    assert list(service.environments) == ["production"]
    settings = load_settings(root)
    assert (settings.packages, settings.tests, settings.gates) == (
        ("src/shop",), ("tests",), ("unit", "coverage", "lint", "metrics"))
    assert (root / "setup.cfg").read_text().startswith("[metadata]\nname = shop\n")

    (root / "fabric.yaml").write_text("# mine\n")
    code, again, _ = init(root, monkeypatch, capsys)
    assert code == 0 and "wrote" not in again and "updated" not in again
    assert "  skipped  fabric.yaml (exists; --force overwrites it)\n" in again
    assert "  skipped  setup.cfg (gate settings: it has them already)\n" in again
    assert (root / "fabric.yaml").read_text() == "# mine\n"

    code, forced, _ = init(root, monkeypatch, capsys, "--force", "--service", "shop")
    assert code == 0 and "  wrote    fabric.yaml\n" in forced
    assert "services:\n  shop:\n" in (root / "fabric.yaml").read_text()
    text = (root / "setup.cfg").read_text()
    assert text.count("[ci]") == 1 and text.count("[coverage:report]") == 1
    assert text.startswith("[metadata]\nname = shop\n")


def test_a_pyproject_only_project_gets_tool_fabship_ci(tmp_path, monkeypatch, capsys):
    """No setup.cfg: the gates' settings go to pyproject.toml, and the gates read them."""
    root = repo(tmp_path / "tiny", {"app.py": "'''x'''\n",
                                    "pyproject.toml": "[project]\nname = 'tiny'\n"})
    code, out, _ = init(root, monkeypatch, capsys)
    assert code == 0 and "  updated  pyproject.toml (gate settings)\n" in out
    assert "no tests found: the unit and coverage gates are off" in out
    assert not (root / "setup.cfg").exists()
    settings = load_settings(root)
    assert (settings.source, settings.packages, settings.tests, settings.gates) == (
        "pyproject.toml", ("app.py",), (), ("lint", "metrics"))
    assert (settings.min_score, settings.max_duplicate_lines) == (5.0, 20)
    (root / "pyproject.toml").write_text((root / "pyproject.toml").read_text().replace(
        "min_score = 5.0", "min_score = 'high'"))
    with pytest.raises(CiConfigError) as err:
        load_settings(root)
    assert str(err.value) == ("pyproject.toml: [tool.fabship.ci.lint] min_score: expected a "
                              "number from 0 to 10, got 'high'")


@pytest.mark.parametrize("files, args, message", [
    (None, (), "is not inside a git repository: fabship ships commits"),
    ({"a.py": ""}, ("--service", "Bad Name"),
     "--service: expected a-z, 0-9, _ and - (starting with a letter), got 'Bad Name'"),
    ({"a.py": ""}, ("--source", "../elsewhere"), "--source: expected a directory inside"),
    ({"README.md": "x"}, (), "no Python module or package in '.'"),
])
def test_init_refuses_with_one_clear_error_and_writes_nothing(tmp_path, monkeypatch, capsys,
                                                             files, args, message):
    """Exit 2, one line naming the problem, no file written."""
    root = tmp_path / "p"
    root.mkdir()
    if files is not None:
        repo(root, files)
    before = sorted(p.name for p in root.iterdir())
    code, out, err = init(root, monkeypatch, capsys, *args)
    assert code == 2 and message in err and err.startswith("fabship init: error: "), err
    assert "Traceback" not in err and out == ""
    assert sorted(p.name for p in root.iterdir()) == before


def test_the_fabship_command_is_installed():
    """The console script answers (installed by `make setup`'s editable install)."""
    proc = subprocess.run([str(Path(sys.executable).with_name("fabship")), "--version"], capture_output=True, text=True,
                          check=False)
    assert proc.returncode == 0 and proc.stdout.startswith("fabship "), proc.stderr


def test_init_writes_through_no_symbolic_link(tmp_path, monkeypatch, capsys):
    """A linked fabfile.py or templates/ stays as it is, even with --force."""
    outside = tmp_path / "outside"
    outside.mkdir()
    root = repo(tmp_path / "p", {"a.py": ""})
    (root / "fabfile.py").symlink_to(outside / "fabfile.py")
    (root / "templates").symlink_to(outside)
    (root / "setup.cfg").symlink_to(outside / "setup.cfg")
    code, out, _ = init(root, monkeypatch, capsys, "--force")
    assert "  skipped  setup.cfg (a symbolic link: not written through)\n" in out
    assert code == 0
    assert "  skipped  fabfile.py (a symbolic link: not written through)\n" in out
    assert "  skipped  templates/p/p.conf.j2 (a symbolic link: not written through)\n" in out
    assert list(outside.iterdir()) == []


def test_existing_coverage_settings_are_kept_and_the_file_stays_valid(tmp_path, monkeypatch,
                                                                      capsys):
    """A project's own [tool.coverage.report] is kept (not declared twice); --force replaces
    fabship's tables only; a source named like a YAML keyword stays a string."""
    root = repo(tmp_path / "p", {
        "yes/app.py": "", "tests/test_a.py": "def test_a():\n    pass\n",
        "pyproject.toml": "[project]\nname = 'p'\n\n[tool.coverage.report]\nfail_under = 85\n"
                          "show_missing = true\n"})
    code, out, _ = init(root, monkeypatch, capsys, "--source", "yes")
    assert code == 0 and "  kept     pyproject.toml's [tool.coverage.report]" in out, out
    assert load_settings(root).fail_under == 85
    code, _, _ = init(root, monkeypatch, capsys, "--force", "--source", "yes")
    text = (root / "pyproject.toml").read_text()
    assert code == 0 and text.count("[tool.fabship.ci]") == 1 and "show_missing = true" in text
    assert load_settings(root).fail_under == 85
    assert yaml.safe_load((root / "fabric.yaml").read_text())["services"]["p"]["source"] == "yes"


@pytest.mark.parametrize("name, data, message", [
    ("setup.cfg", "[metadata]\nname = caf\xe9\n".encode("latin-1"), "setup.cfg is not UTF-8"),
    ("pyproject.toml", b"[project\n", "pyproject.toml does not parse"),
    ("setup.cfg", b"no section\n", "setup.cfg does not parse"),
    (".gitignore", b"\xff\xfe\n", ".gitignore is not UTF-8"),
])
def test_an_unreadable_project_file_stops_init_before_anything_is_written(
        tmp_path, monkeypatch, capsys, name, data, message):
    """Exit 2 and one line; no file written."""
    root = repo(tmp_path / "p", {"a.py": ""})
    (root / name).write_bytes(data)
    code, _, err = init(root, monkeypatch, capsys)
    assert code == 2 and message in err and "Traceback" not in err, err
    assert not (root / "fabfile.py").exists() and not (root / "fabric.yaml").exists()


@pytest.mark.parametrize("table, message", [
    ('packages = [["app"], "x"]', "[tool.fabship.ci] packages: expected a list of strings"),
    ("packages = ['a']\nreports = {a = 1}", "[tool.fabship.ci] reports: expected a number or"),
    ("packages = ['a']\n[tool.fabship.ci.lint]\nmin_score = [5]",
     "[tool.fabship.ci.lint] min_score: expected a number or a string, got [5]"),
])
def test_pyproject_values_of_the_wrong_type_are_one_clear_error(tmp_path, table, message):
    """Which file, which table, which key."""
    (tmp_path / "pyproject.toml").write_text("[tool.fabship.ci]\n" + table + "\n")
    with pytest.raises(CiConfigError) as err:
        load_settings(tmp_path)
    assert str(err.value).startswith("pyproject.toml: ") and message in str(err.value)


def test_pyproject_lists_keep_their_items_whole(tmp_path):
    """A path with a space stays one path; pytest options stay one option each."""
    (tmp_path / "pyproject.toml").write_text(
        "tool = {fabship = {ci = {packages = ['my app', 'b'], tests = ['t'], "
        "pytest_args = ['-k', \"a and not b\", \"it's\"]}}}\n")
    settings = load_settings(tmp_path)
    assert settings.packages == ("my app", "b")
    assert settings.pytest_args == ("-k", "a and not b", "it's")
    (tmp_path / "pyproject.toml").write_text("tool = 5\n")
    with pytest.raises(CiConfigError, match="no .ci. section in setup.cfg"):
        load_settings(tmp_path)
