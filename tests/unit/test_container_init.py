"""jupyterhub-hpc-init (issue 17): the pure name decision and name files, and the init really run
as an ordinary user (``runuser -u hpcuser1``) with a fake image's passwd and group files."""

from __future__ import annotations

import argparse
import json
import os
import pwd
import select
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyterhub_hpc.containers import init
from jupyterhub_hpc.containers.init import InitError, hook_problem, load_identity
from jupyterhub_hpc.containers.names import (
    NSS_WRAPPER_PATHS,
    NameAction,
    NssEntry,
    choose_home,
    decide_names,
    find_nss_wrapper,
    group_text,
    passwd_entry,
    passwd_text,
)
from jupyterhub_hpc.containers.report import PROGRESS_ENV
from jupyterhub_hpc.identity import IDENTITY_ENV, IdentityError, UserIdentity
from needs import needs
from unit.test_container_report import Recorder, recording

SRC = Path(__file__).resolve().parents[2] / "src"
PYTHON = sys.executable
ALICE = UserIdentity.make(
    username="alice",
    uid=2001,
    group={"name": "alice", "gid": 2001},
    groups=[{"name": "proj-astro", "gid": 3001}],
    home="/home/alice",
    gecos="Alice A.",
)
IMAGE_PASSWD = textwrap.dedent(
    """\
    root:x:0:0:root:/root:/bin/bash
    # a comment
    jovyan:x:2001:100::/home/jovyan:/bin/bash
    nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin
    broken line
    alice:x:4242:4242::/home/other:/bin/sh
    """
)
IMAGE_GROUP = "root:x:0:\nusers:x:100:\nalice:x:5000:\nastro:x:3001:\nstaff:x:50:jovyan\n"


# -- the pure decision -------------------------------------------------------------------------
def entry(name: str, uid: int = 2001) -> NssEntry:
    return NssEntry(name, uid, 100, f"/home/{name}")


def test_the_right_name_is_left_alone() -> None:
    decision = decide_names(ALICE, entry("alice"), "jovyan")
    assert decision.action is NameAction.KEEP
    assert decision.reason == "names from the runtime"
    assert decide_names(ALICE, entry("alice"), None).action is NameAction.KEEP


def test_an_unknown_uid_gets_names() -> None:
    decision = decide_names(ALICE, None, "jovyan")
    assert decision.action is NameAction.WRITE
    assert "does not know uid 2001" in decision.reason


def test_the_image_user_is_renamed() -> None:
    decision = decide_names(ALICE, entry("jovyan"), "jovyan")
    assert decision.action is NameAction.WRITE
    assert "'jovyan'" in decision.reason and "'alice'" in decision.reason


def test_another_name_of_the_uid_is_replaced_too() -> None:
    for image_user in ("jovyan", None):
        decision = decide_names(ALICE, entry("ubuntu"), image_user)
        assert decision.action is NameAction.WRITE
        assert "'ubuntu'" in decision.reason


def test_the_home_inside() -> None:
    def exists(*paths: str) -> object:
        return lambda path: path in paths

    assert choose_home(ALICE, "/home/jovyan", "/x", exists("/home/alice", "/home/jovyan")) == "/home/alice"  # type: ignore[arg-type]
    assert choose_home(ALICE, "/home/jovyan", "/x", exists("/home/jovyan", "/x")) == "/home/jovyan"  # type: ignore[arg-type]
    assert choose_home(ALICE, None, "/x", exists("/x")) == "/x"  # type: ignore[arg-type]
    assert choose_home(ALICE, "/home/jovyan", "relative", exists("relative")) is None  # type: ignore[arg-type]
    assert choose_home(ALICE, None, None, exists()) is None  # type: ignore[arg-type]


# -- the files ---------------------------------------------------------------------------------
def uids(text: str) -> list[int]:
    return [int(line.split(":")[2]) for line in text.splitlines()]


