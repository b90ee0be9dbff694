"""Read-only probes for `fab service status` and `history`, and their pure parsers."""
import json

from . import NO_LINKS, script

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
"""

HISTORY = NO_LINKS + r"""
no_links "$1"
if [ -f "$1" ]; then tail -n "$2" "$1"; fi
"""


def command(layout, health_url):
    """Print current, release.json, lock owner and one health answer."""
    return script(STATUS, layout.root, health_url)


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
        health = "ok"
    elif answer.startswith("200 "):
        health = "stale: " + answer[4:80]
    else:
        health = ("down: " + answer[:80]) if answer else "down: no venv"
    lock = _json(values.get("lock", ""))
    holder = (f"held by {lock.get('who', '?')}@{lock.get('where', '?')} since "
              f"{lock.get('since', '?')}") if "lock" in values else "free"
    return {"release": current or "-", "commit": str(info.get("commit", "-"))[:12],
            "health": health, "lock": holder}


def history(layout, limit):
    """The last `limit` lines of deploys.jsonl."""
    return script(HISTORY, layout.history, limit)


def parse_history(text):
    """History entries (dicts), skipping lines that are not JSON objects."""
    return [entry for entry in (_json(line) for line in text.splitlines()) if entry]
