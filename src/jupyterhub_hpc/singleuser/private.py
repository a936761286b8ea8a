"""The job's private directory on the node: Jupyter's runtime files, kernel sockets, certificates.

Job-side (standard library only). One new directory per job, mode 0700, made with
:func:`tempfile.mkdtemp` (a random name created with ``O_EXCL``: another user
cannot pre-create it) under ``$XDG_RUNTIME_DIR`` when that is the user's own 0700
directory, else under ``$TMPDIR`` (``/tmp``). The running launcher holds an
exclusive ``flock`` on ``<dir>/.lock``; it removes the directory when the server
exits, and every later job of the user removes the directories whose lock nobody
holds (left by a job killed with SIGKILL or a node reboot).
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
import time

__all__ = ["PREFIX", "PrivateDir"]

PREFIX = "jupyterhub-hpc"
LOCK_NAME = ".lock"
#: a directory younger than this may still be between its creation and its lock
MIN_AGE = 60.0


def _base() -> str:
    uid = os.getuid()
    base = os.environ.get("XDG_RUNTIME_DIR", "")
    if base:
        try:
            info = os.stat(base)
        except OSError:
            info = None
        if info and stat.S_ISDIR(info.st_mode) and info.st_uid == uid and stat.S_IMODE(info.st_mode) == 0o700:
            return base
    return tempfile.gettempdir()


def _prefix() -> str:
    return f"{PREFIX}-{os.getuid()}-"


def _is_own_private_dir(path: str) -> bool:
    try:
        info = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid() and stat.S_IMODE(info.st_mode) == 0o700


def remove_stale(base: str) -> list[str]:
    """Remove this user's private directories under ``base`` whose lock nobody holds;
    return their paths. Directories of other users, or without a lock file (not
    made by this module), are left alone."""
    removed: list[str] = []
    try:
        names = os.listdir(base)
    except OSError:
        return removed
    for name in names:
        path = os.path.join(base, name)
        if not name.startswith(_prefix()) or not _is_own_private_dir(path):
            continue
        try:
            if time.time() - os.lstat(path).st_mtime < MIN_AGE:
                continue
        except OSError:
            continue
        try:
            fd = os.open(os.path.join(path, LOCK_NAME), os.O_RDWR | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError:
            continue
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            continue  # a running job holds it
        try:
            shutil.rmtree(path, ignore_errors=True)
        finally:
            os.close(fd)
        removed.append(path)
    return removed


class PrivateDir:
    """A new private directory for this job, locked while the job runs."""

    def __init__(self) -> None:
        base = _base()
        self.stale_removed = remove_stale(base)
        self.path = tempfile.mkdtemp(prefix=_prefix(), dir=base)  # 0700, O_EXCL
        self._lock = os.open(
            os.path.join(self.path, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600
        )
        fcntl.flock(self._lock, fcntl.LOCK_EX)

    def subdir(self, name: str) -> str:
        path = os.path.join(self.path, name)
        os.mkdir(path, 0o700)
        return path

    def remove(self) -> None:
        """Remove the directory (at the end of the job)."""
        shutil.rmtree(self.path, ignore_errors=True)
        try:
            os.close(self._lock)
        except OSError:
            pass
