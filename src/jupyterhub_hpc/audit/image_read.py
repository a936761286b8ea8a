"""Reading a container image for ``jupyterhub-hpc audit --image``, without running or extracting it.

An image becomes a list of :class:`Entry` (path inside the image, mode, owner, link target,
and the content of the few small text files the checks read) plus the default user from the
image's config when it has one. Sources: an unpacked root file system (a directory, as
Charliecloud uses), a flat tar of a root file system (``podman export``), a docker-archive or
OCI-archive (``podman image save``: layers applied in order, whiteouts honoured), and SquashFS
through ``unsquashfs -lln`` when it is installed. SIF is refused: Apptainer cannot be installed
on the machine this was written on, so no SIF reader was ever tested.

Nothing is extracted and no symbolic link is followed; archive members whose names leave the
image's root are skipped and reported as findings.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
import subprocess
import tarfile
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import IO, Any

from .findings import Finding

__all__ = ["Entry", "ImageContents", "ImageError", "parse_unsquashfs_listing", "read_image", "wants_content"]

#: files the checks read, at most this many bytes each
CONTENT_LIMIT = 256 * 1024


class ImageError(Exception):
    """The image cannot be read (unknown format, SIF, a missing layer, no unsquashfs)."""


@dataclass(frozen=True)
class Entry:
    """One file of an image: ``path`` absolute inside the image ("/usr/bin/sudo"), ``mode`` as
    ``st_mode``, owner, the target of a symbolic link, and ``content`` for the files the checks
    read (:func:`wants_content`), None for every other file."""

    path: str
    mode: int
    uid: int = 0
    gid: int = 0
    link: str | None = None
    content: bytes | None = field(default=None, repr=False)

    def text(self) -> str:
        return (self.content or b"").decode("utf-8", errors="replace")


@dataclass(frozen=True)
class ImageContents:
    """What was read: ``user`` is the config's ``User`` (None when the format records no config),
    ``problems`` the findings of the reading itself (unsafe member names, unreadable files)."""

    source: str
    kind: str
    entries: tuple[Entry, ...]
    user: str | None = None
    problems: tuple[Finding, ...] = ()


def wants_content(path: str) -> bool:
    """The sudoers files and the image's user database: small text files the checks parse."""
    return path in ("/etc/sudoers", "/etc/passwd") or posixpath.dirname(path) == "/etc/sudoers.d"


def _member_path(name: str) -> str | None:
    """The absolute path inside the image of an archive member, None when it leaves the root."""
    if name.startswith("/") or ".." in name.split("/"):
        return None
    clean = posixpath.normpath("/" + name)
    return "/" if clean in ("/", "//") else clean


def _unsafe_member(source: str, name: str) -> Finding:
    escapes = ".." in name.split("/")
    return Finding(
        "image.unsafe-member",
        "high" if escapes else "medium",
        f"archive member {name!r} is {'outside the image root' if escapes else 'an absolute path'}: "
        "it was not read, and a careless extraction writes it outside the target directory",
        "rebuild the archive from the image (podman export / podman image save) instead of "
        "distributing this file",
        f"{source}: {name}",
    )


# directories ----------------------------------------------------------------------------------------


def read_directory(root: str) -> ImageContents:
    """An unpacked root file system, walked with lstat: symbolic links are recorded, never followed."""
    entries: list[Entry] = []
    problems: list[Finding] = []

    def add(real: str, inside: str) -> bool:
        try:
            st = os.lstat(real)
        except OSError as exc:
            problems.append(_unreadable(inside, exc))
            return False
        link = os.readlink(real) if stat.S_ISLNK(st.st_mode) else None
        content = None
        if stat.S_ISREG(st.st_mode) and wants_content(inside):
            try:
                fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW)
                with os.fdopen(fd, "rb") as handle:
                    content = handle.read(CONTENT_LIMIT)
            except OSError as exc:
                problems.append(_unreadable(inside, exc))
        entries.append(Entry(inside, st.st_mode, st.st_uid, st.st_gid, link, content))
        return stat.S_ISDIR(st.st_mode)

    def walk(real: str, inside: str) -> None:
        try:
            with os.scandir(real) as listing:
                children = sorted(listing, key=lambda e: e.name)
        except OSError as exc:
            problems.append(_unreadable(inside, exc))
            return
        for child in children:
            child_inside = posixpath.join(inside, child.name)
            if add(child.path, child_inside):
                walk(child.path, child_inside)

    if add(root, "/"):
        walk(root, "/")
    return ImageContents(root, "directory", tuple(entries), None, tuple(problems))


def _unreadable(path: str, exc: OSError) -> Finding:
    return Finding(
        "image.unreadable",
        "low",
        f"could not read {path}: {exc.strerror or exc}; it was not checked",
        "run the audit as the image's owner or as root",
        path,
    )


# tar archives ---------------------------------------------------------------------------------------


