"""Host key trust and remote hangs, against real sshd hosts on loopback.

known_hosts files with lines paramiko cannot read (markers, hashes, garbage), @revoked
keys, pin file modes, jump hosts (ProxyJump) and ProxyCommand, round-trip deadlines and
keepalives. HOME points at a temporary directory, so ~/.ssh is this test's file and the
user's own ~/.ssh (config, keys, known_hosts) stays out; so does any SSH agent.
"""
import os
import signal
import socket
import stat
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import paramiko
import pytest
from fabric import Config

from fabship.deploy.batch import run_batch
from fabship.deploy.config import SshSettings, parse_ssh
from fabship.deploy.errors import ConfigError, DeployError
from fabship.deploy import knownhosts
from fabship.deploy.hostkeys import InstancePins
from fabship.deploy.hosts import parse_host
from fabship.deploy.knownhosts import KnownHosts, host_matches, parse_known_hosts
from fabship.deploy.ssh import SshHost
from fabship.deploy.steps import Batch, Run
from tests.fleet import keygen, start_fleet

ED25519 = "AAAAC3NzaC1lZDI1NTE5AAAAIBVLcKTbnXBavK3Ah0nr244EI/MVMjJ2tJrfvVUd5icb"
RELAY = """\
import os, socket, sys, threading
sock = socket.create_connection((sys.argv[1], int(sys.argv[2])))
def up():
    for block in iter(lambda: os.read(0, 65536), b""):
        sock.sendall(block)
threading.Thread(target=up, daemon=True).start()
for block in iter(lambda: sock.recv(65536), b""):
    os.write(1, block)
"""


@pytest.fixture(scope="module", name="hosts")
def hosts_fixture():
    """Two sshd of this module's own (one is stopped with SIGSTOP in a test)."""
    fleet = start_fleet(2)
    try:
        yield fleet
    finally:
        fleet.stop()


@pytest.fixture(name="home")
def home_fixture(tmp_path, monkeypatch):
    """A HOME of the test's own: ~/.ssh/known_hosts is the test's file; no agent."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    return home


def line_of(server, names=None):
    """The server's key as a known_hosts line (for `names`, default its [host]:port)."""
    kind, key = Path(f"{server.host_key}.pub").read_text(encoding="utf-8").split()[:2]
    return f"{names or f'[127.0.0.1]:{server.port}'} {kind} {key}\n"


def config(fleet, ssh_config="", timeout=None):
    """Fabric's config as `fab -i KEY` builds it; SSH config only from `ssh_config`."""
    overrides = {"connect_kwargs": {"key_filename": [str(fleet.client_key)]},
                 "run": {"in_stream": False}}
    if timeout:
        overrides["timeouts"] = {"connect": timeout}
    return Config(ssh_config=paramiko.SSHConfig.from_text(ssh_config), overrides=overrides)


def connect(fleet, server, project_file, cfg=None, **settings):
    """An open SshHost for `server` (the caller closes it)."""
    host = SshHost(parse_host(server.address, {}), cfg or config(fleet),
                   KnownHosts(project_file), SshSettings(**settings))
    host.open()
    return host


def refused(fleet, server, project_file, message, cfg=None, **settings):
    """Connecting fails with a one-line DeployError holding `message`."""
    with pytest.raises(DeployError) as caught:
        connect(fleet, server, project_file, cfg, **settings).close()
    assert message in str(caught.value) and "\n" not in str(caught.value), caught.value
    return str(caught.value)


# known_hosts lines as OpenSSH writes them


