"""``jupyterhub-hpc-read-output``: run as a program on real files. It prints the last lines of a
regular file the invoking user owns, reached without a symbolic link, ``..``, ``.`` or an empty
component, and refuses everything else with exit status 1, a reason and nothing on stdout."""

from __future__ import annotations

import os
import pwd
import subprocess
import sys
from pathlib import Path

import pytest

from jupyterhub_hpc.singleuser.read_output import MAX_BYTES, MAX_LINES, last_lines, open_output
from needs import needs

SRC = Path(__file__).resolve().parents[2] / "src"


def read(*args: str, timeout: float = 20) -> subprocess.CompletedProcess[bytes]:
    """The reader as a subprocess (this checkout's code), with ``args``."""
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run(
        [sys.executable, "-m", "jupyterhub_hpc.singleuser.read_output", *args],
        capture_output=True,
        env=env,
        timeout=timeout,
        check=False,
    )


def refused(result: subprocess.CompletedProcess[bytes], reason: str) -> None:
    assert result.returncode == 1, result
    assert result.stdout == b"", result.stdout
    stderr = result.stderr.decode()
    assert stderr.startswith("jupyterhub-hpc-read-output: ") and stderr.count("\n") == 1, stderr
    assert reason in stderr, stderr


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """A directory reached without symbolic links (``tmp_path`` may sit under one)."""
    return tmp_path.resolve()


@pytest.fixture
def log(base: Path) -> Path:
    path = base / ".jupyterhub-hpc-12.log"
    path.write_text("".join(f"line {i}\n" for i in range(1, 11)) + "jupyterhub-hpc-exit 3\n")
    return path


def test_the_last_lines_of_an_own_file(log: Path) -> None:
    result = read("--lines", "3", str(log))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"line 9\nline 10\njupyterhub-hpc-exit 3\n"
    assert result.stderr == b""


@pytest.mark.parametrize(("lines", "expected"), [("1", 1), ("11", 11), ("1000", 11)])
def test_line_counts(log: Path, lines: str, expected: int) -> None:
    result = read("--lines", lines, str(log))
    assert result.returncode == 0, result.stderr
    assert result.stdout.decode().splitlines() == log.read_text().splitlines()[-expected:]


def test_an_unterminated_last_line_and_an_empty_file(base: Path) -> None:
    path = base / "out.log"
    path.write_bytes(b"a\nb\nno newline")
    assert read("--lines", "2", str(path)).stdout == b"b\nno newline"
    path.write_bytes(b"")
    result = read("--lines", "5", str(path))
    assert (result.returncode, result.stdout) == (0, b"")


def test_bytes_are_passed_as_they_are(base: Path) -> None:
    path = base / "out.log"
    path.write_bytes(b"caf\xc3\xa9\n\xff\xfe binary\n")
    assert read("--lines", "2", str(path)).stdout == b"caf\xc3\xa9\n\xff\xfe binary\n"


def test_a_big_file_is_read_from_its_end_only(base: Path) -> None:
    path = base / "big.log"
    with path.open("w") as handle:
        for i in range(200_000):  # ~ 3 MB
            handle.write(f"line {i:07d}\n")
    result = read("--lines", "1000", str(path))
    assert result.returncode == 0, result.stderr
    got = result.stdout.decode().splitlines()
    assert got == [f"line {i:07d}" for i in range(199_000, 200_000)]
    # long lines: at most MAX_BYTES are read, and the line the window cuts is left out
    with path.open("w") as handle:
        for i in range(2_000):
            handle.write(f"{i:05d} " + "x" * 193 + "\n")  # 200 bytes a line
    result = read("--lines", "1000", str(path))
    assert result.returncode == 0, result.stderr
    assert len(result.stdout) <= MAX_BYTES
    got = result.stdout.decode().splitlines()
    assert len(got) == MAX_BYTES // 200
    assert all(len(line) == 199 for line in got)
    assert got[-1].startswith("01999 ")


