"""fabship's own supervisord per service root: no root access needed on the host.

Each command is one start of the release venv's Python, in isolated mode without
site-packages (`-I -S`: the standard library only), speaking supervisord's XML-RPC over
its unix socket, `<root>/supervisor.sock` (CLIENT below): supervisorctl costs several
times that start-up, and a deploy runs it on every host at once. A restart does not wait
`startsecs`: the health check that follows proves the program serves.

Whether supervisord runs is asked of supervisord itself, through its socket (no socket,
or nobody listening: it does not answer): a pid file can outlive its process, and its
pid can belong to another process by now.
"""
import posixpath

from . import LAYOUT_NO_LINKS, health, script

NO_ANSWER = 69  # EX_UNAVAILABLE: the scripts' exit status when supervisord does not answer

# `python -I -S - ACTION SOCKET PROGRAM [...]`, the code on stdin (a here-document): a
# small XML-RPC client (strings, ints and booleans out; the answers as Python values).
CLIENT = r'''
import socket
import sys
from xml.etree import ElementTree

NO_ANSWER, NOT_RUNNING, ALREADY_STARTED = 69, 70, 60
action, path, program = sys.argv[1:4]


class Fault(Exception):
    """An XML-RPC fault: supervisord refused the call."""


class NoAnswer(Exception):
    """Nothing listens on the socket (or there is none): supervisord does not run."""


def encode(value):
    """One parameter: a string, an int or a boolean."""
    if isinstance(value, bool):
        return f"<boolean>{int(value)}</boolean>"
    if isinstance(value, int):
        return f"<int>{value}</int>"
    text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return f"<string>{text}</string>"


def decode(node):
    """One <value> element as Python: str, int, list or dict."""
    if not len(node):
        return node.text or ""
    kind = node[0]
    if kind.tag == "array":
        return [decode(item) for item in kind.find("data")]
    if kind.tag == "struct":
        return {member.findtext("name"): decode(member.find("value")) for member in kind}
    if kind.tag in ("int", "i4", "boolean"):
        return int(kind.text)
    return kind.text or ""


def call(method, *params):
    """supervisor.METHOD(*params) over the unix socket (HTTP/1.0 POST /RPC2)."""
    body = ("<?xml version=\"1.0\"?><methodCall><methodName>supervisor." + method +
            "</methodName><params>" + "".join(f"<param><value>{encode(p)}</value></param>"
                                              for p in params) + "</params></methodCall>")
    data = body.encode()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(120)  # a stop waits for the program, up to its stopwaitsecs
        try:
            conn.connect(path)
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NoAnswer() from exc
        conn.sendall(b"POST /RPC2 HTTP/1.0\r\nContent-Type: text/xml\r\n" +
                     f"Content-Length: {len(data)}\r\n\r\n".encode() + data)
        reply = b""
        while True:
            chunk = conn.recv(65536)
            if not chunk:
                break
            reply += chunk
    head, _, payload = reply.partition(b"\r\n\r\n")
    if head.split(b" ", 2)[1:2] != [b"200"]:
        raise ValueError(f"{path} answered {head[:200]!r}, not supervisord's XML-RPC")
    answer = ElementTree.fromstring(payload)
    fault = answer.find("fault/value")
    if fault is not None:
        fault = decode(fault)
        raise Fault(fault["faultCode"], fault["faultString"])
    return decode(answer.find("params/param/value"))


def members():
    """[(group:name, info)] of the program's processes (one for a [program], `numprocs`
    for an [fcgi-program]), in order."""
    return sorted(((f"{info['group']}:{info['name']}", info)
                   for info in call("getAllProcessInfo") if info["group"] == program),
                  key=lambda member: member[0])


def label(name):
    """A process as messages name it: `hello` for a [program], `hello:hello_0` else."""
    return program if name == f"{program}:{program}" else name


def run(work):
    """work(), with supervisord's refusals as one line and no answer as NO_ANSWER."""
    try:
        work()
    except NoAnswer:
        sys.exit(NO_ANSWER)
    except Fault as fault:
        raise SystemExit(f"supervisord: {fault.args[1]} ({action} {program or 'config'})")
    except (OSError, ValueError, LookupError, TypeError, ElementTree.ParseError) as exc:
        raise SystemExit(f"supervisord at {path}: {type(exc).__name__}: {exc}")
'''

