"""The configuration of :class:`~jupyterhub_hpc.spawner.HPCSpawner`: every option, with its manual.

Kept apart from the life-cycle code so that the help text (the manual) and the
logic can each be read whole.
"""

from __future__ import annotations

import os
import re
import sys
from typing import Any

from traitlets import CaselessStrEnum, Dict, Float, Integer, List, TraitError, Unicode, default, validate
from traitlets.config import Configurable

from .units import MemoryTrait, PortRangeTrait, WalltimeTrait

SUDO_AS_USER = ["sudo", "-n", "-u", "{username}", "--"]


class HPCSpawnerOptions(Configurable):
    """Options shared by every scheduler backend."""

    # -- the scheduler ---------------------------------------------------------------
    backend = Unicode(
        "slurm",
        help="""
        The scheduler backend that runs the Jupyter server jobs, by name
        (entry-point group ``jupyterhub_hpc.backends``): ``"slurm"``, ``"sge"``
        (Grid Engine), ``"pbs"`` (PBS Professional / OpenPBS), ``"torque"``,
        ``"lsf"``, ``"htcondor"``, ``"oar"``, or ``"local"`` for plain local
        processes with the same life cycle. ``SlurmSpawner``, ``SGESpawner`` and
        the other per-scheduler classes (``jupyterhub_hpc.schedulers``) set it.
        """,
    ).tag(config=True)

    cluster = Unicode(
        "",
        help="""
        The cluster to submit to, for schedulers that federate several (Slurm's
        ``--clusters``). Empty means the scheduler's default cluster. With
        several names (``"a,b"``) Slurm picks one at submit time; the spawner
        keeps the one it picked with the job id (job ids are per cluster), and
        every later status query and cancel of that job names that cluster.
        """,
    ).tag(config=True)

    scheduler_commands = Dict(
        value_trait=Unicode(),
        help="""
        Paths of the scheduler's programs, by their usual name, where they are
        not on the hub's ``PATH`` or where ``sudo`` needs absolute paths, e.g.
        ``{"sbatch": "/usr/bin/sbatch", "scancel": "/usr/bin/scancel"}``.
        """,
    ).tag(config=True)

    scheduler_environment = Dict(
        value_trait=Unicode(),
        help="""
        Environment variables every scheduler command gets (submit, status,
        cancel, accounting), e.g. ``{"SLURM_CONF": "/etc/slurm-b/slurm.conf"}`` to
        talk to a second Slurm, or ``{"SGE_ROOT": ..., "SGE_CELL": ...}``.

        ``sudo`` resets the environment, so behind a non-empty prefix
        (``submit_prefix``, ``cancel_prefix``, ``status_prefix``) the variables
        are passed as arguments of ``env`` after the prefix:
        ``sudo -n -u alice -- env SLURM_CONF=/x sbatch ...`` (no shell; a value
        is one argument whatever it contains). The sudoers rule must then allow
        ``/usr/bin/env`` as the user. Without a prefix they are set in the
        command's process environment. Values are visible in the process list:
        never put secrets here (``secret_env_names`` is for those).
        """,
    ).tag(config=True)

    @validate("scheduler_environment")
    def _valid_scheduler_environment(self, proposal: Any) -> dict[str, str]:
        value: dict[str, str] = dict(proposal["value"])
        bad = sorted(k for k in value if not re.match(r"^[A-Za-z_][A-Za-z0-9_]*$", k))
        if bad:
            raise TraitError(f"scheduler_environment: not variable names: {bad}")
        return value

    submit_prefix = List(
        Unicode(),
        default_value=SUDO_AS_USER,
        help="""
        argv put in front of the submit command so that the job is submitted *as
        the user*. Each element may use ``{username}``; an element is formatted on
        its own, so a user name can never add arguments. The default,
        ``["sudo", "-n", "-u", "{username}", "--"]``, needs a sudoers rule for
        the submit program (see ``jupyterhub-hpc sudoers``) that keeps
        ``JUPYTERHUB_API_TOKEN`` in the environment (``env_keep``): the token
        travels in the environment, never on a command line or in the script.
        Use ``[]`` when the hub already runs as the user.
        """,
    ).tag(config=True)

    cancel_prefix = List(
        Unicode(),
        default_value=SUDO_AS_USER,
        help="""argv put in front of the cancel command; like ``submit_prefix``.""",
    ).tag(config=True)

    read_prefix = List(
        Unicode(),
        default_value=SUDO_AS_USER,
        help="""
        argv put in front of ``output_reader`` when the hub reads the end of a
        job's output file (for the failure message and the exit status of a job
        the scheduler has forgotten). Like ``submit_prefix``.
        """,
    ).tag(config=True)

    output_reader = List(
        Unicode(),
        help="""
        The program that reads the end of a job's output file as the user
        (behind ``read_prefix``), as an argv to which the hub appends
        ``--lines N PATH``. Its first element must be an absolute path: the
        sudoers rule names it exactly. Defaults to ``jupyterhub-hpc-read-output``
        next to the hub's own Python; with ``ssh_host`` it runs on the submit
        host, so it must exist there at this path. It refuses paths with ``..``,
        ``.`` or empty components, symbolic links anywhere in the path, anything
        but a regular file, and files the user does not own.
        """,
    ).tag(config=True)

    @default("output_reader")
    def _default_output_reader(self) -> list[str]:
        return [os.path.join(os.path.dirname(sys.executable), "jupyterhub-hpc-read-output")]

    @validate("output_reader")
    def _valid_output_reader(self, proposal: Any) -> list[str]:
        value: list[str] = list(proposal["value"])
        if not value or not os.path.isabs(value[0]):
            raise TraitError(f"output_reader: the first element must be an absolute path, not {value}")
        return value

    status_prefix = List(
        Unicode(),
        default_value=[],
        help="""
        argv put in front of the status command. Empty by default: Slurm lets any
        user see every job's state, so status queries need no sudo. The status
        command is shared by all users, so ``{username}`` is not available here.
        """,
    ).tag(config=True)

    command_timeout = Float(
        30.0,
        help="""Seconds any scheduler command may take before it is killed and counted as failed.""",
    ).tag(config=True)

    status_interval = Float(
        30.0,
        help="""
        Seconds between two status queries while no spawn is waiting. One query
        covers every job of this scheduler in the hub process, whatever the number
        of users.
        """,
    ).tag(config=True)

    status_fast_interval = Float(
        1.0,
        help="""
        Seconds between two status queries while at least one spawn is waiting
        (in the queue, or for its server). Still one query for all jobs.
        """,
    ).tag(config=True)

    status_max_backoff = Float(
        300.0,
        help="""
        Upper bound (seconds) of the exponential back-off between status queries
        while the scheduler does not answer. Servers are never stopped because
        the scheduler does not answer; their state is UNKNOWN meanwhile.
        """,
    ).tag(config=True)

    # -- the resources (defaults of the job request) -----------------------------------
    job_name = Unicode("jupyterhub", help="""The job name shown by the scheduler.""").tag(config=True)
    partition = Unicode("", help="""Partition (queue) to submit to; empty: the scheduler's default.""").tag(
        config=True
    )
    account = Unicode("", help="""Account to charge; empty: the user's default account.""").tag(config=True)
    qos = Unicode("", help="""Quality of service; empty: the default.""").tag(config=True)
    reservation = Unicode("", help="""Reservation to run in; empty: none.""").tag(config=True)
    constraint = Unicode("", help="""Node features required (Slurm ``--constraint``); empty: none.""").tag(
        config=True
    )
    cpus = Integer(1, help="""CPU cores for the server (per task; Slurm ``--cpus-per-task``).""").tag(
        config=True
    )
    memory = MemoryTrait(
        "1G",
        help="""
        Memory for the server, e.g. ``"4G"`` or ``"512M"`` (a bare number is MiB).
        Always passed explicitly: without it, some sites give a job the whole node.
        Read when the configuration is loaded, by the parser of the users' requests,
        and kept as whole MiB (an int); a value it cannot read is an error naming
        this option, at hub start with ``check_profiles(c)``.
        """,
    ).tag(config=True)
    walltime = WalltimeTrait(
        "08:00:00",
        help="""
        Time limit of the server's job: ``HH:MM:SS``, ``D-HH:MM:SS``, ``D-HH`` or
        minutes (a bare number), as Slurm reads ``--time``. Always passed, so a
        forgotten server cannot hold resources forever. Read when the configuration
        is loaded and kept in seconds (``jupyterhub_hpc.request.Seconds``); a value
        it cannot read is an error naming this option, at hub start with
        ``check_profiles(c)``.
        """,
    ).tag(config=True)
    gpus = Integer(0, help="""Number of GPUs (Slurm ``--gres=gpu:N``).""").tag(config=True)
    gpu_type = Unicode("", help="""GPU type (Slurm ``--gres=gpu:TYPE:N``); empty: any.""").tag(config=True)
    nodes = Integer(
        1,
        help="""
        Number of nodes (Slurm ``--nodes``, PBS ``select=N``, LSF hosts, OAR ``/nodes=N``);
        one task per node unless ``ntasks``/``ntasks_per_node`` say otherwise. Backends
        whose jobs run on one host (Grid Engine here, HTCondor, local) refuse more than one.
        """,
    ).tag(config=True)
    ntasks = Integer(
        None,
        allow_none=True,
        help="""
        Tasks in all (Slurm ``--ntasks``); None: one task per node. ``cpus`` is per task.
        A backend whose scheduler has no task count refuses a job that sets it.
        """,
    ).tag(config=True)
    ntasks_per_node = Integer(
        None,
        allow_none=True,
        help="""
        Tasks per node (Slurm ``--ntasks-per-node``, PBS ``mpiprocs``, LSF ``span[ptile=]``,
        OAR cores per node = cpus x tasks); None: one.
        """,
    ).tag(config=True)
    gpus_per_task = Integer(
        None,
        allow_none=True,
        help="""GPUs per task (Slurm ``--gpus-per-task``, LSF ``-gpu "num=N/task"``); None: not asked.""",
    ).tag(config=True)
    gres = List(
        Unicode(),
        help="""
        Generic resources besides the GPUs of ``gpus``, each ``name[:type][:count]``, e.g.
        ``["nvme:100", "shard:1"]`` (Slurm ``--gres``, joined with the GPUs by commas).
        Each is checked against a strict ASCII pattern; backends without generic
        resources refuse a job that asks for any.
        """,
    ).tag(config=True)
    workdir = Unicode(
        "",
        help="""
        The job's working (home) directory as part of the job request, e.g.
        ``"/scratch/{username}"``: an absolute path (or one starting with ``{home}``), no
        ``..``, spaces or quotes; ``{home}`` and ``{username}`` are filled in. When set
        (here, by a profile or by the user through ``allowed_user_options``) it wins over
        ``job_workdir``; empty: ``job_workdir``.
        """,
    ).tag(config=True)

    allowed_user_options = List(
        Unicode(),
        help="""
        Fields of the job request that users may set through ``user_options``
        (the spawn form or the REST API), e.g. ``["partition", "cpus", "memory",
        "walltime"]``. Every value is validated (type, range, character set)
        before it can reach a job script; any other key is refused. Empty by
        default: users choose nothing, the admin's values apply. Profiles give a
        richer, limit-checked choice.
        """,
    ).tag(config=True)

    # -- the job script ---------------------------------------------------------------------
    job_extra_directives = List(
        Unicode(),
        help="""
        Directive arguments appended to the generated ones, e.g.
        ``["--licenses=matlab:1"]`` for Slurm; written after them, so they win.
        Admin-only: users cannot set these.
        """,
    ).tag(config=True)

    job_directives_skip = List(
        Unicode(),
        help="""
        Generated directives containing any of these strings are left out, e.g.
        ``["--mem"]`` on a site that rejects memory requests.
        """,
    ).tag(config=True)

    job_script_prologue = Unicode(
        "",
        help="""
        Shell text run in the job before the server starts, as written (e.g.
        ``module load python``). Admin-only; never built from user input.
        """,
    ).tag(config=True)

    job_script_epilogue = Unicode(
        "",
        help="""Shell text run in the job after the server exits, as written. Admin-only.""",
    ).tag(config=True)

    job_script_template = Unicode(
        "",
        help="""
        Path of a Jinja2 job-script template replacing the backend's own. Every
        ``{{ value }}`` in it is shell-quoted unless marked ``| safe``; undefined
        names are errors.
        """,
    ).tag(config=True)

    job_workdir = Unicode(
        "{home}",
        help="""Working directory of the job; ``{home}`` and ``{username}`` are replaced.""",
    ).tag(config=True)

    job_output = Unicode(
        "{home}/.jupyterhub-hpc-{job_id}.log",
        help="""
        Path of the job's output file; ``{home}``, ``{username}`` and
        ``{job_id}`` are replaced. The hub reads its last lines when a job fails,
        and the exit status the job writes there last.
        """,
    ).tag(config=True)

    launcher_command = List(
        Unicode(),
        default_value=["jupyterhub-hpc-singleuser"],
        help="""
        The job-side launcher: picks a port on the node, reports it to the hub,
        then runs ``Spawner.cmd`` (``jupyterhub-singleuser`` by default) on it.
        """,
    ).tag(config=True)

    path_prepend = List(
        Unicode(),
        help="""
        Directories put in front of ``PATH`` inside the job, so the launcher and
        Jupyter are found whatever environment the scheduler passes. Defaults to
        the directory of the hub's own Python (the same software installation,
        shared with the compute nodes on most sites).
        """,
    ).tag(config=True)

    @default("path_prepend")
    def _default_path_prepend(self) -> list[str]:
        return [os.path.dirname(sys.executable)]

    port_range = PortRangeTrait(
        "",
        help="""
        Ports the server may use on the node, ``"LOW-HIGH"`` (e.g. a range the
        firewall opens), within 1-65535. Empty: any free port the node's kernel
        hands out (the hub then accepts a reported port from 1024 to 65535). Read
        when the configuration is loaded, by the launcher's own parser, and kept as a
        ``PortRange`` (``None`` when empty); a value it cannot read is an error
        naming this option, at hub start with ``check_profiles(c)``.
        """,
    ).tag(config=True)

    kernel_transport = CaselessStrEnum(
        ["ipc", "tcp"],
        default_value="ipc",
        help="""
        How the server in the job talks to its kernels. ``"ipc"`` (default): Unix
        sockets in the job's private directory on the node (mode 0700), which other
        users of a shared node cannot connect to. ``"tcp"``: Jupyter's own default,
        ports on 127.0.0.1 that **every user of the node can connect to** (the
        messages are signed, not encrypted: anyone can read a kernel's output); only
        for kernels that cannot use IPC, on nodes no one else uses.
        """,
    ).tag(config=True)

    job_umask = Unicode(
        "0022",
        help="""
        The umask of the server and its kernels in the job (octal, e.g. ``"0027"``
        or ``"0002"`` for group-shared projects). The job is submitted, and its
        script starts, with umask 077, so that its output file is private; the
        script then sets this one before Jupyter starts.
        """,
    ).tag(config=True)

    @validate("job_umask")
    def _valid_umask(self, proposal: Any) -> str:
        value = str(proposal["value"])
        if not re.fullmatch(r"0?[0-7]{3}", value, flags=re.ASCII):
            raise TraitError(f"job_umask must be an octal umask like '0022', not {value!r}")
        return value

    server_bind = Unicode(
        "",
        help="""
        Where the server listens on the compute node: an address, an interface
        name (``"ib0"``: its IPv4 address on each node), or a host name in which
        ``{hostname}`` is the node's own name (``"{hostname}-ib"``). Empty: the
        address the node's own host name resolves to. Never ``0.0.0.0`` unless
        written here. ``node_address`` must name the same interface for the hub.
        """,
    ).tag(config=True)

    node_address = Unicode(
        "{host}",
        help="""
        How the hub reaches a node, from the host name the scheduler reports:
        ``{host}`` as it is, or e.g. ``"{host}.ib.example.org"``.
        """,
    ).tag(config=True)

    log_tail_lines = Integer(
        20, help="""Lines of the job's output shown to the user when a spawn fails."""
    ).tag(config=True)

    secret_env_names = List(
        Unicode(),
        default_value=["JUPYTERHUB_API_TOKEN", "JPY_API_TOKEN", "JUPYTERHUB_HPC_SSL_KEY"],
        help="""
        Environment variables that never go into the job script: they reach the
        job through the submit command's environment only (never a command line,
        a log or a file). Every other variable of ``Spawner.get_env()`` is written
        into the script as a quoted ``export``. ``JUPYTERHUB_HPC_SSL_KEY`` carries
        the server's private key with ``internal_ssl`` (:mod:`jupyterhub_hpc.certs`).
        The sudoers rule for the submit command keeps exactly these (``env_keep``).
        """,
    ).tag(config=True)
