"""Unit tier: pure functions, real subprocesses and fake scheduler commands; no Slurm, no hub."""
