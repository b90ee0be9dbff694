"""systemd: the units rendered from templates/systemd/, installed, enabled and restarted.

The units are named after the service and its root (`fabship-<service>-<8 hex>`), so two
environments of one service on one host have their own. With `zero_downtime: false` one
unit (`.service`) runs the program, which binds its own port. With zero downtime systemd
holds the port: a `.socket` unit, shared by the instances `<name>@1.service` ..
`<name>@N.service` of a template unit (`Sockets=`), each handed the socket as fd 3
(`LISTEN_FDS`). A deploy restarts the instances one at a time, each health-checked
before the next, and never the socket: connections wait in its backlog meanwhile. Which
units a host runs follows the release `current` names (the files it holds), so a revert
or rollback across a change of `zero_downtime` installs what that release can run.

The program runs as `User=`; no unit holds a secret (the launcher reads them from
.fabship/env, mode 0600), and units are installed mode 0644. systemctl needs root: the
scripts run as the SSH user when it is root, else through `sudo -n` (a password prompt
would hang the deploy; see README).

The SSH user writes the release, its secret files mode 0600 (.fabship/env, a template
holding a secret). When `user:` names another account, the install hands those files to
it (chown) so the launcher and the program can read them: only regular files of mode
0600 with one link, found without following any link (`current` itself aside), so
nothing outside the release changes. `user:` unset, the unit runs as the SSH user,
which owns them already.
"""
import hashlib
import posixpath
import re

from . import NO_LINKS, health, script
from ..errors import ConfigError

UNIT_DIR = "/etc/systemd/system"
# systemd's strict user name rule (no warning from systemd, nothing a unit file reads
# as syntax): a letter or _, then letters, digits, _ or -, at most 31 characters.
USER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}")

AS_ROOT = r"""
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n -- "$@"; fi; }
"""

# The release's regular 0600 files with one link become the `user:` account's ("$user"),
# when it is not the SSH user; "$release" is `current`, the one link followed.
CHOWN = r"""
if [ -n "$user" ] && [ "$user" != "$(id -un)" ]; then
  id -u -- "$user" > /dev/null 2>&1 || {
    printf 'no user %s on this host for the unit to run as: create it first\n' "$user"; exit 1; }
  if [ "$(id -u)" -eq 0 ]; then
    find -P "$release/" -type f -perm 600 -links 1 -exec chown -h -- "$user" {} +
  else
    find -P "$release/" -type f -perm 600 -links 1 -exec sudo -n -- chown -h -- "$user" {} +
  fi
fi
"""

# Every script's first arguments: "$1" the unit directory, "$2" the release (`current`),
# "$3" the plain unit's name, "$4" the socket's, "$5" the template's. Which units a host
# runs follows the release `current` names: one rendered with zero downtime holds the
# socket and template under .fabship/, one rendered without holds the plain unit; so a
# revert or a rollback across a change of `zero_downtime` installs what it can run.
NAMES = r"""
UNIT_DIR=$1 release=$2 plain=$3 socket=$4 template=$5 prefix=${5%@.service}
"""

# instances_of: the template's instances systemd has loaded or that are enabled (linked
# from a .wants directory), one per line. stop_units: every unit of the service that is
# installed, stopped and disabled (no unit file: nothing to do).
UNITS_SH = r"""
instances_of() {
  as_root systemctl list-units --all --plain --no-legend --full "$prefix@*.service" | \
    while read -r unit _; do printf '%s\n' "$unit"; done
  for link in "$UNIT_DIR"/*.wants/"$prefix"@*.service; do
    [ ! -L "$link" ] || printf '%s\n' "${link##*/}"
  done
}
stop_units() {
  found=
  for unit in "$@"; do [ ! -e "$UNIT_DIR/$unit" ] || found="$found $unit"; done
  if [ -e "$UNIT_DIR/$template" ]; then found="$found $(instances_of | sort -u)"; fi
  if [ -n "${found# }" ]; then as_root systemctl disable --quiet --now $found; fi
}
socket_part() { sed -n '/^\[Socket\]/,/^\[/{/^[[:space:]]*[#;]/d;p;}' "$1"; }
"""

