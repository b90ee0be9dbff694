"""Deploys that must not happen, or must fail cleanly: real gate records, secrets in failure
output, and a deploy killed while a host builds its venv."""
import contextlib
import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from tests.helpers import git

SECRET = "pw-Zq81-Distinctive-Value"
MASK = "********"

GATES_CFG = """[ci]
packages = services/hello/hello
tests = checks
gates = unit

[tool:pytest]
testpaths = checks
"""

PASSING_CHECK = '''from pathlib import Path


def test_config_template_sets_the_greeting():
    text = Path("templates/hello/hello.conf.j2").read_text()
    assert "greeting = {{ greeting }}" in text
'''

FAILING_CHECK = '''def test_greeting_is_shouted():
    assert "hello".upper() == "hello"
'''


def refused(project, proc, message):
    """The deploy exited 1 with a one-paragraph error holding `message`, no traceback."""
    assert proc.returncode == 1, proc.stdout + proc.stderr
    err = proc.stderr.strip()
    assert err.startswith("fabship: error: ") and message in err, err
    assert "Traceback" not in proc.stdout + proc.stderr and "\n\n" not in err
    assert "deploying hello release" not in proc.stdout, proc.stdout  # never got that far
    for index in range(len(project.hosts)):
        assert not (project.host_root(index) / ".lock").exists()


def hosts_state(project):
    """Every host's files (as snapshot() sees them) and where `current` points."""
    return project.snapshot(), [project.current(i) for i in range(len(project.hosts))]


def gate_record(project):
    """reports/gates.json as `python -m ci` left it."""
    return json.loads((project.root / "reports" / "gates.json").read_text())


def head(project):
    """The project's HEAD commit."""
    return git(project.root, "rev-parse", "HEAD")


def run_gates_ok(project):
    """A real `python -m ci` that passes, for HEAD of a clean tree; returns the record."""
    proc = project.run_gates()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    record = gate_record(project)
    assert (record["commit"], record["dirty"], record["passed"]) == (head(project), False, True)
    return record


@pytest.fixture(scope="module", name="gated")
def gated_project(make_project):
    """A project whose gates are real: one fast `unit` gate over checks/."""
    project = make_project("fail-gated")
    (project.root / "setup.cfg").write_text(GATES_CFG)
    (project.root / "checks").mkdir()
    (project.root / "checks" / "test_config.py").write_text(PASSING_CHECK)
    with open(project.root / ".gitignore", "a", encoding="utf-8") as ignore:
        ignore.write("__pycache__/\n")  # pytest's bytecode, as any Python project ignores it
    project.commit("real gates", gates_pass=None)
    return project


def test_real_record_ships_its_commit_and_is_stale_after_a_new_commit(gated):
    """A record from a real `python -m ci` ships HEAD; after one more commit it is stale."""
    gated_commit = head(gated)
    record = run_gates_ok(gated)
    assert list(record["gates"]) == ["unit"] and record["gates"]["unit"]["tests"] == 1
    proc = gated.fab("service", "deploy")
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    for index in range(len(gated.hosts)):
        release = json.loads((gated.host_root(index) / "current" / "release.json").read_text())
        assert release["commit"] == gated_commit
        assert release["gates"] == {name: gate["status"] for name, gate in
                                    record["gates"].items()} == {"unit": "passed"}
        assert release["skip_gates"] is False

    app = gated.root / "services" / "hello" / "hello" / "app.py"
    app.write_text(app.read_text() + "\n# a change nobody ran the gates on\n")
    new_commit = gated.commit("ungated change", gates_pass=None)  # the gates are not re-run
    before = hosts_state(gated)
    proc = gated.fab("service", "deploy")
    refused(gated, proc, f"is for commit {gated_commit[:12]}, not HEAD {new_commit[:12]}")
    assert "run the gates (`fabship-ci`) on this commit" in proc.stderr
    assert hosts_state(gated) == before


def test_real_failing_record_is_refused_naming_the_gate(gated):
    """A real run with a failing check: the deploy names the failed gate, changes nothing."""
    broken = gated.root / "checks" / "test_broken.py"
    broken.write_text(FAILING_CHECK)
    gated.commit("a failing check", gates_pass=None)
    try:
        gates = gated.run_gates()
        assert gates.returncode == 1, gates.stdout + gates.stderr
        assert "FAILED checks/test_broken.py::test_greeting_is_shouted" in gates.stdout
        record = gate_record(gated)
        assert (record["commit"], record["passed"]) == (head(gated), False)
        assert record["gates"]["unit"]["status"] == "failed"
        before = hosts_state(gated)
        proc = gated.fab("service", "deploy")
        refused(gated, proc, "did not pass its gates (gates failed: unit)")
        assert hosts_state(gated) == before
    finally:
        broken.unlink()
        gated.commit("the failing check removed", gates_pass=None)


