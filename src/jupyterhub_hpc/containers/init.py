"""``jupyterhub-hpc-init``: the non-root init inside the user's container (issue 17).

Usage: ``jupyterhub-hpc-init [--hook-dir DIR] [--hook-timeout S] [--image-user NAME] -- COMMAND ARGS...``

It runs as the user (never as root, no setuid, no sudo) and, in this order:

1. takes the identity from :data:`~jupyterhub_hpc.identity.IDENTITY_ENV` (its uid and primary gid
   must be this process's) or from the process's own ids;
2. names it: when NSS inside the image does not know the uid, or knows it under another name (the
   image's ``jovyan``), it writes a passwd and a group file into a private directory and re-executes
   itself once with libnss_wrapper preloaded (:mod:`jupyterhub_hpc.containers.names` decides);
   ``/etc`` is never written;
3. sets ``HOME``, ``USER``, ``LOGNAME``, ``NB_USER``, ``NB_UID``, ``NB_GID``;
4. runs the admin's start hooks with a timeout, their output prefixed ``[init] hook NAME: `` and,
   when the launcher asked for it (``$JUPYTERHUB_HPC_PROGRESS_URL``), shown in the spawn progress
   (:mod:`jupyterhub_hpc.containers.report`);
5. starts the command in its own process group and stays as a minimal PID 1: it forwards the
   usual signals to that group, reaps every child and exits with the command's status.
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import grp
import os
import pwd
import signal
import stat
import subprocess
import sys
import tempfile
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO

from jupyterhub_hpc.containers.names import (
    NameAction,
    NssEntry,
    choose_home,
    decide_names,
    find_nss_wrapper,
    group_text,
    passwd_entry,
    passwd_text,
)
from jupyterhub_hpc.containers.report import PROGRESS_ENV, HookReporter
from jupyterhub_hpc.containers.runtimes import NSS_WRAPPER_ENV
from jupyterhub_hpc.identity import IDENTITY_ENV, NAME, IdentityError, UserIdentity

__all__ = ["FORWARDED", "InitError", "Supervisor", "hook_problem", "main"]

#: set in the re-executed init (its value says how the names were made): names are done
MARKER_ENV = "JUPYTERHUB_HPC_INIT_NAMES"
#: the private directories of the name files
NSS_PREFIX = "jupyterhub-hpc-nss-"
DEFAULT_PASSWD = "/etc/passwd"
DEFAULT_GROUP = "/etc/group"
#: what the init passes on to the command's process group
FORWARDED = (
    signal.SIGTERM,
    signal.SIGINT,
    signal.SIGHUP,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGQUIT,
)
#: the forwarded signals that also mean "do not start the server" when they come before it
STOPPING = {signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT}
PR_SET_CHILD_SUBREAPER = 36
#: the gid a group not mapped into the user namespace shows as (the kernel's overflowgid)
OVERFLOW_GID = 65534
#: the owner a file of an unmapped uid shows as (the kernel's overflowuid): a hook bound from the
#: host, root's there, shows so inside (ch-run, rootless podman); the launcher checked its owner
#: on the host (:func:`jupyterhub_hpc.containers.launch.host_hook_problems`)
OVERFLOW_UID = 65534


class InitError(Exception):
    """The server cannot start: the message says why; the init exits 1."""


def say(message: str) -> None:
    print(f"[init] {message}", flush=True)


def warn(message: str) -> None:
    print(f"[init] warning: {message}", file=sys.stderr, flush=True)


# -- identity ----------------------------------------------------------------------------------
def _name_or(name: str | None, fallback: str) -> str:
    return name if name and NAME.fullmatch(name) else fallback


def identity_from_process(env: Mapping[str, str]) -> UserIdentity:
    """The identity of this process's own ids, with names from NSS where it has them."""
    uid, gid = os.getuid(), os.getgid()
    try:
        entry: pwd.struct_passwd | None = pwd.getpwuid(uid)
    except KeyError:
        entry = None
    groups = []
    for extra in dict.fromkeys(os.getgroups()):
        if extra not in (0, gid):
            groups.append({"name": _group_name(extra), "gid": extra})
    try:
        return UserIdentity.make(
            username=_name_or(entry.pw_name if entry else env.get("USER"), f"user{uid}"),
            uid=uid,
            group={"name": _group_name(gid), "gid": gid},
            groups=groups,
            home=(entry.pw_dir if entry else None) or env.get("HOME") or "/tmp",
            shell=(entry.pw_shell if entry else None) or "/bin/sh",
            gecos=entry.pw_gecos.split(",")[0] if entry else "",
        )
    except IdentityError as exc:
        raise InitError(f"this process's ids make no usable identity: {exc}") from None


