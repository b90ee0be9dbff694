"""systemd mode and the way back after a reboot (issue 9).

- the unit: named after service and root, run as `user` (never root unless said), enabled,
  holding no secret, accepted by `systemd-analyze verify`; its install/restart/stop
  scripts run for real against a temporary unit directory;
- supervisor: the crontab `@reboot` line, edited by the real `crontab` of this machine
  (every line a test adds names a root holding this module's token, and is removed at
  the end), then a real deploy over sshd whose line starts supervisord again after a
  simulated reboot.
"""
import hashlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.request
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from deploy.commands import boot, systemd
from deploy.config import parse_services
from deploy.errors import ConfigError
from deploy.layout import Layout
from deploy.planner import restart_steps
from deploy.secrets import Secret
from tests.deploy.fleetstate import deploy_ok
from tests.deploy.helpers import RAW, contexts, services

TOKEN = f"fabship-test-{uuid.uuid4().hex[:12]}"  # in every root this module puts in a crontab
STRICT = "(a letter or _, then letters, digits, _ or -, at most 31)"


def sha8(root):
    """The first 8 hex digits of sha256(root)."""
    return hashlib.sha256(root.encode()).hexdigest()[:8]


# --- the unit's name and user -------------------------------------------------------------

def test_unit_name_is_unique_per_service_and_root():
    """Two environments of one service on one host (two roots) get two units."""
    assert systemd.unit_name("hello", "/srv/hello") == "fabship-hello-73182f8e.service"
    assert sha8("/srv/hello") == "73182f8e"
    names = {systemd.unit_name(name, root) for name in ("hello", "web")
             for root in ("/srv/hello", "/srv/hello-staging", "/srv/hello/")}
    assert len(names) == 6
    assert systemd.unit_path("web", "/srv/web") == \
        f"/etc/systemd/system/fabship-web-{sha8('/srv/web')}.service"
    assert all(re.fullmatch(r"fabship-[a-z][a-z0-9_-]*-[0-9a-f]{8}\.service", n) for n in names)


def test_every_systemd_command_names_the_unit_of_its_root():
    """install (and enable), restart and stop all use the one unit name of the root."""
    service = services(manager="systemd")["hello"]
    for root in ("/srv/hello", "/srv/hello-staging"):
        unit = systemd.unit_name("hello", root)
        install, restart = restart_steps(service, Layout(root), root + "/venvs/k")
        assert install.argv == ("sh", "-c", "set -e" + systemd.INSTALL, "fabship",
                                f"{root}/current/.fabship/{unit}",
                                f"/etc/systemd/system/{unit}", unit)
        assert install.label == f"install and enable {unit}, reload systemd"
        assert restart.argv == ("sh", "-c", "set -e" + systemd.RESTART, "fabship", unit)
        assert systemd.stop("hello", root)[-1] == unit


def test_unit_user_defaults_to_the_ssh_user_and_never_silently_to_root():
    """No `user:`: the SSH user, unless it is root (then `user:` must say so)."""
    assert systemd.unit_user(None, "deploy") == "deploy"
    assert systemd.unit_user("app", "deploy") == "app"
    assert systemd.unit_user("app", "root") == "app"
    assert systemd.unit_user("root", "root") == "root"  # said explicitly
    with pytest.raises(ConfigError) as refused:
        systemd.unit_user(None, "root", "services.hello.user")
    assert str(refused.value) == (
        "services.hello.user: the deploy logs in as root and no `user:` says who runs the "
        "service: set `user:` to the account it runs as (`user: root` to run it as root, "
        "explicitly)")
    for name in ("first.last", "a b", "", None):
        with pytest.raises(ConfigError) as bad:
            systemd.unit_user(None, name)
        assert str(bad.value) == (f"user: the unit would run as the SSH user {name!r}, which "
                                  "is not a user name systemd takes strictly: set `user:`")
    with pytest.raises(ConfigError, match=r"^u: expected a user name .* got 'x\\ny'$"):
        systemd.unit_user("x\ny", "deploy", "u")


@pytest.mark.parametrize("user", [
    "deploy\nExecStartPre=/bin/touch /tmp/pwned", "app; rm -rf /", "a b", "-app", "9app",
    "app\n", "app.web", "a" * 32, "", "ünï", 0, ["app"]])
