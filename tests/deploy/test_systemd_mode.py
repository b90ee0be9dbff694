"""systemd mode (issue 9): the unit is named after service and root, runs as `user`
(never root unless said), is enabled, holds no secret and passes `systemd-analyze
verify`; its install/restart/stop scripts run for real against a temporary unit
directory. Also the `user` and `boot` keys, and where the planner puts the boot step.
Fast and pure enough for `make mutants`; the crontab itself is tested in
test_supervisor_boot.py.
"""
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from fabship.deploy import launcher
from fabship.deploy.commands import boot, systemd
from fabship.deploy.config import parse_services
from fabship.deploy.errors import ConfigError
from fabship.deploy.layout import Layout
from fabship.deploy.planner import restart_steps
from fabship.deploy.secrets import Secret
from tests.deploy.helpers import RAW, contexts, services

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
    assert systemd.unit_name("web", "/srv/web") == f"fabship-web-{sha8('/srv/web')}.service"
    assert systemd.UNIT_DIR == "/etc/systemd/system"  # where every script installs them
    assert all(re.fullmatch(r"fabship-[a-z][a-z0-9_-]*-[0-9a-f]{8}\.service", n) for n in names)


def test_every_systemd_command_names_the_units_of_its_root():
    """install (and enable), restart and stop all use the unit names of the root."""
    service = services(manager="systemd", zero_downtime=False)["hello"]
    for root in ("/srv/hello", "/srv/hello-staging"):
        unit = systemd.unit_name("hello", root)
        names = (f"{root}/current", unit, unit.replace(".service", ".socket"),
                 unit.replace(".service", "@.service"))
        install, restart = restart_steps(service, Layout(root), root + "/venvs/k", None,
                                         ("http://h/x", "r1"))
        assert install.argv == ("sh", "-c", "set -e" + systemd.INSTALL, "fabship",
                                "/etc/systemd/system", *names, "1")
        assert install.label == f"install and enable {unit}, reload systemd"
        assert restart.argv[1:3] == ("-c", systemd.ROLL)
        assert restart.argv[6:] == (*names[:3], unit.replace(".service", "@1.service"))
        assert restart.label == f"restart {unit}"
        assert systemd.stop(f"{root}/current", "hello", root) == (
            "sh", "-c", "set -e" + systemd.STOP, "fabship", "/etc/systemd/system", *names)


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
                           root=root, zero_downtime=False)
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
    _, contexts_ = contexts(manager="systemd", user="app", zero_downtime=False)
    assert all("User=app" in rendered_unit(ctx).text.splitlines() for ctx in contexts_)
    # the stop timeout respects the drain: SIGKILL only `drain` + 5 s after SIGTERM
    assert "TimeoutStopSec=15" in rendered_unit(contexts_[0]).text.splitlines()
    _, drained = contexts(manager="systemd", drain=60, zero_downtime=False)
    assert "TimeoutStopSec=65" in rendered_unit(drained[0]).text.splitlines()


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
    """Run argv with the stand-ins first on PATH, as `user` (a uid) when given, from `/`
    (the caller's working directory may be closed to that user, as a mktemp checkout is)."""
    env = {"PATH": f"{base}/bin:/usr/sbin:/usr/bin:/sbin:/bin", "CALLS": f"{base}/calls.log"}
    prefix = ["setpriv", "--reuid", user, "--regid", user, "--clear-groups"] if user else []
    return subprocess.run([*prefix, *argv], capture_output=True, text=True, env=env, cwd="/",
                          timeout=30, check=False)


def moved(argv, base):
    """A script's argv, its unit directory moved under `base`."""
    argv = list(argv)
    assert argv[4] == systemd.UNIT_DIR
    argv[4] = str(base / "units")
    return argv


def install_argv(base, release, user=None):
    """The install step's argv, its unit directory moved under `base`."""
    return moved(systemd.install(str(release), "hello", "/srv/hello", 1, user), base)


def restart_argv(base, release):
    """The restart step's argv (the plain unit: restarted, no health check), run by the
    system's Python (readable by any user)."""
    python = base / "py" / "bin" / "python"
    if not python.exists():
        python.parent.mkdir(parents=True)
        python.symlink_to(SYSTEM_PYTHON)
        for folder in (base / "py", python.parent):
            folder.chmod(0o755)
    return systemd.roll(str(base / "py"), "http://127.0.0.1:9/health", "{}", 5,
                        systemd.units_of(str(release), "hello", "/srv/hello", 1))


