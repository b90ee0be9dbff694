"""The deps bundle build on the controller: pip runs without the secret variables."""
import os

from fabship.deploy.artifact import build_deps


def test_pip_wheel_never_inherits_secret_variables(tmp_path, monkeypatch):
    """A variable named in secret_env is not in pip's environment; the others are.

    pip reads PIP_LOG from its environment and writes a log there: a file that appears
    only when the variable reached it. (monkeypatch sets the controller's environment,
    as the user's shell would: it replaces no part of fabship.)
    """
    hidden, seen = tmp_path / "hidden.log", tmp_path / "seen.log"
    monkeypatch.setenv("PIP_LOG", str(hidden))
    build_deps("", tmp_path / "cache-a", log=lambda line: None, hide=("PIP_LOG",))
    assert not hidden.exists()
    monkeypatch.setenv("PIP_LOG", str(seen))
    build_deps("", tmp_path / "cache-b", log=lambda line: None)
    assert seen.exists()
    assert os.environ["PIP_LOG"] == str(seen)  # the controller's own environment is untouched
