"""supervisord after a reboot: one `@reboot` line per service root in the SSH user's crontab.

The line starts fabship's supervisord of that root through `current`, exactly as a
deploy does, and ends in the marker `# fabship-boot <root>` (sh reads it as a comment):
the marker finds the line again, so a deploy never adds it twice and replaces a line
of an older form. The root is the only value, and it travels as "$1" of constant
scripts; the scripts check it is made only of the characters a service root may hold
(they go into the crontab, which cron runs through sh). Edits of one user's crontab
are serialised with flock(1) when the host has it, so concurrent deploys of several
roots keep every line.

Installing never fails a deploy: without a `crontab` command, or when the crontab
cannot be read or written, it prints one `fabship: warning: ...` line and goes on.
"""
from . import script

WARNING = "fabship: warning: "

_COMMON = r"""
root=$1
case $root in
  /*[!A-Za-z0-9._/-]*|[!/]*|'') echo "fabship: not a service root: $root" >&2; exit 2;;
esac
mark=" # fabship-boot $root"
warn() { echo "fabship: warning: $1: $undone (see README, boot)"; exit 0; }
command -v crontab >/dev/null 2>&1 || warn "no crontab command on this host"
if command -v flock >/dev/null 2>&1 && [ -n "${HOME:-}" ] \
    && touch "$HOME/.fabship-crontab.lock" 2>/dev/null; then
  exec 9>>"$HOME/.fabship-crontab.lock"
  flock -w 60 9 || warn "another deploy holds $HOME/.fabship-crontab.lock"
fi
if ! old=$(crontab -l 2>/dev/null); then
  case $(crontab -l 2>&1 >/dev/null) in
    *"no crontab"*) old="";;
    *) warn "cannot read the crontab";;
  esac
fi
# The crontab without this root's lines: lines ending in the marker (exact suffix).
others() {
  printf '%s\n' "$old" | m="$mark" awk '{
    n = length(ENVIRON["m"]); k = length($0)
    if (k >= n && substr($0, k - n + 1) == ENVIRON["m"]) next
    print }'
}
"""

INSTALL = r"""
undone="supervisord of $1 will not start again after a reboot"
""" + _COMMON + r"""
conf=$root/current/.fabship
line="@reboot $conf/venv/bin/python -m supervisor.supervisord -c $conf/supervisord.conf$mark"
printf '%s\n' "$old" | grep -qxF -- "$line" && exit 0
new=$(others)
{ [ -z "$new" ] || printf '%s\n' "$new"; printf '%s\n' "$line"; } | crontab - \
  || warn "cannot write the crontab"
"""

FORGET = r"""
undone="the @reboot line of $1 stays in the crontab"
""" + _COMMON + r"""
new=$(others)
[ "$new" = "$old" ] && exit 0
if [ -n "$new" ]; then printf '%s\n' "$new" | crontab -; else crontab -r; fi
"""


def install(root):
    """Add (or refresh) the `@reboot` line of `root`; a warning, never a failure."""
    return script(INSTALL, root)


def forget(root):
    """Remove the `@reboot` line of `root` (the rehearsal's `down`, tests)."""
    return script(FORGET, root)
