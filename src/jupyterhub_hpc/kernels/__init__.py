"""Kernels as batch jobs: a ``jupyter_client`` kernel provisioner for every backend.

- :mod:`.files`: the private files the server and the kernel job share (the connection file,
  the job's state and the server's requests), on the file system both see;
- :mod:`.node`: what runs inside the job (``python -m jupyterhub_hpc.kernels.node``): it writes
  the node's address into the connection file, starts the kernel, which binds its ports there,
  and keeps the allocation across kernel restarts;
- :mod:`.provisioner`: :class:`~.provisioner.HPCProvisioner` (entry point ``hpc-provisioner``);
- :mod:`.spec`: kernelspecs for kernel presets, and ``jupyterhub-hpc kernels``.
"""
