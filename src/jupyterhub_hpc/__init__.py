"""jupyterhub-hpc: Jupyter servers as batch jobs on HPC clusters, for JupyterHub.

Import the public classes from their modules (``jupyterhub_hpc.spawner``,
``jupyterhub_hpc.handlers``); importing this package has no side effects.
"""

__version__ = "0.1.0.dev0"
