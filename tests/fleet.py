"""A fleet of real OpenSSH servers on loopback, one per "host", with throwaway keys."""
import getpass
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from fabship.deploy.localhosts import SSHD, app_port, free_port, keygen, prepare_privsep, \
    wait_for_port, write_config

__all__ = ["app_port", "start_fleet", "Fleet", "SshServer", "CRONTAB_LOCK"]


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
    home: Path | None = None  # the sessions' $HOME (None: the user's own)
    enter: tuple = ()  # the argv prefix sshd runs under (tests/systemdhost.py: its namespaces)

    def known_hosts(self):
        """known_hosts text for every server."""
        return "".join(server.known_hosts_line() for server in self.servers)

    def start(self, server):
        """(Re)start one sshd."""
        config = write_config(server.dir, server.port, self.base / "authorized_keys",
                              home=self.home)
        server.proc = subprocess.Popen(  # pylint: disable=consider-using-with
            [*self.enter, SSHD, "-D", "-e", "-f", str(config)], stderr=subprocess.PIPE,
            text=True)
        wait_for_port(server.port, lambda: server.proc.poll() is None)

    def stop(self):
        """Stop every sshd and the supervisords the deploys started, then remove the files."""
        subprocess.run(["pkill", "-f", f"supervisor.supervisord -c {self.base}/"], check=False)
        for server in self.servers:
            if server.proc and server.proc.poll() is None:
                server.proc.terminate()
                server.proc.wait(timeout=10)
        # The tree holds a venv copy per host of every project the session deployed
        # (hundreds of thousands of entries): rm(1) removes it faster than shutil. Not in
        # the background: coverage must not see the projects' fabfile copies vanish
        # while it reports (they are gone before it starts).
        subprocess.run(["rm", "-rf", "--", str(self.base)], check=False)


CRONTAB_LOCK = Path.home() / ".fabship-crontab.lock"  # what a deploy's boot step flocks


def session_home():
    """The $HOME of every test host's shell: empty, so the user's ~/.bashrc (which may
    start pyenv, ~0.2 s a command) is not run. Its crontab lock is a link to the user's
    own, so every edit of this user's crontab (any fleet, any pytest worker, the
    rehearsal) waits for the others, and a test holding CRONTAB_LOCK has it alone."""
    home = Path(tempfile.gettempdir()) / f"fabship-test-home-{os.getuid()}"
    home.mkdir(mode=0o700, exist_ok=True)
    link = home / CRONTAB_LOCK.name
    if not link.is_symlink():  # made in place at once: another worker may do the same
        spare = home / f".lock-link-{os.getpid()}"
        spare.unlink(missing_ok=True)
        spare.symlink_to(CRONTAB_LOCK)
        os.replace(spare, link)
    return home


def start_fleet(count, own_home=True, enter=()):
    """Start `count` sshd hosts (their sessions' HOME the session_home() unless
    `own_home` is False; each sshd under the argv prefix `enter`); the caller stops them
    with fleet.stop()."""
    prepare_privsep()
    base = Path(tempfile.mkdtemp(prefix="fsf-", dir="/tmp"))
    client_key = keygen(base / "client_key")
    shutil.copy(f"{client_key}.pub", base / "authorized_keys")
    fleet = Fleet(base, client_key, home=session_home() if own_home else None,
                  enter=tuple(enter))
    for index in range(count):
        server_dir = base / f"h{index + 1}"
        server_dir.mkdir()
        server = SshServer(f"h{index + 1}", server_dir, free_port(),
                           server_dir / "ssh_host_ed25519_key")
        fleet.servers.append(server)
        fleet.start(server)
    return fleet
