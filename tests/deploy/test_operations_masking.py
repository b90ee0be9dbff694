"""`fab service status` (and history) mask the secrets the deployer exported, and so does
the error of a deploy stopped before any switch.

They need no secret, but a host may print one: here /health starts answering with a body
that quotes the database password from a rendered 0600 file (and no release: `stale`).
"""
import json

from tests.deploy.fleetstate import APP, HEALTH_ANSWER, edit, release_of

SECRET = "pw-Ops-Distinctive-Value-42"
MASK = "********"
LEAKY = '''(self.write({"status": "ok", **self.settings["release_info"]})
                 if not (Path(__file__).resolve().parent.parent / "leak").exists() else
                 self.write("database refused password " + (
                     Path(__file__).resolve().parent.parent / "db.env").read_text()
                     .split("=", 1)[1].strip()))'''


def test_status_masks_a_secret_the_health_body_echoes(build):
    """Healthy at deploy; then /health quotes DB_PASSWORD: status shows the mask, unless
    the variable is not exported (it is not needed: the value then shows, as before)."""
    project = build.project(hosts=1)
    (project.root / "templates" / "hello" / "db.env.j2").write_text(
        "DB_PASSWORD={{ DB_PASSWORD }}\n")
    project.service["templates"].append({"src": "hello/db.env.j2", "dest": "db.env"})
    project.service["secret_env"] = ["DB_PASSWORD"]
    project.write_config({"hello": project.service})
    app = project.root / APP
    app.write_text(app.read_text().replace("import tornado.web\n",
                                           "from pathlib import Path\n\nimport tornado.web\n", 1))
    edit(project, APP, HEALTH_ANSWER, LEAKY, "health leaks the password once told to")
    proc = project.fab("service", "deploy", env={"DB_PASSWORD": SECRET})
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    release = release_of(proc)
    current = project.host_root(0) / "current"
    assert (current / "db.env").stat().st_mode & 0o777 == 0o600
    (current / "leak").write_text("")

    proc = project.fab("service", "status", env={"DB_PASSWORD": SECRET})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert f"stale: database refused password {MASK}" in proc.stdout, proc.stdout
    assert release in proc.stdout

    unset = project.fab("service", "status", env={"DB_PASSWORD": ""})
    assert unset.returncode == 1 and "Traceback" not in unset.stderr, unset.stderr
    assert f"database refused password {SECRET}" in unset.stdout, unset.stdout

    history = project.fab("service", "history", env={"DB_PASSWORD": release})
    assert history.returncode == 0, history.stdout + history.stderr
    assert release not in history.stdout and MASK in history.stdout, history.stdout


def test_a_deploy_stopped_up_front_masks_what_the_host_said(build):
    """The up-front check quotes the lock's owner record from the host: a secret in it is
    masked in the error, and nothing changes."""
    project = build.project(hosts=1)
    project.service["secret_env"] = ["DB_PASSWORD"]
    project.write_config({"hello": project.service})
    project.commit("a secret")
    lock = project.host_root(0) / ".lock"
    lock.mkdir(parents=True)
    (lock / "owner.json").write_text(json.dumps({"who": SECRET, "where": "ci", "pid": 1,
                                                 "since": "2026-11-24T00:00:00Z",
                                                 "action": "deploy", "release": "r"}))
    proc = project.fab("service", "deploy", env={"DB_PASSWORD": SECRET})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the deploy lock is held; nothing was changed" in proc.stderr, proc.stderr
    assert SECRET not in proc.stdout + proc.stderr
    assert f"locked by {MASK}" in proc.stderr, proc.stderr
    assert not (project.host_root(0) / "current").exists()