def unit_scripts(base, uid, user=None):
    """Run install, restart and stop; return the calls log and the installed unit."""
    unit = systemd.unit_name("hello", "/srv/hello")
    staged = base / "release" / ".fabship" / unit
    staged.parent.mkdir(parents=True, mode=0o755)
    staged.parent.parent.chmod(0o755)
    staged.write_text("[Service]\nExecStart=/bin/true\n")
    staged.chmod(0o644)
    install = install_argv(base, base / "release", user)
    user = str(uid) if os.getuid() == 0 and uid != 0 else None
    for argv in (install, restart_argv(base, base / "release"),
                 moved(systemd.stop(str(base / "release"), "hello", "/srv/hello"), base)):
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
    assert calls == [f"{uid} sudo -n -- install -m 0644 {stand_ins}/release/.fabship/{unit} "
                     f"{installed}",
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
    staged = stand_ins / "release" / ".fabship" / systemd.unit_name("hello", "/srv/hello")
    staged.parent.mkdir(parents=True)
    staged.write_text("[Service]\nExecStart=/bin/true\n")
    proc = run_as(install_argv(stand_ins, stand_ins / "release"), stand_ins)
    assert (proc.returncode, proc.stderr) == (1, "no: daemon-reload\n")
    proc = run_as(restart_argv(stand_ins, stand_ins / "release"), stand_ins)
    unit = staged.name
    assert (proc.returncode, proc.stderr) == (
        1, f"{unit}: systemctl restart failed: no: restart {unit}\n")


@pytest.mark.parametrize("suffix", [".service", ".socket", "@.service"])
def test_a_unit_file_of_the_release_that_is_a_link_is_refused(stand_ins, suffix):
    """Root installs the unit files: one that is a link (to /etc/shadow, say) is refused,
    naming it, before anything is installed or asked of systemctl."""
    staged = stand_ins / "release" / ".fabship"
    staged.mkdir(parents=True)
    unit = systemd.unit_name("hello", "/srv/hello").replace(".service", suffix)
    (staged / unit).symlink_to("/etc/shadow")
    proc = run_as(install_argv(stand_ins, stand_ins / "release"), stand_ins)
    assert (proc.returncode, proc.stderr) == (1, ""), proc.stderr
    assert proc.stdout == (f"refusing: {staged / unit} is a symbolic link (to /etc/shadow); "
                           "fabship follows no link out of the service root: remove it\n")
    assert (stand_ins / "calls.log").read_text() == ""
    assert not any((stand_ins / "units").iterdir())


# --- the release's secret files go to the unit's user -------------------------------------
# The SSH user writes .fabship/env and secret templates mode 0600; a unit running as another
# `user:` must be able to read them. A real release tree, real find/chown, run as root.

SYSTEM_PYTHON = "/usr/bin/python3"  # readable by nobody, unlike this test's venv
AS_NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def write(path, text, mode):
    """A file with this text and mode, its parents made 0755."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    path.write_text(text)
    path.chmod(mode)
    return path


def release_tree(base):
    """srv/current -> srv/releases/r1, holding secret files, links out and a hard link."""
    srv, outside = base / "srv", base / "outside"
    r1 = srv / "releases" / "r1"
    write(r1 / ".fabship" / "env", json.dumps({"TOKEN": "s3cr3t"}), 0o600)
    write(r1 / ".fabship" / "argv.json", json.dumps(
        [SYSTEM_PYTHON, "-c", "import os; print(os.environ['TOKEN'], os.getcwd())"]), 0o644)
    write(r1 / ".fabship" / "launch.py", launcher.LAUNCH_PY, 0o644)
    write(r1 / ".fabship" / systemd.unit_name("hello", "/srv/hello"),
          "[Service]\nExecStart=/bin/true\n", 0o644)
    write(r1 / "config" / "db.env", "PW=s3cr3t\n", 0o600)
    write(r1 / "app.py", "print('hi')\n", 0o644)
    write(srv / "releases" / "r0" / ".fabship" / "env", "{}", 0o600)  # another release
    write(srv / "venvs" / "k" / "key", "venv\n", 0o600)
    write(srv / "shared" / "data" / "key", "shared\n", 0o600)
    write(outside / "key", "mine\n", 0o600)
    write(outside / "hard", "hard\n", 0o600)
    (r1 / ".fabship" / "venv").symlink_to(srv / "venvs" / "k")
    (r1 / "shared").symlink_to(srv / "shared")
    (r1 / "key-link").symlink_to(outside / "key")  # a link to a file outside
    (r1 / "config" / "dir-link").symlink_to(outside)
    os.link(outside / "hard", r1 / "hard")  # a hard link could name a file outside
    (srv / "current").symlink_to(r1)
    return srv / "current", r1


def snapshot(base):
    """{path: (uid, gid, mode)} of everything under base, links not followed."""
    found = {}
    for folder, dirs, files in os.walk(base):
        for name in dirs + files:
            info = os.lstat(os.path.join(folder, name))
            found[os.path.join(folder, name)] = (info.st_uid, info.st_gid, info.st_mode)
    return found


@pytest.fixture(name="tree")
def tree_fixture(stand_ins):
    """stand_ins plus a release tree under it: (base, current, the release)."""
    current, release = release_tree(stand_ins / "tree")
    for folder in (stand_ins / "tree", stand_ins / "tree" / "srv"):
        folder.chmod(0o755)
    return stand_ins, current, release


def launch_as_nobody(release):
    """Run the release's launch.py as nobody."""
    return subprocess.run([*AS_NOBODY, SYSTEM_PYTHON, "-I", str(release / ".fabship/launch.py")],
                          capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(os.getuid() != 0 or shutil.which("setpriv") is None
                    or not os.access(SYSTEM_PYTHON, os.X_OK),
                    reason="chown and setpriv need root")
def test_install_hands_the_release_secret_files_to_the_unit_user(tree):
    """`user: nobody`, SSH user root: nobody launches, reads its 0600 files; no link out
    of the release is followed, no hard-linked file touched, nothing outside changes."""
    base, current, release = tree
    before = snapshot(base / "tree")
    failed = launch_as_nobody(release)  # what the unit met before: one clear line
    assert (failed.returncode, failed.stdout) == (1, "")
    assert failed.stderr == (f"fabship launcher: cannot read {release}/.fabship/env: "
                             "Permission denied\n")
    for _ in range(2):  # a rollback installs the same release again: the same result
        proc = run_as(install_argv(base, current, "nobody"), base)
        assert (proc.returncode, proc.stdout, proc.stderr) == (0, "", "")
        after = snapshot(base / "tree")
        secrets = {str(release / ".fabship" / "env"), str(release / "config" / "db.env")}
        assert {path for path, seen in after.items() if seen != before[path]} == secrets
        assert set(after) == set(before)
        for path in secrets:
            assert after[path] == (65534, 0, before[path][2])  # mode 0600 kept
    for path, text in ((release / "config" / "db.env", "PW=s3cr3t\n"),
                       (release / "app.py", "print('hi')\n")):
        read = subprocess.run([*AS_NOBODY, "cat", str(path)], capture_output=True,
                              text=True, timeout=30, check=False)
        assert (read.returncode, read.stdout) == (0, text), read.stderr
    launched = launch_as_nobody(release)
    assert (launched.returncode, launched.stdout) == (0, f"s3cr3t {release}\n"), launched.stderr
    unit = systemd.unit_name("hello", "/srv/hello")
    assert (base / "calls.log").read_text().splitlines() == [
        "0 systemctl daemon-reload", f"0 systemctl enable --quiet {unit}"] * 2


@pytest.mark.skipif(os.getuid() != 0, reason="the SSH user is root: needs root")
@pytest.mark.parametrize("user", [None, "root"])
def test_install_changes_no_owner_when_the_unit_runs_as_the_ssh_user(tree, user):
    """`user:` unset (the unit runs as the SSH user) or naming the SSH user: no chown."""
    base, current, _ = tree
    before = snapshot(base / "tree")
    proc = run_as(install_argv(base, current, user), base)
    assert proc.returncode == 0, proc.stderr
    assert snapshot(base / "tree") == before


@pytest.mark.skipif(os.getuid() != 0, reason="the SSH user is root: needs root")
@pytest.mark.parametrize("user", ["fabship_no_such_user", "x;touch {w} #$(touch {w})`id`"])
def test_a_user_the_host_lacks_fails_the_install_naming_it(tree, user):
    """An account the host lacks: one line naming it, nothing chowned, no systemctl. The
    name is "$7" of a constant script, even one fabship's config would refuse."""
    base, current, _ = tree
    user = user.format(w=base / "pwned")
    before = snapshot(base / "tree")
    argv = install_argv(base, current, user)
    assert argv[:4] == ["sh", "-c", "set -e" + systemd.INSTALL, "fabship"]
    assert argv[-1] == user and user not in systemd.INSTALL
    proc = run_as(argv, base)
    assert (proc.returncode, proc.stderr) == (1, "")
    assert proc.stdout == f"no user {user} on this host for the unit to run as: create it first\n"
    assert snapshot(base / "tree") == before
    assert (base / "calls.log").read_text() == ""
    assert not (base / "pwned").exists()


@pytest.mark.skipif(os.getuid() == 0 and shutil.which("setpriv") is None,
                    reason="root runs the scripts as nobody with setpriv")
def test_a_ssh_user_other_than_root_chowns_through_sudo_n(tree):
    """Not root: find runs as the SSH user, each chown through `sudo -n --` (a stand-in
    chown records what it was asked)."""
    base, current, release = tree
    (base / "bin" / "chown").write_text(STUB.format(name="chown", tail=""))
    (base / "bin" / "chown").chmod(0o755)
    uid = os.getuid() or 65534
    proc = run_as(install_argv(base, current, "root"), base, str(uid) if uid != os.getuid()
                  else None)
    assert proc.returncode == 0, proc.stderr
    calls = (base / "calls.log").read_text().splitlines()
    chowns = [call for call in calls if " chown " in call]
    assert len(chowns) == 2  # one `find -exec ... {} +`: both files in one call
    assert chowns[0].startswith(f"{uid} sudo -n -- chown -h -- root ")
    assert chowns[1].startswith(f"{uid} chown -h -- root ")
    assert sorted(chowns[1].split()[5:]) == sorted(
        [f"{current}/.fabship/env", f"{current}/config/db.env"])
    assert release.exists()


def test_the_unit_user_reaches_the_install_as_its_last_argument_only():
    """The planner (deploy, automatic rollback, `fab service rollback`) passes `user:` as
    the last argument of the constant install script, after the release; unset, not at
    all. So does the zero downtime install."""
    layout = Layout("/srv/hello")
    for user, tail in (("app", ("app",)), (None, ())):
        for zero, count in ((False, "1"), (True, "2")):
            install, _ = restart_steps(services(manager="systemd", user=user,
                                                zero_downtime=zero)["hello"], layout, "/v",
                                       None, ("http://h/x", "r1"))
            assert install.argv[:5] == ("sh", "-c", "set -e" + systemd.INSTALL, "fabship",
                                        "/etc/systemd/system")
            assert install.argv[5] == "/srv/hello/current"
            assert install.argv[9:] == (count, *tail)
    assert "app" not in systemd.INSTALL


# --- supervisor: where the boot step goes -------------------------------------------------

def test_boot_none_adds_no_step():
    """`boot: cron` (the default) adds the crontab step after the restart; `none` does not."""
    layout = Layout("/srv/hello")
    with_cron = restart_steps(services()["hello"], layout, "/v", None, ("http://h/x", "r1"))
    assert [step.argv for step in with_cron[-1:]] == [boot.install("/srv/hello")]
    assert with_cron[-1].label == "start supervisord at boot (crontab @reboot)"
    without = restart_steps(services(boot="none")["hello"], layout, "/v", None,
                            ("http://h/x", "r1"))
    assert without == with_cron[:-1]


def test_boot_commands_are_exact():
    """The root travels as "$1" of a constant script (the scripts: test_supervisor_boot)."""
    assert boot.install("/srv/hello") == ("sh", "-c", "set -e" + boot.INSTALL, "fabship",
                                          "/srv/hello")
    assert boot.forget("/srv/hello") == ("sh", "-c", "set -e" + boot.FORGET, "fabship",
                                         "/srv/hello")
    assert boot.WARNING == "fabship: warning: "
