"""setup.cfg -> CiSettings, and the errors a user sees for bad values."""
from pathlib import Path

import pytest

from fabship.ci.settings import CiConfigError, load_settings, parse_gate_names

GOOD = """
[ci]
packages = pkg, tool.py
tests = tests
reports = out

[ci:lint]
min_score = 9.5

[ci:metrics]
max_duplicate_lines = 12

[coverage:report]
fail_under = 85
"""


def project(tmp_path, text):
    (tmp_path / "setup.cfg").write_text(text)
    return tmp_path


def test_reads_every_key(tmp_path):
    settings = load_settings(project(tmp_path, GOOD))
    assert settings.packages == ("pkg", "tool.py")
    assert settings.tests == ("tests",)
    assert settings.reports == Path("out")
    assert settings.reports_dir == tmp_path.resolve() / "out"
    assert settings.gates == ("unit", "coverage", "lint", "metrics")
    assert (settings.fail_under, settings.min_score, settings.max_duplicate_lines) == (85, 9.5, 12)


def test_defaults_are_strict(tmp_path):
    settings = load_settings(project(tmp_path, "[ci]\npackages = p\ntests = t\n"))
    assert settings.reports == Path("reports")
    assert settings.min_score == 10.0
    assert settings.fail_under == 0.0
    assert settings.max_duplicate_lines is None
    assert settings.pytest_args == ()


def test_pytest_args_split_as_a_shell_would(tmp_path):
    settings = load_settings(project(tmp_path, "[ci]\npackages = p\ntests = t\n"
                                     "pytest_args = -n 2 -k 'not slow and not $HOME'\n"))
    assert settings.pytest_args == ("-n", "2", "-k", "not slow and not $HOME")


@pytest.mark.parametrize("extra, message", [
    ("[ci:lint]\nmin_score = high\n",
     "[ci:lint] min_score: expected a number from 0 to 10, got 'high'"),
    ("[ci:lint]\nmin_score = 11\n", "[ci:lint] min_score: expected a number from 0 to 10"),
    ("[coverage:report]\nfail_under = -1\n",
     "[coverage:report] fail_under: expected a number from 0 to 100, got '-1'"),
    ("[ci:metrics]\nmax_duplicate_lines = 1.5\n",
     "[ci:metrics] max_duplicate_lines: expected a whole number from 0 up, got '1.5'"),
    ("[ci:lint]\nminscore = 9\n", "[ci:lint] unknown key 'minscore'; expected min_score"),
])
def test_bad_threshold_names_file_and_key(tmp_path, extra, message):
    with pytest.raises(CiConfigError) as err:
        load_settings(project(tmp_path, "[ci]\npackages = p\ntests = t\n" + extra))
    assert message in str(err.value)
    assert str(err.value).startswith("setup.cfg: ")


@pytest.mark.parametrize("text, message", [
    ("[metadata]\nname = x\n", "no [ci] section"),
    ("[ci]\ntests = t\n", "[ci] packages: expected a list of paths"),
    ("[ci]\npackages = p\ntests = t\ncolour = red\n", "[ci] unknown key 'colour'"),
    ("[ci]\npackages = p\ntests = t\ngates = unit, speed\n", "unknown gate 'speed'"),
    ("not ini", "not a valid INI file"),
    ("[ci]\npackages = p\ntests = t\npytest_args = -k 'open\n",
     "[ci] pytest_args: expected pytest options as a shell would split them (No closing "
     "quotation), got \"-k 'open\""),
])
def test_bad_ci_section(tmp_path, text, message):
    with pytest.raises(CiConfigError, match=None) as err:
        load_settings(project(tmp_path, text))
    assert message in str(err.value)


def test_missing_setup_cfg(tmp_path):
    with pytest.raises(CiConfigError, match="setup.cfg: cannot read"):
        load_settings(tmp_path)


def test_gate_names_keep_canonical_order():
    assert parse_gate_names("lint,unit", "--only") == ("unit", "lint")
    with pytest.raises(CiConfigError, match="--only: no gate named"):
        parse_gate_names(" , ", "--only")
