"""Releases on a host: assemble, install deps, switch atomically, record, prune."""
import posixpath

from . import LAYOUT_NO_LINKS, NO_LINKS, script

MAKE_DIRS = LAYOUT_NO_LINKS + r"""
root=$1
layout_has_no_links "$root"
mkdir -p "$root/releases" "$root/venvs" "$root/artifacts" "$root/shared/log" \
  "$root/shared/data"
"""

INSTALL_DEPS = NO_LINKS + r"""
venv=$1 bundle=$2 python=$3
no_links "$bundle"
if [ -L "$venv" ]; then rm -f "$venv"; fi
rm -f "$venv/.complete"
rm -rf "$venv" "$venv.wheels"
mkdir -p "$venv.wheels"
tar -xzf "$bundle" -C "$venv.wheels"
"$python" -m venv "$venv"
printf '%s\n' "$$" > "$venv/.builder"
"$venv/bin/python" -m pip install --quiet --no-index --disable-pip-version-check \
  --find-links "$venv.wheels" -r "$venv.wheels/requirements.txt"
if [ "$(cat "$venv/.builder" 2>/dev/null)" != "$$" ]; then
  echo "another build of $venv started meanwhile (a killed deploy's?); not marking it complete"
  exit 1
fi
rm -rf "$venv.wheels" "$bundle"
touch "$venv/.complete"
"""

SWITCH = LAYOUT_NO_LINKS + r"""
root=$1 target=$2
layout_has_no_links "$root"
no_links "$target"
if [ ! -d "$target" ]; then echo "no release at $target"; exit 1; fi
ln -sfnT "$target" "$root/.current.tmp.$$"
mv -T "$root/.current.tmp.$$" "$root/current"
"""

APPEND_HISTORY = NO_LINKS + r"""
no_links "$1"
printf '%s,"finished":"%s"}\n' "$2" "$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$1"
"""

PRUNE = NO_LINKS + r"""
dir=$1 keep=$2 order=$3; shift 3
no_links "$dir"
cd "$dir" || exit 0
if [ "$order" = time ]; then list='ls -1t'; else list='ls -1r'; fi
$list | grep -v '^\.' | tail -n +$((keep + 1)) | while read -r name; do
  for protected in "$@"; do [ "$name" = "$protected" ] && continue 2; done
  rm -rf -- "$name"
done
"""

CLEAN_STAGING = NO_LINKS + r"""
no_links "$1"
cd "$1" 2>/dev/null && rm -rf -- .*.tmp
exit 0
"""


def make_dirs(layout):
    """The layout's directories (idempotent), after refusing any link planted in it."""
    return script(MAKE_DIRS, layout.root)


def clean_staging(layout):
    """Remove half-assembled releases left by an interrupted deploy."""
    return script(CLEAN_STAGING, layout.releases)


def keep_upload(part, final):
    """Move an uploaded file into place (rename(2): a link there is replaced, not followed)."""
    return ("mv", "-fT", part, final)


def extract(tarball, dest):
    """Unpack a release tarball into the staging directory, which already holds the
    rendered files: those are never overwritten (`--skip-old-files`), so they win.

    The staging directory is fresh (clean_staging removed any old one, link or not, and
    the upload made it); GNU tar writes no member through a link the archive made.
    """
    return ("tar", "-xzf", tarball, "-C", dest, "--skip-old-files")


def install_deps(venv, bundle, python):
    """Build venvs/<hash> from the shipped wheels, offline; `.complete` marks it done.

    Only the build that is still the venv's latest marks it: a killed deploy's build
    may go on running on the host while a rerun rebuilds the same venv.
    """
    return script(INSTALL_DEPS, venv, bundle, python)


def link(target, name):
    """A symlink `name` -> `target` (inside a staging release, so never live).

    An earlier link at `name` is replaced; a directory there is an error, never a parent.
    """
    return ("ln", "-sfnT", target, name)


def publish(staging, release_dir):
    """rename(2) the assembled release into releases/<id>."""
    return ("mv", "-T", staging, release_dir)


def switch(layout, release_dir):
    """Point `current` at release_dir with rename(2): a temp symlink, then mv -T."""
    return script(SWITCH, layout.root, release_dir)


def mark_served(release_dir):
    """Mark a release that passed its health check: only those are rollback targets."""
    return ("touch", posixpath.join(release_dir, ".fabship", "served"))


def append_history(layout, record_json):
    """Append one JSON line (without its closing brace) plus the finish time."""
    return script(APPEND_HISTORY, layout.history, record_json.removesuffix("}"))


def prune(directory, keep, protected, order="name"):
    """Remove all but the newest `keep` entries, never the protected ones.

    Newest is by name (release ids start with a UTC timestamp) or, with order="time",
    by modification time (artifacts are named by digest).
    """
    return script(PRUNE, directory, keep, order, *protected)
