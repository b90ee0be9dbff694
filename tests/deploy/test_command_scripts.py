"""The release and lock builders' argv, run by the local sh against real temporary roots.

Each argv is what a host runs (`sh -c SCRIPT fabship ARGS...`); the tests assert the
directory tree it leaves behind, as the deploy relies on it.
"""
import hashlib
import io
import json
import os
import re
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from datetime import datetime, timezone

import pytest

from fabship.deploy.artifact import build_source, deterministic_tar
from fabship.deploy.commands import lock, release, script, supervisor
from fabship.deploy.commands import status as status_cmd
from fabship.deploy.facts import Facts, parse_facts, parse_lock_owner
from fabship.deploy.layout import Layout
from tests.helpers import git

OWNER = json.dumps({"who": "alice", "where": "laptop", "pid": 7, "release": "r2"})


def run(argv, **kwargs):
    """Run a builder's argv as a host would; never raise on a failing exit."""
    return subprocess.run(argv, capture_output=True, text=True, check=False, **kwargs)


def tree(path):
    """Sorted entry names of a directory, dot-entries included."""
    return sorted(os.listdir(path))


def releases(root, *names):
    """releases/<name>/ directories under root, each with a marker file."""
    for name in names:
        (root / "releases" / name).mkdir(parents=True)
        (root / "releases" / name / "app.py").write_text(name)


def test_script_wraps_a_constant_body_with_positional_arguments():
    """User input travels as "$1"...; the script stops at the first failing command."""
    assert script("\necho \"$1|$2\"", "a b", 3) == (
        "sh", "-c", "set -e\necho \"$1|$2\"", "fabship", "a b", "3")
    proc = run(script("\necho \"$1|$2\"", "$(id) 'x'", 3))
    assert proc.stdout == "$(id) 'x'|3\n"
    failing = run(script("\nfalse\necho after"))
    assert failing.returncode == 1 and failing.stdout == ""


def test_make_dirs_builds_the_layout_idempotently(tmp_path):
    """mkdir -p of every directory a release needs; running it twice is fine."""
    layout = Layout(str(tmp_path / "srv" / "hello"))
    for _ in range(2):
        assert run(release.make_dirs(layout)).returncode == 0
    root = tmp_path / "srv" / "hello"
    assert tree(root) == ["artifacts", "releases", "shared", "venvs"]
    assert tree(root / "shared") == ["data", "log"]


def test_clean_staging_removes_only_half_assembled_releases(tmp_path):
    """`.<id>.tmp` entries go (files or trees); releases and other dot-entries stay."""
    layout = Layout(str(tmp_path))
    releases(tmp_path, "r1", ".r2.tmp", ".keep")
    (tmp_path / "releases" / ".r2.tmp" / "deep").mkdir()
    (tmp_path / "releases" / ".r3.tmp").write_text("partial")
    assert run(release.clean_staging(layout)).returncode == 0
    assert tree(tmp_path / "releases") == [".keep", "r1"]
    assert run(release.clean_staging(layout)).returncode == 0  # nothing left to clean
    missing = Layout(str(tmp_path / "absent"))
    assert run(release.clean_staging(missing)).returncode == 0
    assert not (tmp_path / "absent").exists()


def test_keep_upload_extract_link_and_publish_assemble_a_release(tmp_path):
    """The assembly steps of the planner, in order, on a real tree."""
    layout = Layout(str(tmp_path))
    assert run(release.make_dirs(layout)).returncode == 0
    source = tmp_path / "src"
    (source / "pkg").mkdir(parents=True)
    (source / "pkg" / "app.py").write_text("print('hi')\n")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "src")
    git(tmp_path, "commit", "-qm", "src")
    artifact = build_source(tmp_path, "src", git(tmp_path, "rev-parse", "HEAD"))
    part = layout.artifact(artifact.name) + ".part"
    with open(part, "wb") as handle:
        handle.write(artifact.data)
    assert run(release.keep_upload(part, layout.artifact(artifact.name))).returncode == 0
    assert tree(layout.artifacts) == [artifact.name]
    staging = layout.staging("r1")
    os.makedirs(os.path.join(staging, ".fabship"))
    assert run(release.extract(layout.artifact(artifact.name), staging)).returncode == 0
    venv = layout.venv("k1")
    os.makedirs(venv)
    assert run(release.link(venv, os.path.join(staging, ".fabship", "venv"))).returncode == 0
    assert run(release.link(layout.shared, os.path.join(staging, "shared"))).returncode == 0
    assert run(release.publish(staging, layout.release("r1"))).returncode == 0
    done = tmp_path / "releases" / "r1"
    assert tree(tmp_path / "releases") == ["r1"]
    assert (done / "pkg" / "app.py").read_text() == "print('hi')\n"
    assert os.readlink(done / ".fabship" / "venv") == venv
    assert os.readlink(done / "shared") == layout.shared


