"""``jupyterhub-hpc-read-output --lines N PATH``: the end of a job's output file, read as the user.

The hub runs this program through ``sudo -u USER`` (``read_prefix``) in place of
``tail``, to show the last lines of a failed job's output and to find the exit
status the job wrote there. The sudoers rule pins the shape of ``PATH`` (the
``job_output`` pattern); this program adds what a regular expression cannot check:

- ``PATH`` is absolute and has no empty, ``.`` or ``..`` component;
- no symbolic link a user made is followed: each directory is opened with
  ``O_PATH | O_NOFOLLOW | O_DIRECTORY`` relative to its parent's descriptor, and
  the file itself with ``O_NOFOLLOW``, so nothing is resolved twice. A directory
  component that is a symbolic link **owned by root** (a site's ``/home ->
  /gpfs/home``: no user can make one) is followed, by walking its target the same
  way, component by component (at most ``MAX_LINKS`` of them); the file itself is
  never a link;
- the file is a regular file (checked before it is opened, and again on the open
  descriptor; ``O_NONBLOCK``, so a FIFO could not block it anyway), owned by the
  invoking user (``os.getuid()``);
- at most ``MAX_BYTES`` are read, from the end; at most ``N`` lines are printed,
  ``1 <= N <= MAX_LINES``.

Exit status 0 with the lines on standard output, or 1 with a one-line reason on
standard error and nothing on standard output. It runs as the user, on compute or
login nodes, so it uses the standard library only (nothing of the hub).
"""

from __future__ import annotations

import errno
import os
import stat
import sys
from collections.abc import Sequence

__all__ = ["MAX_BYTES", "MAX_LINES", "ReadRefused", "last_lines", "main", "open_output"]

PROG = "jupyterhub-hpc-read-output"
#: the most lines one call prints
MAX_LINES = 1000
#: the most bytes one call reads, from the end of the file
MAX_BYTES = 64 * 1024
#: the most root-owned directory links one path may pass through
MAX_LINKS = 8

_DIR_FLAGS = os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY


class ReadRefused(Exception):
    """The path or the file is not one this program reads; the message says why."""


def _components(path: str) -> list[str]:
    if not path.startswith("/"):
        raise ReadRefused(f"{path!r} is not an absolute path")
    parts = path[1:].split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise ReadRefused(f"{path!r} has an empty, '.' or '..' component")
    return parts


def _root_link(name: str, parent: int) -> str | None:
    """The target of ``name`` (in ``parent``) when it is a symbolic link owned by root."""
    try:
        info = os.stat(name, dir_fd=parent, follow_symlinks=False)
    except OSError:
        return None
    if not stat.S_ISLNK(info.st_mode) or info.st_uid != 0:
        return None
    return os.readlink(name, dir_fd=parent)


def _open_directory(name: str, parent: int, shown: str) -> int:
    try:
        return os.open(name, _DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        if exc.errno in (errno.ENOTDIR, errno.ELOOP):
            try:
                is_link = stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
            except OSError:
                is_link = False
            raise ReadRefused(f"{shown} is {'a symbolic link' if is_link else 'not a directory'}") from None
        raise ReadRefused(f"{shown}: {exc.strerror}") from None


def _walk_directories(path: str, parts: list[str]) -> tuple[int, str]:
    """A descriptor of the directory holding ``path``'s last component, reached without
    following a link a user made, and that component's name."""
    todo, done = list(parts), list[str]()
    links = 0
    parent = os.open("/", _DIR_FLAGS)
    try:
        while len(todo) > 1:
            name = todo.pop(0)
            shown = "/" + "/".join([*done, name])
            target = _root_link(name, parent)
            if target is not None:
                links += 1
                if links > MAX_LINKS:
                    raise ReadRefused(f"{path} passes through more than {MAX_LINKS} links")
                # walk the admin's link target from the start, component by component
                base = target if target.startswith("/") else "/" + "/".join([*done, target])
                todo = _components(os.path.normpath(base)) + todo
                done = []
                os.close(parent)
                parent = os.open("/", _DIR_FLAGS)
                continue
            fd = _open_directory(name, parent, shown)
            os.close(parent)
            parent = fd
            done.append(name)
    except BaseException:
        os.close(parent)
        raise
    return parent, todo[0]


def open_output(path: str, uid: int | None = None) -> int:
    """A read-only descriptor of the regular file ``path``, owned by ``uid`` (default: the
    invoking user), reached without following a symbolic link a user made. Raises
    :class:`ReadRefused`."""
    uid = os.getuid() if uid is None else uid
    parent, name = _walk_directories(path, _components(path))
    try:
        try:
            before = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except OSError as exc:
            raise ReadRefused(f"{path}: {exc.strerror}") from None
        if stat.S_ISLNK(before.st_mode):
            raise ReadRefused(f"{path} is a symbolic link")
        if not stat.S_ISREG(before.st_mode):
            raise ReadRefused(f"{path} is not a regular file")
        try:
            fd = os.open(name, _FILE_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise ReadRefused(f"{path}: {exc.strerror}") from None
    finally:
        os.close(parent)
    try:
        info = os.fstat(fd)
        if (info.st_dev, info.st_ino) != (before.st_dev, before.st_ino) or not stat.S_ISREG(info.st_mode):
            raise ReadRefused(f"{path} changed while it was opened")
        if info.st_uid != uid:
            raise ReadRefused(f"{path} is owned by uid {info.st_uid}, not by uid {uid}")
    except BaseException:
        os.close(fd)
        raise
    return fd


def last_lines(fd: int, lines: int, max_bytes: int = MAX_BYTES) -> bytes:
    """The last ``lines`` lines among the last ``max_bytes`` bytes of the open file ``fd``.
    The line the window starts inside of is left out, unless it is the only one."""
    size = os.fstat(fd).st_size
    start = max(0, size - max_bytes)
    chunks: list[bytes] = []
    offset, left = start, size - start
    while left > 0:
        chunk = os.pread(fd, left, offset)
        if not chunk:
            break
        chunks.append(chunk)
        offset += len(chunk)
        left -= len(chunk)
    found = b"".join(chunks).splitlines(keepends=True)
    if start > 0 and len(found) > 1 and os.pread(fd, 1, start - 1) != b"\n":
        found = found[1:]
    return b"".join(found[-lines:])


def _parse(argv: Sequence[str]) -> tuple[int, str]:
    if len(argv) != 3 or argv[0] != "--lines":
        raise ReadRefused(f"usage: {PROG} --lines N PATH")
    count = argv[1]
    if not (count.isascii() and count.isdigit()) or not 1 <= int(count) <= MAX_LINES:
        raise ReadRefused(f"--lines takes a number from 1 to {MAX_LINES}, not {count!r}")
    return int(count), argv[2]


def main(argv: Sequence[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        lines, path = _parse(args)
        fd = open_output(path)
        try:
            text = last_lines(fd, lines)
        except OSError as exc:
            raise ReadRefused(f"{path}: {exc.strerror}") from None
        finally:
            os.close(fd)
    except ReadRefused as exc:
        print(f"{PROG}: {exc}".replace("\n", " "), file=sys.stderr)
        return 1
    try:
        sys.stdout.buffer.write(text)
        sys.stdout.buffer.flush()
    except BrokenPipeError:
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
