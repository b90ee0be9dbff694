"""SSH host keys of EC2 instances, pinned per instance id (EC2 recycles addresses).

The pins live in a known_hosts-format file whose "host names" are instance ids. The
keys come from the console output, when cloud-init printed them there, or else from
the first contact with that new instance. Every later connection checks them strictly.
"""
import base64
import re
import threading
from pathlib import Path

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
    """The pin file: `<instance id> <key type> <base64>` lines."""

    def __init__(self, path):
        self.path = Path(path)

    def _lines(self):
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [line.split() for line in text.splitlines() if len(line.split()) >= 3]

    def keys(self, instance_id):
        """[(key type, base64)] pinned for the instance."""
        return [(kind, data) for owner, kind, data, *_ in self._lines() if owner == instance_id]

    def pin(self, instance_id, keys):
        """Pin keys for an instance that has none yet; False when it already had pins."""
        if not INSTANCE_ID.fullmatch(instance_id):
            raise ValueError(f"not an instance id: {instance_id!r}")
        with _LOCK:
            if self.keys(instance_id):
                return False
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a", encoding="utf-8") as handle:
                for kind, data in keys:
                    handle.write(f"{instance_id} {kind} {data}\n")
        return True

    def forget(self, instance_ids):
        """Drop the pins of terminated instances."""
        gone = set(instance_ids)
        with _LOCK:
            lines = self._lines()
            kept = [" ".join(parts) for parts in lines if parts[0] not in gone]
            if len(kept) != len(lines):
                self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")
