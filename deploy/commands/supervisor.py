"""fabship's own supervisord per service root: no root access needed on the host.

Whether supervisord runs is asked of supervisord itself, through its socket
(`supervisorctl pid` exits 0 only when it answers): a pid file can outlive its process,
and its pid can belong to another process by now.
"""
import posixpath

from . import LAYOUT_NO_LINKS, script

# What every script below starts with: no link at a path supervisord writes or talks
# through (its logs, pid file and socket), and the question whether it answers.
PRELUDE = LAYOUT_NO_LINKS + r"""
python=$1 conf=$2 root=$3 program=$4
layout_has_no_links "$root"
no_links "$root/shared/log/supervisord.log" "$root/shared/log/$program.log"
answers() { "$python" -m supervisor.supervisorctl -c "$conf" pid >/dev/null 2>&1; }
"""

RELOAD = PRELUDE + r"""
if answers; then
  "$python" -m supervisor.supervisorctl -c "$conf" update >/dev/null
fi
"""

RESTART = PRELUDE + r"""
if answers; then
  "$python" -m supervisor.supervisorctl -c "$conf" restart "$program"
else
  "$python" -m supervisor.supervisord -c "$conf"
fi
"""

STOP = PRELUDE + r"""
if answers; then
  "$python" -m supervisor.supervisorctl -c "$conf" stop "$program"
fi
exit 0
"""


def conf_path(layout):
    """supervisord.conf lives in each release and is always read through `current`."""
    return posixpath.join(layout.current, ".fabship", "supervisord.conf")


def _argv(body, layout, venv, program):
    return script(body, posixpath.join(venv, "bin", "python"), conf_path(layout), layout.root,
                  program)


def reload(layout, venv, program=""):
    """Make a running supervisord re-read its config (through `current`)."""
    return _argv(RELOAD, layout, venv, program)


def restart(layout, venv, program):
    """Restart the program, starting supervisord first when it does not answer."""
    return _argv(RESTART, layout, venv, program)


def stop(layout, venv, program):
    """Stop the program (used when a first release fails and nothing is left to serve)."""
    return _argv(STOP, layout, venv, program)
