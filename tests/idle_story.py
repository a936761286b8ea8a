"""The idle-policy story both live runs tell (tests/local/test_idle_hub.py on the local backend,
tests/e2e/test_slurm_idle.py on Slurm): one hub with a profile whose ``idle_timeout`` is a few
seconds, three users' servers side by side, each with this package's server extension (which
reports the server's ``last_use`` to the hub):

* an idle server of the timed profile is stopped through JupyterHub's stop (the job is cancelled,
  it leaves the queue) and the user's next spawn says why, although it is polled through the
  proxy all along the way an open Lab tab polls (kernels, sessions, contents, the job card):
  polling is not use;
* a server of the same profile kept in use (user input as the Lab extension reports it,
  ``POST jupyterhub-hpc/activity``) is not, until it is left alone;
* a server of a profile without a timeout never is.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from typing import Any

import requests

from hub import Hub, wait_for

__all__ = ["ACTIVITY_CONFIG", "BUSY_KERNELS_ARGS", "SPAWNER", "TIMEOUT", "check_idle_story", "run_silently"]

TIMEOUT = 8  # seconds without activity before the hub stops a "gpu" server
PROFILES = [
    {"display_name": "CPU", "slug": "cpu", "default": True},
    {
        "display_name": "GPU",
        "slug": "gpu",
        "spawner_override": {"idle_timeout": TIMEOUT, "idle_warning": 4, "idle_report_interval": 2},
    },
]
#: the hub learns of activity within a second or two: from the proxy's routes (JupyterHub's
#: last_activity_interval) and from the servers' own reports (JUPYTERHUB_ACTIVITY_INTERVAL)
ACTIVITY_CONFIG: dict[str, dict[str, Any]] = {"JupyterHub": {"last_activity_interval": 1}}
SPAWNER: dict[str, Any] = {
    "profile_list": PROFILES,
    "idle_check_interval": 1.0,
    "environment": {"JUPYTERHUB_ACTIVITY_INTERVAL": "1"},
}


def spawn_ready(hub: Hub, user: str, profile: str) -> str:
    """Start ``user``'s server with ``profile``; return its job id once it is ready."""
    assert hub.spawn(user, {"profile": profile}).status_code in (201, 202)
    server = hub.wait_ready(user, timeout=120)
    return str(server["state"]["job_id"])


def spawn_events(hub: Hub, user: str, profile: str) -> list[str]:
    """Spawn and read the progress stream while the spawn runs, as the spawn page does."""
    hub.ensure_user(user)
    with ThreadPoolExecutor(1) as pool:
        posted = pool.submit(hub.spawn, user, {"profile": profile})
        wait_for(lambda: hub.user_model(user)["servers"], 30, message="no spawn started")
        events = hub.progress_events(user, timeout=120)
        assert posted.result().status_code in (201, 202)
    return [str(e.get("message", "")) for e in events]


#: what an open, visible Lab tab asks its server every few seconds, with nobody at the keyboard
POLLED = ("api/kernels", "api/sessions", "api/contents", "api/terminals", "jupyterhub-hpc/card")


def poll(hub: Hub, user: str, token: str) -> None:
    """An open Lab's own polling, through the proxy (it reaches JupyterHub's last_activity)."""
    for path in POLLED:
        r = requests.get(
            f"{hub.url}/user/{user}/{path}", headers={"Authorization": f"token {token}"}, timeout=10
        )
        assert r.status_code == 200, (path, r.status_code, r.text[:300])


def use(hub: Hub, user: str, token: str) -> None:
    """What a user's Lab reports of user input (keys, clicks): ``POST jupyterhub-hpc/activity``."""
    r = requests.post(
        f"{hub.url}/user/{user}/jupyterhub-hpc/activity",
        headers={"Authorization": f"token {token}"},
        json={},
        timeout=10,
    )
    assert r.status_code == 200, (r.status_code, r.text[:300])


def running(hub: Hub, user: str) -> bool:
    return bool(hub.user_model(user)["servers"].get("", {}).get("ready"))