def test_passwd_replaces_the_image_user_and_keeps_the_rest() -> None:
    text = passwd_text(IMAGE_PASSWD, ALICE, "/home/jovyan")
    lines = text.splitlines()
    assert lines == [
        "root:x:0:0:root:/root:/bin/bash",
        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin",
        "alice:x:2001:2001:Alice A.:/home/jovyan:/bin/bash",
    ]
    assert sorted(uids(text)) == sorted(set(uids(text)))
    assert [line.split(":")[0] for line in lines].count("alice") == 1
    assert passwd_text("", ALICE).splitlines() == ["alice:x:2001:2001:Alice A.:/home/alice:/bin/bash"]


def test_group_drops_conflicting_gids_and_names() -> None:
    lines = group_text(IMAGE_GROUP, ALICE).splitlines()
    assert lines == [
        "root:x:0:",
        "users:x:100:",
        "staff:x:50:jovyan",
        "alice:x:2001:",
        "proj-astro:x:3001:alice",
    ]


def test_passwd_entry_reads_like_nss() -> None:
    assert passwd_entry(IMAGE_PASSWD, uid=2001) == NssEntry("jovyan", 2001, 100, "/home/jovyan")
    assert passwd_entry(IMAGE_PASSWD, name="nobody") == NssEntry("nobody", 65534, 65534, "/nonexistent")
    assert passwd_entry(IMAGE_PASSWD, uid=7) is None
    assert passwd_entry(IMAGE_PASSWD, name="broken line") is None


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("username", "alice\nroot:x:0:0::/root:/bin/sh"),
        ("username", "ali:ce"),
        ("gecos", "A\nroot:x:0:0::/:/bin/sh"),
        ("home", "/home/a:0:0"),
        ("shell", "/bin/sh\nroot"),
        ("uid", 0),
    ],
)
def test_no_identity_can_inject_a_line(field: str, value: object) -> None:
    fields = ALICE.model_dump()
    fields[field] = value
    with pytest.raises(IdentityError):
        UserIdentity.make(**fields)


def test_the_nss_wrapper_library() -> None:
    assert find_nss_wrapper(lambda p: True, "/site/libnss_wrapper.so") == "/site/libnss_wrapper.so"
    assert find_nss_wrapper(lambda p: p == NSS_WRAPPER_PATHS[2], "/missing.so") == NSS_WRAPPER_PATHS[2]
    assert find_nss_wrapper(lambda p: False, "/missing.so") is None


def stat_of(mode: int, uid: int) -> os.stat_result:
    return os.stat_result((mode, 0, 0, 1, uid, 0, 0, 0, 0, 0))


def test_which_hooks_run() -> None:
    me = 1001
    assert hook_problem(stat_of(stat.S_IFREG | 0o755, me), me, True) is None
    assert hook_problem(stat_of(stat.S_IFREG | 0o750, 0), me, True) is None
    assert hook_problem(stat_of(stat.S_IFREG | 0o644, me), me, False) == "not executable"
    assert hook_problem(stat_of(stat.S_IFDIR | 0o755, me), me, True) == "not a regular file"
    assert hook_problem(stat_of(stat.S_IFREG | 0o757, me), me, True) == "writable by others than the user"
    assert hook_problem(stat_of(stat.S_IFREG | 0o775, 0), me, True) == "writable by others than the user"
    assert "owned by uid 1002" in str(hook_problem(stat_of(stat.S_IFREG | 0o755, 1002), me, True))
    # a hook bound from the host shows an unmapped owner inside a user namespace (the launcher
    # checked its owner on the host); still never one others may write
    assert hook_problem(stat_of(stat.S_IFREG | 0o755, 65534), me, True) is None
    assert hook_problem(stat_of(stat.S_IFREG | 0o777, 65534), me, True) == "writable by others than the user"


def test_an_identity_of_another_uid_is_refused() -> None:
    other = ALICE if os.getuid() != ALICE.uid else ALICE.model_copy(update={"uid": ALICE.uid + 1})
    with pytest.raises(InitError, match="uid differs"):
        load_identity({IDENTITY_ENV: other.to_env()})
    with pytest.raises(InitError, match="not a usable identity"):
        load_identity({IDENTITY_ENV: '{"username": "root", "uid": 0}'})


