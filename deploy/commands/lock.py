"""The deploy lock (`mkdir` is atomic) and the read-only fact probe, in one round trip."""
from . import NO_LINKS, script

LOCKED_EXIT = 75

ACQUIRE = NO_LINKS + r"""
root=$1 owner=$2 break=$3
mkdir -p "$root"
if [ "$break" != 1 ]; then no_links "$root/.lock" "$root/.lock/owner.json"; fi
if ! mkdir "$root/.lock" 2>/dev/null; then
  if [ "$break" != 1 ]; then
    printf 'locked-by='; cat "$root/.lock/owner.json" 2>/dev/null || echo '{}'
    exit 75
  fi
  rm -rf "$root/.lock" && mkdir "$root/.lock"
fi
printf '%s\n' "$owner" > "$root/.lock/owner.json"
"""

# Facts come only from real files and directories: a link planted in the root is not a
# release, an artifact or a venv (the ship batch refuses it), and `current` counts only
# when it names a release directory of this root. Only names of the release-id form
# (deployment.new_release: `20260102T030405.678Z-abc1234`) are releases: any other name
# (`..`, one with a line break that would print a fact of its own) is skipped. The
# artifact counts only when its bytes have the digest it is named by (`<sha256>.tar.gz`).
PROBE = r"""
root=$1 artifact=$2 venv=$3
real() { [ -e "$1" ] && [ ! -L "$1" ]; }
is_id() {
  d='[0123456789]'
  case "$1" in $d$d$d$d$d$d$d$d"T"$d$d$d$d$d$d"."$d$d$d"Z-"?*) ;; *) return 1 ;; esac
  rest=${1#????????T??????.???Z-}
  case "$rest" in *[!0123456789abcdefghijklmnopqrstuvwxyz]*) return 1 ;; esac
  [ "${#rest}" -le 40 ]
}
cur=$(readlink "$root/current" 2>/dev/null || true)
case "$cur" in
  "$root"/releases/*/*) cur= ;;
  "$root"/releases/?*)
    if ! is_id "${cur#"$root"/releases/}" || ! real "$cur" || ! real "$root/releases"
    then cur=; fi ;;
  *) cur= ;;
esac
printf 'current=%s\n' "$cur"
releases= served=
if real "$root/releases"; then
  for dir in "$root"/releases/*; do
    if is_id "${dir##*/}" && real "$dir" && [ -d "$dir" ]; then
      releases="$releases${dir##*/} "
      if [ -f "$dir/.fabship/served" ]; then served="$served${dir##*/} "; fi
    fi
  done
fi
printf 'releases=%s\nserved=%s\n' "$releases" "$served"
file="$root/artifacts/$artifact" digest=${artifact%.tar.gz}
if [ "$digest.tar.gz" = "$artifact" ] && real "$root/artifacts" && real "$file" &&
   [ -f "$file" ] && [ "$(sha256sum < "$file" | cut -d' ' -f1)" = "$digest" ]
then echo artifact=yes; fi
if real "$root/venvs" && real "$root/venvs/$venv" && [ -f "$root/venvs/$venv/.complete" ]
then echo venv=yes; fi
conf="$cur/.fabship/supervisord.conf"
if [ -n "$cur" ] && [ -f "$conf" ]; then
  printf 'supervisor_conf=%s\n' "$(sha256sum < "$conf" | cut -d' ' -f1)"
fi
exit 0
"""


def acquire(root, owner_json, break_lock):
    """Take the lock or exit 75 printing `locked-by=<owner.json>`."""
    return script(ACQUIRE, root, owner_json, "1" if break_lock else "0")


def probe(root, artifact_name, venv_key):
    """Print facts as key=value lines (see facts.parse_facts)."""
    return script(PROBE, root, artifact_name, venv_key)


RELEASE = r"""
root=$1 owner=$2
if [ ! -L "$root/.lock" ] && [ ! -L "$root/.lock/owner.json" ] &&
   [ "$(cat "$root/.lock/owner.json" 2>/dev/null)" = "$owner" ]; then rm -rf "$root/.lock"; fi
"""


def release(root, owner_json):
    """Give the lock back, only if it is still ours (--break-lock may have taken it over)."""
    return script(RELEASE, root, owner_json)