def test_unusual_lines_are_skipped_with_one_warning_each_kind(hosts):
    """Markers, comments, garbage: the good lines still count."""
    server = hosts.servers[0]
    text = ("# a comment\n\n   \n"
            f"@cert-authority *.example.com {line_of(server, 'x').split(' ', 1)[1]}"
            "garbage\n"
            "host ssh-ed25519 AAAA*not-base64*\n"
            f"host ssh-rsa {ED25519}\n"  # the blob is not an ssh-rsa key
            f"|1|bad|hash ssh-ed25519 {ED25519}\n"
            f"@weird {line_of(server)}"
            f"{line_of(server)}"
            f"@cert-authority * {line_of(server, 'x').split(' ', 1)[1]}")
    keys, warnings = parse_known_hosts(text, "kh")
    assert [(key.names, key.revoked) for key in keys] == [((f"[127.0.0.1]:{server.port}",),
                                                           False)]
    assert warnings == [
        "warning: kh: skipped @cert-authority line(s) 4, 11: fabship does not check host "
        "certificates; pin the hosts' own keys",
        "warning: kh: skipped unreadable line(s) 5, 6, 7, 8, 9 (not `[@revoked] names "
        "key-type base64-key`)"]
    assert parse_known_hosts("\n".join(["junk"] * 12), "kh")[1][0].endswith(
        "line(s) 1, 2, 3, 4, 5, 6, 7, 8, 9, 10 and 2 more (not `[@revoked] names key-type "
        "base64-key`)")


@pytest.mark.parametrize("names, host, matches", [
    ("web1", "web1", True), ("WEB1", "web1", True), ("web1", "WEB1", True),
    ("web1", "web10", False), ("web?", "web1", True), ("web?", "web10", False),
    ("*.example.com", "a.example.com", True), ("*.example.com", "example.com", False),
    ("*.example.com,!bad.example.com", "bad.example.com", False),
    ("!bad.example.com,*.example.com", "ok.example.com", True),
    ("!bad.example.com", "ok.example.com", False),
    ("[10.0.0.5]:2222", "[10.0.0.5]:2222", True), ("[10.0.0.5]:2222", "10.0.0.5", False),
    ("10.0.0.5", "[10.0.0.5]:2222", False), ("[10.0.0.*]:22?2", "[10.0.0.9]:2202", True),
    ("a.b", "axb", False), ("*", "anything", True),
])
def test_host_patterns_follow_openssh(names, host, matches):
    """Wildcards, negation, ports, case; `.` and `[` are literal."""
    assert host_matches(tuple(names.split(",")), host) is matches


def test_hashed_names_as_ssh_keygen_writes_them(hosts, tmp_path):
    """`ssh-keygen -H` output matches its host, and nothing else."""
    server = hosts.servers[0]
    path = tmp_path / "known_hosts"
    path.write_text(line_of(server) + line_of(server, "web1.example.com"))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(path)], check=True,
                   capture_output=True)
    keys, warnings = parse_known_hosts(path.read_text(), path)
    assert not warnings and all(key.names[0].startswith("|1|") for key in keys)
    assert [host_matches(key.names, f"[127.0.0.1]:{server.port}") for key in keys] == [
        True, False]
    assert [host_matches(key.names, "WEB1.example.com") for key in keys] == [False, True]
    assert not host_matches(keys[0].names, "127.0.0.1")


def test_a_user_known_hosts_with_markers_and_hashes_still_connects(hosts, home, tmp_path):
    """The regression: one @cert-authority line used to fail every host."""
    server = hosts.servers[0]
    user_file = home / ".ssh" / "known_hosts"
    user_file.write_text(line_of(server))
    subprocess.run(["ssh-keygen", "-q", "-H", "-f", str(user_file)], check=True,
                   capture_output=True)
    user_file.write_text(f"# mine\n@cert-authority *.corp {line_of(server, 'x')[2:]}"
                         f"@revoked otherhost {line_of(server, 'x')[2:]}"
                         "garbage line\n" + user_file.read_text())
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(server))  # listed in both files: fine
    known = KnownHosts(project_file)
    assert [w.split(": ")[1] for w in known.warnings] == [str(user_file)] * 2
    host = connect(hosts, server, project_file)
    try:
        assert host.run("echo hello") == (0, "hello\n")
    finally:
        host.close()