# ACTION: reload (what `supervisorctl update` does), restart (stop, then start without
# waiting for `startsecs`), stop. Faults that leave the wanted state (not running for a
# stop, running for a start) are no errors.
ACTIONS = r'''

def stop(name, group=False):
    """Stop a process (or a group's processes), waiting until it has stopped (its
    stopwaitsecs at most: the program drains meanwhile)."""
    try:
        call("stopProcessGroup" if group else "stopProcess", name)
    except Fault as fault:
        if fault.args[0] != NOT_RUNNING:
            raise
    print(f"{name}: stopped")


def start(name):
    """Start a process without waiting for `startsecs` (the health check follows)."""
    try:
        call("startProcess", name, False)
    except Fault as fault:
        if fault.args[0] != ALREADY_STARTED:
            raise
    print(f"{label(name)}: started")


def update():
    """Apply the re-read config's changes of process groups."""
    added, changed, removed = call("reloadConfig")[0]
    for name in removed + changed:
        stop(name, group=True)
        call("removeProcessGroup", name)
        print(f"{name}: removed process group")
    for name in changed + added:
        call("addProcessGroup", name)
        print(f"{name}: {'updated' if name in changed else 'added'} process group")


def restart():
    """Stop, then start without waiting: the health check proves the program serves."""
    stop(program, group=True)
    for name, _ in members():
        start(name)
'''
CTL = CLIENT + ACTIONS + r'''

run({"reload": update, "restart": restart, "stop": lambda: stop(program, group=True)}[action])
'''

# ACTION healthy, with URL EXPECT TIMEOUT: health.POLL's check, given up as soon as
# supervisord reports the program neither starting nor running (it exited, backs off,
# gave up, was stopped; a program that supervisord just started has yet to be started)
# instead of at the timeout; the end of its log says why.
WATCH = CLIENT + health.POLL + r'''

def gone(only=None):
    """Why the program (or its process `only`) will never answer, as supervisord tells,
    or None."""
    try:
        found = [(name, info) for name, info in members() if only in (None, name)]
        if not found:
            return f"supervisord runs no process of {program}"
        for name, info in found:
            if info["statename"] in ("STARTING", "RUNNING") or (
                    info["statename"] == "STOPPED" and not info["start"]):  # not started yet
                continue
            log = call("tailProcessStdoutLog", name, 0, 1000)[0].strip().splitlines()
            why = f"{label(name)} is {info['statename']} (" + (
                f"exit status {info['exitstatus']})" if info["statename"] == "EXITED" else
                f"{info['description']})")
            return why + (f"; its log ends: {' | '.join(log[-5:])}" if log else "")
    except NoAnswer:
        return "supervisord does not answer"
    except (Fault, OSError, ValueError, LookupError, ElementTree.ParseError) as exc:
        return f"supervisord cannot tell how {program} is ({type(exc).__name__}: {exc})"
    return None


def pids(only=None):
    """The pids of the program's processes (or of `only`) as supervisord tells."""
    try:
        return [info["pid"] for name, info in members() if only in (None, name)
                and isinstance(info["pid"], int) and info["pid"] > 0]
    except (NoAnswer, Fault, OSError, ValueError, LookupError, TypeError,
            ElementTree.ParseError):
        return []
'''

# ACTION healthy: the check of the whole program.
HEALTH = WATCH + "\npoll(sys.argv[4], sys.argv[5], float(sys.argv[6]), gone, pids)\n"