def test_publish_never_merges_into_an_existing_release(tmp_path):
    """rename(2) onto a non-empty release fails and leaves both trees as they were."""
    layout = Layout(str(tmp_path))
    releases(tmp_path, "r1", ".r1.tmp")
    proc = run(release.publish(layout.staging("r1"), layout.release("r1")))
    assert proc.returncode != 0
    assert (tmp_path / "releases" / "r1" / "app.py").read_text() == "r1"
    assert (tmp_path / "releases" / ".r1.tmp" / "app.py").read_text() == ".r1.tmp"


def test_link_replaces_an_earlier_link_in_staging(tmp_path):
    """`ln -sfn` in a staging release repoints the link instead of nesting a new one."""
    (tmp_path / "v1").mkdir()
    (tmp_path / "v2").mkdir()
    name = str(tmp_path / "venv")
    assert run(release.link(str(tmp_path / "v1"), name)).returncode == 0
    assert run(release.link(str(tmp_path / "v2"), name)).returncode == 0
    assert os.readlink(name) == str(tmp_path / "v2")
    assert tree(tmp_path / "v1") == []


def watch_current(layout, switches):
    """Run each argv of `switches` while a thread polls readlink(current) in a tight loop.

    Returns (every target seen, every error seen).
    """
    seen, gaps, done = set(), [], threading.Event()

    def reader():
        while not done.is_set():
            try:
                seen.add(os.readlink(layout.current))
            except OSError as exc:
                gaps.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for argv in switches:
            assert run(argv).returncode == 0
    finally:
        done.set()
        thread.join()
    return seen, gaps


def test_switch_is_atomic_for_a_reader(tmp_path):
    """A reader polling current while it is switched 200 times never finds it missing."""
    root = tmp_path / "it's a root"
    layout = Layout(str(root))
    releases(root, "r1", "r2")
    targets = [layout.release("r1"), layout.release("r2")]
    assert run(release.switch(layout, targets[0])).returncode == 0
    seen, gaps = watch_current(layout, [release.switch(layout, targets[i % 2])
                                        for i in range(200)])
    assert not gaps
    assert seen == set(targets)  # never a half-made or temporary link
    assert os.readlink(layout.current) == targets[1]  # the last switch (i = 199) wins
    assert tree(root) == ["current", "releases"]  # no temporary link left behind


def test_the_reader_catches_a_switch_that_is_not_atomic(tmp_path):
    """The check above has teeth: unlink-then-symlink leaves moments without `current`."""
    layout = Layout(str(tmp_path))
    releases(tmp_path, "r1", "r2")
    unlink_then_link = '\nrm -f "$1/current"\nln -s "$2" "$1/current"'
    _, gaps = watch_current(layout, [script(unlink_then_link, layout.root,
                                            layout.release(f"r{1 + i % 2}"))
                                     for i in range(200)])
    assert gaps and all(isinstance(gap, FileNotFoundError) for gap in gaps)


def test_switch_replaces_current_and_only_current(tmp_path):
    """The switch repoints `current`; the releases themselves are untouched."""
    layout = Layout(str(tmp_path))
    releases(tmp_path, "r1", "r2")
    for target in ("r1", "r2", "r1"):
        assert run(release.switch(layout, layout.release(target))).returncode == 0
        assert (tmp_path / "current" / "app.py").read_text() == target
    assert tree(tmp_path / "releases") == ["r1", "r2"]
    assert tree(tmp_path / "releases" / "r2") == ["app.py"]  # no link nested inside


@pytest.mark.parametrize("keep, protected, left", [
    (2, (), ["r5", "r6"]),
    (2, ("r1",), ["r1", "r5", "r6"]),  # protected, although older than the newest 2
    (2, ("r1", "r3"), ["r1", "r3", "r5", "r6"]),
    (3, ("r6",), ["r4", "r5", "r6"]),  # protected and among the newest: nothing extra
    (9, (), ["r1", "r2", "r3", "r4", "r5", "r6"]),
])
def test_prune_by_name_keeps_the_newest_and_the_protected(tmp_path, keep, protected, left):
    """Release ids sort by time; dot-entries (staging) are never pruned here."""
    releases(tmp_path, "r3", "r1", "r6", "r2", "r5", "r4", ".r7.tmp", ".keep")
    proc = run(release.prune(str(tmp_path / "releases"), keep, protected))
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path / "releases") == [".keep", ".r7.tmp", *left]


def test_prune_by_time_keeps_the_newest_artifacts(tmp_path):
    """Artifacts are named by digest, so newest is by modification time, not by name."""
    now = time.time()
    for age, name in enumerate(["c.tar.gz", "a.tar.gz", "d.tar.gz", "b.tar.gz"]):
        path = tmp_path / name
        path.write_text(name)
        os.utime(path, (now - 100 * age, now - 100 * age))
    proc = run(release.prune(str(tmp_path), 2, ("b.tar.gz",), order="time"))
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path) == ["a.tar.gz", "b.tar.gz", "c.tar.gz"]


