"""The job-side launcher (console script ``jupyterhub-hpc-singleuser``)."""
