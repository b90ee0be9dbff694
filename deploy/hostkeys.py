"""SSH host keys of EC2 instances, pinned per instance id (EC2 recycles addresses).

The pins live in a known_hosts-format file whose "host names" are instance ids. The
keys come from the console output, when cloud-init printed them there, or else from
the first contact with that new instance. Every later connection checks them strictly.

Pin files (these and the project's known_hosts) are written mode 0600; a directory fabship
creates for them is mode 0700. No link is followed: a pin file, or its directory (or one
fabship would create it under), that is a symbolic link is a DeployError naming it (a
committed link would make fabship write through it, anywhere the deployer can).
"""
import base64
import errno
import fcntl
import os
import re
import tempfile
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


def _link(path):
    return DeployError(f"{path}: is a symbolic link; fabship follows no link to its pin "
                       "files (put the directory or file itself there)")


def _open(path, flags, mode=0o600):
    """os.open without following a link at `path`: a link is a DeployError naming it."""
    try:
        return os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _link(path) from None
        raise


def read_private(path):
    """A pin file's bytes (b"" when missing), not through a link.

    A link is a DeployError naming it; other failures are OSError.
    """
    try:
        handle = _open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO does not hang us
    except FileNotFoundError:
        return b""
    with os.fdopen(handle, "rb") as stream:
        return stream.read()


def private_dir(folder):
    """Make the directory (and missing parents) mode 0700; an existing one is left as is.

    A link there (or where a missing parent would go up to an existing one) is a
    DeployError naming it.
    """
    folder = Path(folder)
    if folder.is_symlink():
        raise _link(folder)
    if folder.is_dir():
        return
    private_dir(folder.parent)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        if folder.is_dir():  # made by another thread meanwhile
            return
        raise
    os.chmod(folder, 0o700)  # whatever the umask


@contextmanager
def locked(path, what):
    """Hold the pin file's lock (threads, and other fabship processes: its directory's)."""
    try:
        with _LOCK:
            private_dir(path.parent)
            handle = _open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
            try:
                fcntl.flock(handle, fcntl.LOCK_EX)
                yield
            finally:
                os.close(handle)
    except OSError as exc:
        raise DeployError(f"cannot update {what} in {path}: {exc.strerror or exc}") from exc


def append_private(path, text):
    """Add text to a file that ends mode 0600 (call it under `locked`)."""
    handle = _open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    with os.fdopen(handle, "a", encoding="utf-8") as stream:
        os.fchmod(handle, 0o600)
        stream.write(text)


def replace_private(path, text):
    """Rewrite a file atomically, mode 0600 (call it under `locked`)."""
    handle, partial = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as stream:
            stream.write(text)
        os.replace(partial, path)
    except BaseException:
        os.unlink(partial)
        raise


class InstancePins:
    """The pin file: `<instance id> <key type> <base64>` lines.

    Writers (threads, and other fabship processes) take a lock; rewrites are atomic. A
    file that cannot be read or written is a DeployError naming it.
    """

    def __init__(self, path):
        self.path = Path(path)

    def _lines(self):
        try:
            text = read_private(self.path).decode("utf-8")
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
        with locked(self.path, "the host key pins"):
            if self.keys(instance_id):
                return False
            self._write([*(" ".join(parts) for parts in self._lines()),
                         *(f"{instance_id} {kind} {data}" for kind, data in keys)])
        return True

    def forget(self, instance_ids):
        """Drop the pins of terminated instances."""
        gone = set(instance_ids)
        with locked(self.path, "the host key pins"):
            lines = self._lines()
            kept = [" ".join(parts) for parts in lines if parts[0] not in gone]
            if len(kept) != len(lines):
                self._write(kept)

    def _write(self, lines):
        replace_private(self.path, "".join(line + "\n" for line in lines))