def _group_name(gid: int) -> str:
    try:
        return _name_or(grp.getgrgid(gid).gr_name, f"group{gid}")
    except KeyError:
        return f"group{gid}"


def load_identity(env: Mapping[str, str], image_user: NssEntry | None = None) -> UserIdentity:
    """The hub's identity from the environment (checked against this process), else our own.

    With ``image_user`` (the image's own user, e.g. ``jovyan`` 1000:100) and this process running
    as exactly that uid and gid, the runtime mapped the real user onto it (podman
    ``--userns=keep-id:uid=1000,gid=100``): inside, the identity is the real name and groups with
    the image user's ids and home; on the host its files are the real uid's."""
    text = env.get(IDENTITY_ENV)
    if not text:
        return identity_from_process(env)
    try:
        identity = UserIdentity.from_env(text)
    except IdentityError as exc:
        raise InitError(f"${IDENTITY_ENV} is not a usable identity: {exc}") from None
    mapped = image_user is not None and (image_user.uid, image_user.gid) == (os.getuid(), os.getgid())
    if mapped and identity.uid != os.getuid():
        assert image_user is not None
        group = identity.group.model_copy(update={"gid": image_user.gid})
        identity = identity.model_copy(
            update={"uid": image_user.uid, "group": group, "home": image_user.home}
        )
    if identity.uid != os.getuid():
        raise InitError(
            f"the uid differs: ${IDENTITY_ENV} says uid {identity.uid} ({identity.username}), this process "
            f"runs as uid {os.getuid()}: the container runtime did not keep the user's uid"
        )
    if identity.gid != os.getgid():
        raise InitError(
            f"the primary gid differs: ${IDENTITY_ENV} says gid {identity.gid} ({identity.group.name}), "
            f"this process runs with gid {os.getgid()}: the container runtime did not keep the user's group"
        )
    missing = [g for g in identity.groups if g.gid not in os.getgroups()]
    if missing and OVERFLOW_GID in os.getgroups():
        # kept by the kernel but not mapped into this user namespace (crun, ch-run): still effective
        names = ", ".join(f"{g.name} ({g.gid})" for g in missing)
        say(f"the groups {names} are kept but unmapped here (shown as gid {OVERFLOW_GID})")
    elif missing:
        names = ", ".join(f"{g.name} ({g.gid})" for g in missing)
        warn(f"the runtime dropped the groups {names}: files of these groups are not reachable")
    return identity


# -- names -------------------------------------------------------------------------------------
def lookup_uid(uid: int, passwd_source: str, image_passwd: str) -> NssEntry | None:
    """What the image says of the uid: NSS for the real ``/etc/passwd`` (it may be LDAP or a
    runtime's injected file), the file itself for another ``--passwd-source``."""
    if passwd_source != DEFAULT_PASSWD:
        return passwd_entry(image_passwd, uid=uid)
    try:
        entry = pwd.getpwuid(uid)
    except KeyError:
        return None
    return NssEntry(entry.pw_name, entry.pw_uid, entry.pw_gid, entry.pw_dir)


def _read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except OSError as exc:
        warn(f"cannot read {path} ({exc.strerror}): starting from an empty file")
        return ""


def private_directory(env: Mapping[str, str], uid: int) -> str:
    """A fresh directory only we can enter: under ``$XDG_RUNTIME_DIR`` when it is ours, else under
    ``/dev/shm`` (a tmpfs) or ``/tmp``."""
    bases = ["/dev/shm", "/tmp"]
    runtime = env.get("XDG_RUNTIME_DIR")
    if runtime:
        with contextlib.suppress(OSError):
            info = os.stat(runtime)
            if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o077:
                bases.insert(0, runtime)
    for base in bases:
        with contextlib.suppress(OSError):
            return tempfile.mkdtemp(prefix=NSS_PREFIX, dir=base)
    raise InitError(f"no private directory for the name files in {', '.join(bases)}")


def _write_private(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)