def test_record_written_for_a_dirty_tree_is_refused(gated):
    """Gates run on an uncommitted experiment, since reverted: the record does not vouch."""
    app = gated.root / "services" / "hello" / "hello" / "app.py"
    original = app.read_text()
    app.write_text(original + "\n# a local experiment\n")
    try:
        gates = gated.run_gates()  # the gates pass, but for a tree that is not the commit
    finally:
        app.write_text(original)
    assert gates.returncode == 0, gates.stdout + gates.stderr
    record = gate_record(gated)
    assert (record["commit"], record["dirty"], record["passed"]) == (head(gated), True, True)
    assert not git(gated.root, "status", "--porcelain", "--", "services")  # clean again
    before = hosts_state(gated)
    proc = gated.fab("service", "deploy")
    refused(gated, proc, "did not pass its gates (the tree was dirty)")
    assert hosts_state(gated) == before


@pytest.mark.parametrize("change", ["modified", "untracked"])
def test_uncommitted_changes_are_refused(gated, change):
    """HEAD passed its gates, but the tree differs from it: nothing ships."""
    run_gates_ok(gated)  # a passing record of HEAD: only the tree stands in the way
    app = gated.root / "services" / "hello" / "hello" / "app.py"
    extra = gated.root / "services" / "hello" / "hello" / "extra.py"
    original = app.read_text()
    if change == "modified":
        app.write_text(original + "\n# not committed\n")
    else:
        extra.write_text('"""Not committed."""\n')
    try:
        before = hosts_state(gated)
        proc = gated.fab("service", "deploy")
    finally:
        app.write_text(original)
        extra.unlink(missing_ok=True)
    refused(gated, proc, "the working tree has uncommitted changes")
    assert hosts_state(gated) == before


HEALTH = '''    def get(self):
        """{"status": "ok", "release": ..., "commit": ...}"""
        self.write({"status": "ok", **self.settings["release_info"]})
'''

LEAKY_HEALTH = '''    def get(self):
        """503, and a body that leaks the database password from db.env, as is and encoded."""
        env = Path(__file__).resolve().parent.parent / "db.env"
        password = env.read_text().split("DB_PASSWORD=", 1)[1].split()[0]
        self.set_status(503)
        encoded = base64.b64encode(password.encode()).decode()
        self.write(f"database refused password {password} ({password.upper()}, {encoded})")
'''


def test_secret_in_the_output_of_a_failed_deploy_is_masked(make_project):
    """/health answers 503 quoting DB_PASSWORD: the output shows the mask, never the value."""
    project = make_project("fail-leaky")
    (project.root / "templates" / "hello" / "db.env.j2").write_text(
        "DB_PASSWORD={{ DB_PASSWORD }}\n")
    project.service["templates"].append({"src": "hello/db.env.j2", "dest": "db.env"})
    project.service["secret_env"] = ["DB_PASSWORD"]
    project.service["health"]["timeout"] = 10
    project.write_config({"hello": project.service})
    app = project.root / "services" / "hello" / "hello" / "app.py"
    text = app.read_text()
    assert HEALTH in text
    app.write_text(text.replace(HEALTH, LEAKY_HEALTH).replace(
        "import tornado.web\n", "import base64\nfrom pathlib import Path\n\nimport tornado.web\n",
        1))
    project.commit("health leaks the password")

    proc = project.fab("service", "deploy", env={"DB_PASSWORD": SECRET})
    assert proc.returncode == 1, proc.stdout[-4000:] + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert SECRET.upper() not in proc.stdout + proc.stderr
    shown = f"last response: 503 database refused password {MASK} ({MASK}, {MASK})"
    for index, host in enumerate(project.hosts):
        prefix = f"[{host['host']}] "
        assert f"{prefix}  FAILED  health check: " in proc.stdout, proc.stdout
        assert f"{prefix}  | unhealthy after 10s; {shown}" in proc.stdout, proc.stdout
        summary = [line for line in proc.stdout.splitlines() if line.startswith(host["host"])]
        # the latest distinct answers, errors first (before the processes listened: none)
        assert len(summary) == 1 and f"; {shown}" in summary[0], proc.stdout
        root = project.host_root(index)
        assert SECRET not in (root / "deploys.jsonl").read_text()
        (release,) = (root / "releases").iterdir()
        assert SECRET not in (release / "release.json").read_text()
        # the secret did reach the host (so the app really had it to leak)
        assert (release / "db.env").read_text() == f"DB_PASSWORD={SECRET}\n"
        assert not (root / ".lock").exists()
    assert "ROLLED BACK: 3 host(s) failed, more than max_fail 0" in proc.stdout


