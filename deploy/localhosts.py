"""Local SSH hosts: OpenSSH servers on loopback ports, run as the current user.

No root is needed: each server has its own host keys and accepts one client key. The
rehearsal (`make demo`) starts them as daemons; the tests start them in the foreground.
"""
import os
import random
import shutil
import signal
import socket
import subprocess
import time
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
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "fabship", "-f",
                    str(path)], check=True)
    return Path(path)


def write_config(server_dir, port, authorized_keys, home=None):
    """The sshd_config of one host (its host key made when missing); returns its path.
    `home` becomes the sessions' $HOME, so the login shell skips the user's own ~/.bashrc
    (tests: every command would otherwise pay for whatever it starts)."""
    server_dir = Path(server_dir)
    server_dir.mkdir(parents=True, exist_ok=True)
    host_key = server_dir / "ssh_host_ed25519_key"
    if not host_key.exists():
        keygen(host_key)
    config = server_dir / "sshd_config"
    text = SSHD_CONFIG.format(port=port, host_key=host_key, dir=server_dir,
                              authorized_keys=authorized_keys)
    config.write_text(text + (f"SetEnv HOME={home}\n" if home else ""))
    return config


def prepare_privsep():
    """sshd run by root needs /run/sshd."""
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)


def wait_for_port(port, alive=lambda: True, timeout=10):
    """Until something accepts connections on 127.0.0.1:port; RuntimeError otherwise."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not alive():
            raise RuntimeError(f"the server for port {port} exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listened on 127.0.0.1:{port} within {timeout}s")


def start_daemon(config, port):
    """Start sshd in the background (it forks; its pid goes to the PidFile)."""
    prepare_privsep()
    proc = subprocess.run([SSHD, "-f", str(config)], capture_output=True, text=True,
                          check=False)
    if proc.returncode:
        raise RuntimeError(f"sshd failed to start on port {port}: {proc.stderr.strip()}")
    wait_for_port(port)


def read_pid(path):
    """The pid in a pid file, if that process is alive."""
    try:
        pid = int(Path(path).read_text(encoding="utf-8").split()[0])
        os.kill(pid, 0)
    except (OSError, ValueError, IndexError):
        return None
    return pid


def stop_pid(path, timeout=10):
    """SIGTERM the process of a pid file and wait until it is gone; True if it ran."""
    pid = read_pid(path)
    if pid is None:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and read_pid(path) == pid and _alive(pid):
        time.sleep(0.05)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True


def _alive(pid):
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    try:  # a zombie child of ours counts as gone
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return Path(f"/proc/{pid}").exists() and "Z" not in _state(pid)


def _state(pid):
    try:
        return Path(f"/proc/{pid}/stat").read_text(encoding="utf-8").rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return "Z"