def test_a_revoked_key_is_refused_even_when_listed_as_known(hosts, home, tmp_path):
    """@revoked wins over a known line, in either file, and under accept-new too."""
    server = hosts.servers[0]
    project_file = tmp_path / "pins" / "known_hosts"
    project_file.parent.mkdir()
    project_file.write_text(line_of(server))
    (home / ".ssh" / "known_hosts").write_text("@revoked " + line_of(server, "*"))
    refused(hosts, server, project_file, "HOST KEY REVOKED: the host offered SHA256:")
    project_file.write_text("")
    refused(hosts, server, project_file, "HOST KEY REVOKED",
            host_key_policy="accept-new")
    assert project_file.read_text() == ""  # not pinned
    (home / ".ssh" / "known_hosts").write_text(line_of(server))  # known, revoked for
    project_file.write_text("@revoked " + line_of(server))  # this host in the other file
    refused(hosts, server, project_file, "HOST KEY REVOKED")
    project_file.write_text("@revoked " + line_of(server, "[127.0.0.1]:1"))  # another host
    connect(hosts, server, project_file).close()


@pytest.mark.usefixtures("home")
def test_the_system_known_hosts_counts_and_its_revoked_lines_too(hosts, tmp_path):
    """/etc/ssh/ssh_known_hosts (here a file of the test's): its @revoked lines refuse the
    key even when the project lists it, and accept-new does not pin it; its keys are
    known; a missing one is no file."""
    server = hosts.servers[0]
    system = tmp_path / "ssh_known_hosts"
    project_file = tmp_path / "pins" / "known_hosts"
    project_file.parent.mkdir()
    project_file.write_text(line_of(server))
    system.write_text("@revoked " + line_of(server, "*"))

    def opened(policy="strict"):
        host = SshHost(parse_host(server.address, {}), config(hosts),
                       KnownHosts(project_file, system_file=system), SshSettings(policy))
        host.open()
        host.close()
        return host

    with pytest.raises(DeployError, match="HOST KEY REVOKED: the host offered SHA256:"):
        opened()
    project_file.write_text("")
    with pytest.raises(DeployError, match="HOST KEY REVOKED"):
        opened("accept-new")
    assert project_file.read_text() == ""  # not pinned
    system.write_text(line_of(server))  # known system-wide: strict accepts it
    assert opened().pinned is None and project_file.read_text() == ""
    system.unlink()
    with pytest.raises(DeployError, match="unknown host key"):
        opened()


def test_the_system_known_hosts_is_read_by_default(tmp_path, monkeypatch):
    """The default system file is OpenSSH's; the constant is where it is read from."""
    assert knownhosts.SYSTEM_FILE == "/etc/ssh/ssh_known_hosts"
    system = tmp_path / "ssh_known_hosts"
    system.write_text("@revoked web1 ssh-ed25519 " + ED25519 + "\n")
    monkeypatch.setattr(knownhosts, "SYSTEM_FILE", str(system))
    known = KnownHosts(tmp_path / "absent", user_file=tmp_path / "absent-too")
    assert known.revoked("web1", "ssh-ed25519", ED25519)
    assert not known.revoked("web2", "ssh-ed25519", ED25519)


@pytest.mark.usefixtures("home")
def test_a_revoked_key_among_other_known_keys_is_refused(hosts, tmp_path):
    """The host is known by another key too: offering the revoked one is still refused."""
    server = hosts.servers[0]
    other = keygen(tmp_path / "other")
    kind, key = Path(f"{other}.pub").read_text(encoding="utf-8").split()[:2]
    project_file = tmp_path / "known_hosts"
    project_file.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n"
                            + line_of(server) + "@revoked " + line_of(server))
    assert "HOST KEY REVOKED" in refused(hosts, server, project_file, "refused")


def test_a_revoked_instance_pin_is_refused(hosts, home, tmp_path):
    """An EC2 instance's pin does not outrank @revoked."""
    server = hosts.servers[0]
    pins = InstancePins(tmp_path / "instances")
    pins.pin("i-0123456789abcdef0", [tuple(line_of(server).split()[1:3])])
    (home / ".ssh" / "known_hosts").write_text("@revoked " + line_of(server, "*"))
    target = replace(parse_host(server.address, {}), instance_id="i-0123456789abcdef0")
    host = SshHost(target, config(hosts), KnownHosts(tmp_path / "absent"), SshSettings(),
                   pins)
    with pytest.raises(DeployError, match="HOST KEY REVOKED"):
        host.open()


