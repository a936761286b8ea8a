"""``python -m jupyterhub_hpc.modules.launch``: the kernel launcher of :mod:`.kernel`, as a module
of its own (the package imports :mod:`.kernel`, so ``-m`` on that one would run it twice)."""

from __future__ import annotations

from .kernel import main

if __name__ == "__main__":
    main()
