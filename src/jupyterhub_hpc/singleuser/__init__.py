"""What runs in the job or as the user: standard library only, nothing of the hub.

- :mod:`.launcher` (``jupyterhub-hpc-singleuser``, ``python -m jupyterhub_hpc.singleuser``):
  the job's launcher: port, readiness, then ``jupyterhub-singleuser``;
- :mod:`.certs`: the job's half of ``internal_ssl`` (writes the certificates);
- :mod:`.listeners`, :mod:`.private`: the node's sockets, the job's private directory;
- :mod:`.read_output` (``jupyterhub-hpc-read-output``): reads the end of a job's
  output as the user, for the hub's message about a failed job;
- :mod:`.stage` (``jupyterhub-hpc-stage``): writes a job script to a file as the
  user for the submit programs that want one (OAR, HTCondor).

The hub runs the programs by module path (``python -m``), which needs no console
script on the user's ``PATH``. Modules here import each other and the standard
library only (``tests/unit/test_job_side_imports.py``): the hub side may import
them, never the other way round.

The local scheduler (:mod:`jupyterhub_hpc.local_scheduler`, ``jupyterhub-hpc-local``
and its per-job supervisor) also runs as the user and is hub-independent in the
same way, but stays a package of its own: it is a scheduler (the local stand-in
for Slurm) whose command line, state store and supervisor share one on-disk
format, not code of the job.
"""