@pytest.mark.usefixtures("home")
def test_a_new_instance_is_pinned_at_first_contact_unless_pinned_meanwhile(hosts, tmp_path):
    """No pins yet: this key is pinned (0600) and told; a pin that came first wins."""
    server = hosts.servers[0]
    pins = InstancePins(tmp_path / ".pins" / "instance_known_hosts")
    target = replace(parse_host(server.address, {}), instance_id="i-0123456789abcdef0")
    known = KnownHosts(tmp_path / "absent")
    host = SshHost(target, config(hosts), known, SshSettings(), pins)
    host.open()
    host.close()
    assert host.pinned.startswith("SHA256:")
    assert pins.keys("i-0123456789abcdef0") == [tuple(line_of(server).split()[1:3])]
    assert (mode(pins.path.parent), mode(pins.path)) == (0o700, 0o600)
    late = replace(target, instance_id="i-0fedcba9876543210")
    host = SshHost(late, config(hosts), known, SshSettings(), pins)
    pins.pin("i-0fedcba9876543210", [("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIBVLcKTbnX"
                                                     "BavK3Ah0nr244EI/MVMjJ2tJrfvVUd5icb")])
    with pytest.raises(DeployError, match="i-0fedcba9876543210: host key pinned meanwhile"):
        host.open()
    pins.pin("i-0aaaaaaaaaaaaaaaa", [("ssh-ed25519", "QUJD")])
    with pytest.raises(DeployError, match="i-0aaaaaaaaaaaaaaaa in .*: unusable pinned "
                                          "ssh-ed25519 key"):
        SshHost(replace(target, instance_id="i-0aaaaaaaaaaaaaaaa"), config(hosts), known,
                SshSettings(), pins)


@pytest.mark.usefixtures("home")
def test_accept_new_does_not_override_a_key_pinned_meanwhile(hosts, tmp_path):
    """Another run pinned the host first: its key counts (same key: no second line)."""
    server = hosts.servers[0]
    project_file = tmp_path / "known_hosts"
    known = KnownHosts(project_file)  # read while the file does not exist yet
    impostor = keygen(tmp_path / "impostor")
    kind, key = Path(f"{impostor}.pub").read_text(encoding="utf-8").split()[:2]
    project_file.write_text(f"[127.0.0.1]:{server.port} {kind} {key}\n")
    host = SshHost(parse_host(server.address, {}), config(hosts), known,
                   SshSettings("accept-new"))
    with pytest.raises(DeployError, match="HOST KEY CHANGED: known_hosts has SHA256:"):
        host.open()
    assert project_file.read_text() == f"[127.0.0.1]:{server.port} {kind} {key}\n"
    project_file.unlink()
    known = KnownHosts(project_file)
    project_file.write_text(line_of(server))  # the same key, pinned by another run
    host = SshHost(parse_host(server.address, {}), config(hosts), known,
                   SshSettings("accept-new"))
    host.open()
    host.close()
    assert project_file.read_text() == line_of(server)


@pytest.mark.usefixtures("home")
def test_unusable_trust_files_are_named(hosts, tmp_path):
    """A known_hosts that is a directory, a pin directory that cannot be made."""
    with pytest.raises(DeployError, match=f"cannot read the known hosts in {tmp_path}: Is a "
                                          "directory"):
        KnownHosts(tmp_path)
    (tmp_path / "file").write_text("")
    pins = InstancePins(tmp_path / "file" / "pins")
    with pytest.raises(DeployError, match="cannot update the host key pins in .*/file/pins"):
        pins.pin("i-0123456789abcdef0", [("ssh-ed25519", "AAAA")])
    server = hosts.servers[0]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    closed = replace(parse_host(server.address, {}), port=port)
    host = SshHost(closed, config(hosts), KnownHosts(tmp_path / "absent"), SshSettings())
    with pytest.raises(DeployError, match=f"{closed.address}: cannot connect: "):
        host.open()


# pin files


