"""fabship's own supervisord per service root: no root access needed on the host."""
import posixpath

from . import script

RELOAD = r"""
python=$1 conf=$2 pidfile=$3
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  "$python" -m supervisor.supervisorctl -c "$conf" update >/dev/null
fi
"""

RESTART = r"""
python=$1 conf=$2 pidfile=$3 program=$4
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  "$python" -m supervisor.supervisorctl -c "$conf" restart "$program"
else
  "$python" -m supervisor.supervisord -c "$conf"
fi
"""

STOP = r"""
python=$1 conf=$2 pidfile=$3 program=$4
if [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null; then
  "$python" -m supervisor.supervisorctl -c "$conf" stop "$program"
fi
exit 0
"""


def conf_path(layout):
    """supervisord.conf lives in each release and is always read through `current`."""
    return posixpath.join(layout.current, ".fabship", "supervisord.conf")


def pidfile(layout):
    """supervisord's pid file under the service root."""
    return posixpath.join(layout.root, "supervisord.pid")


def reload(layout, venv):
    """Make a running supervisord re-read its config (through `current`)."""
    return script(RELOAD, posixpath.join(venv, "bin", "python"), conf_path(layout),
                  pidfile(layout))


def restart(layout, venv, program):
    """Restart the program, starting supervisord first when it is not running."""
    return script(RESTART, posixpath.join(venv, "bin", "python"), conf_path(layout),
                  pidfile(layout), program)


def stop(layout, venv, program):
    """Stop the program (used when a first release fails and nothing is left to serve)."""
    return script(STOP, posixpath.join(venv, "bin", "python"), conf_path(layout),
                  pidfile(layout), program)