def test_without_nss_wrapper_the_start_goes_on_without_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "passwd").write_text(IMAGE_PASSWD)
    monkeypatch.setattr(init, "find_nss_wrapper", lambda *a, **k: None)
    monkeypatch.setattr(init, "private_directory", lambda *a: pytest.fail("no files without the library"))
    args = argparse.Namespace(
        passwd_source=str(tmp_path / "passwd"), group_source="/dev/null", image_user="jovyan"
    )
    env: dict[str, str] = {}
    how = init.name_identity(args, [], ALICE, env, None)
    assert how.startswith("none (the image's user 'jovyan'") and "no libnss_wrapper" in how
    assert "LD_PRELOAD" not in env
    assert "[init] warning:" in capsys.readouterr().err


# -- the init run as a user --------------------------------------------------------------------
def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


as_user = needs(
    os.getuid() == 0 and bool(shutil.which("runuser")) and _user_exists("hpcuser1"),
    "runs the init as hpcuser1 through runuser: needs root, runuser and the test user hpcuser1",
)
LIBRARY = find_nss_wrapper(os.path.isfile, os.environ.get("JUPYTERHUB_HPC_NSS_WRAPPER"))
needs_nss_wrapper = needs(
    LIBRARY is not None, "libnss_wrapper is not installed (apt-get install libnss-wrapper)"
)
PRINT_NAMES = (
    "import pwd,os; e = pwd.getpwuid(os.getuid());"
    "print('NAMES', e.pw_name, e.pw_dir, os.environ['HOME'], os.environ['USER'], os.environ['NB_UID'],"
    " 'LD_PRELOAD' in os.environ)"
)


@pytest.fixture
def world() -> Iterator[Path]:
    """A directory hpcuser1 can read (pytest's tmp_path is root's alone)."""
    directory = Path(tempfile.mkdtemp(prefix="init-test-"))
    directory.chmod(0o755)
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def hpcuser1(uid_name: str = "alice", gid: int | None = None) -> UserIdentity:
    entry = pwd.getpwnam("hpcuser1")
    return UserIdentity.make(
        username=uid_name,
        uid=entry.pw_uid,
        group={"name": "astro", "gid": gid or entry.pw_gid},
        home="/home/alice",
    )


def init_argv(*options: str, command: list[str], env: dict[str, str] | None = None) -> list[str]:
    assignments = [f"{k}={v}" for k, v in {"PYTHONPATH": str(SRC), **(env or {})}.items()]
    init = [PYTHON, "-m", "jupyterhub_hpc.containers.init", *options, "--", *command]
    return ["runuser", "-u", "hpcuser1", "--", "env", *assignments, *init]


def run_init(
    *options: str, command: list[str], env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        init_argv(*options, command=command, env=env), capture_output=True, text=True, timeout=60, check=False
    )


def image(world: Path, passwd: str, group: str = "root:x:0:\nusers:x:100:\n") -> list[str]:
    (world / "passwd").write_text(passwd)
    (world / "group").write_text(group)
    return ["--passwd-source", str(world / "passwd"), "--group-source", str(world / "group")]


def names_line(stdout: str) -> list[str]:
    return next(line for line in stdout.splitlines() if line.startswith("NAMES ")).split()[1:]


@as_user
@needs_nss_wrapper
def test_an_unknown_uid_gets_the_real_name(world: Path) -> None:
    identity = hpcuser1()
    options = image(world, "root:x:0:0:root:/root:/bin/bash\n")
    done = run_init(*options, command=[PYTHON, "-c", PRINT_NAMES], env={IDENTITY_ENV: identity.to_env()})
    assert done.returncode == 0, done.stderr
    name, pw_dir, home, user, nb_uid, preloaded = names_line(done.stdout)
    assert (name, user, nb_uid, preloaded) == ("alice", "alice", str(identity.uid), "True")
    assert pw_dir == home
    assert f"names: nss_wrapper, the image does not know uid {identity.uid}" in done.stdout
    assert "[init] starting as alice (uid" in done.stdout


