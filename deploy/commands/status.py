"""Read-only probes for `fab service status` and `history`, and their pure parsers."""
import json

from . import NO_LINKS, script, supervisor, systemd

# `python -I -S - states SOCKET PROGRAM`: each process of the program as NAME:STATE, as
# supervisord tells (nothing when it does not answer).
STATES = supervisor.CLIENT + r'''

def states():
    """NAME:STATE of each process, on one line."""
    print(" ".join(f"{label(name)}:{info['statename']}" for name, info in members()))


run(states)
'''
RUNNING = ("RUNNING", "STARTING", "active", "activating", "reloading")

# Only a `current` naming a release directory of this root is read, and its python run;
# a lock file that is a link is not read (status follows no link out of the root).
STATUS = r"""
root=$1 url=$2
cur=$(readlink "$root/current" 2>/dev/null || true)
printf 'current=%s\n' "$cur"
case "$cur" in
  "$root"/releases/*/*) ours= ;;
  "$root"/releases/?*) ours=1 ;;
  *) ours= ;;
esac
for path in "$root/releases" "$root/venvs" "$cur"; do [ ! -L "$path" ] || ours=; done
if [ -n "$ours" ] && [ -f "$cur/release.json" ]; then
  printf 'release_json='; tr -d '\n' < "$cur/release.json"; echo
fi
if [ -f "$root/.lock/owner.json" ] && [ ! -L "$root/.lock" ] && [ ! -L "$root/.lock/owner.json" ]
then
  printf 'lock='; tr -d '\n' < "$root/.lock/owner.json"; echo
fi
py="$cur/.fabship/venv/bin/python"
if [ -n "$cur" ] && [ -z "$ours" ]; then
  echo "health=not checked: current is not a release directory of this root"
elif [ -n "$cur" ] && [ -x "$py" ]; then
  printf 'health='
  "$py" -c 'import sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=3) as r:
        print(r.status, r.read(300).decode("utf-8", "replace").strip())
except Exception as exc:
    print("down", exc)' "$url" | tr -d '\n'
  echo
fi
if [ -n "$ours" ] && [ -x "$py" ]; then
  case "$3" in
    supervisor)
      printf 'processes='
      "$py" -I -S - states "$root/supervisor.sock" "$4" <<'FABSHIP_CTL' | tr -d '\n'
""" + STATES.strip() + r"""
FABSHIP_CTL
      echo ;;
    systemd)
      shift 3
      if [ -e "$cur/.fabship/$3" ]; then shift 3; else set -- "$2"; fi
      printf 'processes='
      for unit in "$@"; do
        printf '%s:%s ' "$unit" "$(systemctl show --property=ActiveState --value "$unit" \
          2>/dev/null || :)"
      done
      echo ;;
  esac
fi
"""

HISTORY = NO_LINKS + r"""
no_links "$1"
if [ -f "$1" ]; then tail -n "$2" "$1"; fi
"""


def command(layout, health_url, manager=()):
    """Print current, release.json, lock owner, one health answer and, with `manager`
    (manager_args), the state of each process of the program."""
    return script(STATUS, layout.root, health_url, *manager)


def manager_args(service, layout):
    """What the status script asks the manager: supervisord of the program's processes,
    or systemd of the units the release `current` names runs (systemd.units_of)."""
    if service.manager == "supervisor":
        return ("supervisor", service.name)
    return ("systemd", *systemd.units_of(layout.current, service.name, layout.root,
                                         service.processes.count))


def _json(text):
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def answers(expect, current, body):
    """Whether a 200's body (its first 300 characters) is the healthy one `expect` says
    (health.expect; status asks no more of it: the deploy proved which process answers)."""
    if expect[0] == "release":
        return current in body
    if expect[0] == "field":
        value = _json(body) if body.startswith("{") else {}
        for key in expect[1].split("."):
            value = value.get(key) if isinstance(value, dict) else None
        return value == expect[2] and isinstance(value, bool) == isinstance(expect[2], bool)
    return True


def parse(text, expect=("release",)):
    """{release, commit, health, lock} for the status table."""
    values = dict(line.partition("=")[::2] for line in text.splitlines() if "=" in line)
    current = values.get("current", "").rstrip("/").rsplit("/", 1)[-1]
    info = _json(values.get("release_json", ""))
    answer = values.get("health", "")
    if not current:
        health = "no release"
    elif answer.startswith("200 ") and answers(expect, current, answer[4:]):
        health = degraded(values.get("processes", "")) or "ok"
    elif answer.startswith("200 "):
        health = "stale: " + answer[4:80]
    else:
        health = ("down: " + answer[:80]) if answer else "down: no venv"
    lock = _json(values.get("lock", ""))
    holder = (f"held by {lock.get('who', '?')}@{lock.get('where', '?')} since "
              f"{lock.get('since', '?')}") if "lock" in values else "free"
    return {"release": current or "-", "commit": str(info.get("commit", "-"))[:12],
            "health": health, "lock": holder}


def degraded(processes):
    """"degraded: ..." when a process of the program does not run (NAME:STATE words, as
    the manager told), else ""."""
    states = [word.rpartition(":") for word in processes.split()]
    down = [f"{name} {state or 'unknown'}" for name, _, state in states if state not in RUNNING]
    if not down:
        return ""
    return (f"degraded: {len(states) - len(down)} of {len(states)} processes running "
            f"({', '.join(down)})")


def history(layout, limit):
    """The last `limit` lines of deploys.jsonl."""
    return script(HISTORY, layout.history, limit)


def parse_history(text):
    """History entries (dicts), skipping lines that are not JSON objects."""
    return [entry for entry in (_json(line) for line in text.splitlines()) if entry]