def test_user_key_cannot_inject_into_the_unit(user):
    """`User=` takes a strict user name only: no new line, no second directive."""
    with pytest.raises(ConfigError) as bad:
        services(manager="systemd", user=user)
    assert str(bad.value).startswith(f"fabric.yaml: services.hello.user: expected a user "
                                     f"name {STRICT}, got {user!r}")


def test_user_and_boot_keys_and_their_managers():
    """Defaults; `user` is for systemd, `boot` for supervisor; bad values are refused."""
    defaults = services()["hello"]
    assert (defaults.user, defaults.boot) == (None, "cron")
    chosen = services(manager="systemd", user="_app-1")["hello"]
    assert (chosen.manager, chosen.user) == ("systemd", "_app-1")
    assert services(boot="none")["hello"].boot == "none"
    assert services(manager="systemd", user="a" * 31)["hello"].user == "a" * 31
    cases = [
        ({"user": "app"}, "fabric.yaml: services.hello.user: only with `manager: systemd` "
                          "(supervisord runs the program as the SSH user)"),
        ({"manager": "systemd", "boot": "cron"},
         "fabric.yaml: services.hello.boot: only with `manager: supervisor` (the systemd "
         "unit is enabled, so it starts at boot)"),
        ({"boot": "systemd"},
         "fabric.yaml: services.hello.boot: expected cron or none, got 'systemd'"),
    ]
    for overrides, message in cases:
        with pytest.raises(ConfigError) as bad:
            parse_services({"hello": {**RAW["hello"], **overrides}}, "fabric.yaml")
        assert str(bad.value) == message


def test_a_unit_holding_a_secret_is_refused():
    """For the context: a unit (e.g. a project's own template) must not hold a secret."""
    systemd.refuse_secret(False)
    with pytest.raises(ConfigError, match=r"^services.hello.manager: the systemd unit holds "
                                          r"a secret, and `systemctl show`"):
        systemd.refuse_secret(True, "services.hello.manager")


# --- the rendered unit --------------------------------------------------------------------

def rendered_unit(ctx):
    """The unit file a host context ships."""
    unit = systemd.unit_name("hello", ctx.layout.root)
    return next(f for f in ctx.files if f.dest == f".fabship/{unit}")


def test_unit_holds_no_secret_and_passes_systemd_analyze_verify(tmp_path):
    """Secrets reach the program through the launcher's .fabship/env, never the unit."""
    value = "pa$$w;touch /tmp/x'\"`"
    root = str(tmp_path / "srv")
    _, (ctx, _) = contexts(secrets=(Secret("DB_PASSWORD", value),), manager="systemd",
                           root=root)
    unit = rendered_unit(ctx)
    assert not unit.secret and unit.mode == 0o644 and unit.text == unit.shown
    assert value not in unit.text and "pa$$w" not in unit.text
    lines = unit.text.splitlines()
    directives = [line for line in lines if line and not line.startswith(("#", ";"))]
    assert not [line for line in directives if "Environment" in line]  # no Environment=,
    # EnvironmentFile= or PassEnvironment= (systemctl show prints what they set)
    assert "User=deploy" in lines  # the SSH user of deploy@10.0.0.5
    assert f"ExecStart=/bin/sh {root}/current/.fabship/run" in lines
    assert "WantedBy=multi-user.target" in lines  # what `systemctl enable` links it to
    run = Path(root, "current", ".fabship", "run")
    run.parent.mkdir(parents=True)
    run.write_text("#!/bin/sh\n")
    path = tmp_path / systemd.unit_name("hello", root)
    path.write_text(unit.text)
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(path)],
                          capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    assert path.name not in proc.stderr, proc.stderr
    assert "Accepting user/group name" not in proc.stderr, proc.stderr  # a strict name


def test_unit_runs_as_the_configured_user():
    """`user:` wins over the SSH user, on every host."""
    _, contexts_ = contexts(manager="systemd", user="app")
    assert all("User=app" in rendered_unit(ctx).text.splitlines() for ctx in contexts_)