@as_user
@needs_nss_wrapper
def test_the_image_user_becomes_the_real_user_with_its_home(world: Path) -> None:
    jovyan_home = world / "home-jovyan"
    jovyan_home.mkdir(mode=0o755)
    identity = hpcuser1()
    passwd = f"root:x:0:0:root:/root:/bin/bash\njovyan:x:{identity.uid}:100::{jovyan_home}:/bin/bash\n"
    options = [*image(world, passwd), "--image-user", "jovyan"]
    done = run_init(*options, command=[PYTHON, "-c", PRINT_NAMES], env={IDENTITY_ENV: identity.to_env()})
    assert done.returncode == 0, done.stderr
    assert names_line(done.stdout)[:4] == ["alice", str(jovyan_home), str(jovyan_home), "alice"]
    assert "the image's user 'jovyan'" in done.stdout


@as_user
@needs_nss_wrapper
def test_the_real_user_mapped_onto_the_image_users_ids_gets_its_name(world: Path) -> None:
    """podman ``--userns=keep-id:uid=1000,gid=100``: the process runs as the image user's ids (here
    hpcuser1's, standing in for them), the hub's identity has the real ids: names and groups are
    the real user's, the ids the image user's."""
    entry = pwd.getpwnam("hpcuser1")
    jovyan_home = world / "home-jovyan"
    jovyan_home.mkdir(mode=0o755)
    real = UserIdentity.make(
        username="alice",
        uid=2001,
        group={"name": "alice", "gid": 2001},
        groups=[{"name": "proj-astro", "gid": 3001}],
        home="/home/alice",
    )
    passwd = (
        f"root:x:0:0:root:/root:/bin/bash\njovyan:x:{entry.pw_uid}:{entry.pw_gid}::{jovyan_home}:/bin/bash\n"
    )
    options = [*image(world, passwd), "--image-user", "jovyan"]
    code = PRINT_NAMES + "; import grp; print('GROUP', grp.getgrgid(os.getgid()).gr_name)"
    done = run_init(*options, command=[PYTHON, "-c", code], env={IDENTITY_ENV: real.to_env()})
    assert done.returncode == 0, done.stderr
    name, pw_dir, home, user, nb_uid, preloaded = names_line(done.stdout)
    assert preloaded == "True"
    assert (name, pw_dir, home, user, nb_uid) == (
        "alice",
        str(jovyan_home),
        str(jovyan_home),
        "alice",
        str(entry.pw_uid),
    )
    assert "GROUP alice" in done.stdout
    assert f"[init] starting as alice (uid {entry.pw_uid}, gid {entry.pw_gid} alice)" in done.stdout
    # another uid than the image user's is still refused
    other = run_init(*image(world, passwd), command=[PYTHON, "-c", "pass"], env={IDENTITY_ENV: real.to_env()})
    assert other.returncode == 1 and "the uid differs" in other.stderr


@as_user
def test_names_the_runtime_gave_are_left_alone() -> None:
    done = run_init(command=[PYTHON, "-c", PRINT_NAMES])
    assert done.returncode == 0, done.stderr
    assert names_line(done.stdout) == [
        "hpcuser1",
        "/home/hpcuser1",
        "/home/hpcuser1",
        "hpcuser1",
        "1001",
        "False",
    ]
    assert "names: names from the runtime" in done.stdout


@as_user
def test_a_primary_gid_that_differs_is_refused() -> None:
    done = run_init(command=["true"], env={IDENTITY_ENV: hpcuser1(gid=4321).to_env()})
    assert done.returncode == 1
    assert "primary gid differs" in done.stderr and "4321" in done.stderr


def hook(directory: Path, name: str, body: str, mode: int = 0o755) -> None:
    path = directory / name
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(mode)


