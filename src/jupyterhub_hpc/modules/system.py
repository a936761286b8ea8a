"""A cluster's module system (Lmod or Environment Modules) and loading modules through it.

Everything is argv: module names travel as arguments of a fixed bash program
(:data:`LOADER`), never inside shell text, and only names :func:`check_module_name` accepts get
there. The loader runs the site's real ``module`` command in a child bash, so what a modulefile
does at load time (Lmod's ``execute{}``, Tcl ``puts stdout``) happens, which a Python-shell
``exec()`` of the tool's output silently skips (jupyter-lmod #45); the environment it ends with is
handed back. The tool's status is checked twice: the ``module`` function's own (Lmod exits 1 on
a failed load; Environment Modules 5.2 exits 0 and signals failure in the code it prints, which
the child evaluates) and, explicitly, that every asked module is in ``LOADEDMODULES`` afterwards.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Mapping, Sequence
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from .catalogue import Catalogue, check_module_name, parse_lmod_spider_json, parse_tmod_avail_json

__all__ = [
    "LMOD_INIT",
    "LMOD_SPIDER",
    "LOADER",
    "MODULE_SYSTEM_ENV",
    "SERVER_MODULES_ENV",
    "KernelPreset",
    "ModuleLoadError",
    "ModuleSystem",
    "ServerModules",
    "load_environment",
    "loaded_modules",
]

#: the job's (and the server's) environment variable holding the cluster's :class:`ModuleSystem`
MODULE_SYSTEM_ENV = "JUPYTERHUB_HPC_MODULE_SYSTEM"
#: the job's environment variable holding the server's :class:`ServerModules`
SERVER_MODULES_ENV = "JUPYTERHUB_HPC_MODULES"
#: Debian's (and Lmod's default installation's) paths
LMOD_INIT = "/usr/share/lmod/lmod/init/bash"
LMOD_SPIDER = "/usr/share/lmod/lmod/libexec/spider"

#: bash -c LOADER loader INIT MODULEPATH N CMD[1..N] PURGE MODULE...: everything the module tool
#: prints goes to stderr; the environment it ends with, NUL-separated, to the original stdout
LOADER = r"""exec 3>&1 1>&2
init=$1 modulepath=$2 n=$3
shift 3
cmd=("${@:1:$n}")
shift "$n"
purge=$1
shift
if [ -n "$modulepath" ]; then export MODULEPATH="$modulepath"; fi
if [ -n "$init" ]; then
  . "$init" || { echo "cannot read the module system's init script $init"; exit 97; }
else
  module() { local _code; _code=$("${cmd[@]}" bash "$@") || return; eval "$_code"; }