# "$6" how many processes, "$7" the `user:` key (optional). A unit file of the release that
# is a link is refused (root would install what it points to). Zero downtime: a plain unit of
# an earlier deploy (it holds the port) is stopped and removed; the socket is started,
# never restarted unless its [Socket] section changed (`listen`): then it and its
# instances restart once, with a warning; instances past `processes` are stopped.
# Without: a socket and instances of an earlier deploy are stopped and removed.
INSTALL = AS_ROOT + NO_LINKS + NAMES + UNITS_SH + r"""
count=$6 user=$7 staged=$2/.fabship
no_links "$staged/$socket" "$staged/$template" "$staged/$plain"
""" + CHOWN + r"""
if [ -e "$staged/$socket" ]; then
  if [ -e "$UNIT_DIR/$plain" ]; then
    printf 'fabship: warning: %s: stopped and removed (zero downtime: %s takes the port; %s)\n' \
      "$plain" "$socket" "this one switch is not without downtime"
    stop_units "$plain"
    as_root rm -f -- "$UNIT_DIR/$plain"
  fi
  changed=
  if [ -e "$UNIT_DIR/$socket" ] && \
     [ "$(socket_part "$staged/$socket")" != "$(socket_part "$UNIT_DIR/$socket")" ] && \
     as_root systemctl is-active --quiet "$socket"; then changed=1; fi
  as_root install -m 0644 "$staged/$socket" "$UNIT_DIR/$socket"
  as_root install -m 0644 "$staged/$template" "$UNIT_DIR/$template"
  as_root systemctl daemon-reload
  if [ -n "$changed" ]; then
    printf 'fabship: warning: %s changed: restarting it and every process (%s)\n' "$socket" \
      "this once not without downtime"
    as_root systemctl restart "$socket"
  fi
  as_root systemctl reset-failed "$socket" > /dev/null 2>&1 || :
  as_root systemctl enable --quiet --now "$socket"
  n=1 wanted=
  while [ "$n" -le "$count" ]; do wanted="$wanted $prefix@$n.service"; n=$((n + 1)); done
  as_root systemctl enable --quiet $wanted
  for unit in $(instances_of | sort -u); do
    n=${unit#"$prefix@"}; n=${n%.service}
    case $n in
      ''|*[!0-9]*|0*) extra=1 ;;
      *) if [ "$n" -le "$count" ]; then extra=; else extra=1; fi ;;
    esac
    if [ -n "$extra" ]; then
      as_root systemctl disable --quiet --now "$unit"
      printf 'fabship: warning: %s: stopped and disabled (processes: %s)\n' "$unit" "$count"
    fi
  done
else
  if [ -e "$UNIT_DIR/$socket" ] || [ -e "$UNIT_DIR/$template" ]; then
    printf 'fabship: warning: %s: %s\n' "$socket" "stopped and removed with its processes \
(zero_downtime: false: the program binds the port itself; this one switch is not without \
downtime)"
    stop_units "$socket"
    as_root rm -f -- "$UNIT_DIR/$socket" "$UNIT_DIR/$template"
  fi
  as_root install -m 0644 "$staged/$plain" "$UNIT_DIR/$plain"
  as_root systemctl daemon-reload
  as_root systemctl enable --quiet "$plain"
fi
"""

# A failed first release leaves nothing to serve: its units are stopped and kept from
# starting at boot (the next good deploy enables them again).
STOP = AS_ROOT + NAMES + UNITS_SH + r"""
stop_units "$plain" "$socket"
"""