def test_prune_handles_odd_names_and_a_missing_directory(tmp_path):
    """Names with spaces or a leading dash are single arguments; no directory, no error."""
    releases(tmp_path, "-rf", "a b", "z1", "z2")
    proc = run(release.prune(str(tmp_path / "releases"), 1, ("a b",)))
    assert proc.returncode == 0, proc.stderr
    assert tree(tmp_path / "releases") == ["a b", "z2"]
    assert run(release.prune(str(tmp_path / "absent"), 1, ())).returncode == 0
    assert not (tmp_path / "absent").exists()


def test_append_history_adds_one_json_line_per_call(tmp_path):
    """Each call appends the record plus its UTC finish time; earlier lines stay."""
    layout = Layout(str(tmp_path))
    before = datetime.now(timezone.utc).replace(microsecond=0)
    for status in ("deployed", "failed"):
        record = json.dumps({"release": "r1", "status": status, "previous": None})
        assert run(release.append_history(layout, record)).returncode == 0
    lines = (tmp_path / "deploys.jsonl").read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["status"] for e in entries] == ["deployed", "failed"]
    assert entries[0]["previous"] is None and entries[0]["release"] == "r1"
    for entry in entries:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", entry["finished"])
        finished = datetime.strptime(entry["finished"], "%Y-%m-%dT%H:%M:%SZ")
        assert 0 <= (finished.replace(tzinfo=timezone.utc) - before).total_seconds() < 60
    assert release.append_history(layout, '{"a": 1}')[4:] == (str(tmp_path / "deploys.jsonl"),
                                                               '{"a": 1')


def test_mark_served_needs_the_release(tmp_path):
    """The served marker lands in the release's .fabship/; no release, no marker."""
    releases(tmp_path, "r1")
    (tmp_path / "releases" / "r1" / ".fabship").mkdir()
    assert run(release.mark_served(str(tmp_path / "releases" / "r1"))).returncode == 0
    assert (tmp_path / "releases" / "r1" / ".fabship" / "served").is_file()
    assert run(release.mark_served(str(tmp_path / "releases" / "r9"))).returncode != 0