# --- the unit's scripts, run for real -----------------------------------------------------
# No systemd manager runs on this machine (PID 1 is not systemd: systemctl answers "System
# has not been booted with systemd"), and a real sudo would need a sudoers entry here; so
# `systemctl` and `sudo` are stand-ins on PATH that record their arguments (sudo then runs
# the command). `install`, the files and the unit directory are real.

STUB = "#!/bin/sh\necho \"$(id -u) {name} $*\" >> \"$CALLS\"\n{tail}"


@pytest.fixture(name="stand_ins")
def stand_ins_fixture():
    """A world-readable directory: bin/ (systemctl, sudo), units/, calls.log."""
    base = Path(tempfile.mkdtemp(prefix="fabship-unit-"))
    base.chmod(0o777)
    (base / "bin").mkdir(mode=0o755)
    for name, tail in (("systemctl", ""), ("sudo", '[ "$1" = -n ] && [ "$2" = -- ] && '
                                                   'shift 2 && exec "$@"\nexit 1\n')):
        (base / "bin" / name).write_text(STUB.format(name=name, tail=tail))
        (base / "bin" / name).chmod(0o755)
    (base / "units").mkdir()
    (base / "units").chmod(0o777)
    (base / "calls.log").touch(mode=0o666)
    (base / "calls.log").chmod(0o666)
    try:
        yield base
    finally:
        shutil.rmtree(base)


def run_as(argv, base, user=None):
    """Run argv with the stand-ins first on PATH, as `user` (a uid) when given."""
    env = {"PATH": f"{base}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CALLS": f"{base}/calls.log"}
    prefix = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups"] if user else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, env=env,
                          timeout=30, check=False)


def unit_scripts(base, uid):
    """Run install, restart and stop; return the calls log and the installed unit."""
    staged = base / "staged.service"
    staged.write_text("[Service]\nExecStart=/bin/true\n")
    staged.chmod(0o644)
    unit = systemd.unit_name("hello", "/srv/hello")
    install = list(systemd.install_unit(str(staged), "hello", "/srv/hello"))
    install[-2] = str(base / "units" / unit)  # a temporary unit directory
    user = str(uid) if os.getuid() == 0 and uid != 0 else None
    for argv in (install, systemd.restart("hello", "/srv/hello"),
                 systemd.stop("hello", "/srv/hello")):
        proc = run_as(argv, base, user)
        assert proc.returncode == 0, proc.stderr
    return (base / "calls.log").read_text().splitlines(), base / "units" / unit


@pytest.mark.skipif(os.getuid() != 0, reason="the SSH user is root: needs root")
def test_unit_scripts_as_root_call_systemctl_directly(stand_ins):
    """As root: install 0644, daemon-reload, enable, restart, disable --now; no sudo."""
    calls, installed = unit_scripts(stand_ins, 0)
    unit = installed.name
    assert calls == ["0 systemctl daemon-reload", f"0 systemctl enable --quiet {unit}",
                     f"0 systemctl restart {unit}", f"0 systemctl disable --quiet --now {unit}"]
    assert installed.read_text() == "[Service]\nExecStart=/bin/true\n"
    assert installed.stat().st_mode & 0o777 == 0o644


@pytest.mark.skipif(os.getuid() == 0 and shutil.which("setpriv") is None,
                    reason="root runs the scripts as nobody with setpriv")
def test_unit_scripts_as_another_user_go_through_sudo_n(stand_ins):
    """Not root: every privileged command goes through `sudo -n --` (never a prompt)."""
    uid = os.getuid() or 65534  # root runs them as nobody
    calls, installed = unit_scripts(stand_ins, uid)
    unit = installed.name
    assert calls == [f"{uid} sudo -n -- install -m 0644 {stand_ins}/staged.service {installed}",
                     f"{uid} sudo -n -- systemctl daemon-reload",
                     f"{uid} systemctl daemon-reload",
                     f"{uid} sudo -n -- systemctl enable --quiet {unit}",
                     f"{uid} systemctl enable --quiet {unit}",
                     f"{uid} sudo -n -- systemctl restart {unit}",
                     f"{uid} systemctl restart {unit}",
                     f"{uid} sudo -n -- systemctl disable --quiet --now {unit}",
                     f"{uid} systemctl disable --quiet --now {unit}"]
    assert installed.stat().st_mode & 0o777 == 0o644