# Python, after health.POLL: the units' state and main pids, as systemctl shows them.
UNITS = r'''
import subprocess


def as_root(argv):
    """argv through `sudo -n` unless this user is root."""
    return argv if os.geteuid() == 0 else ["sudo", "-n", "--", *argv]


def run(argv, timeout=30):
    """argv's CompletedProcess (text); a command that cannot run is exit status 1."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return subprocess.CompletedProcess(argv, 1, "", str(exc))


def shown(unit):
    """{property: value} of the unit's state."""
    text = run(["systemctl", "show", "--property=ActiveState,SubState,Result,"
                "ExecMainStatus,MainPID", unit], 10).stdout
    return dict(line.partition("=")[::2] for line in text.splitlines())


def unit_pids(units):
    """The MainPIDs systemd reports for the units that run."""
    pids = [shown(unit).get("MainPID", "") for unit in units]
    return [int(pid) for pid in pids if pid.isdigit() and int(pid)]


def unit_gone(units):
    """Why one of the units will not answer (failed, stopped, waiting to restart), with
    the end of its journal, or None."""
    for unit in units:
        state = shown(unit)
        active, sub = state.get("ActiveState", "unknown"), state.get("SubState", "unknown")
        if active in ("active", "reloading") or (active == "activating" and
                                                 sub != "auto-restart"):
            continue
        log = run(as_root(["journalctl", "--unit", unit, "--lines", "5", "--quiet",
                           "--no-pager", "--output", "cat"]), 10).stdout.splitlines()
        return (f"{unit} is {active} ({sub}; result {state.get('Result', '?')}, exit status "
                f"{state.get('ExecMainStatus', '?')})" +
                (f"; its journal ends: {' | '.join(log[-5:])}" if log else ""))
    return None
'''

# URL EXPECT TIMEOUT RELEASE PLAIN SOCKET INSTANCE...: which units run the program, as
# the release `current` names was rendered (see NAMES): the instances with zero downtime,
# else the plain unit.
RUNNING = r'''

def running():
    """(the units that run the program, whether they share a socket)."""
    release, plain, socket_unit = sys.argv[4:7]
    shared = os.path.exists(os.path.join(release, ".fabship", socket_unit))
    return (sys.argv[7:] if shared else [plain]), shared
'''

# The check of the whole program (every unit running it).
CHECK = health.POLL + UNITS + RUNNING + r'''
units = running()[0]
poll(sys.argv[1], sys.argv[2], float(sys.argv[3]), lambda: unit_gone(units),
     lambda: unit_pids(units))
'''

# The restart. Zero downtime: each instance in turn is restarted (the old process
# drains; the new one gets the socket) and checked healthy on the shared socket, by a
# connection that instance's process itself accepted (health.POLL's `alone`), before
# the next one is; the first unhealthy one ends it (exit 1), the others still on the old
# release. Without: the plain unit restarted (the health step checks it).
ROLL = health.POLL + UNITS + RUNNING + r'''

def roll():
    """Each unit in turn: restart, healthy (with zero downtime)."""
    expect, timeout = json.loads(sys.argv[2]), float(sys.argv[3])
    units, shared = running()
    for unit in units:
        done = run(as_root(["systemctl", "restart", unit]), None)
        if done.returncode:
            sys.exit(f"{unit}: systemctl restart failed: {done.stderr.strip()}")
        if not shared:
            print(f"{unit}: restarted")
            continue
        ok, said = wait(sys.argv[1], expect, timeout, lambda: unit_gone([unit]),
                        lambda: unit_pids([unit]), alone=True)
        print(f"{unit}: {said}")
        if not ok:
            sys.exit(1)


roll()
'''


def unit_name(name, root):
    """`fabship-<service>-<first 8 hex of sha256(root)>.service`: unique per root."""
    return f"fabship-{name}-{hashlib.sha256(root.encode()).hexdigest()[:8]}.service"


