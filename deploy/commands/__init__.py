"""Pure argv builders: each returns a tuple of strings to run on a host."""

# Shell functions for the host scripts that write under a service root. fabship follows
# no symbolic link out of the root: the root itself may be a link (the user's choice),
# and `current`, a release's `shared` and `.fabship/venv` are fabship's own links; any
# other link at a path fabship writes through is refused, naming the path.
NO_LINKS = r"""
no_links() { for path in "$@"; do [ ! -L "$path" ] || { printf \
'refusing: %s is a symbolic link (to %s); fabship follows no link out of the %s\n' \
"$path" "$(readlink "$path")" "service root: remove it"; exit 1; }; done; }
"""
# ...and the layout's own paths, for the scripts that write or start supervisord there.
LAYOUT_NO_LINKS = NO_LINKS + r"""layout_has_no_links() { no_links "$1/releases" \
"$1/artifacts" "$1/venvs" "$1/shared" "$1/shared/log" "$1/shared/data" "$1/deploys.jsonl" \
"$1/.lock" "$1/.lock/owner.json" "$1/supervisord.pid" "$1/supervisor.sock"; }
"""


def script(body, *args):
    """argv running a fixed POSIX sh script with positional arguments.

    User input only ever travels as "$1", "$2", ...; the script text is a constant.
    The script stops at the first failing command (`set -e`).
    """
    return ("sh", "-c", "set -e" + body, "fabship", *(str(arg) for arg in args))