def mode(path):
    """The permission bits of path."""
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.usefixtures("home")
def test_accept_new_pins_in_a_private_file_in_a_private_directory(hosts, tmp_path):
    """A directory fabship creates is 0700, the pin file 0600; a second run reads it."""
    server = hosts.servers[0]
    project_file = tmp_path / "project" / ".pins" / "known_hosts"
    (tmp_path / "project").mkdir(mode=0o755)
    os.chmod(tmp_path / "project", 0o755)
    host = connect(hosts, server, project_file, host_key_policy="accept-new")
    try:
        assert host.pinned.startswith("SHA256:")
    finally:
        host.close()
    assert project_file.read_text() == line_of(server)
    assert (mode(project_file.parent), mode(project_file)) == (0o700, 0o600)
    assert mode(tmp_path / "project") == 0o755  # the user's directory is left alone
    assert sorted(p.name for p in project_file.parent.iterdir()) == ["known_hosts"]
    again = connect(hosts, server, project_file)  # strict now: the pin is known
    try:
        assert again.pinned is None
    finally:
        again.close()


@pytest.mark.usefixtures("home")
def test_accept_new_makes_an_existing_pin_file_private(hosts, tmp_path):
    """A pin file checked out 0644 (git does not keep modes) ends 0600 when written."""
    server, other = hosts.servers
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(other))
    os.chmod(project_file, 0o644)
    connect(hosts, server, project_file, host_key_policy="accept-new").close()
    assert project_file.read_text() == line_of(other) + line_of(server)
    assert mode(project_file) == 0o600


@pytest.mark.usefixtures("home")
def test_pin_files_are_not_written_through_links(hosts, tmp_path):
    """A committed `.pins/known_hosts` or `.pins` link: an error naming it; what it points
    to keeps its content and mode, and no file appears next to it."""
    server = hosts.servers[0]
    outside = tmp_path / "outside"
    outside.mkdir()
    outside_mode = mode(outside)
    target = outside / "authorized_keys"
    target.write_text("precious\n")
    os.chmod(target, 0o644)
    pins = tmp_path / "project" / ".pins"
    pins.mkdir(parents=True)
    link = pins / "known_hosts"
    known = KnownHosts(link)  # read before the link appears: accept-new will pin
    link.symlink_to(target)
    with pytest.raises(DeployError, match=f"^{link}: is a symbolic link; fabship follows no "
                                          "link to its pin files"):
        KnownHosts(link)
    host = SshHost(parse_host(server.address, {}), config(hosts), known,
                   SshSettings("accept-new"))
    with pytest.raises(DeployError, match=f"^{link}: is a symbolic link"):
        host.open()
    with pytest.raises(DeployError, match=f"^{link}: is a symbolic link"):
        InstancePins(link).pin("i-0123456789abcdef0", [("ssh-ed25519", ED25519)])
    with pytest.raises(DeployError, match=f"^{link}: is a symbolic link"):
        InstancePins(link).keys("i-0123456789abcdef0")
    link.unlink()
    pins.rmdir()
    pins.symlink_to(outside)  # the directory itself
    host = SshHost(parse_host(server.address, {}), config(hosts), KnownHosts(link),
                   SshSettings("accept-new"))
    with pytest.raises(DeployError, match=f"^{pins}: is a symbolic link"):
        host.open()
    with pytest.raises(DeployError, match=f"^{pins}: is a symbolic link"):
        InstancePins(pins / "instance_known_hosts").pin("i-0123456789abcdef0",
                                                        [("ssh-ed25519", ED25519)])
    assert target.read_text() == "precious\n" and mode(target) == 0o644
    assert [path.name for path in outside.iterdir()] == ["authorized_keys"]
    assert mode(outside) == outside_mode  # not made 0700


def test_instance_pins_are_private(tmp_path):
    """Pin, re-pin and forget leave a 0600 file in a 0700 directory, and no other file."""
    pins = InstancePins(tmp_path / "a" / ".pins" / "instance_known_hosts")
    key = ("ssh-ed25519", "AAAAC3NzaC1lZDI1NTE5AAAAIBVLcKTbnXBavK3Ah0nr244EI/MVMjJ2tJrfvVUd5icb")
    assert pins.pin("i-0123456789abcdef0", [key])
    assert pins.pin("i-0fedcba9876543210", [key])
    folder = pins.path.parent
    assert (mode(folder.parent), mode(folder), mode(pins.path)) == (0o700, 0o700, 0o600)
    os.chmod(pins.path, 0o644)
    pins.forget(["i-0123456789abcdef0"])
    assert mode(pins.path) == 0o600 and [p.name for p in folder.iterdir()] == [
        "instance_known_hosts"]
    assert pins.keys("i-0fedcba9876543210") == [key]


