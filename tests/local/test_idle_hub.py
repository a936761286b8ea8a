"""The idle policy live on the local backend: a real JupyterHub, configurable-http-proxy and
jupyterhub-singleuser, a profile with a seconds-scale ``idle_timeout``.

One hub for all cases, which run side by side: an idle server of the timed profile is stopped
(its job cancelled) and the next spawn says why; a server of the same profile kept in use
through the proxy is not; a server of a profile without a timeout never is. The Slurm run of the
same story is tests/e2e/test_slurm_idle.py.
"""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from hub import Hub, wait_for

from .conftest import FAST, LocalQueue

pytestmark = [pytest.mark.hub]

TIMEOUT = 8  # seconds without activity before the hub stops a "gpu" server
PROFILES = [
    {"display_name": "CPU", "slug": "cpu", "default": True},
    {
        "display_name": "GPU",
        "slug": "gpu",
        "spawner_override": {"idle_timeout": TIMEOUT, "idle_warning": 4},
    },
]
#: the hub learns of activity within a second: from the proxy's routes and from the servers
ACTIVITY = {
    "config": {"JupyterHub": {"last_activity_interval": 1}},
    "environment": {"JUPYTERHUB_ACTIVITY_INTERVAL": "1"},
}


def idle_hub(queue: LocalQueue, tmp_path: Path) -> Hub:
    private = queue.root / "hubs"
    private.mkdir(mode=0o700, exist_ok=True)
    spawner: dict[str, Any] = {
        **FAST,
        "local_state_dir": str(queue.state_dir),
        "job_output": str(queue.log_dir / "{username}-{job_id}.log"),
        "profile_list": PROFILES,
        "idle_check_interval": 1.0,
        "environment": ACTIVITY["environment"],
    }
    return Hub(private / "idle", spawner=spawner, spawner_class="local-hpc", config=ACTIVITY["config"])


@pytest.fixture
def hub(queue: LocalQueue, tmp_path: Path) -> Iterator[Hub]:
    the_hub = idle_hub(queue, tmp_path)
    the_hub.start()
    yield the_hub
    the_hub.kill_all()
    with contextlib.suppress(OSError):
        shutil.copy(the_hub.log_path, tmp_path / "hub.log")


def spawn_ready(hub: Hub, user: str, profile: str) -> str:
    """Start ``user``'s server with ``profile``; return its job id once it is ready."""
    assert hub.spawn(user, {"profile": profile}).status_code in (201, 202)
    server = hub.wait_ready(user, timeout=90)
    return str(server["state"]["job_id"])


def spawn_events(hub: Hub, user: str, profile: str) -> list[str]:
    """Spawn and read the progress stream while the spawn runs, as the spawn page does."""
    hub.ensure_user(user)
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(hub.spawn, user, {"profile": profile})
        wait_for(lambda: hub.user_model(user)["servers"], 30, message="no spawn started")
        events = hub.progress_events(user, timeout=90)
        assert posted.result().status_code in (201, 202)
    return [str(e.get("message", "")) for e in events]


def use(hub: Hub, user: str, token: str) -> None:
    """What a user's Lab does: an API request through the proxy to the server."""
    r = requests.get(
        f"{hub.url}/user/{user}/api/contents", headers={"Authorization": f"token {token}"}, timeout=10
    )
    assert r.status_code == 200, (r.status_code, r.text[:300])


def running(hub: Hub, user: str) -> bool:
    return bool(hub.user_model(user)["servers"].get("", {}).get("ready"))


def test_idle_servers_of_a_timed_profile_are_stopped_and_told_why(hub: Hub, queue: LocalQueue) -> None:
    stop_using = threading.Event()

    def spawn_and_use(user: str) -> str:
        job = spawn_ready(hub, user, "gpu")
        token = hub.user_token(user)
        threading.Thread(target=keep_using, args=(user, token), daemon=True).start()
        return job

    def keep_using(user: str, token: str) -> None:
        while not stop_using.wait(1.0):
            use(hub, user, token)

    with ThreadPoolExecutor(3) as pool:
        idle_f = pool.submit(lambda: (spawn_ready(hub, "hpcuser1", "gpu"), time.monotonic()))
        used_f = pool.submit(spawn_and_use, "hpcuser2")
        untimed_f = pool.submit(spawn_ready, hub, "hpcuser3", "cpu")
        (idle_job, t0), used_job, untimed_job = idle_f.result(), used_f.result(), untimed_f.result()
    try:
        # the idle one goes, through JupyterHub's stop: server removed, job cancelled
        wait_for(
            lambda: not hub.user_model("hpcuser1")["servers"], 40, 0.5, "the idle server was not stopped"
        )
        elapsed = time.monotonic() - t0
        assert TIMEOUT - 2 <= elapsed < TIMEOUT + 20, elapsed
        assert queue.wait_state(idle_job, "CANCELLED", timeout=10)["state"] == "CANCELLED"
        log = hub.log_tail(100_000)
        assert f"hpcuser1: idle: Job {idle_job} was stopped by the hub after" in log, log[-3000:]
        # well past two timeouts: the one in use and the one without a timeout are still there
        time.sleep(max(0.0, t0 + 2.5 * TIMEOUT - time.monotonic()))
        assert running(hub, "hpcuser2") and running(hub, "hpcuser3")
        assert queue.status(used_job)[used_job]["state"] == "RUNNING"
        assert queue.status(untimed_job)[untimed_job]["state"] == "RUNNING"
    finally:
        stop_using.set()

    # left alone, the used one goes too (the same profile: what kept it was the use)
    wait_for(lambda: not hub.user_model("hpcuser2")["servers"], 40, 0.5, "unused server not stopped")
    assert queue.wait_state(used_job, "CANCELLED", timeout=10)["state"] == "CANCELLED"

    # the spawn page of the idle user's next start says why the previous server stopped
    messages = spawn_events(hub, "hpcuser1", "cpu")
    said = [m for m in messages if m.startswith("Your previous server stopped: ")]
    assert said and said[0].startswith(
        f"Your previous server stopped: Job {idle_job} was stopped by the hub after "
    ), messages
    assert said[0].endswith(f"without activity (the idle timeout is {TIMEOUT} s)."), said

    # the profile without a timeout is still running, long after
    assert running(hub, "hpcuser3")
    for user in ("hpcuser1", "hpcuser3"):
        hub.stop_server(user)