def tiny_wheel():
    """(file name, bytes) of a real, minimal pure-Python wheel."""
    dist = "fabship_probe-1.0.dist-info"
    files = {"fabship_probe.py": "VALUE = 42\n",
             f"{dist}/METADATA": "Metadata-Version: 2.1\nName: fabship-probe\nVersion: 1.0\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                              "Tag: py3-none-any\n"}
    files[f"{dist}/RECORD"] = "".join(f"{name},,\n" for name in [*files, f"{dist}/RECORD"])
    data = io.BytesIO()
    with zipfile.ZipFile(data, "w") as wheel:
        for name, text in files.items():
            wheel.writestr(name, text)
    return "fabship_probe-1.0-py3-none-any.whl", data.getvalue()


def test_install_deps_builds_a_venv_offline_and_marks_it_complete(tmp_path):
    """The shipped wheels (no index) land in a fresh venv; `.complete` comes last.

    It builds a real venv with the interpreter running the tests (a few seconds).
    """
    wheel, data = tiny_wheel()
    venv = tmp_path / "venvs" / "k1"
    (venv / "stale").mkdir(parents=True)
    (venv / ".complete").touch()
    bundle = tmp_path / "venvs" / "k1.bundle.tar.gz"
    bundle.write_bytes(b"not a tarball")
    failed = run(release.install_deps(str(venv), str(bundle), sys.executable))
    assert failed.returncode != 0
    assert not venv.exists()  # never complete: the next deploy rebuilds it
    bundle.write_bytes(deterministic_tar([(wheel, data, 0o644),
                                          ("requirements.txt", b"fabship-probe==1.0\n", 0o644)]))
    proc = run(release.install_deps(str(venv), str(bundle), sys.executable))
    assert proc.returncode == 0, proc.stderr
    assert (venv / ".complete").is_file() and not (venv / "stale").exists()
    assert tree(tmp_path / "venvs") == ["k1"]  # bundle and unpacked wheels removed
    check = run([str(venv / "bin" / "python"), "-c", "import fabship_probe as p; print(p.VALUE)"])
    assert check.stdout == "42\n"


def test_acquire_takes_a_free_lock_and_refuses_a_held_one(tmp_path):
    """mkdir is the lock; a refused run exits 75 naming the holder, who keeps it."""
    root = tmp_path / "srv" / "hello"
    taken = run(lock.acquire(str(root), OWNER, False))
    assert (taken.returncode, taken.stdout) == (0, "")
    assert (root / ".lock" / "owner.json").read_text() == OWNER + "\n"
    refused = run(lock.acquire(str(root), '{"who": "bob"}', False))
    assert refused.returncode == lock.LOCKED_EXIT == 75
    assert refused.stdout == f"locked-by={OWNER}\n"
    assert parse_lock_owner(refused.stdout)["who"] == "alice"
    assert (root / ".lock" / "owner.json").read_text() == OWNER + "\n"


def test_acquire_refuses_a_lock_without_owner(tmp_path):
    """A lock whose owner.json is missing (a killed run) still holds; the owner is {}."""
    (tmp_path / ".lock").mkdir()
    refused = run(lock.acquire(str(tmp_path), OWNER, False))
    assert (refused.returncode, refused.stdout) == (75, "locked-by={}\n")
    assert tree(tmp_path / ".lock") == []


def test_break_lock_takes_a_held_lock_over(tmp_path):
    """--break-lock empties the old lock and writes the new owner."""
    assert run(lock.acquire(str(tmp_path), OWNER, False)).returncode == 0
    (tmp_path / ".lock" / "leftover").write_text("x")
    new_owner = '{"who": "bob", "note": "$(touch pwned) `id` \'q\'"}'
    assert lock.acquire(str(tmp_path), new_owner, True)[-1] == "1"
    taken = run(lock.acquire(str(tmp_path), new_owner, True))
    assert (taken.returncode, taken.stdout) == (0, "")
    assert tree(tmp_path / ".lock") == ["owner.json"]
    assert (tmp_path / ".lock" / "owner.json").read_text() == new_owner + "\n"
    assert not list(tmp_path.rglob("pwned"))  # the owner text is data, never shell
    # the old run is fenced by every later batch: tests/deploy/test_batch_marks.py


def test_release_removes_only_our_own_lock(tmp_path):
    """A run taken over by --break-lock must not release the new owner's lock."""
    assert run(lock.acquire(str(tmp_path), OWNER, False)).returncode == 0
    assert run(lock.release(str(tmp_path), '{"who": "bob"}')).returncode == 0
    assert (tmp_path / ".lock" / "owner.json").read_text() == OWNER + "\n"
    assert run(lock.release(str(tmp_path), OWNER)).returncode == 0
    assert tree(tmp_path) == []
    assert run(lock.release(str(tmp_path), OWNER)).returncode == 0  # nothing to release
    assert run(lock.acquire(str(tmp_path), '{"who": "bob"}', False)).returncode == 0


R1, R2, R3 = (f"2025010{day}T000000.000Z-abc123{day}" for day in (1, 2, 3))
ARTIFACT = hashlib.sha256(b"x").hexdigest() + ".tar.gz"  # named by its bytes' digest


def test_probe_prints_the_facts_the_planner_reads(tmp_path):
    """current, releases (no dot-entries), served ones, artifact, venv, running config."""
    layout = Layout(str(tmp_path))
    releases(tmp_path, R1, R2, R3, f".{R3}.tmp")
    for name in (R1, R2):
        (tmp_path / "releases" / name / ".fabship").mkdir()
        (tmp_path / "releases" / name / ".fabship" / "served").touch()
    conf = tmp_path / "releases" / R2 / ".fabship" / "supervisord.conf"
    conf.write_text("[supervisord]\n")
    (tmp_path / "artifacts").mkdir()
    (tmp_path / "artifacts" / ARTIFACT).write_bytes(b"x")
    (tmp_path / "venvs" / "k1").mkdir(parents=True)
    (tmp_path / "venvs" / "k1" / ".complete").touch()
    (tmp_path / "venvs" / "k2").mkdir()
    assert run(release.switch(layout, layout.release(R2))).returncode == 0
    proc = run(lock.probe(str(tmp_path), ARTIFACT, "k1"))
    digest = hashlib.sha256(b"[supervisord]\n").hexdigest()
    assert (proc.returncode, proc.stdout.splitlines()) == (0, [
        f"current={tmp_path}/releases/{R2}", f"releases={R1} {R2} {R3} ",
        f"served={R1} {R2} ", "artifact=yes", "venv=yes", f"supervisor_conf={digest}"])
    assert parse_facts(proc.stdout) == Facts(current=R2, releases=(R1, R2, R3),
                                             served=(R1, R2), has_artifact=True,
                                             has_venv=True, supervisor_conf=digest)
    other = run(lock.probe(str(tmp_path), "def.tar.gz", "k2"))  # k2 is incomplete
    assert parse_facts(other.stdout) == Facts(current=R2, releases=(R1, R2, R3),
                                              served=(R1, R2), supervisor_conf=digest)


def test_probe_of_an_empty_host(tmp_path):
    """Nothing deployed yet: empty facts, and the probe still succeeds."""
    proc = run(lock.probe(str(tmp_path / "srv"), ARTIFACT, "k1"))
    assert (proc.returncode, proc.stdout) == (0, "current=\nreleases=\nserved=\n")
    assert parse_facts(proc.stdout) == Facts()
    assert not (tmp_path / "srv").exists()


def test_probe_reads_a_tarball_it_did_not_write(tmp_path):
    """The artifact fact is a regular file's presence, not a directory of that name."""
    (tmp_path / "artifacts" / ARTIFACT).mkdir(parents=True)
    (tmp_path / "venvs" / "k1" / ".complete").mkdir(parents=True)
    facts = parse_facts(run(lock.probe(str(tmp_path), ARTIFACT, "k1")).stdout)
    assert not facts.has_artifact and not facts.has_venv


def test_probe_trusts_a_cached_artifact_only_with_the_digest_it_is_named_by(tmp_path):
    """A damaged or replaced artifacts/<digest>.tar.gz is not the artifact: it is uploaded
    again (and `keep the artifact` replaces it); only bytes of that digest count."""
    (tmp_path / "artifacts").mkdir()
    cached = tmp_path / "artifacts" / ARTIFACT
    for data in (b"y", b"", b"x\n", b"xx"):
        cached.write_bytes(data)
        text = run(lock.probe(str(tmp_path), ARTIFACT, "k1")).stdout
        assert "artifact=yes" not in text and not parse_facts(text).has_artifact, data
    cached.write_bytes(b"x")
    assert "artifact=yes" in run(lock.probe(str(tmp_path), ARTIFACT, "k1")).stdout
    for name in ("", "-", ARTIFACT[:-7], ARTIFACT + ".part"):  # not `<digest>.tar.gz`
        (tmp_path / "artifacts" / (name or "x")).write_bytes(b"x")
        assert "artifact=yes" not in run(lock.probe(str(tmp_path), name, "k1")).stdout


def test_probe_reports_only_release_names_and_no_forged_fact(tmp_path):
    """A directory name with a line break cannot print a fact of its own, and `current`
    pointing at releases/.. (or any name that is no release id) is no release."""
    layout = Layout(str(tmp_path))
    releases(tmp_path, R1, R2)
    for name in (R1, R2):
        (tmp_path / "releases" / name / ".fabship").mkdir()
        (tmp_path / "releases" / name / ".fabship" / "served").touch()
    forged = ["x\nvenv=yes", f"{R3}\nartifact=yes", f"{R3}\nsupervisor_conf=x", "r1",
              f"{R3}x\n", f"{R3[:-1]}X", R3 + "a" * 40, R3.replace("T", "t"),
              f"{R3[:8]}T000000.00Z-abc", f"{R3[:-7]}", f" {R3}"]
    for name in forged:
        (tmp_path / "releases" / name / ".fabship").mkdir(parents=True)
        (tmp_path / "releases" / name / ".fabship" / "served").touch()
    assert run(release.switch(layout, layout.release(R2))).returncode == 0
    proc = run(lock.probe(str(tmp_path), ARTIFACT, "k1"))
    assert proc.returncode == 0 and proc.stdout.splitlines() == [
        f"current={tmp_path}/releases/{R2}", f"releases={R1} {R2} ", f"served={R1} {R2} "]
    assert parse_facts(proc.stdout) == Facts(current=R2, releases=(R1, R2), served=(R1, R2))
    assert parse_facts(proc.stdout).previous == R1
    for target in ("..", f"{R3}\nvenv=yes", "r1", f"{R3}x\n"):
        (tmp_path / "current").unlink()
        (tmp_path / "current").symlink_to(tmp_path / "releases" / target)
        text = run(lock.probe(str(tmp_path), ARTIFACT, "k1")).stdout
        assert text.splitlines()[0] == "current=", target
        facts = parse_facts(text)
        assert (facts.current, facts.previous, facts.has_venv) == (None, None, False), target


def test_parse_facts_keeps_the_first_value_and_only_release_ids():
    """A later line cannot override an earlier key; names that are no release id (`..`,
    `r1`, a path) are neither current, releases nor served."""
    text = (f"current=/srv/a/releases/{R2}\nreleases={R1} .. r1 {R2} a/{R3}\n"
            f"served={R1} ../x {R2}\ncurrent=/srv/a/releases/{R3}\nreleases={R3}\n"
            "served=\nvenv=no\nvenv=yes\nartifact=\nartifact=yes\n"
            "supervisor_conf=abc\nsupervisor_conf=def\n")
    assert parse_facts(text) == Facts(current=R2, releases=(R1, R2), served=(R1, R2),
                                      supervisor_conf="abc")
    for current in ("/srv/a/releases/..", "/srv/a/releases/r1", "..", f"{R2}X",
                    f"/srv/a/releases/{R2}\u00e9"):
        facts = parse_facts(f"current={current}\nserved={R1}\n")
        assert (facts.current, facts.previous) == (None, None), current
    assert parse_facts(f"current=/srv/a/releases/{R2}/\nserved={R1}\n").previous == R1


def test_append_history_keeps_nested_objects_whole(tmp_path):
    """A record whose last value is an object still makes one valid JSON line."""
    layout = Layout(str(tmp_path))
    record = json.dumps({"release": "r1", "gates": {"unit": "passed"}})
    assert run(release.append_history(layout, record)).returncode == 0
    line = json.loads((tmp_path / "deploys.jsonl").read_text().strip())
    assert line["gates"] == {"unit": "passed"} and line["release"] == "r1"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", line["finished"])


def planted(tmp_path):
    """A directory outside the root, with a file, that planted links point to."""
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True, exist_ok=True)
    (outside / "owner.json").write_text('{"who": "secret-content"}')
    (outside / "sub" / "file").write_text("keep")
    return outside