@as_user
def test_hooks_run_in_order_with_their_output_prefixed(world: Path) -> None:
    hooks = world / "hooks"
    hooks.mkdir(mode=0o755)
    hook(hooks, "20-second", "echo second $USER $NB_UID\necho to-stderr >&2\n")
    hook(hooks, "10-first", "echo first\n")
    hook(hooks, "30-plain", "echo never\n", mode=0o644)
    hook(hooks, "40-open", "echo never\n", mode=0o757)
    done = run_init("--hook-dir", str(hooks), command=["echo", "the command"])
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines == [
        "[init] hook 10-first: first",
        "[init] hook 20-second: second hpcuser1 1001",
        "[init] hook 20-second: to-stderr",
        "[init] hook 30-plain skipped: not executable",
        "[init] hook 40-open skipped: writable by others than the user",
        lines[5],
        "the command",
    ]
    assert lines[5].startswith("[init] starting as hpcuser1 (uid 1001")


@as_user
def test_a_failing_hook_stops_the_start(world: Path) -> None:
    hooks = world / "hooks"
    hooks.mkdir(mode=0o755)
    hook(hooks, "10-fail", "echo cannot mount\nexit 3\n")
    done = run_init("--hook-dir", str(hooks), command=["echo", "the command"])
    assert done.returncode == 1
    assert "[init] hook 10-fail: cannot mount" in done.stdout
    assert "the command" not in done.stdout
    assert "hook 10-fail exited 3" in done.stderr


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    with recording() as server:
        yield server


@as_user
def test_the_hooks_lines_go_to_the_hub_and_the_command_does_not_get_the_url(
    world: Path, recorder: Recorder
) -> None:
    hooks = world / "hooks"
    hooks.mkdir(mode=0o755)
    hook(hooks, "10-first", "echo first $USER\n")
    hook(hooks, "20-plain", "echo never\n", mode=0o644)
    env = {PROGRESS_ENV: recorder.url, "JUPYTERHUB_API_TOKEN": "s3cret"}
    probe = f"import os; print('URL', os.environ.get('{PROGRESS_ENV}'))"
    done = run_init("--hook-dir", str(hooks), command=[PYTHON, "-c", probe], env=env)
    assert done.returncode == 0, done.stderr
    assert recorder.bodies == [
        {"hook": "10-first", "line": "first hpcuser1"},
        {"hook": "20-plain", "line": "skipped: not executable"},
    ]
    assert recorder.tokens == ["token s3cret"] * 2
    # the job's output has them as before; the server is not handed the init's URL
    assert "[init] hook 10-first: first hpcuser1" in done.stdout and "URL None" in done.stdout

    hook(hooks, "30-fail", "echo cannot mount /project\nexit 3\n")
    recorder.bodies.clear()
    done = run_init("--hook-dir", str(hooks), command=["echo", "the command"], env=env)
    assert done.returncode == 1 and "the command" not in done.stdout
    assert recorder.bodies[-2:] == [
        {"hook": "30-fail", "line": "cannot mount /project"},
        {"hook": "30-fail", "line": "exited 3: the server does not start"},
    ]


def process_group(pgid: int) -> list[int]:
    """The live (not zombie) processes of a process group."""
    found = []
    for proc in Path("/proc").iterdir():
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            found.append(int(proc.name))
    return found


@as_user
def test_a_hook_past_its_timeout_is_killed(world: Path) -> None:
    hooks = world / "hooks"
    hooks.mkdir(mode=0o755)
    hook(hooks, "10-slow", "echo pid $$\nsleep 30\necho not-killed\n")
    started = time.monotonic()
    done = run_init("--hook-dir", str(hooks), "--hook-timeout", "1", command=["echo", "the command"])
    assert time.monotonic() - started < 15
    assert done.returncode == 1
    assert "hook 10-slow did not finish within 1 s" in done.stderr
    assert "not-killed" not in done.stdout and "the command" not in done.stdout
    pid = int(done.stdout.split("[init] hook 10-slow: pid ")[1].split()[0])
    assert process_group(pid) == []


def child_of(parent: int) -> int:
    for _ in range(100):
        for proc in Path("/proc").iterdir():
            try:
                fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[1]) == parent:
                return int(proc.name)
        time.sleep(0.05)
    raise AssertionError(f"process {parent} has no child")