def name_identity(
    args: argparse.Namespace,
    argv: Sequence[str],
    identity: UserIdentity,
    env: dict[str, str],
    home: str | None,
) -> str:
    """Make the names (re-executing this init under nss_wrapper when needed); how, for the start line."""
    done = env.pop(MARKER_ENV, None)
    if done is not None:
        with contextlib.suppress(KeyError):
            if pwd.getpwuid(identity.uid).pw_name == identity.username:
                return done
        warn(f"nss_wrapper is preloaded but uid {identity.uid} is still not {identity.username!r}")
        return f"none (nss_wrapper did not take: {done})"
    image_passwd = _read(args.passwd_source)
    decision = decide_names(
        identity, lookup_uid(identity.uid, args.passwd_source, image_passwd), args.image_user
    )
    if decision.action is NameAction.KEEP:
        return decision.reason
    library = find_nss_wrapper(os.path.isfile, env.get(NSS_WRAPPER_ENV))
    if library is None:
        warn(
            f"{decision.reason} and libnss_wrapper is not installed (nor ${NSS_WRAPPER_ENV}): "
            f"uid {identity.uid} stays without the name {identity.username!r}"
        )
        return f"none ({decision.reason}; no libnss_wrapper)"
    directory = private_directory(env, identity.uid)
    passwd_file, group_file = os.path.join(directory, "passwd"), os.path.join(directory, "group")
    _write_private(passwd_file, passwd_text(image_passwd, identity, home or env.get("HOME")))
    _write_private(group_file, group_text(_read(args.group_source), identity))
    preload = env.get("LD_PRELOAD", "").strip()
    env["LD_PRELOAD"] = f"{library}:{preload}" if preload else library
    env["NSS_WRAPPER_PASSWD"], env["NSS_WRAPPER_GROUP"] = passwd_file, group_file
    env[MARKER_ENV] = f"nss_wrapper, {decision.reason} (files in {directory})"
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, "-m", __spec__.name if __spec__ else __name__, *argv], env)
    raise AssertionError("unreachable")  # pragma: no cover


# -- hooks -------------------------------------------------------------------------------------
def hook_problem(info: os.stat_result, uid: int, executable: bool) -> str | None:
    """Why a file in the hook directory is not run (None: it is run); ``executable``: whether the
    user may execute it (``os.access``). Its owner must be the user, root, or a uid this user
    namespace does not map (:data:`OVERFLOW_UID`), and nobody else may write it."""
    if not stat.S_ISREG(info.st_mode):
        return "not a regular file"
    if not executable:
        return "not executable"
    if info.st_uid not in (uid, 0, OVERFLOW_UID):
        return f"owned by uid {info.st_uid}, neither the user nor root"
    if info.st_mode & 0o022:
        return "writable by others than the user"
    return None


def _forward_output(name: str, stream: IO[bytes], reporter: HookReporter | None) -> None:
    for raw in stream:
        line = raw.decode(errors="replace").rstrip("\r\n")
        print(f"[init] hook {name}: {line}", flush=True)
        if reporter is not None:
            reporter.line(name, line)


def run_hooks(
    directory: str | None,
    timeout: float,
    env: Mapping[str, str],
    supervisor: Supervisor,
    reporter: HookReporter | None = None,
) -> None:
    """Run each hook of ``directory`` in name order; their lines also go to ``reporter``.
    Raises :class:`InitError` for a hook that fails or takes too long."""
    if directory is None:
        return
    try:
        names = sorted(os.listdir(directory))
    except OSError as exc:
        say(f"no hooks: cannot read {directory} ({exc.strerror})")
        return
    for name in names:
        if supervisor.stopped is not None:
            return
        path = os.path.join(directory, name)
        try:
            problem = hook_problem(os.stat(path), os.getuid(), os.access(path, os.X_OK))
        except OSError as exc:
            problem = exc.strerror
        if problem:
            say(f"hook {name} skipped: {problem}")
            if reporter is not None:
                reporter.note(name, f"skipped: {problem}")
            continue
        try:
            run_hook(name, path, timeout, env, supervisor, reporter)
        except InitError as exc:
            if reporter is not None:
                reporter.note(name, str(exc).removeprefix(f"hook {name} "))
            raise


