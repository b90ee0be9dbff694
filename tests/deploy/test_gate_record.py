"""The gate record a deploy reads (reports/gates.json), in real git checkouts, and secrets."""
import json

import pytest

from fabship.deploy.errors import ConfigError, DeployError
from fabship.deploy.gaterecord import check_gates, head_commit, summary
from fabship.deploy.secrets import MASK, Secret, holds_secret, mask, read_secrets
from tests.helpers import git

HINT = ("run the gates (`fabship-ci`) on this commit, or ship anyway with `--skip-gates` "
        "(recorded in release.json and the history)")


@pytest.fixture(name="checkout")
def fixture_checkout(tmp_path):
    """A committed project; returns (root, commit)."""
    git(tmp_path, "init", "-q")
    (tmp_path / "app.py").write_text("x = 1\n")
    git(tmp_path, "add", "app.py")
    git(tmp_path, "commit", "-qm", "one")
    return tmp_path, git(tmp_path, "rev-parse", "HEAD")


def write_record(root, **record):
    """reports/gates.json with these keys."""
    (root / "reports").mkdir(exist_ok=True)
    (root / "reports" / "gates.json").write_text(json.dumps(record))
    return root / "reports" / "gates.json"


def refusal(root, error=DeployError):
    """The message check_gates raises for root: DeployError, or ConfigError (exit 2) when
    the record is corrupt."""
    with pytest.raises(error) as err:
        check_gates(root, skip=False)
    assert type(err.value) is error  # pylint: disable=unidiomatic-typecheck
    return str(err.value)


def test_head_commit_outside_git_and_in_a_checkout(checkout, tmp_path_factory):
    """(None, None) outside git; the commit, clean or dirty, inside."""
    root, commit = checkout
    assert head_commit(tmp_path_factory.mktemp("plain")) == (None, None)
    assert head_commit(root) == (commit, False)
    (root / "app.py").write_text("x = 2\n")
    assert head_commit(root) == (commit, True)
    git(root, "checkout", "-q", "app.py")
    (root / "new.py").write_text("")
    assert head_commit(root) == (commit, True)  # an untracked file ships too


def test_what_the_gates_write_does_not_make_the_tree_dirty(checkout):
    """reports/, .coverage*, .fabship/ and .pins/ are outputs, not changes to the code.

    A launch or an accept-new deploy pins host keys in .pins/ until they are committed;
    that must not stop the next deploy.
    """
    root, commit = checkout
    write_record(root, commit=commit)
    (root / ".coverage").write_text("")
    (root / ".coverage.host.1").write_text("")
    (root / ".fabship").mkdir()
    (root / ".fabship" / "wheel.whl").write_text("")
    (root / ".pins").mkdir()
    (root / ".pins" / "known_hosts").write_text("")
    assert head_commit(root) == (commit, False)
    git(root, "add", ".pins/known_hosts")
    git(root, "commit", "-qm", "pins")
    (root / ".pins" / "known_hosts").write_text("[10.0.0.5]:22 ssh-ed25519 AAAA\n")
    assert head_commit(root) == (git(root, "rev-parse", "HEAD"), False)  # committed, changed


def test_a_project_in_a_subdirectory_is_judged_by_its_own_files(tmp_path):
    """Changes elsewhere in a larger repository do not make the project dirty."""
    git(tmp_path, "init", "-q")
    project = tmp_path / "services" / "web"
    project.mkdir(parents=True)
    (tmp_path / "other.txt").write_text("1")
    (project / "app.py").write_text("x = 1\n")
    git(tmp_path, "add", ".")
    git(tmp_path, "commit", "-qm", "one")
    commit = git(tmp_path, "rev-parse", "HEAD")
    (tmp_path / "other.txt").write_text("2")
    assert head_commit(project) == (commit, False)
    (project / "app.py").write_text("x = 2\n")
    assert head_commit(project) == (commit, True)


def test_head_commit_without_git_installed(checkout, monkeypatch, tmp_path_factory):
    """No git on PATH at all is the same as no checkout."""
    root, _ = checkout
    monkeypatch.setenv("PATH", str(tmp_path_factory.mktemp("empty-bin")))
    assert head_commit(root) == (None, None)


def test_a_passing_record_for_head_lets_it_ship(checkout):
    """The commit and the gate summary go into release.json and the history."""
    root, commit = checkout
    write_record(root, commit=commit, passed=True, dirty=False,
                 gates={"unit": {"status": "passed", "value": 3}, "lint": {"status": "passed"}})
    assert check_gates(root, skip=False) == (commit, {"unit": "passed", "lint": "passed"})