def _tar_mode(member: tarfile.TarInfo) -> int:
    if member.issym():
        kind = stat.S_IFLNK
    elif member.isdir():
        kind = stat.S_IFDIR
    elif member.ischr():
        kind = stat.S_IFCHR
    elif member.isblk():
        kind = stat.S_IFBLK
    elif member.isfifo():
        kind = stat.S_IFIFO
    else:  # regular files and hard links (a hard link carries its file's mode)
        kind = stat.S_IFREG
    return kind | (member.mode & 0o7777)


class _Layers:
    """The file system of a stack of layers: each layer's whiteouts delete from those below it."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.files: dict[str, Entry] = {}
        self.problems: list[Finding] = []

    def _remove_tree(self, path: str, keep_top: bool = False) -> None:
        prefix = path.rstrip("/") + "/"
        for name in [n for n in self.files if n.startswith(prefix)]:
            del self.files[name]
        if not keep_top:
            self.files.pop(path, None)

    def apply(self, archive: tarfile.TarFile, label: str) -> None:
        added: list[Entry] = []
        for member in archive:
            path = _member_path(member.name)
            if path is None:
                self.problems.append(_unsafe_member(f"{self.source} {label}".strip(), member.name))
                continue
            base = posixpath.basename(path)
            parent = posixpath.dirname(path)
            if base == ".wh..wh..opq":  # an opaque directory: nothing of it below this layer
                self._remove_tree(parent, keep_top=True)
                continue
            if base.startswith(".wh."):
                self._remove_tree(posixpath.join(parent, base[len(".wh.") :]))
                continue
            content = None
            if member.isfile() and wants_content(path):
                handle = archive.extractfile(member)
                content = handle.read(CONTENT_LIMIT) if handle else None
            link = member.linkname if member.issym() else None
            added.append(Entry(path, _tar_mode(member), member.uid, member.gid, link, content))
        for entry in added:
            old = self.files.get(entry.path)
            if old is not None and stat.S_ISDIR(old.mode) and not stat.S_ISDIR(entry.mode):
                self._remove_tree(entry.path, keep_top=True)
            self.files[entry.path] = entry


def _open_tar(path: str) -> tarfile.TarFile:
    try:
        return tarfile.open(path, mode="r:*")
    except (tarfile.TarError, OSError) as exc:
        raise ImageError(f"{path}: not a readable tar archive ({exc})") from exc


def _label(archive: tarfile.TarFile) -> str:
    return os.fsdecode(archive.name) if archive.name else "archive"


def _read_member(archive: tarfile.TarFile, name: str) -> IO[bytes]:
    try:
        handle = archive.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise ImageError(f"{_label(archive)}: {name} is listed but missing from the archive")
    return handle


def _json_member(archive: tarfile.TarFile, name: str) -> Any:
    try:
        return json.load(_read_member(archive, name))
    except ValueError as exc:
        raise ImageError(f"{_label(archive)}: {name} is not JSON ({exc})") from exc


def _config_user(config: Any) -> str:
    inner = config.get("config") if isinstance(config, dict) else None
    user = inner.get("User") if isinstance(inner, dict) else None
    return user if isinstance(user, str) else ""


def _apply_layers(archive: tarfile.TarFile, layers: Iterable[str], layered: _Layers) -> None:
    for name in layers:
        try:
            with tarfile.open(fileobj=_read_member(archive, name), mode="r:*") as layer:
                layered.apply(layer, f"layer {name}")
        except tarfile.TarError as exc:
            raise ImageError(f"{_label(archive)}: layer {name} is not a readable tar ({exc})") from exc


def read_tar(path: str) -> ImageContents:
    """A flat root file system tar, or a docker-archive (``manifest.json``) or OCI-archive
    (``index.json``) of layers, told apart by their top-level members."""
    with _open_tar(path) as archive:
        names = set(archive.getnames())
        layered = _Layers(path)
        if "manifest.json" in names:
            manifest = _json_member(archive, "manifest.json")
            if not (isinstance(manifest, list) and manifest and isinstance(manifest[0], dict)):
                raise ImageError(f"{path}: manifest.json does not list an image")
            image = manifest[0]
            if len(manifest) > 1:
                layered.problems.append(
                    Finding(
                        "image.several-images",
                        "info",
                        f"the archive holds {len(manifest)} images: only the first "
                        f"({', '.join(map(str, image.get('RepoTags') or ['untagged']))}) was audited",
                        "save one image per archive (podman image save IMAGE)",
                        path,
                    )
                )
            _apply_layers(archive, [str(layer) for layer in image.get("Layers", [])], layered)
            user: str | None = _config_user(_json_member(archive, str(image.get("Config", ""))))
            kind = "docker-archive"
        elif "index.json" in names and "oci-layout" in names:
            index = _json_member(archive, "index.json")
            try:
                digest = index["manifests"][0]["digest"]
                oci = _json_member(archive, _blob(digest))
                layer_names = [_blob(layer["digest"]) for layer in oci["layers"]]
                config_name = _blob(oci["config"]["digest"])
            except (KeyError, IndexError, TypeError) as exc:
                raise ImageError(f"{path}: index.json does not describe an image ({exc})") from exc
            _apply_layers(archive, layer_names, layered)
            user = _config_user(_json_member(archive, config_name))
            kind = "oci-archive"
        else:
            layered.apply(archive, "")  # its members, listed once by getnames()
            user = None
            kind = "tar"
    entries = tuple(sorted(layered.files.values(), key=lambda e: e.path))
    return ImageContents(path, kind, entries, user, tuple(layered.problems))


def _blob(digest: str) -> str:
    algorithm, _, value = digest.partition(":")
    return f"blobs/{algorithm}/{value}"


# SquashFS -------------------------------------------------------------------------------------------

_LISTING = re.compile(
    r"^(?P<type>[-dlcbps])(?P<perm>[-rwxsStT]{9})\s+(?P<uid>\d+)/(?P<gid>\d+)\s+"
    r"(?:\d+,\s*\d+|\d+)\s+\d{4}-\d\d-\d\d \d\d:\d\d (?P<name>.*)$"
)
_TYPES = {
    "-": stat.S_IFREG,
    "d": stat.S_IFDIR,
    "l": stat.S_IFLNK,
    "c": stat.S_IFCHR,
    "b": stat.S_IFBLK,
    "p": stat.S_IFIFO,
    "s": stat.S_IFSOCK,
}


def mode_from_string(kind: str, perm: str) -> int:
    """``ls -l``'s ``rwsr-xr-x`` back to a mode: s/S, t/T mark setuid, setgid and sticky."""
    mode = _TYPES[kind]
    for index, (shift, special) in enumerate(((6, stat.S_ISUID), (3, stat.S_ISGID), (0, stat.S_ISVTX))):
        read, write, execute = perm[3 * index], perm[3 * index + 1], perm[3 * index + 2]
        mode |= (
            (4 if read == "r" else 0) | (2 if write == "w" else 0) | (1 if execute in "xst" else 0)
        ) << shift
        if execute in "sStT":
            mode |= special
    return mode


