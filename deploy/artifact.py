"""Build what ships, once, on the controller: the source tarball and the deps bundle.

The source tarball holds the `source` tree of the gated commit (deploy/sourcetree.py).
Both are deterministic (sorted entries, zero timestamps and owners), so unchanged
content gives the same digest and hosts that hold it skip the upload. The deps bundle
(wheels of the requirements, plus supervisor when it manages the service) is keyed by
the requirements hash and installed on hosts with `pip --no-index`: hosts need no
route to the internet.
"""
import gzip
import hashlib
import io
import os
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path

from .errors import DeployError
from .sourcetree import read_commit

SUPERVISOR = "supervisor>=4.3"


@dataclass(frozen=True)
class Artifact:
    """A built tarball: its sha256 digest and bytes."""

    digest: str
    data: bytes

    @property
    def name(self):
        """File name on hosts: named by the digest."""
        return f"{self.digest}.tar.gz"


def deterministic_tar(entries):
    """gzip'd tar of (arcname, bytes, mode[, symlink target]) entries, fixed metadata."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for arcname, data, mode, *link in sorted(entries, key=lambda e: e[0]):
            info = tarfile.TarInfo(arcname)
            info.mode, info.mtime = mode, 0
            if link and link[0] is not None:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, link[0], 0o777
                tar.addfile(info)
                continue
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, compresslevel=6) as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def build_source(root, source, commit, where="source"):
    """The release tarball of `source` (relative to the project `root`) at `commit`."""
    entries = read_commit(root, source, commit, where)
    data = deterministic_tar([(e.path, e.data, e.mode, e.link) for e in entries])
    return Artifact(hashlib.sha256(data).hexdigest(), data)


def deps_specs(requirements_text, manager):
    """What the venv installs: the requirements, plus supervisor under supervisor."""
    extra = f"{SUPERVISOR}\n" if manager == "supervisor" else ""
    return requirements_text + ("\n" if requirements_text and not
                                requirements_text.endswith("\n") else "") + extra


def deps_hash(specs):
    """Short hash naming the venv built from these specs."""
    return hashlib.sha256(specs.encode()).hexdigest()[:16]


def build_deps(specs, cache_dir, log=print, hide=()):
    """Wheels for `specs` (pip wheel, cached by hash) bundled with requirements.txt.

    pip runs without the variables named in `hide` (the secrets): a build backend or a
    setup.py it runs never sees them.
    """
    key = deps_hash(specs)
    bundle = Path(cache_dir) / f"deps-{key}.tar.gz"
    if bundle.exists():
        data = bundle.read_bytes()
        return Artifact(hashlib.sha256(data).hexdigest(), data)
    wheels = Path(cache_dir) / f"wheels-{key}"
    wheels.mkdir(parents=True, exist_ok=True)
    (wheels / "requirements.txt").write_text(specs)
    log(f"building wheels for the requirements ({key}) ...")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet",
                           "--disable-pip-version-check", "-w", str(wheels),
                           "-r", str(wheels / "requirements.txt")],
                          capture_output=True, text=True, check=False,
                          env={k: v for k, v in os.environ.items() if k not in hide})
    if proc.returncode:
        raise DeployError(f"pip wheel failed for the requirements:\n{proc.stderr.strip()}")
    entries = [(path.name, path.read_bytes(), 0o644) for path in sorted(wheels.iterdir())]
    data = deterministic_tar(entries)
    partial = bundle.with_suffix(".part")
    partial.write_bytes(data)
    os.replace(partial, bundle)  # a killed build never leaves a truncated bundle behind
    return Artifact(hashlib.sha256(data).hexdigest(), data)
