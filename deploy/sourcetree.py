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


def _locate(root):
    """(repository top, the project's prefix in it); ConfigError outside git."""
    code, found, _ = _git(root, "rev-parse", "--show-toplevel", "--show-prefix")
    if code:
        raise ConfigError(f"{root} is not a git checkout: fabship ships a commit, never the "
                          "working tree; commit the service first (git init, add, commit)")
    return (found.decode().split("\n") + [""])[:2]


def _tree(root, path, commit, where, missing_ok=False):
    """[Entry] of the directory `path` (relative to the project) at `commit`."""
    top, prefix = _locate(root)
    shown = path or "."
    treeish = f"{commit}:{prefix}{path}"
    code, kind, _ = _git(root, "cat-file", "-t", treeish)
    if code or kind.strip() != b"tree":
        if missing_ok and code:
            return []
        raise ConfigError(f"{where}: {shown!r} is not a directory in commit {commit[:12]} "
                          "(committed? `git add` it and commit)")
    code, data, err = _git(top, "archive", "--format=tar", treeish)
    if code:
        raise ConfigError(f"{where}: git archive of {shown!r} at {commit[:12]} failed: {err}")
    return _entries(data)


def read_commit(root, source, commit, where):
    """[Entry] of `source` at `commit` (a full id); ConfigError saying what is wrong."""
    try:
        path = tree_path(source)
    except ValueError as exc:
        raise ConfigError(f"{where}: expected {exc}, got {source!r}") from exc
    entries = _tree(root, path, commit, where)
    check(entries, source, where)
    return entries


def read_templates(root, commit, where="templates"):
    """{name: text} of the project's templates/ at `commit` ({} when it has none).

    A symlink is read as the file it names inside templates/; one that leaves it, or
    names no file, is refused: a link to the deployer's key must not render into hosts.
    """
    entries = _tree(root, "templates", commit, where, missing_ok=True)
    links = {e.path: e.link for e in entries if e.link is not None}
    files = {e.path: e.data for e in entries if e.link is None}
    texts = {}
    for entry in entries:
        data = files.get(entry.path if entry.link is None else resolve(entry.path, links))
        if data is None:
            raise ConfigError(f"{where}: symlink templates/{entry.path} -> {entry.link} does "
                              "not name a file inside templates/")
        try:
            texts[entry.path] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise ConfigError(f"{where}: templates/{entry.path} is not UTF-8 text") from None
    return texts


def read_file(root, path, commit, where):
    """The bytes of the file `path` (relative to the project) at `commit`."""
    top, prefix = _locate(root)
    rel = f"{prefix}{tree_path(path)}"
    code, data, _ = _git(top, "archive", "--format=tar", commit, "--", rel)
    entries = _entries(data) if not code else []
    if len(entries) != 1 or entries[0].link is not None:
        raise ConfigError(f"{where}: {path!r} is not a file in commit {commit[:12]} "
                          "(committed? a symlink is not followed)")
    return entries[0].data


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


def resolve(path, links, budget=None):
    """Where `path`'s symlink leads inside the tree, as a relative path; None when it leaves.

    Follows the tree's own links component by component, as the kernel would, so
    `a -> .` then `b -> a/../../x` cannot climb out through a link to a directory. At
    most MAX_HOPS links are followed in all (the kernel's ELOOP), so a chain of links
    that doubles at each step costs as much as a short one, then is refused.
    """
    budget = budget if budget is not None else [MAX_HOPS]
    budget[0] -= 1
    target = links[path]
    if target.startswith("/") or budget[0] < 0:
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
            inner = resolve(here, links, budget)
            if inner is None:
                return None
            parts = [p for p in inner.split("/") if p]
    return "/".join(parts)
