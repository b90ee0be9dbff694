"""What ships: the `source` tree of the commit, read with real git from real repositories."""
import io
import os
import tarfile

import pytest

from fabship.deploy.artifact import build_source
from fabship.deploy.errors import ConfigError
from fabship.deploy.sourcetree import read_commit, read_file, read_templates, resolve, tree_path
from tests.helpers import git

WHERE = "fabric.yaml: services.app.source"


@pytest.fixture(name="repo")
def repo_fixture(tmp_path):
    """A git repository with app/ committed; returns a commit function."""
    root = tmp_path / "repo"
    (root / "app" / "pkg").mkdir(parents=True)
    (root / "app" / "pkg" / "main.py").write_text("print('hi')\n")
    (root / "app" / "run.sh").write_text("#!/bin/sh\n")
    os.chmod(root / "app" / "run.sh", 0o755)
    (root / ".gitignore").write_text(".env\n.venv/\n")
    git(root, "init", "-q")

    def commit():
        git(root, "add", "-A")
        git(root, "commit", "-qm", "c", "--allow-empty")
        return git(root, "rev-parse", "HEAD")
    commit.root = root
    return commit


def members(artifact):
    """{name: (type, mode, content or link target)} of a built tarball."""
    with tarfile.open(fileobj=io.BytesIO(artifact.data)) as tar:
        return {m.name: ("link", m.mode, m.linkname) if m.issym() else
                ("file", m.mode, tar.extractfile(m).read()) for m in tar}


def test_the_commit_ships_not_the_working_tree(repo):
    """Ignored files, untracked files and uncommitted edits stay home; modes are kept."""
    commit = repo()
    root = repo.root
    (root / "app" / ".env").write_text("SECRET=1\n")
    (root / "app" / ".venv").mkdir()
    (root / "app" / ".venv" / "python").write_text("binary")
    (root / "app" / "untracked.py").write_text("x = 1\n")
    (root / "app" / "pkg" / "main.py").write_text("print('edited, not committed')\n")
    shipped = members(build_source(root, "app", commit))
    assert shipped == {"pkg/main.py": ("file", 0o644, b"print('hi')\n"),
                       "run.sh": ("file", 0o755, b"#!/bin/sh\n")}


def test_the_digest_is_deterministic(repo):
    """The same tree gives the same bytes: a later commit touching nothing else too."""
    first = repo()
    (repo.root / "README").write_text("outside source\n")
    second = repo()
    assert build_source(repo.root, "app", first) == build_source(repo.root, "app", second)
    (repo.root / "app" / "new.py").write_text("")
    third = repo()
    assert build_source(repo.root, "app", third).digest != build_source(
        repo.root, "app", first).digest


def test_a_symlink_inside_source_ships_as_a_symlink(repo):
    """Not its target's content: the link itself, pointing where it pointed."""
    os.symlink("pkg/main.py", repo.root / "app" / "entry.py")
    os.symlink("pkg", repo.root / "app" / "lib")
    shipped = members(build_source(repo.root, "app", repo()))
    assert shipped["entry.py"] == ("link", 0o777, "pkg/main.py")
    assert shipped["lib"] == ("link", 0o777, "pkg")


@pytest.mark.parametrize("target", [
    "/root/.ssh/id_ed25519", "../README", "pkg/../../README", "..", "/",
])
def test_a_symlink_out_of_source_is_refused(repo, target):
    """A committed link to the deployer's key (or anything outside source) never ships."""
    os.symlink(target, repo.root / "app" / "key")
    commit = repo()
    with pytest.raises(ConfigError) as err:
        build_source(repo.root, "app", commit, WHERE)
    assert str(err.value) == (
        f"{WHERE}: symlink app/key -> {target} points outside the service's source "
        "directory; it would not ship what the commit holds. Replace it with the file, or "
        "link inside the source")


def test_links_cannot_climb_out_through_a_link_to_a_directory(repo):
    """`here -> .` then `up -> here/../x`: lexically inside, physically outside."""
    os.symlink(".", repo.root / "app" / "here")
    os.symlink("here/../README", repo.root / "app" / "up")
    with pytest.raises(ConfigError, match="symlink app/up -> here/../README points outside"):
        build_source(repo.root, "app", repo(), WHERE)


def test_resolve_follows_the_trees_own_links():
    """The pure resolver: relative to the link's directory, through other links, loops."""
    links = {"a": ".", "d/b": "../c", "d/e": "../a/../x", "loop1": "loop2", "loop2": "loop1",
             "deep": "a/a/a/pkg/../..", "ok": "a/a/pkg"}
    assert resolve("a", links) == ""
    assert resolve("d/b", links) == "c"
    assert resolve("d/e", links) is None
    assert resolve("loop1", links) is None
    assert resolve("deep", links) is None
    assert resolve("ok", links) == "pkg"