def snapshot(path):
    """Every entry under path: (mode, link target or bytes), compared byte for byte."""
    state = {}
    for entry in sorted(path.rglob("*")):
        info = entry.lstat()
        state[str(entry.relative_to(path))] = (
            info.st_mode, os.readlink(entry) if entry.is_symlink() else
            entry.read_bytes() if entry.is_file() else None)
    return state


LAYOUT_LINKS = ["releases", "artifacts", "venvs", "shared", "shared/log", "shared/data",
                "deploys.jsonl", ".lock", ".lock/owner.json", "supervisord.pid",
                "supervisor.sock"]


@pytest.mark.parametrize("name", LAYOUT_LINKS)
def test_make_dirs_and_switch_refuse_a_planted_link(tmp_path, name):
    """A link at any path of the layout: refused, named, nothing written through it."""
    outside = planted(tmp_path)
    root = tmp_path / "root"
    (root / name).parent.mkdir(parents=True, exist_ok=True)
    (root / name).symlink_to(outside)
    before = snapshot(outside)
    layout = Layout(str(root))
    for argv in (release.make_dirs(layout), release.switch(layout, layout.release("r1"))):
        proc = run(argv)
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert proc.stdout == (f"refusing: {root}/{name} is a symbolic link (to {outside}); "
                               "fabship follows no link out of the service root: remove it\n")
    assert snapshot(outside) == before
    assert not (root / "current").exists()