def test_one_huge_line_is_bounded(base: Path) -> None:
    path = base / "huge.log"
    path.write_bytes(b"y" * (5 * 1024 * 1024))
    result = read("--lines", "20", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == b"y" * MAX_BYTES


def test_last_lines_reads_only_the_window(base: Path) -> None:
    path = base / "w.log"
    path.write_bytes(b"first line\n" + b"a\n" * 10)
    fd = os.open(path, os.O_RDONLY)
    try:
        # the window b"\na\na\n" starts inside a line: that line is left out
        assert last_lines(fd, 3, max_bytes=5) == b"a\na\n"
        # b"a\na\n" starts at a line: nothing is cut
        assert last_lines(fd, 3, max_bytes=4) == b"a\na\n"
        assert last_lines(fd, 100, max_bytes=6) == b"a\na\na\n"
        assert last_lines(fd, 2) == b"a\na\n"
        assert last_lines(fd, 100) == path.read_bytes()
    finally:
        os.close(fd)


def test_a_symbolic_link_as_the_file_is_refused(log: Path, base: Path) -> None:
    link = base / ".jupyterhub-hpc-13.log"
    link.symlink_to(log)
    refused(read("--lines", "5", str(link)), "is a symbolic link")
    # also one pointing at a root file, and a dangling one
    link.unlink()
    link.symlink_to("/etc/passwd")
    refused(read("--lines", "5", str(link)), "is a symbolic link")
    link.unlink()
    link.symlink_to(base / "missing")
    refused(read("--lines", "5", str(link)), "is a symbolic link")


NOBODY = 65534


def user_link(link: Path, target: str | Path) -> None:
    """A symbolic link as a user would make it (owned by a user, not root)."""
    link.symlink_to(target)
    os.lchown(link, NOBODY, NOBODY)


def test_a_users_symbolic_link_as_a_directory_is_refused(log: Path, base: Path) -> None:
    (base / "real").mkdir()
    target = base / "real" / "out.log"
    target.write_text("x\n")
    user_link(base / "alias", base / "real")
    assert read("--lines", "5", str(target)).stdout == b"x\n"
    refused(read("--lines", "5", str(base / "alias" / "out.log")), f"{base / 'alias'} is a symbolic link")
    user_link(base / "up", "/")
    refused(read("--lines", "5", str(base / "up" / "etc" / "passwd")), "is a symbolic link")


def test_a_root_owned_directory_link_is_followed_and_its_target_checked(base: Path) -> None:
    """A site's ``/home -> /gpfs/home`` (no user can make a root-owned link) is followed;
    a user's link behind it, or a user's file as the link's target, is still refused."""
    (base / "gpfs" / "home" / "alice").mkdir(parents=True)
    out = base / "gpfs" / "home" / "alice" / "out.log"
    out.write_text("from gpfs\n")
    (base / "home").symlink_to(base / "gpfs" / "home")  # root's, absolute
    (base / "rel").symlink_to("gpfs/home")  # root's, relative
    (base / "updown").symlink_to("gpfs/../gpfs/home")  # root's, with .. in its target
    for top in ("home", "rel", "updown"):
        assert read("--lines", "5", str(base / top / "alice" / "out.log")).stdout == b"from gpfs\n", top
    user_link(base / "gpfs" / "home" / "bob", base / "gpfs" / "home" / "alice")
    refused(read("--lines", "5", str(base / "home" / "bob" / "out.log")), "is a symbolic link")
    (base / "file-link").symlink_to(out)  # root's link as the file itself: never followed
    refused(read("--lines", "5", str(base / "file-link")), "is a symbolic link")


def test_a_loop_of_root_links_ends(base: Path) -> None:
    (base / "a").symlink_to(base / "b")
    (base / "b").symlink_to(base / "a")
    refused(read("--lines", "5", str(base / "a" / "x.log")), "more than 8 links")


@pytest.mark.parametrize(
    "shape",
    [
        "{base}/../{name}/.jupyterhub-hpc-12.log",
        "{base}/sub/../.jupyterhub-hpc-12.log",
        "{base}/./.jupyterhub-hpc-12.log",
        "{base}//.jupyterhub-hpc-12.log",
        "{base}/.jupyterhub-hpc-12.log/",
        "{base}/.jupyterhub-hpc-12.log/.",
        "/{base}/.jupyterhub-hpc-12.log",
    ],
)
def test_dot_dot_dot_and_empty_components_are_refused(log: Path, base: Path, shape: str) -> None:
    (base / "sub").mkdir()
    path = shape.format(base=base, name=base.name)
    refused(read("--lines", "5", path), "component")


def test_a_relative_path_is_refused(log: Path) -> None:
    relative = os.path.relpath(log)
    refused(read("--lines", "5", relative), "not an absolute path")
    refused(read("--lines", "5", log.name), "not an absolute path")
    refused(read("--lines", "5", ""), "not an absolute path")


def test_a_fifo_is_refused_without_blocking(base: Path) -> None:
    fifo = base / ".jupyterhub-hpc-14.log"
    os.mkfifo(fifo)
    refused(read("--lines", "5", str(fifo), timeout=10), "not a regular file")


@pytest.mark.parametrize("path", ["/dev/null", "/dev/zero", "/"])
def test_devices_and_directories_are_refused(path: str) -> None:
    refused(read("--lines", "5", path, timeout=10), "not a regular file" if path != "/" else "component")


def test_a_directory_as_the_file_is_refused(base: Path) -> None:
    (base / "d").mkdir()
    refused(read("--lines", "5", str(base / "d")), "not a regular file")


def test_a_file_as_a_directory_is_refused(log: Path) -> None:
    refused(read("--lines", "5", f"{log}/x"), "not a directory")


def test_a_missing_file_is_refused(base: Path) -> None:
    refused(read("--lines", "5", str(base / "nothing.log")), "No such file")
    refused(read("--lines", "5", str(base / "nodir" / "x.log")), "No such file")


@needs(os.geteuid() == 0, "chown to another user needs root")
def test_a_file_of_another_owner_is_refused(log: Path) -> None:
    nobody = pwd.getpwnam("nobody").pw_uid
    os.chown(log, nobody, -1)
    log.chmod(0o644)
    # root can read it, but does not own it
    refused(read("--lines", "5", str(log)), f"owned by uid {nobody}, not by uid 0")


def test_open_output_checks_the_owner_it_is_given(log: Path) -> None:
    fd = open_output(str(log))
    os.close(fd)
    with pytest.raises(Exception, match="not by uid"):
        open_output(str(log), uid=os.getuid() + 1)


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--lines", "5"],
        ["{log}"],
        ["-n", "5", "{log}"],
        ["--lines=5", "{log}"],
        ["--lines", "5", "{log}", "/etc/passwd"],
        ["--lines", "5", "--", "{log}"],
        ["{log}", "--lines", "5"],
    ],
)
def test_other_argument_shapes_are_refused(log: Path, args: list[str]) -> None:
    refused(read(*(a.format(log=log) for a in args)), "usage:")