fi
if [ "$purge" = 1 ]; then module purge || exit 98; fi
if [ "$#" -gt 0 ]; then module load "$@" || exit 99; fi
exec env -0 >&3
"""

#: bash -c CATALOGUE catalogue INIT SPIDER: Lmod's spider over the MODULEPATH the init sets
CATALOGUE = r""". "$1" >/dev/null 2>&1 || { echo "cannot read $1" >&2; exit 97; }
exec "$2" -o spider-json "$MODULEPATH"
"""

#: bash -c TMOD_CATALOGUE catalogue CMD...: Environment Modules prints its JSON on stderr (stdout
#: is shell code): ``avail -j`` then ``whatis -j`` (the descriptions), both on stdout here
TMOD_CATALOGUE = r"""exec 2>&1 1>/dev/null
"$@" bash avail -j || exit
"$@" bash whatis -j
"""

#: the tools' messages in one line per sentence (Lmod wraps at 80 columns without a terminal)
_UNWRAPPED = {"LMOD_TERM_WIDTH": "1000"}
#: what bash itself sets, not the modules: taken from the caller's environment instead
_SHELL_OWN = ("_", "SHLVL", "PWD", "OLDPWD")


def _absolute(path: str) -> str:
    if path and (not path.startswith("/") or "\0" in path or ":" in path):
        raise ValueError(f"{path!r} is not an absolute path (without ':')")
    return path


AbsolutePath = Annotated[str, AfterValidator(_absolute)]
ModuleName = Annotated[str, AfterValidator(check_module_name)]


class ModuleLoadError(RuntimeError):
    """A load failed; ``str()`` is the module tool's own message."""

    def __init__(self, message: str, modules: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.modules = tuple(modules)


class ModuleSystem(BaseModel):
    """How a cluster's nodes run their module command (Lmod or Environment Modules)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["lmod", "tmod"]
    #: where the modulefiles are (joined into MODULEPATH); empty: what the init sets
    modulepath: tuple[AbsolutePath, ...] = ()
    #: a bash init script to source (Lmod's ``init/bash``); empty with ``command``
    init: AbsolutePath = ""
    #: the module command without its shell argument, e.g. ``["tclsh", ".../modulecmd.tcl"]``
    command: tuple[str, ...] = ()
    #: Lmod's ``spider`` program (the catalogue)
    spider: AbsolutePath = LMOD_SPIDER

    @model_validator(mode="after")
    def _runnable(self) -> ModuleSystem:
        if self.kind == "tmod" and not self.command:
            raise ValueError('Environment Modules needs command (e.g. ["/usr/lib/modulecmd.tcl"])')
        if any(not part or "\0" in part for part in self.command):
            raise ValueError("command: empty or NUL-containing argument")
        return self

    @property
    def shell_init(self) -> str:
        """The init script the loader sources ("" when it runs ``command`` itself)."""
        if self.init or self.command:
            return self.init
        return LMOD_INIT

    # -- the catalogue ----------------------------------------------------------------
    def catalogue_argv(self) -> list[str]:
        """The command that prints this system's catalogue as JSON (run it anywhere: on the hub,
        on a login node through the scheduler client)."""
        path = ":".join(self.modulepath)
        if self.kind == "lmod":
            if path:
                return [self.spider, "-o", "spider-json", path]
            return ["bash", "-c", CATALOGUE, "catalogue", self.shell_init or LMOD_INIT, self.spider]
        prefix = ["env", f"MODULEPATH={path}"] if path else []
        return [*prefix, "bash", "-c", TMOD_CATALOGUE, "catalogue", *self.command]

    def parse_catalogue(self, stdout: str) -> Catalogue:
        """What :meth:`catalogue_argv` printed, as a :class:`Catalogue`."""
        if self.kind == "lmod":
            return parse_lmod_spider_json(stdout)
        return parse_tmod_avail_json(stdout)

    # -- loading ------------------------------------------------------------------------
    def loader_argv(self, modules: Sequence[str], *, purge: bool) -> list[str]:
        """``bash -c LOADER ...``: loads ``modules`` (checked names) and prints the environment."""
        names = [check_module_name(m) for m in modules]
        command = [] if self.shell_init else list(self.command)
        return [
            "bash",
            "-c",
            LOADER,
            "jupyterhub-hpc-modules",
            self.shell_init,
            ":".join(self.modulepath),
            str(len(command)),
            *command,
            "1" if purge else "0",
            *names,
        ]

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls, text: str) -> ModuleSystem:
        return cls.model_validate_json(text)


def loaded_modules(env: Mapping[str, str]) -> list[str]:
    """The full names in ``LOADEDMODULES``."""
    return [m for m in env.get("LOADEDMODULES", "").split(":") if m]


def _is_loaded(name: str, loaded: Sequence[str]) -> bool:
    return any(m == name or m.startswith(name + "/") for m in loaded)


def _message(stderr: str, limit: int = 4000) -> str:
    text = re.sub(r"\n{3,}", "\n\n", stderr.strip())
    return text if len(text) <= limit else "..." + text[-limit:]


def load_environment(
    system: ModuleSystem,
    modules: Sequence[str],
    *,
    purge: bool = False,
    env: Mapping[str, str] | None = None,
    timeout: float = 120.0,
) -> dict[str, str]:
    """The environment ``env`` (default: this process's) has after ``module [purge;] load
    modules``, or :class:`ModuleLoadError` with the tool's message."""
    base = dict(os.environ if env is None else env)
    argv = system.loader_argv(modules, purge=purge)
    try:
        done = subprocess.run(
            argv, env={**_UNWRAPPED, **base}, capture_output=True, timeout=timeout, check=False, cwd="/"
        )
    except subprocess.TimeoutExpired:
        raise ModuleLoadError(
            f"module load {' '.join(modules)} took longer than {timeout:.0f} s", modules
        ) from None
    except OSError as exc:
        raise ModuleLoadError(f"cannot run bash for the module system: {exc.strerror}", modules) from None
    stderr = done.stderr.decode(errors="replace")
    what = " ".join(modules) or "(purge)"
    if done.returncode != 0:
        raise ModuleLoadError(
            _message(stderr) or f"module load {what} failed (exit {done.returncode})", modules
        )
    result: dict[str, str] = {}
    for item in done.stdout.split(b"\0"):
        key, sep, value = item.decode(errors="surrogateescape").partition("=")
        if sep and key:
            result[key] = value
    for key in (*_SHELL_OWN, *_UNWRAPPED):
        result.pop(key, None)
        if key in base:
            result[key] = base[key]
    missing = [m for m in modules if not _is_loaded(m, loaded_modules(result))]
    if missing:
        said = _message(stderr)
        raise ModuleLoadError(
            f"{', '.join(missing)} not loaded after module load {what}" + (f":\n{said}" if said else ""),
            modules,
        )
    return result


_SLUG = r"^[a-z0-9][a-z0-9-]{0,62}$"


class KernelPreset(BaseModel):
    """A kernel with its own module set (an admin's preset, or a user's)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    #: the kernelspec's name
    name: Annotated[str, Field(pattern=_SLUG)]
    display_name: Annotated[str, Field(min_length=1, max_length=120)]
    modules: tuple[ModuleName, ...] = ()
    purge: bool = False


class ServerModules(BaseModel):
    """The modules of one server: loaded before it starts, and its kernels' presets."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    modules: tuple[ModuleName, ...] = ()
    #: loaded too, never unloaded: loaded again after a kernel's purge
    sticky: tuple[ModuleName, ...] = ()
    purge: bool = False
    kernels: tuple[KernelPreset, ...] = ()

    def to_load(self) -> list[str]:
        """Sticky modules first, then the chosen ones, each once."""
        return list(dict.fromkeys([*self.sticky, *self.modules]))

    def to_env(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_env(cls, text: str) -> ServerModules:
        return cls.model_validate_json(text)


def dumps(value: object) -> str:
    """Compact JSON (status files)."""
    return json.dumps(value, separators=(",", ":"))