def test_skip_gates_ships_without_a_record(checkout, tmp_path_factory):
    """--skip-gates needs no record and no git; it is recorded as skipped."""
    root, commit = checkout
    assert check_gates(root, skip=True) == (commit, {"skipped": True})
    (root / "app.py").write_text("dirty")
    assert check_gates(root, skip=True) == (commit, {"skipped": True})
    assert check_gates(tmp_path_factory.mktemp("plain"), skip=True) == (
        "unknown", {"skipped": True})


def test_refusals_name_the_reason_and_the_way_out(checkout, tmp_path_factory):
    """Outside git, dirty, no record, unreadable or foreign record: each says why."""
    plain = tmp_path_factory.mktemp("plain")
    assert refusal(plain) == (f"{plain} is not a git checkout, so no gate record can vouch "
                              f"for it; {HINT}")
    root, commit = checkout
    path = root / "reports" / "gates.json"
    assert refusal(root).startswith(f"no readable gate record at {path} (")
    assert refusal(root).endswith(f"No such file or directory: '{path}'); {HINT}")
    write_record(root, commit=commit, passed=True)
    (root / "app.py").write_text("x = 3\n")
    assert refusal(root) == (f"the working tree has uncommitted changes; commit them, then "
                             f"{HINT}")
    git(root, "checkout", "-q", "app.py")
    path.write_text("{not json")
    assert refusal(root, ConfigError).startswith(
        f"no readable gate record at {path} (not JSON: Expecting")
    for foreign, problem in (("[1, 2]", "expected a JSON object, got list"),
                             (json.dumps({"commit": commit, "passed": True, "gates": []}),
                              "gates: expected an object of gate -> result, got []")):
        path.write_text(foreign)
        assert refusal(root, ConfigError) == (f"{path} is not a gate record written by "
                                              f"`fabship-ci` ({problem}); {HINT}")


def test_a_record_of_another_commit_is_refused(checkout):
    """The record vouches for one commit only."""
    root, commit = checkout
    path = write_record(root, commit="0123456789abcdef0123", passed=True, gates={})
    assert refusal(root) == (f"the gate record {path} is for commit 0123456789ab, not HEAD "
                             f"{commit[:12]}; {HINT}")
    write_record(root, passed=True)
    assert refusal(root) == (f"the gate record {path} is for commit None, not HEAD "
                             f"{commit[:12]}; {HINT}")


def test_failed_or_dirty_records_are_refused(checkout):
    """Failed gates are named; a record made on a dirty tree vouches for nothing."""
    root, commit = checkout
    gates = {"unit": {"status": "passed"}, "lint": {"status": "failed"},
             "coverage": {"status": "error"}}
    write_record(root, commit=commit, passed=False, gates=gates)
    assert refusal(root) == (f"commit {commit[:12]} did not pass its gates (gates failed: "
                             f"lint, coverage); {HINT}")
    write_record(root, commit=commit, passed=True, dirty=True,
                 gates={"unit": {"status": "passed"}})
    assert refusal(root) == (f"commit {commit[:12]} did not pass its gates (the tree was "
                             f"dirty); {HINT}")
    write_record(root, commit=commit, gates={"unit": {"status": "passed"}})
    assert "did not pass its gates (the tree was dirty)" in refusal(root)  # no `passed`


def test_summary_maps_gates_to_status():
    """{gate: status}; no gates, no entries."""
    assert summary({"gates": {"unit": {"status": "passed"}, "lint": {}}}) == {
        "unit": "passed", "lint": None}
    assert summary({}) == {}


def test_read_secrets_names_the_first_missing_variable():
    """Empty counts as missing; the message names where the secret was asked for."""
    environ = {"A": "1", "B": "", "D": "4"}
    with pytest.raises(ConfigError) as err:
        read_secrets(("A", "B", "C"), environ, "services.hello.secret_env")
    assert str(err.value) == ("services.hello.secret_env: environment variable B is not set "
                              "(or empty); export it before deploying")
    with pytest.raises(ConfigError, match="environment variable C is not set"):
        read_secrets(("C", "A"), environ, "x")
    assert read_secrets(("D", "A"), environ, "x") == (Secret("D", "4"), Secret("A", "1"))
    assert not read_secrets((), {}, "x")


def test_mask_replaces_longer_secrets_first():
    """A secret that contains another is masked whole, not around the shorter one."""
    short, long_ = Secret("A", "abc"), Secret("B", "xabcx")
    text = "user=abc pass=xabcx"
    expected = f"user={MASK} pass={MASK}"
    assert mask(text, (short, long_)) == expected
    assert mask(text, (long_, short)) == expected
    assert mask("nothing", ()) == "nothing"
    assert holds_secret(text, (Secret("C", "zzz"), short))
    assert not holds_secret("ab c", (short, long_))
    assert not holds_secret("anything", ())