def test_a_failing_systemctl_fails_the_step(stand_ins):
    """The scripts stop at the first failure, with its message."""
    (stand_ins / "bin" / "systemctl").write_text("#!/bin/sh\necho \"no: $*\" >&2\nexit 1\n")
    proc = run_as(systemd.restart("hello", "/srv/hello"), stand_ins)
    assert proc.returncode == 1
    assert proc.stderr.startswith("no: ")


# --- supervisor: the crontab's @reboot line, against the real crontab ---------------------

needs_crontab = pytest.mark.skipif(shutil.which("crontab") is None,
                                   reason="needs cron's crontab (make setup installs cron)")


def crontab():
    """This user's crontab ("" when there is none)."""
    proc = subprocess.run(["crontab", "-l"], capture_output=True, text=True, check=False)
    return proc.stdout if proc.returncode == 0 else ""


def mine(text=None):
    """This module's lines of the crontab."""
    return [line for line in (crontab() if text is None else text).splitlines()
            if TOKEN in line]


def sh(argv, env=None):
    """Run a command builder's argv locally."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False,
                          env=env)


@pytest.fixture(name="tab")
def tab_fixture():
    """The crontab as the test found it, minus this module's lines afterwards."""
    yield
    kept = [line for line in crontab().splitlines() if TOKEN not in line]
    if kept:
        subprocess.run(["crontab", "-"], input="\n".join(kept) + "\n", text=True, check=True)
    else:
        subprocess.run(["crontab", "-r"], capture_output=True, check=False)
    assert not mine()


@needs_crontab
@pytest.mark.usefixtures("tab")
def test_boot_line_is_added_once_and_keeps_other_lines():
    """One line per root, never twice; an older line of the root replaced; others kept."""
    root, prefix = f"/nonexistent/{TOKEN}/a", f"/nonexistent/{TOKEN}/ab"
    others = [f"# {TOKEN} someone's line: % \\ 'quoted' \"too\"",
              f"@reboot /bin/true {TOKEN} # fabship-boot /nonexistent/{TOKEN}/a/b"]
    before = crontab()
    subprocess.run(["crontab", "-"], input=before + "\n".join(others) + "\n", text=True,
                   check=True)
    for argv in (boot.install(root), boot.install(prefix), boot.install(root)):
        proc = sh(argv)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert mine() == [*others, boot.line(root), boot.line(prefix)]
    assert boot.line(root) == (
        f"@reboot {root}/current/.fabship/venv/bin/python -m supervisor.supervisord -c "
        f"{root}/current/.fabship/supervisord.conf # fabship-boot {root}")
    assert crontab().startswith(before)  # what was there stays, byte for byte

    # a line of an older form (same marker) is replaced, not duplicated
    text = crontab().replace(boot.line(root), f"@reboot /bin/old {TOKEN} # fabship-boot {root}")
    subprocess.run(["crontab", "-"], input=text, text=True, check=True)
    assert sh(boot.install(root)).returncode == 0
    assert mine() == [*others, boot.line(prefix), boot.line(root)]

    # forget removes exactly the root's line (not the one of a root it is a prefix of)
    for _ in range(2):
        proc = sh(boot.forget(root))
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
    assert mine() == [*others, boot.line(prefix)]
    assert crontab().startswith(before)


@needs_crontab
@pytest.mark.usefixtures("tab")
@pytest.mark.parametrize("root", ["relative/root", "/srv/a b", "/srv/$(touch x)",
                                  "/srv/a\n@reboot x", "/srv/'q'", "/srv/%h", ""])
def test_boot_refuses_what_is_not_a_service_root(root):
    """Only a service root's characters reach the crontab (cron runs lines with sh)."""
    before = crontab()
    for argv in (boot.install(root), boot.forget(root)):
        proc = sh(argv)
        assert (proc.returncode, proc.stdout) == (2, "")
        assert proc.stderr == f"fabship: not a service root: {root}\n"
    assert crontab() == before


