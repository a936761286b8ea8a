"""A tiny batch scheduler for one machine: ``jupyterhub-hpc-local submit|status|cancel``.

It gives local processes the life cycle of batch jobs (queued, running, ended
with a kept exit status and output file, a walltime that is enforced) so that
the ``local`` backend drives them through exactly the same subprocess path as
Slurm. :mod:`.store` keeps the state on disk, :mod:`.supervisor` runs one job,
:mod:`.cli` is the command line.
"""