# ACTION roll, with URL EXPECT TIMEOUT: zero downtime. The processes of the program are
# replaced one at a time (stopped: it drains; started from `current`, the new release),
# each checked healthy on the shared socket, by a connection that process itself accepted
# (health.POLL's `alone`), before the next one stops, so the others serve meanwhile and
# supervisord never closes its socket. The first unhealthy one ends it (exit 1): the host
# goes back with the others still on the old release.
ROLL = WATCH + ACTIONS + r'''

def roll():
    """Each process in turn: stop, start, healthy."""
    expect = json.loads(sys.argv[5])
    for name, _ in members():
        stop(name)
        start(name)
        ok, said = wait(sys.argv[4], expect, float(sys.argv[6]), lambda: gone(name),
                        lambda: pids(name), alone=True)
        print(f"{label(name)}: {said}")
        if not ok:
            sys.exit(1)


run(roll)
'''

# What every script below starts with: no link at a path supervisord writes or talks
# through (its logs, pid file and socket). Without the release's Python nothing of the
# release can run, and supervisord cannot be asked: reload and stop have nothing to do.
PRELUDE = LAYOUT_NO_LINKS + r"""
python=$1 conf=$2 root=$3 program=$4
layout_has_no_links "$root"
no_links "$root/shared/log/supervisord.log" "$root/shared/log/$program.log"
code=0
"""


def _ask(action, code=CTL, more=""):
    """The script line running `code` (the client) for ACTION: its exit status in $code."""
    return (f'"$python" -I -S - {action} "$root/supervisor.sock" "$program"{more} '
            f"<<'FABSHIP_CTL' || code=$?\n{code.strip()}\nFABSHIP_CTL\n")


RELOAD = PRELUDE + '[ -x "$python" ] || exit 0\n' + _ask("reload") + f"""
if [ "$code" = {NO_ANSWER} ]; then exit 0; fi
exit "$code"
"""

RESTART = PRELUDE + _ask("restart") + f"""
if [ "$code" = {NO_ANSWER} ]; then exec "$python" -m supervisor.supervisord -c "$conf"; fi
exit "$code"
"""

STOP = PRELUDE + '[ -x "$python" ] || exit 0\n' + _ask("stop") + f"""
if [ "$code" = {NO_ANSWER} ]; then exit 0; fi
exit "$code"
"""

HEALTHY = PRELUDE + _ask("healthy", HEALTH, ' "$5" "$6" "$7"') + 'exit "$code"\n'

ROLLING = PRELUDE + _ask("roll", ROLL, ' "$5" "$6" "$7"') + f"""
if [ "$code" = {NO_ANSWER} ]; then exec "$python" -m supervisor.supervisord -c "$conf"; fi
exit "$code"
"""


def conf_path(layout):
    """supervisord.conf lives in each release and is always read through `current`."""
    return posixpath.join(layout.current, ".fabship", "supervisord.conf")


def _argv(body, layout, venv, program, *more):
    return script(body, posixpath.join(venv, "bin", "python"), conf_path(layout), layout.root,
                  program, *more)


def reload(layout, venv, program=""):
    """Make a running supervisord re-read its config (through `current`) and apply it."""
    return _argv(RELOAD, layout, venv, program)


def restart(layout, venv, program):
    """Restart the program, starting supervisord first when it does not answer."""
    return _argv(RESTART, layout, venv, program)


def roll(layout, venv, program, health_url, expect, timeout):  # pylint: disable=R0913,R0917
    """Zero downtime: replace the program's processes one at a time, each health-checked
    (`expect`: health.expectation's JSON) before the next stops; supervisord (which
    starts them all) is started when it does not answer."""
    return _argv(ROLLING, layout, venv, program, health_url, expect, f"{timeout:g}")


def stop(layout, venv, program):
    """Stop the program (used when a first release fails and nothing is left to serve)."""
    return _argv(STOP, layout, venv, program)


def healthy(layout, venv, program, health_url, expect, timeout):  # pylint: disable=R0913,R0917
    """health.check of a program under supervisord (`expect`: health.expectation's JSON):
    it fails as soon as supervisord reports the program exited, with the end of its log,
    instead of at the timeout; the program's pid comes from supervisord."""
    return _argv(HEALTHY, layout, venv, program, health_url, expect, f"{timeout:g}")
