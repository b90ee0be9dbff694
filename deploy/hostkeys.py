"""SSH host keys of EC2 instances, pinned per instance id (EC2 recycles addresses).

The pins live in a known_hosts-format file whose "host names" are instance ids. The
keys come from the console output, when cloud-init printed them there, or else from
the first contact with that new instance. Every later connection checks them strictly.
"""
import base64
import fcntl
import os
import re
import threading
from contextlib import contextmanager
from pathlib import Path

from .errors import DeployError

BEGIN, END = "-----BEGIN SSH HOST KEY KEYS-----", "-----END SSH HOST KEY KEYS-----"
KEY_LINE = re.compile(r"(?:^|\s)((?:ssh-(?:ed25519|rsa|dss)|ecdsa-sha2-nistp(?:256|384|521)|"
                      r"sk-[a-z0-9@.-]+))\s+([A-Za-z0-9+/]+={0,3})(?:\s|$)")
INSTANCE_ID = re.compile(r"^i-[0-9a-f]{8,17}$")
_LOCK = threading.Lock()


def console_host_keys(text):
    """[(key type, base64)] from the console's SSH HOST KEY KEYS block ([] if none).

    Lines may carry a console prefix (`[  12.3] cloud-init[812]: `, `ec2: `). Only the
    last complete block counts: an instance that rebooted prints it again.
    """
    blocks, current = [], None
    for line in (text or "").splitlines():
        if BEGIN in line:
            current = []
        elif END in line and current is not None:
            blocks.append(current)
            current = None
        elif current is not None:
            match = KEY_LINE.search(line)
            if match and _decodes(match.group(2)):
                current.append((match.group(1), match.group(2)))
    return blocks[-1] if blocks else []


def _decodes(text):
    try:
        return len(base64.b64decode(text, validate=True)) > 16
    except ValueError:
        return False


class InstancePins:
    """The pin file: `<instance id> <key type> <base64>` lines.

    Writers (threads, and other fabship processes) take a lock file; rewrites are
    atomic. A file that cannot be read or written is a DeployError naming it.
    """

    def __init__(self, path):
        self.path = Path(path)

    @contextmanager
    def _locked(self):
        try:
            with _LOCK:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with open(f"{self.path}.lock", "a", encoding="utf-8") as handle:
                    fcntl.flock(handle, fcntl.LOCK_EX)
                    yield
        except OSError as exc:
            raise DeployError(f"cannot update the host key pins in {self.path}: "
                              f"{exc.strerror or exc}") from exc

    def _lines(self):
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        except (OSError, UnicodeDecodeError) as exc:
            raise DeployError(f"cannot read the host key pins in {self.path}: "
                              f"{getattr(exc, 'strerror', None) or exc}") from exc
        return [line.split() for line in text.splitlines() if len(line.split()) >= 3]

    def keys(self, instance_id):
        """[(key type, base64)] pinned for the instance."""
        return [(kind, data) for owner, kind, data, *_ in self._lines() if owner == instance_id]

    def pin(self, instance_id, keys):
        """Pin keys for an instance that has none yet; False when it already had pins."""
        if not INSTANCE_ID.fullmatch(instance_id):
            raise DeployError(f"not an instance id: {instance_id!r}")
        with self._locked():
            if self.keys(instance_id):
                return False
            self._write([*(" ".join(parts) for parts in self._lines()),
                         *(f"{instance_id} {kind} {data}" for kind, data in keys)])
        return True

    def forget(self, instance_ids):
        """Drop the pins of terminated instances."""
        gone = set(instance_ids)
        with self._locked():
            lines = self._lines()
            kept = [" ".join(parts) for parts in lines if parts[0] not in gone]
            if len(kept) != len(lines):
                self._write(kept)

    def _write(self, lines):
        partial = Path(f"{self.path}.part")
        partial.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
        os.replace(partial, self.path)
