"""The ``romanflow`` command.

Each level of the system registers its own sub-commands from a small
``cli`` module in its package (``romanflow/<level>/cli.py``) exposing
``register(subparsers)``; each sub-parser sets ``func`` to a callable taking
the parsed arguments and returning an exit code. Problems the user can fix
(:class:`~romanflow.errors.RomanflowError`) print one line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from romanflow import __version__
from romanflow.errors import RomanflowError

#: Modules that contribute sub-commands, in the order they are listed in --help.
COMMAND_MODULES = (
    "romanflow.refdata.cli",
    "romanflow.simulate.cli",
    "romanflow.calibrate.cli",
    "romanflow.astrometry.cli",
    "romanflow.mosaic.cli",
    "romanflow.catalog.cli",
    "romanflow.run.cli",
    "romanflow.demo",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="romanflow",
        description="Roman WFI data processing: simulate, calibrate, mosaic, catalog.",
    )
    parser.add_argument("--version", action="version", version=f"romanflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):  # this level is not part of the package yet
                continue
            raise
        module.register(subparsers)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 1
    try:
        return int(args.func(args) or 0)
    except RomanflowError as exc:
        print(f"romanflow {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"romanflow {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