def pip_installs(roots):
    """{pid: venv} of every `<root>/venvs/<hash>/bin/python -m pip install` running now."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().decode(errors="replace").split("\0")
        except OSError:  # gone meanwhile
            continue
        if argv[1:4] != ["-m", "pip", "install"] or not argv[0].endswith("/bin/python"):
            continue
        venv = Path(argv[0]).parent.parent
        if venv.parent in {root / "venvs" for root in roots}:
            found[int(entry.name)] = venv
    return found


def processes_mentioning(text):
    """Pids of processes whose command line contains `text` (the hosts' leftover shells)."""
    pids = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and text.encode() in (entry / "cmdline").read_bytes():
                pids.append(int(entry.name))
        except OSError:
            continue
    return pids


def freeze(pid):
    """SIGSTOP a process; True when it is now stopped mid-run (not already exited)."""
    try:
        os.kill(pid, signal.SIGSTOP)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            stat = Path(f"/proc/{pid}/stat").read_text(encoding="ascii")
            state = stat.rsplit(")", 1)[1].split()[0]  # the field after "(comm)"
            if state in "TtZX":
                return state in "Tt"
            time.sleep(0.01)
    except (OSError, IndexError):
        return False
    return False


def start_watching(proc):
    """Collect a process's output lines in the background; returns the growing list."""
    lines = []
    threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")),
                     daemon=True).start()
    return lines


def kill_while_pip_installs(project, roots):
    """Start a deploy; once pip installs on a host, freeze that pip and SIGKILL `fab`.

    A killed controller does not stop the host's shell (sshd signals no session without
    a tty), so the host's build is interrupted too, as in a crash: each running pip is
    stopped (SIGSTOP), its venv checked while pip is stopped mid-install, then SIGKILLed.
    Returns {pid: venv} of the interrupted builds.
    """
    deploy = project.popen("service", "deploy")
    output = start_watching(deploy)
    frozen, deadline = {}, time.monotonic() + 240
    try:
        while not frozen and time.monotonic() < deadline and deploy.poll() is None:
            if any("ok  upload the deps bundle" in line for line in list(output)):
                frozen = {pid: venv for pid, venv in pip_installs(roots).items()
                          if freeze(pid)}
            time.sleep(0.02)
        os.kill(deploy.pid, signal.SIGKILL)
        deploy.wait(timeout=60)
        assert frozen, "never saw pip install running on a host:\n" + "".join(output)
        for venv in frozen.values():
            assert not (venv / ".complete").exists(), f"{venv} marked complete mid-install"
    finally:
        for pid in frozen:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    assert deploy.returncode == -signal.SIGKILL, "".join(output)
    return frozen


def wait_until_unused(paths, seconds=240):
    """Wait until no process names any of `paths` (the killed deploy's host shells)."""
    deadline = time.monotonic() + seconds
    while any(processes_mentioning(f"{path}/") for path in paths):
        assert time.monotonic() < deadline, f"still in use after {seconds}s: {paths}"
        time.sleep(0.1)


def test_deploy_killed_while_pip_builds_the_venv_leaves_it_unmarked(make_project):
    """SIGKILL `fab` while pip builds a new venv; rerun with --break-lock builds it."""
    project = make_project("fail-venvkill")
    first = project.fab("service", "deploy")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr
    roots = [project.host_root(i) for i in range(len(project.hosts))]
    old_venv = (roots[0] / "current" / ".fabship" / "venv").resolve()
    requirements = project.root / "services" / "hello" / "requirements.txt"
    requirements.write_text(requirements.read_text() + "# rebuild: the kill test\n")
    project.commit("new requirements hash")

    interrupted = set(kill_while_pip_installs(project, roots).values())
    (name,) = {venv.name for venv in interrupted}
    assert name != old_venv.name
    # Builds the killed deploy left running on other hosts finish on their own; a rerun
    # started while they still run races with them, so wait for them first.
    wait_until_unused([root / "venvs" / name for root in roots])
    for venv in interrupted:
        assert not (venv / ".complete").exists(), f"interrupted build of {venv} marked complete"

    rerun = project.fab("service", "deploy", "--break-lock")
    assert rerun.returncode == 0, rerun.stdout[-4000:] + rerun.stderr
    for index, root in enumerate(roots):
        assert project.health(index)["release"] == project.current(index)
        venv = (root / "current" / ".fabship" / "venv").resolve()
        assert venv == root / "venvs" / name and (venv / ".complete").is_file()
        check = subprocess.run([str(venv / "bin" / "python"), "-c", "import tornado, supervisor"],
                               capture_output=True, text=True, check=False)
        assert check.returncode == 0, check.stderr
        assert not (root / ".lock").exists()
        if venv in interrupted:
            assert (f"[{project.hosts[index]['host']}]   ok  build the venv from the shipped "
                    "wheels") in rerun.stdout
