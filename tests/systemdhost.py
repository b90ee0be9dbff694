"""A real systemd for deploy tests: PID 1 of its own PID, mount, UTS and IPC namespaces,
with sshd hosts started inside, so their sessions' `systemctl` talks to it.

This machine's PID 1 is not systemd, so `manager: systemd` could otherwise be run only
against stand-ins. The namespace's systemd sees only fabship's units: its unit path is a
tmpfs over /etc/systemd/system holding empty targets (the units a service's default
dependencies name), so none of the distribution's units (tmpfiles, which would empty
/tmp, sysctl, udev, journald, ...) starts. /run is its own tmpfs too. No journald: the
units' output goes to /dev/null (else to the console, a slow serial line here, which
stalls a program that logs every request). The files under /tmp and the network
(loopback) are shared with the tests. Needs root (namespaces, mounts).
"""
import os
import shutil
import subprocess
import time
from pathlib import Path

SYSTEMD = "/lib/systemd/systemd"
TARGETS = ("fabship-test-host", "sysinit", "basic", "sockets", "multi-user", "network",
           "network-online", "network-pre", "shutdown", "timers", "paths", "local-fs",
           "remote-fs", "swap", "slices")
BOOT = r"""
set -e
mount -t tmpfs -o mode=0755 fabship-units /etc/systemd/system
mount -t tmpfs -o mode=0755 fabship-run /run
mkdir -m 0755 /run/sshd /run/systemd /run/systemd/system.conf.d
printf '[Manager]\nDefaultStandardOutput=null\nDefaultStandardError=null\n' \
  > /run/systemd/system.conf.d/fabship-test-host.conf
for target in "$@"; do
  printf '[Unit]\nDescription=%s (an empty target of the fabship test host)\n' "$target" \
    > "/etc/systemd/system/$target.target"
done
exec env SYSTEMD_UNIT_PATH=/etc/systemd/system "$0" --system \
  --unit=fabship-test-host.target --log-target=console --log-level=warning
"""


def can_boot():
    """Why a systemd cannot be booted here, or None."""
    if os.geteuid() != 0:
        return "booting systemd in namespaces needs root"
    missing = [tool for tool in ("unshare", "nsenter", "systemctl") if not shutil.which(tool)]
    if missing or not os.access(SYSTEMD, os.X_OK):
        return f"missing: {', '.join(missing + [SYSTEMD])}"
    return None


class SystemdHost:
    """One booted systemd; `enter` is the argv prefix that runs a command beside it."""

    def __init__(self, log):
        self.log = Path(log)
        with open(self.log, "w", encoding="utf-8") as out:
            # pylint: disable-next=consider-using-with
            self.proc = subprocess.Popen(
                ["unshare", "--pid", "--fork", "--mount", "--propagation", "slave",
                 "--mount-proc", "--uts", "--ipc", "sh", "-c", BOOT, SYSTEMD, *TARGETS],
                stdout=out, stderr=subprocess.STDOUT)
        self.pid = self._pid_one()
        self.enter = ["nsenter", "--target", str(self.pid), "--pid", "--mount", "--uts",
                      "--ipc", "--"]
        self._wait_running()

    def _pid_one(self):
        """The pid (in this namespace) of the new namespace's PID 1: unshare's child."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            children = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children")
            found = children.read_text().split() if children.exists() else []
            if found:
                return int(found[0])
            if self.proc.poll() is not None:
                break
            time.sleep(0.05)
        raise RuntimeError(f"systemd did not start: {self.log.read_text()[-2000:]}")

    def _wait_running(self):
        deadline, state = time.monotonic() + 30, ""
        while time.monotonic() < deadline:
            state = self.systemctl("is-system-running").stdout.strip()
            if state in ("running", "degraded"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"systemd is {state or 'not answering'}: "
                           f"{self.log.read_text()[-2000:]}")

    def systemctl(self, *args):
        """systemctl ARGS, run in the namespace."""
        return subprocess.run([*self.enter, "systemctl", *args], capture_output=True,
                              text=True, timeout=60, check=False)

    def stop(self):
        """Kill the namespace's PID 1: the kernel ends every process in it, and its mounts
        go with it."""
        try:
            os.kill(self.pid, 9)
        except ProcessLookupError:
            pass
        self.proc.wait(timeout=30)
