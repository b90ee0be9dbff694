"""Capistrano's layout of a service root on a host. Pure path arithmetic."""
import posixpath
from dataclasses import dataclass


@dataclass(frozen=True)
class Layout:
    """Paths under one service root.

    The root may be a symbolic link (the user's choice); below it, `current` is the only
    link fabship makes at the top, and no path here may be one (the host scripts refuse
    them: commands.LAYOUT_NO_LINKS).
    """

    root: str

    def _at(self, *parts):
        return posixpath.join(self.root, *parts)

    @property
    def releases(self):
        """releases/: one directory per release id."""
        return self._at("releases")

    def release(self, release_id):
        """releases/<id>."""
        return self._at("releases", release_id)

    def staging(self, release_id):
        """Where a release is assembled before it is renamed into place."""
        return self._at("releases", f".{release_id}.tmp")

    @property
    def shared(self):
        """shared/: persists across releases (log/, data/, env)."""
        return self._at("shared")

    @property
    def venvs(self):
        """venvs/: one virtualenv per requirements hash."""
        return self._at("venvs")

    def venv(self, key):
        """venvs/<requirements hash>."""
        return self._at("venvs", key)

    @property
    def artifacts(self):
        """artifacts/: release tarballs named by digest."""
        return self._at("artifacts")

    def artifact(self, name):
        """artifacts/<name>."""
        return self._at("artifacts", name)

    @property
    def current(self):
        """current -> releases/<id>."""
        return self._at("current")

    @property
    def lock(self):
        """.lock/: mkdir is atomic; owner.json says who holds it."""
        return self._at(".lock")

    @property
    def history(self):
        """deploys.jsonl: append-only history."""
        return self._at("deploys.jsonl")
