# JupyterHub config of the benchmark hubs (both spawners), filled from $BENCH_HUB_SETTINGS.
# mypy: ignore-errors
# ruff: noqa: F821
import json
import os

settings = json.load(open(os.environ["BENCH_HUB_SETTINGS"]))
root = settings["root"]
c.JupyterHub.bind_url = settings["bind_url"]
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = settings["hub_port"]
c.ConfigurableHTTPProxy.api_url = settings["proxy_api_url"]
c.ConfigurableHTTPProxy.auth_token = settings["proxy_token"]
c.JupyterHub.db_url = f"sqlite:///{root}/hub.sqlite"
c.JupyterHub.cookie_secret_file = f"{root}/cookie_secret"
c.JupyterHub.pid_file = f"{root}/hub.pid"
c.JupyterHub.authenticator_class = "dummy"
c.Authenticator.allow_all = True
c.JupyterHub.services = [{"name": "bench", "api_token": settings["admin_token"]}]
c.JupyterHub.load_roles = [
    {
        "name": "bench-admin",
        "services": ["bench"],
        "scopes": [
            "admin:users",
            "admin:servers",
            "admin:server_state",
            "tokens",
            "access:servers",
            "read:hub",
            "list:users",
            "read:metrics",
        ],
    }
]
# lab_clients.py: the hub-managed announcements service, as a site configures it
if settings.get("announcements"):
    from jupyterhub_hpc.announcements import announcements_service

    ann = announcements_service(
        port=settings["announcements"]["port"], writer_users=settings["announcements"]["writers"], cwd=root
    )
    c.JupyterHub.services.extend(ann["services"])
    c.JupyterHub.load_roles.extend(ann["load_roles"])
    c.JupyterHub.custom_scopes = ann["custom_scopes"]
# the benchmark stops every server itself; a hub shutdown must not scancel anything
c.JupyterHub.cleanup_servers = False
c.JupyterHub.log_level = "INFO"

if settings["spawner"] == "ours":
    from jupyterhub_hpc.handlers import api_handlers

    c.JupyterHub.spawner_class = "slurm"
    c.JupyterHub.extra_handlers = api_handlers
    spawner_config = c.HPCSpawner
else:
    c.JupyterHub.spawner_class = "batchspawner.SlurmSpawner"
    spawner_config = c.SlurmSpawner
for key, value in settings["config"].items():
    setattr(spawner_config, key, value)


def per_user(spawner):
    """Scenario knobs per user (a held job, a failing prologue, the light server), read at each spawn."""
    path = settings["per_user"]
    if os.path.exists(path):
        with open(path) as f:
            extra = json.load(f).get(spawner.user.name, {})
        for key, value in extra.items():
            setattr(spawner, key, value)


c.Spawner.pre_spawn_hook = per_user
