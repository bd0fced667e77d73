"""A small tmpfs to fill up or make read-only under a catalog (the tests run as root)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


class Tmpfs:
    """A small tmpfs mounted at ``path`` (we are root in CI); unmounted by the fixture."""

    def __init__(self, path: Path, size: str) -> None:
        self.path = path
        self.size = size
        path.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
            capture_output=True,
            text=True,
            check=False,
        )
        if result.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs: {result.stderr.strip()}")
        self.mounted = True
        self.views: list[Path] = []

    def remount(self, options: str, *, check: bool = True) -> None:
        """``mount -o remount,OPTIONS`` (``ro``, ``rw``, ``size=50m``)."""
        subprocess.run(
            ["mount", "-o", f"remount,{options}", str(self.path)], check=check, capture_output=True
        )

    def read_only_view(self, view: Path) -> Path:
        """Bind-mount this filesystem read-only at ``view`` (a second, read-only way in).

        ``remount,ro`` of the filesystem itself is refused while files are open for writing
        (an open catalog's SQLite files); a fresh read-only bind mount is not.
        """
        view.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "--bind", str(self.path), str(view)], check=True)
        self.views.append(view)
        subprocess.run(["mount", "-o", "remount,bind,ro", str(view)], check=True)
        return view

    def unmount(self) -> None:
        for view in reversed(self.views):
            subprocess.run(["umount", "-l", str(view)], check=False, capture_output=True)
        self.views.clear()
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False, capture_output=True)
            self.mounted = False
