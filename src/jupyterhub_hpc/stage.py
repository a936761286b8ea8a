"""Moved to :mod:`jupyterhub_hpc.singleuser.stage` (the job- and user-side package).

Kept so that ``python -m jupyterhub_hpc.stage`` still works where an older hub
runs it on a submit host with this version installed (OAR's ``--env-file``; the
HTCondor form changed: the backend now renders the submit description itself).
"""

from __future__ import annotations

import sys

from .singleuser.stage import KEEP_DAYS, main, pack, unpack, write_script

__all__ = ["KEEP_DAYS", "main", "pack", "unpack", "write_script"]

if __name__ == "__main__":
    sys.exit(main())