def test_the_root_itself_may_be_a_link(tmp_path):
    """The root is the user's choice: a root that is a link works as a directory would."""
    (tmp_path / "real").mkdir()
    (tmp_path / "root").symlink_to(tmp_path / "real")
    layout = Layout(str(tmp_path / "root"))
    assert run(release.make_dirs(layout)).returncode == 0
    (tmp_path / "real" / "releases" / "r1").mkdir()
    assert run(release.switch(layout, layout.release("r1"))).returncode == 0
    assert tree(tmp_path / "real") == ["artifacts", "current", "releases", "shared", "venvs"]


def test_switch_needs_a_real_release_directory(tmp_path):
    """No release there, or a link in its place: `current` is left as it was."""
    outside = planted(tmp_path)
    layout = Layout(str(tmp_path))
    releases(tmp_path, "r1")
    assert run(release.switch(layout, layout.release("r1"))).returncode == 0
    missing = run(release.switch(layout, layout.release("r2")))
    assert (missing.returncode, missing.stdout) == (1, f"no release at {tmp_path}/releases/r2\n")
    (tmp_path / "releases" / "r3").symlink_to(outside)
    linked = run(release.switch(layout, layout.release("r3")))
    assert linked.returncode == 1 and "releases/r3 is a symbolic link" in linked.stdout
    assert os.readlink(layout.current) == layout.release("r1")
    (tmp_path / ".current.tmp.x").mkdir()  # a directory never becomes the temporary link's parent
    assert run(release.switch(layout, layout.release("r1"))).returncode == 0


def test_clean_staging_removes_a_planted_staging_link_not_its_target(tmp_path):
    """A staging directory that is a link is replaced safely: the link goes, its target stays."""
    outside = planted(tmp_path)
    root = tmp_path / "root"
    releases(root, "r1")
    (root / "releases" / ".r2.tmp").symlink_to(outside)
    before = snapshot(outside)
    assert run(release.clean_staging(Layout(str(root)))).returncode == 0
    assert tree(root / "releases") == ["r1"] and snapshot(outside) == before
    (root / "releases").rename(root / "old")
    (root / "releases").symlink_to(outside)
    (outside / ".r3.tmp").mkdir()
    refused = run(release.clean_staging(Layout(str(root))))
    assert refused.returncode == 1 and "releases is a symbolic link" in refused.stdout
    assert (outside / ".r3.tmp").is_dir()


def test_history_and_prune_refuse_links(tmp_path):
    """deploys.jsonl or a pruned directory that is a link is never written or pruned through;
    a link among the entries is removed itself, never followed."""
    outside = planted(tmp_path)
    layout = Layout(str(tmp_path / "root"))
    os.makedirs(layout.root)
    os.symlink(outside / "owner.json", layout.history)
    before = snapshot(outside)
    proc = run(release.append_history(layout, '{"a": 1}'))
    assert proc.returncode == 1 and "deploys.jsonl is a symbolic link" in proc.stdout
    os.symlink(outside, layout.releases)
    proc = run(release.prune(layout.releases, 0, ()))
    assert proc.returncode == 1 and "releases is a symbolic link" in proc.stdout
    assert snapshot(outside) == before
    os.unlink(layout.releases)
    releases(tmp_path / "root", "r1", "r2")
    os.symlink(outside, os.path.join(layout.releases, "r0"))
    assert run(release.prune(layout.releases, 1, ())).returncode == 0
    assert tree(layout.releases) == ["r2"] and snapshot(outside) == before