@pytest.mark.parametrize("lines", ["0", "-1", str(MAX_LINES + 1), "99999999999999999999", "5x", "", "٣"])
def test_line_counts_out_of_bounds_are_refused(log: Path, lines: str) -> None:
    refused(read("--lines", lines, str(log)), "--lines takes a number")


def test_the_reader_imports_nothing_of_the_hub() -> None:
    code = (
        "import sys, jupyterhub_hpc.singleuser.read_output\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('jupyterhub', 'traitlets', 'tornado', 'sqlalchemy', 'jinja2') or "
        "(m.startswith('jupyterhub_hpc.') and m not in "
        "('jupyterhub_hpc.singleuser', 'jupyterhub_hpc.singleuser.read_output'))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        check=True,
    )
    assert result.stdout.strip() == "[]"


def test_the_hubs_option_names_this_program_by_absolute_path() -> None:
    from traitlets import TraitError

    from jupyterhub_hpc.options import HPCSpawnerOptions

    options = HPCSpawnerOptions()
    assert options.output_reader == [str(Path(sys.executable).parent / "jupyterhub-hpc-read-output")]
    options.output_reader = ["/opt/site/bin/read-output", "--quiet"]
    for bad in ([], ["jupyterhub-hpc-read-output"], ["./read-output"]):
        with pytest.raises(TraitError):
            options.output_reader = bad