@needs_crontab
@pytest.mark.usefixtures("tab")
def test_concurrent_deploys_keep_every_line(tmp_path):
    """Deploys of several roots edit one crontab at once: flock keeps every line."""
    roots = [f"/nonexistent/{TOKEN}/c{index}" for index in range(6)]
    env = {**os.environ, "HOME": str(tmp_path)}
    with ThreadPoolExecutor(len(roots)) as pool:
        results = list(pool.map(lambda root: sh(boot.install(root), env), roots))
    assert [(p.returncode, p.stdout) for p in results] == [(0, "")] * len(roots)
    assert sorted(mine()) == sorted(boot.line(root) for root in roots)


def test_no_crontab_on_the_host_is_one_warning_and_no_failure(tmp_path):
    """A host without cron: the deploy says it once and goes on."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("sh", "awk", "grep", "touch", "flock"):  # a host with no crontab command
        found = shutil.which(tool)
        if found:
            (bin_dir / tool).symlink_to(found)
    env = {"PATH": str(bin_dir), "HOME": str(tmp_path)}
    proc = sh(boot.install("/srv/hello"), env)
    assert (proc.returncode, proc.stderr) == (0, "")
    assert proc.stdout == (
        "fabship: warning: no crontab command on this host: supervisord of /srv/hello will "
        "not start again after a reboot (see README, boot)\n")
    assert proc.stdout.startswith(boot.WARNING)
    forgot = sh(boot.forget("/srv/hello"), env)
    assert (forgot.returncode, forgot.stdout) == (
        0, "fabship: warning: no crontab command on this host: the @reboot line of "
           "/srv/hello stays in the crontab (see README, boot)\n")


def test_boot_none_adds_no_step():
    """`boot: cron` (the default) adds the crontab step after the restart; `none` does not."""
    layout = Layout("/srv/hello")
    with_cron = restart_steps(services()["hello"], layout, "/v")
    assert [step.argv for step in with_cron[-1:]] == [boot.install("/srv/hello")]
    assert with_cron[-1].label == "start supervisord at boot (crontab @reboot)"
    without = restart_steps(services(boot="none")["hello"], layout, "/v")
    assert without == with_cron[:-1]


# --- a real deploy, then a "reboot" -------------------------------------------------------

def pid_of(path):
    """The pid in a pid file, or None."""
    try:
        return int(Path(path).read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None


def healthy(port, timeout=30):
    """The body of /health once it answers, or None after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as answer:
                return answer.read().decode()
        except OSError:
            time.sleep(0.2)
    return None


@needs_crontab
@pytest.mark.usefixtures("tab")
def test_deploy_adds_the_boot_line_and_it_brings_supervisord_back(build, fleet):
    """Deploy (boot: cron): one line per root; kill -9 everything, as a reboot would;
    the line, run as cron runs it (sh -c), serves the release again. Redeploys add none."""
    project = build.project(hosts=2, root=f"{fleet.base}/{TOKEN}/{{{{ host_id }}}}",
                            boot="cron")
    release, output = deploy_ok(project)
    assert "warning" not in output
    roots = [str(project.host_root(index)) for index in range(2)]
    assert sorted(mine()) == sorted(boot.line(root) for root in roots)

    root = Path(roots[0])
    supervisord = pid_of(root / "supervisord.pid")
    assert supervisord
    children = subprocess.run(["pgrep", "-P", str(supervisord)], capture_output=True,
                              text=True, check=False).stdout.split()
    for pid in [supervisord, *map(int, children)]:
        os.kill(pid, signal.SIGKILL)
    port = project.hosts[0]["vars"]["port"]
    assert healthy(port, timeout=1) is None
    command = boot.line(str(root))[len("@reboot "):]
    cron_env = {"PATH": "/usr/bin:/bin", "SHELL": "/bin/sh", "HOME": os.environ["HOME"],
                "LOGNAME": os.environ.get("LOGNAME", "root")}  # what cron gives a job
    started = subprocess.run(["sh", "-c", command], capture_output=True, text=True,
                             timeout=60, check=False, cwd=os.environ["HOME"], env=cron_env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert release in (healthy(port) or "")
    assert pid_of(root / "supervisord.pid") not in (None, supervisord)

    deploy_ok(project)  # a redeploy restarts through the revived supervisord, adds no line
    assert sorted(mine()) == sorted(boot.line(root) for root in roots)
