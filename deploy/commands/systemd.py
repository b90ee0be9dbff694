"""systemd: the units rendered from templates/systemd/, installed, enabled and restarted.

The units are named after the service and its root (`fabship-<service>-<8 hex>`), so two
environments of one service on one host have their own. With `zero_downtime: false` one
unit (`.service`) runs the program, which binds its own port. With zero downtime systemd
holds the port: a `.socket` unit, shared by the instances `<name>@1.service` ..
`<name>@N.service` of a template unit (`Sockets=`), each handed the socket as fd 3
(`LISTEN_FDS`). A deploy restarts the instances one at a time, each health-checked
before the next, and never the socket: connections wait in its backlog meanwhile.

The units run as `User=`,
holds no secret (the launcher reads them from .fabship/env, mode 0600), and is
installed mode 0644. systemctl needs root: the scripts run as the SSH user when it is
root, else through `sudo -n` (a password prompt would hang the deploy; see README).

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

from . import health, script
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

# instances_of PREFIX: the instances PREFIX@*.service systemd has loaded or that are
# enabled (linked from a .wants directory of "$UNIT_DIR"), one per line.
INSTANCES = r"""
instances_of() {
  as_root systemctl list-units --all --plain --no-legend --full "$1@*.service" | \
    while read -r unit _; do printf '%s\n' "$unit"; done
  for link in "$UNIT_DIR"/*.wants/"$1"@*.service; do
    [ ! -L "$link" ] || printf '%s\n' "${link##*/}"
  done
}
"""

# "$1" the staged unit, "$2" where it goes, "$3" its name, "$4" the socket's name, "$5"
# the template's name, "$6" the release, "$7" the `user:` key (optional). A zero downtime
# socket of an earlier deploy would hold the port: it and its instances are stopped and
# removed first.
INSTALL = AS_ROOT + INSTANCES + r"""
UNIT_DIR=${2%/*} release=$6 user=$7
""" + CHOWN + r"""
if [ -e "$UNIT_DIR/$4" ] || [ -e "$UNIT_DIR/$5" ]; then
  printf 'fabship: warning: %s: %s\n' "$4" "stopped and removed with its processes \
(zero_downtime: false: the program binds the port itself; this one switch is not without \
downtime)"
  as_root systemctl disable --quiet --now "$4" $(instances_of "${5%@.service}" | sort -u)
  as_root rm -f -- "$UNIT_DIR/$4" "$UNIT_DIR/$5"
fi
as_root install -m 0644 "$1" "$2"
as_root systemctl daemon-reload
as_root systemctl enable --quiet "$3"
"""

# Zero downtime. "$1" the unit directory, "$2" the staged socket, "$3" the staged
# template, "$4" the socket's name, "$5" the template's name, "$6" the plain unit's name,
# "$7" how many processes, "$8" the release, "$9" the `user:` key (optional). The socket
# is started, never restarted, unless its own definition changed (`listen`): then it and
# its instances restart once, saying so. A plain unit of an earlier deploy (it holds the
# port) is stopped and removed first; instances past `processes` are stopped.
INSTALL_SOCKET = AS_ROOT + INSTANCES + r"""
UNIT_DIR=$1 release=$8 user=$9 prefix=${5%@.service}
""" + CHOWN + r"""
if [ -e "$UNIT_DIR/$6" ]; then
  printf 'fabship: warning: %s: stopped and removed (zero downtime: %s takes the port; %s)\n' \
    "$6" "$4" "this one switch is not without downtime"
  as_root systemctl disable --quiet --now "$6"
  as_root rm -f -- "$UNIT_DIR/$6"
fi
changed=
if [ -e "$UNIT_DIR/$4" ] && ! cmp -s "$2" "$UNIT_DIR/$4" && \
   as_root systemctl is-active --quiet "$4"; then changed=1; fi
as_root install -m 0644 "$2" "$UNIT_DIR/$4"
as_root install -m 0644 "$3" "$UNIT_DIR/$5"
as_root systemctl daemon-reload
if [ -n "$changed" ]; then
  printf 'fabship: warning: %s changed: restarting it and every process (%s)\n' "$4" \
    "this once not without downtime"
  as_root systemctl restart "$4"
fi
as_root systemctl enable --quiet --now "$4"
n=1 wanted=
while [ "$n" -le "$7" ]; do wanted="$wanted $prefix@$n.service"; n=$((n + 1)); done
as_root systemctl enable --quiet $wanted
for unit in $(instances_of "$prefix" | sort -u); do
  n=${unit#"$prefix@"}; n=${n%.service}
  case $n in
    ''|*[!0-9]*|0*) extra=1 ;;
    *) if [ "$n" -le "$7" ]; then extra=; else extra=1; fi ;;
  esac
  if [ -n "$extra" ]; then
    as_root systemctl disable --quiet --now "$unit"
    printf 'fabship: warning: %s: stopped and disabled (processes: %s)\n' "$unit" "$7"
  fi
done
"""

RESTART = AS_ROOT + r"""
as_root systemctl restart "$@"
"""

# A failed first release leaves nothing to serve: stop the units and keep them from
# starting at boot (the next good deploy enables them again). "$@": the units; with zero
# downtime "$1" is the unit directory, "$2" the socket and "$3" the instances' prefix.
STOP = AS_ROOT + r"""
as_root systemctl disable --quiet --now "$@"
"""
STOP_SOCKET = AS_ROOT + INSTANCES + r"""
UNIT_DIR=$1
as_root systemctl disable --quiet --now "$2" $(instances_of "$3" | sort -u)
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

# URL EXPECT TIMEOUT UNIT...: the check of the whole program (every unit running it).
CHECK = health.POLL + UNITS + r'''
poll(sys.argv[1], sys.argv[2], float(sys.argv[3]), lambda: unit_gone(sys.argv[4:]),
     lambda: unit_pids(sys.argv[4:]))
'''

# URL EXPECT TIMEOUT INSTANCE...: zero downtime. Each instance in turn is restarted (the
# old process drains; the new one gets the socket) and checked healthy on the shared
# socket, by a connection that instance's process itself accepted (health.POLL's
# `alone`), before the next one is; the first unhealthy one ends it (exit 1), the others
# still on the old release.
ROLL = health.POLL + UNITS + r'''

def roll():
    """Each instance in turn: restart, healthy."""
    expect, timeout = json.loads(sys.argv[2]), float(sys.argv[3])
    for unit in sys.argv[4:]:
        done = run(as_root(["systemctl", "restart", unit]), None)
        if done.returncode:
            sys.exit(f"{unit}: systemctl restart failed: {done.stderr.strip()}")
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


def unit_path(name, root):
    """Where the unit of service `name` under `root` is installed."""
    return posixpath.join(UNIT_DIR, unit_name(name, root))


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


def install_unit(current, name, root, user=None):
    """Install the unit `current`/.fabship holds (0644), reload systemd, enable the unit;
    a zero downtime socket left by an earlier deploy is stopped and removed first.

    `user` (the `user:` key, None when unset) travels with the release: when it is not
    the SSH user, the release's 0600 files become its own first.
    """
    unit = unit_name(name, root)
    return script(INSTALL, posixpath.join(current, ".fabship", unit), unit_path(name, root),
                  unit, socket_name(name, root), template_name(name, root), current,
                  *((user,) if user is not None else ()))


def install_socket(current, name, root, count, user=None):  # pylint: disable=R0913,R0917
    """Zero downtime: install the socket and the instances' template (0644), reload
    systemd, start and enable the socket and enable `count` instances (stopping any
    past it); a plain unit left by an earlier deploy is stopped and removed first."""
    staged = posixpath.join(current, ".fabship")
    return script(INSTALL_SOCKET, UNIT_DIR, posixpath.join(staged, socket_name(name, root)),
                  posixpath.join(staged, template_name(name, root)), socket_name(name, root),
                  template_name(name, root), unit_name(name, root), count, current,
                  *((user,) if user is not None else ()))


def restart(name, root):
    """Restart the unit."""
    return script(RESTART, unit_name(name, root))


def restart_all(units):
    """Restart the units (all at once)."""
    return script(RESTART, *units)


def roll(venv, health_url, expect, timeout, units):  # pylint: disable=R0913,R0917
    """Zero downtime: restart the instances one at a time, each checked healthy
    (`expect`: health.expectation's JSON) before the next."""
    return (posixpath.join(venv, "bin", "python"), "-c", ROLL, health_url, expect,
            f"{timeout:g}", *units)


def healthy(venv, health_url, expect, timeout, units):  # pylint: disable=R0913,R0917
    """Poll until the answer is healthy as `expect` (health.expectation's JSON) says, or
    fail after timeout seconds, or as soon as a unit fails; the program's pids (when
    `expect` asks which process answers) are the units' MainPIDs."""
    return (posixpath.join(venv, "bin", "python"), "-c", CHECK, health_url, expect,
            f"{timeout:g}", *units)


def stop(name, root, zero_downtime=False):
    """Stop the units and disable them (a failed first release: nothing left to serve)."""
    if zero_downtime:
        return script(STOP_SOCKET, UNIT_DIR, socket_name(name, root),
                      template_name(name, root)[:-len("@.service")])
    return script(STOP, unit_name(name, root))
