"""The user's container without uid 0 (issue 17).

:mod:`.names` plans, without touching the system, how the init names the user inside an image;
:mod:`.init` is ``jupyterhub-hpc-init``, the non-root init that runs inside the container: it names
the real identity, sets the environment, runs the admin's start hooks and supervises the server like
a minimal PID 1.
"""
