"""Software modules (Lmod, Environment Modules): the catalogue, loading, per-kernel module sets.

- :mod:`.catalogue`: what a cluster offers, parsed from the tools' JSON (pure functions).
- :mod:`.system`: a cluster's :class:`ModuleSystem`, :func:`load_environment` (the real tool in a
  child bash, argv only), the server's :class:`ServerModules` as the job carries them.
- :mod:`.kernel`: the launcher a per-kernel kernelspec runs, and :func:`kernelspec`.
"""

from .catalogue import Catalogue, Module, check_module_name, parse_lmod_spider_json, parse_tmod_avail_json
from .kernel import kernelspec, status_path
from .system import (
    MODULE_SYSTEM_ENV,
    SERVER_MODULES_ENV,
    KernelPreset,
    ModuleLoadError,
    ModuleSystem,
    ServerModules,
    load_environment,
    loaded_modules,
)

__all__ = [
    "MODULE_SYSTEM_ENV",
    "SERVER_MODULES_ENV",
    "Catalogue",
    "KernelPreset",
    "Module",
    "ModuleLoadError",
    "ModuleSystem",
    "ServerModules",
    "check_module_name",
    "kernelspec",
    "load_environment",
    "loaded_modules",
    "parse_lmod_spider_json",
    "parse_tmod_avail_json",
    "status_path",
]