@pytest.mark.parametrize("name", ["release.json", ".fabship/run", "shared", "shared/x"])
def test_names_the_release_reserves_are_refused(repo, name):
    """A committed release.json would replace fabship's and break every health check."""
    path = repo.root / "app" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    with pytest.raises(ConfigError) as err:
        build_source(repo.root, "app", repo(), WHERE)
    assert str(err.value) == (
        f"{WHERE}: app/{name} uses a name fabship reserves in a release (release.json, "
        ".fabship, shared): rename it in the repository")


def test_nested_names_like_reserved_ones_are_fine(repo):
    """Only the release's top level is reserved."""
    (repo.root / "app" / "pkg" / "release.json").write_text("{}")
    (repo.root / "app" / "pkg" / "shared").write_text("")
    assert set(members(build_source(repo.root, "app", repo()))) >= {
        "pkg/release.json", "pkg/shared"}


def test_errors_name_what_is_missing(repo, tmp_path):
    """Not a checkout, source not committed, a file not a directory, out of the project."""
    commit = repo()
    plain = tmp_path / "plain"
    plain.mkdir()
    with pytest.raises(ConfigError, match="is not a git checkout: fabship ships a commit"):
        read_commit(plain, "app", "0" * 40, WHERE)
    (repo.root / "later").mkdir()
    (repo.root / "later" / "x").write_text("")
    for source in ("later", "app/run.sh", "nope"):
        with pytest.raises(ConfigError) as err:
            read_commit(repo.root, source, commit, WHERE)
        assert str(err.value) == (f"{WHERE}: {source!r} is not a directory in commit "
                                  f"{commit[:12]} (committed? `git add` it and commit)")
    for source in ("/etc", "../x", ".."):
        with pytest.raises(ConfigError, match="expected a directory inside the project"):
            read_commit(repo.root, source, commit, WHERE)
    assert tree_path("./app/") == "app" and tree_path(".") == ""


def test_a_project_in_a_subdirectory_of_the_repository(repo):
    """source is relative to the project (where fabric.yaml is), not the repository top."""
    (repo.root / "svc" / "app").mkdir(parents=True)
    (repo.root / "svc" / "app" / "m.py").write_text("m\n")
    commit = repo()
    assert members(build_source(repo.root / "svc", "app", commit)) == {
        "m.py": ("file", 0o644, b"m\n")}


def test_a_doubling_chain_of_links_is_refused_quickly(repo):
    """l_k -> l_(k-1)/l_(k-1): 2^k hops to resolve; at most 40 are followed, as the kernel."""
    os.symlink(".", repo.root / "app" / "l0")
    for k in range(1, 40):
        os.symlink(f"l{k - 1}/l{k - 1}", repo.root / "app" / f"l{k}")
    with pytest.raises(ConfigError, match="symlink app/l10 -> l9/l9 points outside"):
        build_source(repo.root, "app", repo(), WHERE)


def test_templates_and_requirements_are_read_from_the_commit(repo):
    """Not the working tree: edits, ignored and untracked templates are not rendered."""
    templates = repo.root / "templates"
    (templates / "sub").mkdir(parents=True)
    (templates / "a.j2").write_text("committed {{ x }}\n")
    os.symlink("../a.j2", templates / "sub" / "alias.j2")
    (repo.root / "req.txt").write_text("tornado\n")
    commit = repo()
    (templates / "a.j2").write_text("edited\n")
    (templates / "new.j2").write_text("untracked\n")
    (repo.root / "req.txt").write_text("edited\n")
    assert read_templates(repo.root, commit) == {"a.j2": "committed {{ x }}\n",
                                                 "sub/alias.j2": "committed {{ x }}\n"}
    assert read_file(repo.root, "req.txt", commit, WHERE) == b"tornado\n"
    with pytest.raises(ConfigError, match=r"'nope.txt' is not a file in commit"):
        read_file(repo.root, "nope.txt", commit, WHERE)


@pytest.mark.parametrize("target", ["/root/.ssh/id_ed25519", "../app/run.sh", "missing.j2"])
def test_a_template_link_out_of_templates_is_refused(repo, target):
    """A committed link to the deployer's key never renders into a host's file."""
    (repo.root / "templates").mkdir()
    os.symlink(target, repo.root / "templates" / "key.j2")
    with pytest.raises(ConfigError) as err:
        read_templates(repo.root, repo())
    assert str(err.value) == (f"templates: symlink templates/key.j2 -> {target} does not "
                              "name a file inside templates/")


def test_no_templates_directory_and_links_for_requirements(repo):
    """A project without templates/ has none; a requirements file that is a link is refused."""
    assert not read_templates(repo.root, repo())
    os.symlink("app/run.sh", repo.root / "req.txt")
    with pytest.raises(ConfigError, match="a symlink is not followed"):
        read_file(repo.root, "req.txt", repo(), WHERE)
