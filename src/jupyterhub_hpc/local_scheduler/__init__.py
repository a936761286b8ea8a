"""A tiny batch scheduler for one machine: ``jupyterhub-hpc-local submit|status|cancel``.

It gives local processes the life cycle of batch jobs (queued, running, ended
with a kept exit status and output file, a walltime that is enforced) so that
the ``local`` backend drives them through exactly the same subprocess path as
Slurm. :mod:`.store` keeps the state on disk, :mod:`.supervisor` runs one job
(``jupyterhub-hpc-local-supervisor``, which ``submit`` starts as
``python -I -m jupyterhub_hpc.local_scheduler.supervisor``), :mod:`.cli` is the
command line.

Everything here runs as the submitting user and imports only the standard library
and this package, never the hub (``tests/unit/test_job_side_imports.py``). It is
not part of the job-side package :mod:`jupyterhub_hpc.singleuser`: the three
modules are one scheduler sharing one on-disk format (the stand-in for Slurm's
daemons, not code of the job), and the supervisor cannot move without the store
the command line also reads.
"""