def test_install_deps_replaces_a_venv_link_without_touching_its_target(tmp_path):
    """A planted venvs/<key> link is removed (not followed) before the venv is built."""
    outside = planted(tmp_path)
    (outside / ".complete").touch()
    before = snapshot(outside)
    (tmp_path / "venvs").mkdir()
    (tmp_path / "venvs" / "k1").symlink_to(outside)
    bundle = tmp_path / "venvs" / "k1.bundle.tar.gz"
    bundle.write_bytes(b"not a tarball")  # fails after the link is gone; no venv is built
    assert run(release.install_deps(str(tmp_path / "venvs" / "k1"), str(bundle),
                                    sys.executable)).returncode != 0
    assert snapshot(outside) == before and not os.path.lexists(tmp_path / "venvs" / "k1")
    bundle.unlink()
    bundle.symlink_to(outside / "owner.json")
    proc = run(release.install_deps(str(tmp_path / "venvs" / "k1"), str(bundle),
                                    sys.executable))
    assert proc.returncode == 1 and "k1.bundle.tar.gz is a symbolic link" in proc.stdout


def test_keep_upload_and_link_replace_links_never_follow_them(tmp_path):
    """mv -T replaces a link at the artifact's name; ln -T refuses a directory in its place."""
    outside = planted(tmp_path)
    before = snapshot(outside)
    (tmp_path / "a.part").write_text("artifact")
    (tmp_path / "a").symlink_to(outside)
    assert run(release.keep_upload(str(tmp_path / "a.part"), str(tmp_path / "a"))).returncode == 0
    assert (tmp_path / "a").read_text() == "artifact" and snapshot(outside) == before
    (tmp_path / "shared").mkdir()
    (tmp_path / "staging" / "shared").mkdir(parents=True)
    proc = run(release.link(str(tmp_path / "shared"), str(tmp_path / "staging" / "shared")))
    assert proc.returncode != 0 and tree(tmp_path / "staging" / "shared") == []


def targz(path, entries):
    """Write a gzip'd tar of (name, bytes) files and (name, None, link target) links."""
    with tarfile.open(path, "w:gz") as tar:
        for name, data, *link in entries:
            info = tarfile.TarInfo(name)
            if link:
                info.type, info.linkname = tarfile.SYMTYPE, link[0]
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    return str(path)


def rendered_staging(path):
    """A staging directory as the upload leaves it: the rendered files only."""
    (path / ".fabship").mkdir(parents=True)
    for name, text in (("hello.conf", "rendered"), ("release.json", '{"release": "r1"}'),
                       (".fabship/run", "rendered run")):
        (path / name).write_text(text)
    return str(path)


def test_extract_never_overwrites_the_rendered_files(tmp_path):
    """Rendered files are in staging first; the artifact's files of the same names are
    skipped, its other files land."""
    staging = rendered_staging(tmp_path / "staging")
    artifact = targz(tmp_path / "a.tar.gz", [
        ("hello.conf", b"from the source"), ("release.json", b'{"release": "forged"}'),
        (".fabship/run", b"forged run"), ("app.py", b"app"), ("pkg/mod.py", b"mod")])
    proc = run(release.extract(artifact, staging))
    assert proc.returncode == 0, proc.stderr
    assert [(tmp_path / "staging" / name).read_text() for name in (
        "hello.conf", "release.json", ".fabship/run", "app.py", "pkg/mod.py")] == [
            "rendered", '{"release": "r1"}', "rendered run", "app", "mod"]


@pytest.mark.parametrize("target", ["outside", "../../outside"])
def test_extract_writes_nothing_through_a_link_of_the_archive(tmp_path, target):
    """An archive holding a link out of the release, then a file below that link: GNU tar
    keeps the link inert until the end, so the file is refused, not written outside; a
    link at a rendered file's name never replaces the rendered file."""
    outside = planted(tmp_path)
    before = snapshot(outside)
    staging = rendered_staging(tmp_path / "staging")
    evil = targz(tmp_path / "evil.tar.gz", [
        ("d", None, str(outside) if target == "outside" else target), ("d/pwned", b"x"),
        ("hello.conf", None, str(outside / "sub"))])
    proc = run(release.extract(evil, staging))
    assert proc.returncode != 0 and "d/pwned" in proc.stderr
    assert (tmp_path / "staging" / "hello.conf").read_text() == "rendered"
    assert snapshot(outside) == before