def read_until(proc: subprocess.Popen[str], marker: str, timeout: float = 30) -> str:
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while marker not in seen:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        line = proc.stdout.readline() if ready else ""
        if not line:
            raise AssertionError(f"no {marker!r} in {seen!r}")
        seen += line
    return seen


@as_user
def test_sigterm_reaches_the_command(world: Path) -> None:
    out = world / "out"
    out.mkdir()
    out.chmod(0o777)
    child = textwrap.dedent(
        f"""\
        import signal, sys, time
        def stop(signum, frame):
            open({str(out / "got")!r}, "w").write(str(signum))
            sys.exit(0)
        signal.signal(signal.SIGTERM, stop)
        print("ready", flush=True)
        time.sleep(60)
        sys.exit(5)
        """
    )
    with subprocess.Popen(
        init_argv(command=[PYTHON, "-c", child]), stdout=subprocess.PIPE, text=True
    ) as proc:
        read_until(proc, "ready")
        init = child_of(proc.pid)
        os.kill(init, signal.SIGTERM)
        assert proc.wait(30) == 0
    assert (out / "got").read_text() == str(int(signal.SIGTERM))


@as_user
def test_sigterm_during_a_hook_stops_it_and_the_start(world: Path) -> None:
    hooks = world / "hooks"
    hooks.mkdir(mode=0o755)
    hook(hooks, "10-wait", "echo waiting\nsleep 30\n")
    argv = init_argv("--hook-dir", str(hooks), command=["echo", "COMMAND-RAN"])
    with subprocess.Popen(argv, stdout=subprocess.PIPE, text=True) as proc:
        read_until(proc, "[init] hook 10-wait: waiting")
        os.kill(child_of(proc.pid), signal.SIGTERM)
        assert proc.wait(30) == 128 + signal.SIGTERM
        assert proc.stdout is not None
        rest = proc.stdout.read()
    assert "stopped by signal 15 before the command started" in rest
    assert "COMMAND-RAN" not in rest


@as_user
def test_a_command_killed_by_a_signal_gives_128_plus_it() -> None:
    done = run_init(command=[PYTHON, "-c", "import os, signal; os.kill(os.getpid(), signal.SIGKILL)"])
    assert done.returncode == 137, done.stderr


@as_user
def test_the_exit_status_and_a_missing_command() -> None:
    assert run_init(command=["sh", "-c", "exit 7"]).returncode == 7
    missing = run_init(command=["/no/such/program"])
    assert missing.returncode == 127
    assert "cannot run '/no/such/program'" in missing.stderr


@as_user
def test_orphans_become_the_inits_children_and_are_reaped() -> None:
    """The command's child exits and leaves a grandchild: the init (a subreaper) adopts and reaps it."""
    child = textwrap.dedent(
        """\
        import os, time
        read, write = os.pipe()
        if os.fork() == 0:
            if os.fork() == 0:
                time.sleep(0.5)
                os.write(write, f"{os.getpid()} {os.getppid()}".encode())
                os._exit(0)
            os._exit(0)
        os.wait()
        grandchild, adopter = map(int, os.read(read, 64).split())
        time.sleep(1)
        try:
            state = open(f"/proc/{grandchild}/stat").read().rsplit(")", 1)[1].split()[0]
        except FileNotFoundError:
            state = "gone"
        print("ADOPTED", adopter == os.getppid(), "STATE", state)
        """
    )
    done = run_init(command=[PYTHON, "-c", child])
    assert done.returncode == 0, done.stderr
    assert "ADOPTED True STATE gone" in done.stdout


@needs(os.getuid() == 0, "needs to run as root to see the refusal")
def test_root_is_refused() -> None:
    done = subprocess.run(
        [PYTHON, "-m", "jupyterhub_hpc.containers.init", "--", "true"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        timeout=60,
        check=False,
    )
    assert done.returncode == 1
    assert "jupyterhub-hpc-init never runs as root" in done.stderr


def test_the_identity_json_is_what_the_hub_sends() -> None:
    assert json.loads(ALICE.to_env())["username"] == "alice"