def unit_user(service_user, deploy_user, where="user"):
    """The account the unit runs as: `user:` if set, else the SSH user unless it is root.

    Raises ConfigError (naming `where`, the key path) when the deploy logs in as root
    and no `user:` says who runs the service, or when the SSH user's name is not one
    systemd takes strictly.
    """
    if service_user is not None:
        if not USER.fullmatch(service_user):
            raise ConfigError(f"{where}: expected a user name (a letter or _, then letters, "
                              f"digits, _ or -, at most 31), got {service_user!r}")
        return service_user
    if deploy_user == "root":
        raise ConfigError(f"{where}: the deploy logs in as root and no `user:` says who runs "
                          "the service: set `user:` to the account it runs as (`user: root` "
                          "to run it as root, explicitly)")
    if not USER.fullmatch(deploy_user or ""):
        raise ConfigError(f"{where}: the unit would run as the SSH user {deploy_user!r}, "
                          "which is not a user name systemd takes strictly: set `user:`")
    return deploy_user


def refuse_secret(secret, where="manager"):
    """A rendered unit must hold no secret: `systemctl show` prints it to every user."""
    if secret:
        raise ConfigError(f"{where}: the systemd unit holds a secret, and `systemctl show` "
                          "shows a unit to every local user; the launcher reads secrets "
                          "from .fabship/env (mode 0600): keep them out of the unit")


def socket_name(name, root):
    """`fabship-<service>-<8 hex>.socket`: zero downtime's socket, shared by the instances."""
    return unit_name(name, root).replace(".service", ".socket")


def template_name(name, root):
    """`fabship-<service>-<8 hex>@.service`: the template of zero downtime's instances."""
    return unit_name(name, root).replace(".service", "@.service")


def instance_names(name, root, count):
    """The instances `...@1.service` .. `...@<count>.service`, in the order they roll."""
    return tuple(template_name(name, root).replace("@", f"@{number}")
                 for number in range(1, count + 1))


def unit_files(name, root, zero_downtime):
    """The unit files a release holds under .fabship/: (file name, template)."""
    if zero_downtime:
        return ((socket_name(name, root), "systemd/socket.j2"),
                (template_name(name, root), "systemd/service.j2"))
    return ((unit_name(name, root), "systemd/service.j2"),)


def _names(current, name, root):
    """What every script starts with (see NAMES)."""
    return (UNIT_DIR, current, unit_name(name, root), socket_name(name, root),
            template_name(name, root))


def install(current, name, root, count, user=None):  # pylint: disable=R0913,R0917
    """Install the units `current`/.fabship holds (0644), reload systemd, enable them:
    with zero downtime, start the socket and enable `count` instances (stopping any past
    it); units of the other mode left by an earlier deploy are stopped and removed first.

    `user` (the `user:` key, None when unset) travels with the release: when it is not
    the SSH user, the release's 0600 files become its own first.
    """
    return script(INSTALL, *_names(current, name, root), count,
                  *((user,) if user is not None else ()))


def units_of(current, name, root, count):
    """RELEASE PLAIN SOCKET INSTANCE...: the units roll and healthy choose from, by how
    the release `current` names was rendered (see RUNNING)."""
    return (current, unit_name(name, root), socket_name(name, root),
            *instance_names(name, root, count))


def roll(venv, health_url, expect, timeout, units):  # pylint: disable=R0913,R0917
    """Restart the program: with zero downtime the instances one at a time, each checked
    healthy (`expect`: health.expectation's JSON) before the next; else the plain unit.
    `units`: units_of(...)."""
    return (posixpath.join(venv, "bin", "python"), "-c", ROLL, health_url, expect,
            f"{timeout:g}", *units)


def healthy(venv, health_url, expect, timeout, units):  # pylint: disable=R0913,R0917
    """Poll until the answer is healthy as `expect` (health.expectation's JSON) says, or
    fail after timeout seconds, or as soon as a unit fails; the program's pids (when
    `expect` asks which process answers) are the units' MainPIDs. `units`: units_of()."""
    return (posixpath.join(venv, "bin", "python"), "-c", CHECK, health_url, expect,
            f"{timeout:g}", *units)


def stop(current, name, root):
    """Stop and disable every installed unit of the service (a failed first release)."""
    return script(STOP, *_names(current, name, root))