def check_idle_story(
    hub: Hub,
    users: tuple[str, str, str],
    job_running: Callable[[str, str], bool],
    job_gone: Callable[[str, str], bool],
) -> list[str]:
    """Run the story on a started hub configured with :data:`SPAWNER` and :data:`ACTIVITY_CONFIG`.
    ``job_running(user, job)``: the scheduler runs it; ``job_gone(user, job)``: it left the queue
    as cancelled. Returns the job ids (all ended or stopped at the end)."""
    idle_user, used_user, untimed_user = users
    stop_using = threading.Event()

    def keep_using(user: str, token: str, act: Callable[[Hub, str, str], None]) -> None:
        while not stop_using.wait(1.0):
            try:
                act(hub, user, token)
            except (AssertionError, requests.RequestException):
                return  # the server is gone (a used one missing shows in the checks below)

    def spawn_and_use(user: str) -> str:
        job = spawn_ready(hub, user, "gpu")
        threading.Thread(target=keep_using, args=(user, hub.user_token(user), use), daemon=True).start()
        return job

    def spawn_and_poll(user: str) -> tuple[str, float]:
        job = spawn_ready(hub, user, "gpu")
        t0 = time.monotonic()
        threading.Thread(target=keep_using, args=(user, hub.user_token(user), poll), daemon=True).start()
        return job, t0

    with ThreadPoolExecutor(3) as pool:
        idle_f = pool.submit(spawn_and_poll, idle_user)
        used_f = pool.submit(spawn_and_use, used_user)
        untimed_f = pool.submit(spawn_ready, hub, untimed_user, "cpu")
        (idle_job, t0), used_job, untimed_job = idle_f.result(), used_f.result(), untimed_f.result()
    try:
        # the idle one goes, through JupyterHub's stop: server removed, job cancelled
        wait_for(lambda: not hub.user_model(idle_user)["servers"], 60, 0.5, "idle server not stopped")
        elapsed = time.monotonic() - t0
        assert TIMEOUT - 2 <= elapsed < TIMEOUT + 30, elapsed
        wait_for(lambda: job_gone(idle_user, idle_job), 30, 0.5, f"job {idle_job} still in the queue")
        log = hub.log_tail(100_000)
        assert f"{idle_user}: idle: Job {idle_job} was stopped by the hub after" in log, log[-3000:]
        # well past two timeouts: the one in use and the one without a timeout are still there
        time.sleep(max(0.0, t0 + 2.5 * TIMEOUT - time.monotonic()))
        assert running(hub, used_user) and running(hub, untimed_user)
        assert job_running(used_user, used_job) and job_running(untimed_user, untimed_job)
    finally:
        stop_using.set()

    # left alone, the used one goes too (the same profile: what kept it was the use)
    wait_for(lambda: not hub.user_model(used_user)["servers"], 60, 0.5, "unused server not stopped")
    wait_for(lambda: job_gone(used_user, used_job), 30, 0.5, f"job {used_job} still in the queue")

    # the spawn page of the idle user's next start says why the previous server stopped
    messages = spawn_events(hub, idle_user, "cpu")
    said = [m for m in messages if m.startswith("Your previous server stopped: ")]
    assert said and said[0].startswith(
        f"Your previous server stopped: Job {idle_job} was stopped by the hub after "
    ), messages
    assert said[0].endswith(f"without activity (the idle timeout is {TIMEOUT} s)."), said
    again = str(hub.user_model(idle_user)["servers"][""]["state"]["job_id"])

    # the profile without a timeout is still running, long after
    assert running(hub, untimed_user) and job_running(untimed_user, untimed_job)
    for user in (idle_user, untimed_user):
        hub.stop_server(user)
    return [idle_job, used_job, untimed_job, again]


#: enables the busy-kernel extension in a user's server (Hub.per_user sets it at the spawn)
BUSY_KERNELS_ARGS = [
    "--ServerApp.jpserver_extensions=jupyterhub_hpc.busykernels=True",
    "--BusyKernels.interval=1",
]


def run_silently(hub: Hub, user: str, token: str, seconds: float) -> str:
    """Start a kernel and have it run ``time.sleep(seconds)`` (busy, and silent: no output),
    as a cell of a Lab does; the websocket is closed at once, so no traffic follows."""
    base = f"{hub.url}/user/{user}/api/kernels"
    headers = {"Authorization": f"token {token}"}
    r = requests.post(base, headers=headers, json={"name": "python3"}, timeout=30)
    assert r.status_code == 201, (r.status_code, r.text[:300])
    kernel = str(r.json()["id"])
    ws_url = f"{base}/{kernel}/channels".replace("http://", "ws://", 1)

    async def execute() -> None:
        from tornado.httpclient import HTTPRequest
        from tornado.websocket import websocket_connect

        conn = await websocket_connect(HTTPRequest(ws_url, headers=headers))
        msg_id = uuid.uuid4().hex
        header = {
            "msg_id": msg_id,
            "msg_type": "execute_request",
            "session": uuid.uuid4().hex,
            "username": user,
            "date": datetime.now(timezone.utc).isoformat(),
            "version": "5.3",
        }
        content = {"code": f"import time\ntime.sleep({seconds})", "silent": False, "store_history": False}
        message = {"header": header, "parent_header": {}, "metadata": {}, "content": content}
        await conn.write_message(json.dumps({**message, "channel": "shell"}))
        while True:  # until the kernel says it is busy with it
            reply = await asyncio.wait_for(conn.read_message(), 30)
            assert reply is not None, "the kernel's websocket closed"
            data = json.loads(reply)
            if data.get("parent_header", {}).get("msg_id") == msg_id and data["msg_type"] == "status":
                if data["content"]["execution_state"] == "busy":
                    break
        conn.close()

    asyncio.run(execute())
    return kernel