def test_pins_default_to_a_committable_place():
    """Not the gitignored build cache (.fabship/), not a `fabship/` package name."""
    default = parse_ssh({}, "fabric.yaml")
    assert (default.known_hosts, default.instance_known_hosts) == (
        ".pins/known_hosts", ".pins/instance_known_hosts")
    ignored = subprocess.run(["git", "check-ignore", ".pins/known_hosts",
                              ".pins/instance_known_hosts"],
                             cwd=Path(__file__).resolve().parents[2], capture_output=True,
                             check=False)
    assert ignored.returncode == 1  # neither is ignored


# jump hosts and ProxyCommand


def silent_listener():
    """A socket that accepts connections and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(5)
    return sock


@pytest.mark.usefixtures("home")
def test_a_silent_jump_host_fails_after_the_connect_timeout(hosts, tmp_path):
    """The jump host gets the host's connect timeout: one clear line, no hang."""
    server = hosts.servers[0]
    with silent_listener() as jump:
        port = jump.getsockname()[1]
        cfg = config(hosts, f"Host localhost\n  ProxyJump 127.0.0.1:{port}\n", timeout=2)
        project_file = tmp_path / "known_hosts"
        project_file.write_text(line_of(server, f"[localhost]:{server.port}"))
        target = parse_host(f"{server.address.split('@')[0]}@localhost:{server.port}", {})
        host = SshHost(target, cfg, KnownHosts(project_file), SshSettings())
        started = time.monotonic()
        with pytest.raises(DeployError) as caught:
            host.open()
    assert str(caught.value) == (f"{target.address}: jump host 127.0.0.1:{port}: no SSH "
                                 "answer within 2s (timeouts.connect)")
    assert time.monotonic() - started < 60  # it ends (no timing claim beyond that)


@pytest.mark.usefixtures("home")
def test_a_jump_host_is_checked_like_a_host(hosts, tmp_path):
    """Through a real jump host: its key must be known too; then commands run."""
    server, jump = hosts.servers
    cfg = config(hosts, f"Host localhost\n  ProxyJump {jump.address}\n")
    target = parse_host(f"{server.address.split('@')[0]}@localhost:{server.port}", {})
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(server, f"[localhost]:{server.port}"))
    with pytest.raises(DeployError, match=f"jump host 127.0.0.1:{jump.port}: unknown host "
                                          "key"):
        SshHost(target, cfg, KnownHosts(project_file), SshSettings()).open()
    project_file.write_text(line_of(server, f"[localhost]:{server.port}") + line_of(jump))
    host = SshHost(target, cfg, KnownHosts(project_file), SshSettings())
    host.open()
    try:
        assert host.run("echo via jump") == (0, "via jump\n")
        assert all(hop.transport.is_active() for hop in (host.conn, host.conn.gateway))
    finally:
        host.close()
    assert not host.conn.gateway.is_connected  # the jump host's connection closes too


@pytest.mark.usefixtures("home")
def test_a_host_the_jump_host_cannot_reach_is_named(hosts, tmp_path):
    """The jump host answers, the host behind it does not: said in one line."""
    jump = hosts.servers[1]
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    cfg = config(hosts, f"Host localhost\n  ProxyJump {jump.address}\n")
    target = parse_host(f"root@localhost:{port}", {})
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(jump))
    host = SshHost(target, cfg, KnownHosts(project_file), SshSettings())
    with pytest.raises(DeployError) as caught:
        host.open()
    assert str(caught.value) == (f"root@localhost:{port}: the jump host cannot reach it "
                                 "(Connect failed)")


@pytest.mark.usefixtures("home")
def test_behind_a_proxy_command_the_host_key_is_still_checked(hosts, tmp_path):
    """A ProxyCommand carries the bytes; the host's key is checked as for any host."""
    server = hosts.servers[0]
    relay = tmp_path / "relay.py"
    relay.write_text(RELAY)
    cfg = config(hosts, f"Host 127.0.0.1\n  ProxyCommand {sys.executable} {relay} %h "
                        f"{server.port}\n")  # Fabric expands %p to 22 for a ProxyCommand
    project_file = tmp_path / "known_hosts"
    project_file.write_text("")
    refused(hosts, server, project_file, "unknown host key", cfg)
    project_file.write_text(line_of(server))
    host = connect(hosts, server, project_file, cfg)
    try:
        assert isinstance(host.conn.gateway, str)
        assert host.run("echo proxied") == (0, "proxied\n")
    finally:
        host.close()


