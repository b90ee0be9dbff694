"""What a release ships: the `source` tree of the gated commit, as `git archive` gives it.

Never the working tree: files git ignores (`.env`, `.venv/`) and uncommitted edits stay
home. A symlink ships as a symlink, and only when it resolves inside `source` (through
the tree's own links too); one that points out of it is refused, so a committed link to
`~/.ssh/id_ed25519` never plants the deployer's key on the hosts. Names the release
reserves for fabship's own files are refused too.
"""
import io
import posixpath
import subprocess
import tarfile
from dataclasses import dataclass

from .errors import ConfigError

RESERVED = ("release.json", ".fabship", "shared")  # fabship's own names in a release
MAX_HOPS = 40  # symlinks followed while resolving one path, as the kernel's ELOOP limit


@dataclass(frozen=True)
class Entry:
    """One file or symlink of the tree: path relative to `source`."""

    path: str
    data: bytes = b""
    mode: int = 0o644
    link: str | None = None  # a symlink's target


def _git(root, *args):
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, check=False)
    except OSError as exc:
        raise ConfigError(f"cannot run git to read the commit: {exc.strerror}") from exc
    return proc.returncode, proc.stdout, proc.stderr.decode("utf-8", "replace").strip()


def tree_path(source):
    """`source` as a clean path relative to the project; ValueError when it leaves it."""
    path = posixpath.normpath(source.replace("\\", "/"))
    if path.startswith("/") or path == ".." or path.startswith("../"):
        raise ValueError("a directory inside the project")
    return "" if path == "." else path


def read_commit(root, source, commit, where):
    """[Entry] of `source` at `commit` (a full id); ConfigError saying what is wrong."""
    try:
        path = tree_path(source)
    except ValueError as exc:
        raise ConfigError(f"{where}: expected {exc}, got {source!r}") from exc
    code, found, _ = _git(root, "rev-parse", "--show-toplevel", "--show-prefix")
    if code:
        raise ConfigError(f"{root} is not a git checkout: fabship ships a commit, never the "
                          "working tree; commit the service first (git init, add, commit)")
    top, prefix = (found.decode().split("\n") + [""])[:2]
    treeish = f"{commit}:{prefix}{path}"
    code, kind, _ = _git(root, "cat-file", "-t", treeish)
    if code or kind.strip() != b"tree":
        raise ConfigError(f"{where}: {source!r} is not a directory in commit {commit[:12]} "
                          "(committed? `git add` it and commit)")
    code, data, err = _git(top, "archive", "--format=tar", treeish)
    if code:
        raise ConfigError(f"{where}: git archive of {source!r} at {commit[:12]} failed: {err}")
    entries = _entries(data)
    check(entries, source, where)
    return entries


def _entries(data):
    entries = []
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:") as tar:
        for member in tar:
            if member.issym():
                entries.append(Entry(member.name, link=member.linkname))
            elif member.isfile():
                entries.append(Entry(member.name, tar.extractfile(member).read(),
                                     0o755 if member.mode & 0o100 else 0o644))
    return sorted(entries, key=lambda entry: entry.path)


def check(entries, source, where):
    """Refuse reserved names and symlinks that resolve out of `source`."""
    links = {entry.path: entry.link for entry in entries if entry.link is not None}
    for entry in entries:
        top = entry.path.split("/", 1)[0]
        if top in RESERVED and (top != "release.json" or entry.path == top):
            raise ConfigError(
                f"{where}: {posixpath.join(source, entry.path)} uses a name fabship reserves "
                f"in a release ({', '.join(RESERVED)}): rename it in the repository")
        if entry.link is not None and resolve(entry.path, links) is None:
            raise ConfigError(
                f"{where}: symlink {posixpath.join(source, entry.path)} -> {entry.link} points "
                "outside the service's source directory; it would not ship what the commit "
                "holds. Replace it with the file, or link inside the source")


def resolve(path, links, hops=0):
    """Where `path`'s symlink leads inside the tree, as a relative path; None when it leaves.

    Follows the tree's own links component by component, as the kernel would, so
    `a -> .` then `b -> a/../../x` cannot climb out through a link to a directory.
    """
    target = links[path]
    if target.startswith("/") or hops > MAX_HOPS:
        return None
    parts = [p for p in posixpath.dirname(path).split("/") if p]
    for name in target.split("/"):
        if name in ("", "."):
            continue
        if name == "..":
            if not parts:
                return None
            parts.pop()
            continue
        parts.append(name)
        here = "/".join(parts)
        if here in links:
            inner = resolve(here, links, hops + 1)
            if inner is None:
                return None
            parts = [p for p in inner.split("/") if p]
    return "/".join(parts)
