"""systemd: the unit rendered from templates/systemd/, installed, enabled and restarted.

The unit is named after the service and its root (`fabship-<service>-<8 hex>.service`),
so two environments of one service on one host have two units. It runs as `User=`,
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

from . import script
from ..errors import ConfigError

UNIT_DIR = "/etc/systemd/system"
# systemd's strict user name rule (no warning from systemd, nothing a unit file reads
# as syntax): a letter or _, then letters, digits, _ or -, at most 31 characters.
USER = re.compile(r"[A-Za-z_][A-Za-z0-9_-]{0,30}")

AS_ROOT = r"""
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo -n -- "$@"; fi; }
"""

# "$5" is the `user:` key if set, "$4" the release (`current`, the one link followed): when
# "$5" is not the SSH user, the release's regular 0600 files with one link become its own.
INSTALL = AS_ROOT + r"""
if [ -n "$5" ] && [ "$5" != "$(id -un)" ]; then
  id -u -- "$5" > /dev/null 2>&1 || {
    printf 'no user %s on this host for the unit to run as: create it first\n' "$5"; exit 1; }
  if [ "$(id -u)" -eq 0 ]; then
    find -P "$4/" -type f -perm 600 -links 1 -exec chown -h -- "$5" {} +
  else
    find -P "$4/" -type f -perm 600 -links 1 -exec sudo -n -- chown -h -- "$5" {} +
  fi
fi
as_root install -m 0644 "$1" "$2"
as_root systemctl daemon-reload
as_root systemctl enable --quiet "$3"
"""

RESTART = AS_ROOT + r"""
as_root systemctl restart "$1"
"""

# A failed first release leaves nothing to serve: stop the unit and keep it from
# starting at boot (the next good deploy enables it again).
STOP = AS_ROOT + r"""
as_root systemctl disable --quiet --now "$1"
"""


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


def install_unit(staged_unit, name, root, user=None):
    """Install the release's rendered unit (0644), reload systemd, enable the unit.

    `staged_unit` is <release>/.fabship/<unit>. `user` (the `user:` key, None when
    unset) travels with the release as "$5" and "$4": when it is not the SSH user, the
    release's 0600 files become its own first.
    """
    release = posixpath.dirname(posixpath.dirname(staged_unit))
    return script(INSTALL, staged_unit, unit_path(name, root), unit_name(name, root),
                  *((release, user) if user is not None else ()))


def restart(name, root):
    """Restart the unit."""
    return script(RESTART, unit_name(name, root))


def stop(name, root):
    """Stop the unit and disable it (a failed first release: nothing left to serve)."""
    return script(STOP, unit_name(name, root))
