"""A fleet of real OpenSSH servers on loopback, one per "host", with throwaway keys."""
import getpass
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"

SSHD_CONFIG = """\
Port {port}
ListenAddress 127.0.0.1
HostKey {host_key}
PidFile {dir}/sshd.pid
AuthorizedKeysFile {authorized_keys}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PubkeyAuthentication yes
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
MaxStartups 100
MaxSessions 100
LogLevel ERROR
"""


def free_port():
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_port():
    """A free port below the ephemeral range, so no outgoing connection can take it."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 30000)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 20000-29999")


def keygen(path):
    """A new ed25519 key pair at path (and path.pub)."""
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)],
                   check=True)
    return path


def wait_for_port(port, proc, timeout=10):
    """Until sshd accepts connections (or died)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"sshd on port {port} exited {proc.returncode}: "
                               f"{proc.stderr.read()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"sshd did not listen on {port} within {timeout}s")


@dataclass
class SshServer:
    """One sshd: a host of the fleet."""

    name: str
    dir: Path
    port: int
    host_key: Path
    proc: subprocess.Popen = None

    @property
    def address(self):
        """user@127.0.0.1:port as fabship's config takes it."""
        return f"{getpass.getuser()}@127.0.0.1:{self.port}"

    def known_hosts_line(self):
        """The known_hosts entry for this server's key."""
        kind, key = Path(f"{self.host_key}.pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {key}\n"


@dataclass
class Fleet:
    """Several sshd hosts sharing one client key."""

    base: Path
    client_key: Path
    servers: list = field(default_factory=list)

    def known_hosts(self):
        """known_hosts text for every server."""
        return "".join(server.known_hosts_line() for server in self.servers)

    def start(self, server):
        """(Re)start one sshd."""
        config = server.dir / "sshd_config"
        config.write_text(SSHD_CONFIG.format(port=server.port, host_key=server.host_key,
                                             dir=server.dir,
                                             authorized_keys=self.base / "authorized_keys"))
        server.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE, text=True)
        wait_for_port(server.port, server.proc)

    def stop(self):
        """Stop every sshd and the supervisords the deploys started, then remove the files."""
        subprocess.run(["pkill", "-f", f"supervisor.supervisord -c {self.base}/"], check=False)
        for server in self.servers:
            if server.proc and server.proc.poll() is None:
                server.proc.terminate()
                server.proc.wait(timeout=10)
        shutil.rmtree(self.base, ignore_errors=True)


def start_fleet(count):
    """Start `count` sshd hosts; the caller stops them with fleet.stop()."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="fsf-", dir="/tmp"))
    client_key = keygen(base / "client_key")
    shutil.copy(f"{client_key}.pub", base / "authorized_keys")
    fleet = Fleet(base, client_key)
    for index in range(count):
        server_dir = base / f"h{index + 1}"
        server_dir.mkdir()
        server = SshServer(f"h{index + 1}", server_dir, free_port(),
                           keygen(server_dir / "ssh_host_ed25519_key"))
        fleet.servers.append(server)
        fleet.start(server)
    return fleet
