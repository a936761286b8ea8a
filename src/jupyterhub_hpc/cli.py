"""The ``jupyterhub-hpc`` command: administrative helpers and the demo."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="jupyterhub-hpc", description="jupyterhub-hpc helpers")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("version", help="print the version")
    from . import demo

    demo.add_arguments(
        sub.add_parser(
            "demo",
            help="run a demo hub on this machine (no config file needed)",
            description=(demo.__doc__ or "").split("\n\n")[0],
        )
    )
    from . import sudoers

    sudoers.add_arguments(
        sub.add_parser(
            "sudoers",
            help="print the minimal sudoers file for a hub that does not run as root",
            description=(sudoers.__doc__ or "").split("\n\n")[0],
        )
    )
    from . import audit

    audit.add_arguments(
        sub.add_parser(
            "audit",
            help="check a deployment against the red team's findings (hub config, --node, or --image)",
            description=(audit.__doc__ or "").split("\n\n")[0],
        )
    )
    from . import migrate

    migrate.add_arguments(
        sub.add_parser(
            "migrate",
            help="print a jupyterhub-hpc configuration for a batchspawner / wrapspawner / moss one",
            description=(migrate.__doc__ or "").split("\n\n")[0],
        )
    )
    from .modules import cli as modules_cli

    modules_cli.add_arguments(
        sub.add_parser(
            "modules",
            help="list a module system's catalogue and test-load modules as a job would",
            description=(modules_cli.__doc__ or "").split("\n\n")[0],
        )
    )
    from .kernels import spec as kernels_spec

    kernels_spec.add_arguments(
        sub.add_parser(
            "kernels",
            help="install kernel presets whose kernels run as batch jobs",
            description=(kernels_spec.__doc__ or "").split("\n\n")[0],
        )
    )
    args = parser.parse_args(argv)
    if args.command == "version":
        from . import __version__

        print(__version__)
    elif args.command == "demo":
        raise SystemExit(demo.run(args))
    elif args.command == "sudoers":
        raise SystemExit(sudoers.run(args))
    elif args.command == "audit":
        raise SystemExit(audit.run(args))
    elif args.command == "migrate":
        raise SystemExit(migrate.run(args))
    elif args.command == "modules":
        raise SystemExit(modules_cli.run(args))
    elif args.command == "kernels":
        raise SystemExit(kernels_spec.run(args))


if __name__ == "__main__":
    main()
