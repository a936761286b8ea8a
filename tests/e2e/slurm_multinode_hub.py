# The setting of the multi-node end-to-end tests' hubs (tests/e2e/test_slurm_multinode.py) that their sudo
# rules depend on: scheduler commands run as `sudo -u USER -- env SLURM_CONF=... sbatch ...`.
# scripts/test-sudoers.sh generates the tests' second sudoers file from this jupyterhub_config.py fragment.
c.HPCSpawner.scheduler_environment = {  # noqa: F821 (`c`: the config object of a jupyterhub_config.py)
    "SLURM_CONF": "/var/lib/jupyterhub-hpc-slurm-multi/etc/slurm.conf"
}
