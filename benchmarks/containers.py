"""Container start overhead per runtime against a plain start, in the same run (issue 17).

As root, after ``scripts/containers.sh setup`` (the debootstrapped Debian 12 image, imported into
``hpcuser2``'s rootless podman storage with overlay). As ``hpcuser2``, ``--reps`` repetitions of
each, interleaved, median and max:

* **direct**: the seconds until ``/bin/true`` has run and exited, started
  - *plain*: as a process;
  - *charliecloud*: through ``ch-run`` with the argv the job's launcher builds
    (:func:`jupyterhub_hpc.containers.runtimes.container_command`: home, site environment and
    project bound), ``/bin/true`` in place of the init and the server;
  - *podman*: through rootless podman with crun, the launcher's argv (per-job storage root, run
    and tmp directories in a fresh private directory, the image from the user's store, keep-id
    onto jovyan, no-new-privileges, no capabilities), then its pause process ended as the
    launcher ends it;
* **job**: the same three as Slurm batch jobs, ``sbatch --wait`` from before submitting until
  it returned (partition debug), so the overhead is seen next to a job's own cost.

    /opt/jupyterhub-hpc/venv/bin/python benchmarks/containers.py [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import pwd
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

USER = "hpcuser2"
ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "containers.sh"
SITE_ENV = str(Path(sys.executable).parent.parent)


def facts() -> dict[str, str]:
    out = subprocess.run([str(SCRIPT), "env"], capture_output=True, text=True, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def argvs(known: dict[str, str], state: str) -> dict[str, list[str]]:
    sys.path.insert(0, str(ROOT / "src"))
    from jupyterhub_hpc.containers.runtimes import Bind, ContainerImage, RuntimeSettings, container_command
    from jupyterhub_hpc.identity import identity_from_nss

    me = identity_from_nss(USER)
    project = Bind(source=str(Path(known["PROJECT_FILE"]).parent))
    directory = ContainerImage(name="deb12", kind="directory", location=known["IMAGE"])
    podman_image = ContainerImage(
        name="deb12-podman",
        kind="podman",
        location=known["PODMAN_REF"],
        image_user="jovyan",
        image_uid=1000,
        image_gid=100,
    )
    charliecloud = RuntimeSettings(runtime="charliecloud", site_env=SITE_ENV, binds=(project,))
    podman = RuntimeSettings(runtime="podman", oci_runtime="crun", site_env=SITE_ENV, binds=(project,))
    # /bin/true in place of the init and the server: what is measured is the runtime's own start
    ch = container_command(directory, charliecloud, me, [], init=["/bin/true"]).argv
    pm = container_command(podman_image, podman, me, [], init=["/bin/true"], state_dir=state).argv
    return {"plain": ["/bin/true"], "charliecloud": _drop_tail(ch), "podman": _drop_tail(pm)}


def _drop_tail(argv: list[str]) -> list[str]:
    """Without the init's own ``--`` and options (``/bin/true`` takes none that matter)."""
    return argv[: argv.index("/bin/true") + 1] if "/bin/true" in argv else argv


def as_user(argv: list[str], env: dict[str, str] | None = None) -> list[str]:
    assignments = [f"{k}={v}" for k, v in (env or {}).items()]
    return [
        "runuser",
        "-u",
        USER,
        "--",
        "env",
        f"USER={USER}",
        f"HOME={pwd.getpwnam(USER).pw_dir}",
        *assignments,
        *argv,
    ]


def end_pause(state: str) -> None:
    try:
        pid = int(Path(state, "tmp", "pause.pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
    except (OSError, ValueError):
        pass


def run_direct(name: str, argv: list[str], state: str) -> float:
    env = {"XDG_RUNTIME_DIR": f"{state}/xdg"} if name == "podman" else {}
    started = time.monotonic()
    done = subprocess.run(as_user(argv, env), capture_output=True, text=True, cwd="/tmp", check=False)
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} failed: {done.stderr[-2000:]}")
    return took


def run_job(name: str, argv: list[str], state: str) -> float:
    env = f"XDG_RUNTIME_DIR={shlex.quote(state + '/xdg')} " if name == "podman" else ""
    wrap = env + shlex.join(argv)
    started = time.monotonic()
    done = subprocess.run(
        as_user(
            [
                "sbatch",
                "--wait",
                "--parsable",
                "-p",
                "debug",
                "-t",
                "00:05:00",
                "--mem=200M",
                "-o",
                "/dev/null",
                "--wrap",
                wrap,
            ]
        ),
        capture_output=True,
        text=True,
        cwd="/tmp",
        check=False,
    )
    took = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"{name} job failed: {done.stdout} {done.stderr[-2000:]}")
    return took


def fresh_state() -> str:
    """A private per-run podman state directory of the user's, as the launcher makes one."""
    state = tempfile.mkdtemp(prefix="bench-podman-", dir="/tmp")
    os.chmod(state, 0o700)
    os.mkdir(os.path.join(state, "xdg"), 0o700)
    shutil.chown(state, USER, USER)
    shutil.chown(os.path.join(state, "xdg"), USER, USER)
    return state


def remove_state(state: str) -> None:
    end_pause(state)
    subprocess.run(as_user(["rm", "-rf", state]), check=False)
    shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    if os.geteuid() != 0:
        raise SystemExit("run as root (it runs the starts as hpcuser2)")
    subprocess.run([str(SCRIPT), "setup"], check=True, env={**os.environ, "SITE_ENV": SITE_ENV})
    known = facts()
    results: dict[str, dict[str, list[float]]] = {"direct": {}, "job": {}}
    for _ in range(args.reps):
        for kind, runner in (("direct", run_direct), ("job", run_job)):
            for name in ("plain", "charliecloud", "podman"):
                state = fresh_state()
                try:
                    argv = argvs(known, state)[name]
                    results[kind].setdefault(name, []).append(runner(name, argv, state))
                finally:
                    remove_state(state)
    print(f"container start overhead, {args.reps} repetitions each, interleaved (seconds)")
    for kind in ("direct", "job"):
        plain = statistics.median(results[kind]["plain"])
        for name, times in results[kind].items():
            median = statistics.median(times)
            extra = "" if name == "plain" else f"  overhead +{median - plain:.2f}"
            print(f"  {kind:6} {name:12} median {median:.2f}  max {max(times):.2f}{extra}")


if __name__ == "__main__":
    main()
