"""What ships and how values reach the program, on real sshd hosts.

The program is hello behind a small committed wrapper that writes down exactly the
arguments and the secret it received, then serves as usual.
"""
import json
import os
import stat
import threading
from pathlib import Path

from tests.deploy.fleetstate import release_of

SECRET = "pa$$w;touch /tmp/x'\"`"
WRAPPER = '''import json, os, runpy, sys
out, config = sys.argv[1], sys.argv[-1]
with open(out, "w", encoding="utf-8") as handle:
    json.dump({"argv": sys.argv[2:-1], "secret": os.environ.get("HELLO_SECRET")}, handle)
sys.argv = ["hello", "--config", config]
runpy.run_module("hello", run_name="__main__")
'''


class CmdlineWatch(threading.Thread):
    """Scans every process's command line on this machine (controller and hosts alike)."""

    def __init__(self, needle):
        super().__init__(daemon=True)
        self.needle, self.hits, self.done, self.scans = needle.encode(), set(), False, 0

    def run(self):
        while not self.done:
            for proc in Path("/proc").iterdir():
                try:
                    if self.needle in (proc / "cmdline").read_bytes():
                        self.hits.add(proc.name)
                except OSError:
                    continue
            self.scans += 1

    def stop(self):
        """Finish the current scan and return the pids seen holding the needle."""
        self.done = True
        self.join()
        return self.hits


def test_values_reach_the_program_byte_for_byte_and_never_as_shell(build, tmp_path):
    """A hostile var stays one argument, a hostile secret arrives through .fabship/env
    (0600) and never shows on a command line, ignored files stay home, nothing runs."""
    witness = tmp_path / "pwned"
    hostile = f"$(touch {witness}); `touch {witness}`; touch {witness} 'q\" \\"
    project = build.project(hosts=2, secret_env=["HELLO_SECRET"], run=(
        "{{ venv }}/bin/python wrapper.py {{ root }}/shared/data/seen.json {{ hostile }} "
        "'two words' {{ release_dir }}/hello.conf"))
    project.service["vars"]["hostile"] = hostile
    project.write_config({"hello": project.service})
    (project.root / "services" / "hello" / "wrapper.py").write_text(WRAPPER)
    (project.root / ".gitignore").write_text(
        (project.root / ".gitignore").read_text() + "services/hello/.env\n")
    project.commit("wrapper")
    (project.root / "services" / "hello" / ".env").write_text("IGNORED=1\n")
    secret = SECRET + f";touch {witness}"
    watch = CmdlineWatch(secret)
    watch.start()
    try:
        proc = project.fab("service", "deploy", env={"HELLO_SECRET": secret})
    finally:
        hits = watch.stop()
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr
    release, out = release_of(proc), proc.stdout + proc.stderr
    assert not hits and watch.scans > 0
    assert secret not in out and "HELLO_SECRET" not in out
    for index in range(2):
        root = project.host_root(index)
        assert json.loads((root / "shared" / "data" / "seen.json").read_text()) == {
            "argv": [hostile, "two words"], "secret": secret}
        assert project.health(index)["release"] == release
        assert not (root / "releases" / release / ".env").exists()
        env_file = root / "releases" / release / ".fabship" / "env"
        assert stat.S_IMODE(env_file.stat().st_mode) == 0o600
        assert json.loads(env_file.read_text()) == {"HELLO_SECRET": secret}
    assert not witness.exists()


def test_what_would_not_be_the_commit_is_refused_before_any_host(build):
    """A committed link out of source, or a committed release.json: exit 2, hosts as they were."""
    project = build.project(hosts=1)
    first = release_of(project.fab("service", "deploy"))
    before = project.snapshot()
    service = project.root / "services" / "hello"
    key = Path(os.path.expanduser("~/.ssh/id_ed25519"))
    (service / "key").symlink_to(key)
    project.commit("link out")
    proc = project.fab("service", "deploy")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert proc.stderr == (
        f"fabship: error: fabric.yaml: services.hello.source: symlink services/hello/key -> "
        f"{key} points outside the service's source directory; it would not ship what the "
        "commit holds. Replace it with the file, or link inside the source\n")
    (service / "key").unlink()
    (service / "release.json").write_text('{"release": "forged"}')
    project.commit("forged release.json")
    proc = project.fab("service", "deploy")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "services/hello/release.json uses a name fabship reserves" in proc.stderr
    assert project.snapshot() == before and project.current(0) == first
