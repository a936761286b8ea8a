# The settings that make a hub use the Slurm 24.11 cluster of scripts/slurm24.sh (Debian 13's Slurm, from its
# root /opt/jupyterhub-hpc/slurm24-root), used by the live suite with JUPYTERHUB_HPC_TEST_SLURM=24.11
# (tests/slurm_cluster.py reads them from here) and by scripts/test-sudoers.sh, which generates the sudo rules
# of those hubs from this jupyterhub_config.py fragment: `sudo -u USER -- env SLURM_CONF=... .../sbatch ...`.
# Only the spawner's own settings: the root's client programs (wrappers that run them on this host through the
# root's loader), the cluster's config, and the job's venv inside the root (jobs run there).
ROOT = "/opt/jupyterhub-hpc/slurm24-root"
BIN = "/opt/jupyterhub-hpc/slurm24-bin"
c.HPCSpawner.scheduler_commands = {  # noqa: F821 (`c`: the config object of a jupyterhub_config.py)
    name: f"{BIN}/{name}"
    for name in ("sbatch", "squeue", "scancel", "sacct", "sinfo", "sacctmgr", "scontrol")
}
c.HPCSpawner.scheduler_environment = {"SLURM_CONF": f"{ROOT}/etc/slurm/slurm.conf"}  # noqa: F821
c.HPCSpawner.path_prepend = ["/opt/jupyterhub-hpc/venv-slurm24/bin"]  # noqa: F821
