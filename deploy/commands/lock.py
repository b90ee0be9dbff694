"""The deploy lock (`mkdir` is atomic) and the read-only fact probe, in one round trip."""
from . import script

LOCKED_EXIT = 75

ACQUIRE = r"""
root=$1 owner=$2 break=$3
mkdir -p "$root"
if ! mkdir "$root/.lock" 2>/dev/null; then
  if [ "$break" != 1 ]; then
    printf 'locked-by='; cat "$root/.lock/owner.json" 2>/dev/null || echo '{}'
    exit 75
  fi
  rm -rf "$root/.lock" && mkdir "$root/.lock"
fi
printf '%s\n' "$owner" > "$root/.lock/owner.json"
"""

PROBE = r"""
root=$1 artifact=$2 venv=$3
printf 'current=%s\n' "$(readlink "$root/current" 2>/dev/null)"
printf 'releases=%s\n' "$(cd "$root/releases" 2>/dev/null && ls -1 | grep -v '^\.' | tr '\n' ' ')"
printf 'served=%s\n' "$(cd "$root/releases" 2>/dev/null && ls -1 */.fabship/served 2>/dev/null \
  | cut -d/ -f1 | tr '\n' ' ')"
[ -f "$root/artifacts/$artifact" ] && echo artifact=yes
[ -f "$root/venvs/$venv/.complete" ] && echo venv=yes
conf="$root/current/.fabship/supervisord.conf"
[ -f "$conf" ] && printf 'supervisor_conf=%s\n' "$(sha256sum < "$conf" | cut -d' ' -f1)"
exit 0
"""


def acquire(root, owner_json, break_lock):
    """Take the lock or exit 75 printing `locked-by=<owner.json>`."""
    return script(ACQUIRE, root, owner_json, "1" if break_lock else "0")


def probe(root, artifact_name, venv_key):
    """Print facts as key=value lines (see facts.parse_facts)."""
    return script(PROBE, root, artifact_name, venv_key)


STILL_OURS = r"""
if [ "$(cat "$1/.lock/owner.json" 2>/dev/null)" != "$2" ]; then
  echo "the deploy lock was taken over (--break-lock); stopping before the switch"
  exit 1
fi
"""

RELEASE = r"""
root=$1 owner=$2
if [ "$(cat "$root/.lock/owner.json" 2>/dev/null)" = "$owner" ]; then rm -rf "$root/.lock"; fi
"""


def still_ours(root, owner_json):
    """Fail unless this run still holds the lock: a taken-over run must not switch."""
    return script(STILL_OURS, root, owner_json)


def release(root, owner_json):
    """Give the lock back, only if it is still ours (--break-lock may have taken it over)."""
    return script(RELEASE, root, owner_json)