def parse_unsquashfs_listing(text: str, root: str = "squashfs-root") -> list[Entry]:
    """The entries of ``unsquashfs -lln``'s listing: one ``ls -l``-like line per file, names
    under ``root`` (unsquashfs's default destination), ``name -> target`` for links. Lines that
    are not entries (unsquashfs's own messages) are skipped."""
    entries = []
    for line in text.splitlines():
        match = _LISTING.match(line)
        if not match:
            continue
        name, link = match["name"], None
        if match["type"] == "l" and " -> " in name:
            name, link = name.split(" -> ", 1)
        if name != root and not name.startswith(root + "/"):
            continue
        path = name[len(root) :] or "/"
        mode = mode_from_string(match["type"], match["perm"])
        entries.append(Entry(path, mode, int(match["uid"]), int(match["gid"]), link))
    return entries


def read_squashfs(path: str) -> ImageContents:
    unsquashfs = shutil.which("unsquashfs")
    if unsquashfs is None:
        raise ImageError(
            f"{path} is a SquashFS image and unsquashfs is not installed (Debian: squashfs-tools)"
        )
    listing = subprocess.run(
        [unsquashfs, "-lln", path], capture_output=True, text=True, check=False, timeout=300
    )
    if listing.returncode != 0:
        raise ImageError(f"unsquashfs -lln {path}: {listing.stderr.strip() or listing.returncode}")
    entries = []
    for entry in parse_unsquashfs_listing(listing.stdout):
        if stat.S_ISREG(entry.mode) and wants_content(entry.path):
            cat = subprocess.run(
                [unsquashfs, "-cat", path, entry.path], capture_output=True, check=False, timeout=60
            )
            if cat.returncode == 0:
                entry = replace(entry, content=cat.stdout[:CONTENT_LIMIT])
        entries.append(entry)
    return ImageContents(path, "squashfs", tuple(entries), None, ())


# dispatch -------------------------------------------------------------------------------------------


def read_image(path: str) -> ImageContents:
    """Reads the image at ``path``, its format told by what it is, not by its name."""
    if os.path.isdir(path):
        return read_directory(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(64)
    except OSError as exc:
        raise ImageError(f"{path}: {exc.strerror or exc}") from exc
    if head.startswith(b"hsqs"):
        return read_squashfs(path)
    if b"SIF_MAGIC" in head or path.endswith(".sif"):
        raise ImageError(
            f"{path} is a SIF image: not supported here (Apptainer/Singularity cannot be installed on "
            "this machine, so no SIF reader was tested); audit the sandbox directory instead "
            "(apptainer build --sandbox DIR IMAGE.sif)"
        )
    return read_tar(path)
