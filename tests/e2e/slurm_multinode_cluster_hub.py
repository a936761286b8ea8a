# The multi-node tests' setting (tests/e2e/slurm_multinode_hub.py) with the cluster named, as a profile of
# tests/e2e/test_maintenance_announcements_live.py does (Slurm's --clusters=multi on sbatch and scancel): the
# sudo rules of that profile's commands. scripts/test-sudoers.sh generates a third sudoers file from it.
c.HPCSpawner.scheduler_environment = {  # noqa: F821 (`c`: the config object of a jupyterhub_config.py)
    "SLURM_CONF": "/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf"
}
c.HPCSpawner.cluster = "multi"  # noqa: F821