def run_hook(
    name: str,
    path: str,
    timeout: float,
    env: Mapping[str, str],
    supervisor: Supervisor,
    reporter: HookReporter | None = None,
) -> None:
    proc = subprocess.Popen(
        [path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=dict(env),
        start_new_session=True,
    )
    supervisor.attach(proc.pid)
    reader = threading.Thread(target=_forward_output, args=(name, proc.stdout, reporter), daemon=True)
    reader.start()
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        raise InitError(
            f"hook {name} did not finish within {timeout:g} s: killed, the server does not start"
        ) from None
    finally:
        supervisor.detach()
        reader.join(2)
    if code != 0 and supervisor.stopped is None:
        how = f"was killed by signal {-code}" if code < 0 else f"exited {code}"
        raise InitError(f"hook {name} {how}: the server does not start")


# -- the command -------------------------------------------------------------------------------
class Supervisor:
    """Forwards :data:`FORWARDED` to the process group of the hook or command running now; a
    stopping signal before the command started is remembered (the command then never starts)."""

    def __init__(self) -> None:
        self.target: int | None = None
        self.pending: list[int] = []
        self.stopped: int | None = None

    def install(self) -> None:
        for signum in FORWARDED:
            signal.signal(signum, self._handle)

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if signum in STOPPING and self.stopped is None:
            self.stopped = signum
        if self.target is None:
            self.pending.append(signum)
        else:
            self._send(signum)

    def _send(self, signum: int) -> None:
        if self.target is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.target, signum)

    def attach(self, pid: int) -> None:
        self.target = pid

    def detach(self) -> None:
        self.target = None
        self.pending.clear()

    def start(self, command: Sequence[str], env: Mapping[str, str]) -> int:
        """Run the command in its own session and wait for it, reaping every child; its status."""
        try:
            pid = os.posix_spawnp(
                command[0], list(command), dict(env), setsid=True, setsigdef=(signal.SIGPIPE, signal.SIGXFSZ)
            )
        except OSError as exc:
            print(f"[init] error: cannot run {command[0]!r}: {exc.strerror}", file=sys.stderr, flush=True)
            return 127 if isinstance(exc, FileNotFoundError) else 126
        self.attach(pid)
        for signum in self.pending:
            self._send(signum)
        self.pending.clear()
        while True:
            try:
                reaped, status = os.waitpid(-1, 0)
            except ChildProcessError:
                return 1
            if reaped == pid:
                break
        self.target = None
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0] > 0:
                pass
        code = os.waitstatus_to_exitcode(status)
        return code if code >= 0 else 128 - code


def _become_subreaper() -> None:
    """Orphans of the command become our children to reap, also when we are not PID 1 (Linux)."""
    if os.getpid() == 1 or not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)


# -- main --------------------------------------------------------------------------------------
def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="jupyterhub-hpc-init",
        description="Name the user, set the environment, run start hooks and supervise COMMAND, as the user.",
    )
    p.add_argument("--hook-dir", help="run each executable file here (sorted by name) before the command")
    p.add_argument("--hook-timeout", type=float, default=60.0, help="seconds each hook may take (default 60)")
    p.add_argument("--image-user", help="the image's own user (e.g. jovyan), renamed to the real user")
    p.add_argument("--passwd-source", default=DEFAULT_PASSWD, help="the image's passwd to start from")
    p.add_argument("--group-source", default=DEFAULT_GROUP, help="the image's group file to start from")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ARGS...")
    return p


def run(argv: Sequence[str]) -> int:
    args = parser().parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        raise InitError("no command: jupyterhub-hpc-init [options] -- COMMAND ARGS...")
    if args.hook_timeout <= 0:
        raise InitError("--hook-timeout must be positive")
    if os.getuid() == 0 or os.geteuid() == 0:
        raise InitError("jupyterhub-hpc-init never runs as root: start the container as the user")
    supervisor = Supervisor()
    supervisor.install()
    _become_subreaper()
    env = dict(os.environ)
    found = passwd_entry(_read(args.passwd_source), name=args.image_user) if args.image_user else None
    identity = load_identity(env, found)
    image_home = found.home if found else None
    home = choose_home(identity, image_home, env.get("HOME"), os.path.isdir)
    how = name_identity(args, argv, identity, env, home)
    if home:
        env["HOME"] = home
    for key in ("USER", "LOGNAME", "NB_USER"):
        env[key] = identity.username
    env["NB_UID"], env["NB_GID"] = str(identity.uid), str(identity.gid)
    reporter = HookReporter.from_env(env) if args.hook_dir else None
    env.pop(PROGRESS_ENV, None)  # the init's own: neither the hooks nor the server report with it
    try:
        run_hooks(args.hook_dir, args.hook_timeout, env, supervisor, reporter)
    finally:
        if reporter is not None:
            reporter.close()
    if supervisor.stopped is not None:
        say(f"stopped by signal {supervisor.stopped} before the command started")
        return 128 + supervisor.stopped
    say(f"starting as {identity.describe()}; names: {how}")
    try:
        return supervisor.start(command, env)
    finally:
        _remove_name_files(env)


def _remove_name_files(env: Mapping[str, str]) -> None:
    """The nss_wrapper files of this start, once the command is gone (only a directory we made)."""
    passwd_file = env.get("NSS_WRAPPER_PASSWD", "")
    directory = os.path.dirname(passwd_file)
    try:
        if not os.path.basename(directory).startswith(NSS_PREFIX) or os.stat(directory).st_uid != os.getuid():
            return
    except OSError:
        return
    for name in ("passwd", "group"):
        with contextlib.suppress(OSError):
            os.unlink(os.path.join(directory, name))
    with contextlib.suppress(OSError):
        os.rmdir(directory)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return run(list(sys.argv[1:] if argv is None else argv))
    except InitError as exc:
        print(f"[init] error: {exc}", file=sys.stderr, flush=True)
        return 1


if __name__ == "__main__":
    sys.exit(main())