# remote hangs


@pytest.mark.usefixtures("home")
def test_a_command_past_its_deadline_fails_the_host(hosts, tmp_path):
    """`sleep 60` with a 2 s deadline: a one-line error, and the host is given up."""
    server = hosts.servers[0]
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(server))
    host = connect(hosts, server, project_file, command_timeout=2, keepalive=1)
    command, end = sleeper(tmp_path)
    try:
        assert host.run("cat; echo done >&2", stdin=b"up\n") == (0, "up\ndone\n")
        with pytest.raises(DeployError) as caught:
            host.run(command)
        assert str(caught.value) == (f"{server.address}: no result within 2s "
                                     "(ssh.command_timeout); gave up on this host")
        with pytest.raises(DeployError, match="no result within 2s"):
            host.run("true")  # at once: the host was given up
    finally:
        end()
        host.close()


def test_a_step_past_its_step_timeout_fails_the_step_and_keeps_the_host(hosts, tmp_path):
    """ssh.step_timeout 1: a stuck step is stopped (its process too) and fails with 124;
    the round trip ends, the next step of a keep-going batch runs, the host stays usable."""
    server = hosts.servers[0]
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(server))
    host = connect(hosts, server, project_file, step_timeout=1, command_timeout=60)
    pidfile, after = tmp_path / "stuck.pid", tmp_path / "after"
    stuck = Run(("sh", "-c", f"echo $$ > {pidfile}; exec sleep 60"), "a stuck step")
    try:
        result = run_batch(host, Batch("b", (stuck, Run(("touch", str(after)), "after"))),
                           {}, keep_going=True)
        assert (result.ok, result.failures) == (False, ((0, "a stuck step", 124),))
        assert after.exists()  # the finish's steps after it still run
        deadline = time.monotonic() + 10
        while Path(f"/proc/{pidfile.read_text().strip()}").exists():
            assert time.monotonic() < deadline, "the stuck step's process outlived it"
            time.sleep(0.05)
        assert host.run("echo still here") == (0, "still here\n")
        ok = run_batch(host, Batch("b", (Run(("sleep", "0.1"), "short"),)), {})
        assert ok.ok
    finally:
        host.close()


def descendants(pid):
    """Every process below pid (from /proc)."""
    children = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def stop_sessions(server, number):
    """Signal the sshd processes serving this server's connections; their pids."""
    stopped = []
    for pid in descendants(server.proc.pid):
        try:
            if Path(f"/proc/{pid}/comm").read_text(encoding="utf-8").startswith("sshd"):
                os.kill(pid, number)
                stopped.append(pid)
        except OSError:
            continue
    assert stopped
    return stopped


def signal_each(pids, number):
    """Send a signal to each pid still there."""
    for pid in pids:
        try:
            os.kill(pid, number)
        except OSError:
            pass


def sleeper(tmp_path):
    """(command, end): a remote `sleep 60` that writes its pid; end() kills it."""
    pidfile = tmp_path / "sleeper.pid"

    def end():
        if pidfile.exists():
            signal_each([int(pidfile.read_text())], signal.SIGKILL)
    return f"echo $$ > {pidfile}; echo started; exec sleep 60", end


@pytest.mark.parametrize("settings, message", [
    ({"command_timeout": 30, "keepalive": 1}, "the host stopped answering: no reply to an "
                                              "SSH keepalive within 2s (ssh.keepalive is 1s)"),
    ({"command_timeout": 2, "keepalive": 60}, "no result within 2s (ssh.command_timeout)"),
])
@pytest.mark.usefixtures("home")
def test_a_host_that_stops_answering_mid_step_fails(hosts, tmp_path, settings, message):
    """The sshd serving the step is stopped: keepalives or the deadline end the wait."""
    server = hosts.servers[1]
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(server))
    host = connect(hosts, server, project_file, **settings)
    command, end = sleeper(tmp_path)
    lines, stopped = [], []

    def on_line(line):
        lines.append(line)
        stopped.extend(stop_sessions(server, signal.SIGSTOP))
    try:
        with pytest.raises(DeployError) as caught:
            host.run(command, on_line=on_line)
        assert str(caught.value) == f"{server.address}: {message}; gave up on this host"
        assert lines == ["started"]
    finally:
        signal_each(stopped, signal.SIGCONT)
        end()
        host.close()