def test_lock_links_are_refused_and_never_read(tmp_path):
    """A planted .lock (or owner.json) link: refused, named, its target neither read nor
    written; --break-lock replaces a .lock link with a real lock; unlock never follows."""
    outside = planted(tmp_path)
    before = snapshot(outside)
    (tmp_path / ".lock").symlink_to(outside)
    proc = run(lock.acquire(str(tmp_path), OWNER, False))
    assert proc.returncode == 1 and "secret-content" not in proc.stdout
    assert proc.stdout.startswith(f"refusing: {tmp_path}/.lock is a symbolic link")
    assert run(lock.release(str(tmp_path), '{"who": "secret-content"}')).returncode == 0
    assert (tmp_path / ".lock").is_symlink() and snapshot(outside) == before
    assert run(lock.acquire(str(tmp_path), OWNER, True)).returncode == 0
    assert not (tmp_path / ".lock").is_symlink() and snapshot(outside) == before
    assert tree(tmp_path / ".lock") == ["owner.json"]
    os.unlink(tmp_path / ".lock" / "owner.json")
    (tmp_path / ".lock" / "owner.json").symlink_to(outside / "owner.json")
    proc = run(lock.acquire(str(tmp_path), OWNER, False))
    assert proc.returncode == 1 and "secret-content" not in proc.stdout
    assert "/.lock/owner.json is a symbolic link" in proc.stdout


def test_probe_reads_no_fact_through_a_link(tmp_path):
    """Linked releases, artifacts or venvs, a release entry that is a link, a `current`
    pointing out of the root: none of them is a fact the planner acts on."""
    outside = planted(tmp_path)
    (outside / R3 / ".fabship").mkdir(parents=True)
    (outside / R3 / ".fabship" / "served").touch()
    (outside / ARTIFACT).write_bytes(b"x")
    (outside / "k1").mkdir()
    (outside / "k1" / ".complete").touch()
    for name in ("releases", "artifacts", "venvs"):
        (tmp_path / name).symlink_to(outside)
    (tmp_path / "current").symlink_to(outside / R3)
    text = run(lock.probe(str(tmp_path), ARTIFACT, "k1")).stdout
    assert parse_facts(text) == Facts()
    for name in ("releases", "artifacts", "venvs"):
        (tmp_path / name).unlink()
        (tmp_path / name).mkdir()
    (tmp_path / "releases" / R3).symlink_to(outside / R3)
    (tmp_path / "artifacts" / ARTIFACT).symlink_to(outside / ARTIFACT)
    (tmp_path / "venvs" / "k1").symlink_to(outside / "k1")
    (tmp_path / "current").unlink()
    (tmp_path / "current").symlink_to(tmp_path / "releases" / R3)
    assert parse_facts(run(lock.probe(str(tmp_path), ARTIFACT, "k1")).stdout) == Facts()


def test_status_runs_and_reads_nothing_out_of_the_root(tmp_path):
    """`current` pointing out of releases/ (or through a linked releases/): no python of
    it runs, no release.json of it is read; a linked lock or history is not read."""
    outside = planted(tmp_path)
    python = outside / "r9" / ".fabship" / "venv" / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.write_text(f"#!/bin/sh\ntouch {outside}/ran\necho 200 r9\n")
    python.chmod(0o755)
    (outside / "r9" / "release.json").write_text('{"commit": "secret-content"}')
    root = tmp_path / "root"
    root.mkdir()
    layout = Layout(str(root))
    (root / ".lock").symlink_to(outside)
    for current in (outside / "r9", root / "releases" / "r9"):
        if current != outside / "r9":
            (root / "releases").symlink_to(outside)
        (root / "current").unlink(missing_ok=True)
        (root / "current").symlink_to(current)
        proc = run(status_cmd.command(layout, "http://127.0.0.1:1/health"))
        assert proc.returncode == 0 and "secret-content" not in proc.stdout
        assert status_cmd.parse(proc.stdout) == {
            "release": "r9", "commit": "-", "lock": "free", "health":
            "down: not checked: current is not a release directory of this root"}
        assert not (outside / "ran").exists()
    (root / "deploys.jsonl").symlink_to(outside / "owner.json")
    proc = run(status_cmd.history(layout, 5))
    assert proc.returncode == 1 and "deploys.jsonl is a symbolic link" in proc.stdout


def test_supervisor_scripts_refuse_links_supervisord_would_write_through(tmp_path):
    """The pid file, socket, logs and shared/ are where supervisord writes: no link there."""
    outside = planted(tmp_path)
    before = snapshot(outside)
    layout = Layout(str(tmp_path))
    (tmp_path / "shared" / "log").mkdir(parents=True)
    for name in ("supervisord.pid", "shared/log/supervisord.log", "shared/log/hello.log"):
        (tmp_path / name).symlink_to(outside / "owner.json")
        for argv in (supervisor.restart(layout, str(tmp_path / "v"), "hello"),
                     supervisor.stop(layout, str(tmp_path / "v"), "hello")):
            proc = run(argv)
            assert proc.returncode == 1 and f"{name} is a symbolic link" in proc.stdout
        (tmp_path / name).unlink()
    assert snapshot(outside) == before