@pytest.mark.usefixtures("home")
def test_a_connection_lost_mid_step_fails_the_host(hosts, tmp_path):
    """The sshd serving the step dies (a reboot, an OOM kill): said so, at once."""
    server = hosts.servers[1]
    project_file = tmp_path / "known_hosts"
    project_file.write_text(line_of(server))
    host = connect(hosts, server, project_file)
    command, end = sleeper(tmp_path)
    try:
        with pytest.raises(DeployError) as caught:
            host.run(command, on_line=lambda line: stop_sessions(server, signal.SIGKILL))
        assert str(caught.value) == (f"{server.address}: the connection was lost; gave up "
                                     "on this host")
    finally:
        end()
        host.close()


# settings


@pytest.mark.parametrize("raw, message", [
    ({"command_timeout": 0}, "ssh.command_timeout: expected a number >= 1, got 0"),
    ({"command_timeout": float("nan")}, "ssh.command_timeout: expected a number >= 1, "
                                        "got nan"),
    ({"command_timeout": float("inf")}, "ssh.command_timeout: expected a number >= 1, "
                                        "got inf"),
    ({"command_timeout": "15m"}, "ssh.command_timeout: expected a number >= 1, got '15m'"),
    ({"keepalive": True}, "ssh.keepalive: expected a number >= 1, got True"),
    ({"step_timeout": 0.5}, "ssh.step_timeout: expected a number >= 1, got 0.5"),
    ({"step_timeout": "10m"}, "ssh.step_timeout: expected a number >= 1, got '10m'"),
    ({"keepalive": -5}, "ssh.keepalive: expected a number >= 1, got -5"),
    ({"keep_alive": 5}, "ssh.keep_alive: unknown key; expected one of host_key_policy, "
                        "known_hosts, instance_known_hosts, command_timeout, keepalive, "
                        "step_timeout"),
])
def test_bad_ssh_timings_name_the_file_and_key(raw, message):
    """Finite numbers of at least a second, or a ConfigError naming the key."""
    with pytest.raises(ConfigError) as caught:
        parse_ssh(raw, "conf/fabric.yaml")
    assert str(caught.value) == f"conf/fabric.yaml: {message}"


def test_ssh_timing_defaults_and_overrides():
    """900 s per round trip (a slow venv build fits), keepalives every 15 s."""
    default = parse_ssh({}, "f")
    assert (default.command_timeout, default.keepalive) == (900.0, 15.0)
    given = parse_ssh({"command_timeout": 60, "keepalive": 2.5}, "f")
    assert (given.command_timeout, given.keepalive) == (60.0, 2.5)


# the whole command, as a user runs it


def test_fab_reads_a_known_hosts_with_markers_and_refuses_revoked_keys(make_project,
                                                                       tmp_path):
    """`fab service history` with such a ~/.ssh/known_hosts: a warning, then it works; a
    host whose key is @revoked there is refused with a one-line error."""
    project = make_project("trust")
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    user_file = home / ".ssh" / "known_hosts"
    revoked = line_of(project.fleet.servers[1])
    user_file.write_text(f"@cert-authority * {revoked.split(' ', 1)[1]}")
    proc = project.fab("service", "history", env={"HOME": str(home)})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stderr == (f"warning: {user_file}: skipped @cert-authority line(s) 1: fabship "
                           "does not check host certificates; pin the hosts' own keys\n")
    user_file.write_text("@revoked " + revoked)
    proc = project.fab("service", "history", env={"HOME": str(home)})
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert (f"{project.fleet.servers[1].address}: HOST KEY REVOKED: the host offered SHA256:"
            in proc.stderr), proc.stderr
