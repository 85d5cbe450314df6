"""The ``romanflow`` command.

One module of this package per group of sub-commands (``refs``, ``simulate``, ``calibrate``,
``tweakreg``, ``asn``/``mosaic``, ``catalog``, ``plan``/``run``, ``demo``), each exposing
``register(subparsers)``; every sub-parser sets ``func`` to a callable taking the parsed arguments and
returning an exit code. The grammar they share lives in :mod:`romanflow.cli.options`.

Exit statuses and streams:

* results go to standard output; progress bars, warnings and log messages to standard error;
* a problem the user can fix (:class:`~romanflow.errors.RomanflowError`, a bad argument, a file that
  cannot be read or written) prints one line ``romanflow COMMAND: error: ...`` and exits 2;
* a defect of romanflow itself prints its traceback and ``romanflow COMMAND: internal error: ...``
  and exits 1;
* an interrupt exits 130;
* standard output closed early by its reader (``romanflow run --dry-run | head -1``) ends the command
  quietly with status 141, as a process killed by SIGPIPE does in a shell.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
import traceback

from romanflow.cli.options import ArgumentParser, configure_logging
from romanflow.errors import RomanflowError
from romanflow.version import __version__

#: Modules that contribute sub-commands, in the order they are listed in --help.
COMMAND_MODULES = (
    "romanflow.cli.refs",
    "romanflow.cli.simulate",
    "romanflow.cli.calibrate",
    "romanflow.cli.tweakreg",
    "romanflow.cli.mosaic",
    "romanflow.cli.catalog",
    "romanflow.cli.psf",
    "romanflow.cli.hips",
    "romanflow.cli.inject",
    "romanflow.cli.run",
    "romanflow.cli.demo",
    "romanflow.cli.archive",
    "romanflow.cli.serve",
)

logger = logging.getLogger("romanflow")

#: Exit status when the reader of standard output went away (128 + SIGPIPE).
EXIT_BROKEN_PIPE = 141


def _silence_stdout() -> None:
    """Point standard output at the null device so that the interpreter's final flush cannot fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # stdout is not a real file (a test capture): nothing to do
        pass


def build_parser() -> ArgumentParser:
    """The ``romanflow`` parser with every sub-command registered."""
    parser = ArgumentParser(prog="romanflow",
                            description="Roman WFI data processing: simulate, calibrate, mosaic, catalog.")
    parser.add_argument("--version", action="version", version=f"romanflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def _os_error_line(exc: OSError) -> str:
    where = exc.filename if exc.filename is not None else ""
    what = exc.strerror or str(exc)
    return f"{where}: {what}" if where else what


def main(argv=None) -> int:
    """Run ``romanflow`` with ``argv`` (default: the process's arguments); return the exit status."""
    try:
        status = _run(argv)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


def _run(argv) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a bad argument already reported in one line
        return int(exc.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    command = getattr(args, "command_name", f"romanflow {args.command}")
    restore = configure_logging(command, verbose=getattr(args, "verbose", 0), quiet=getattr(args, "quiet", False))
    try:
        status = int(args.func(args) or 0)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        raise
    except RomanflowError as exc:
        print(f"{command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder that cannot be read or written, a full disk
        print(f"{command}: error: {_os_error_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - a defect: shown in full, reported as one closing line
        traceback.print_exc(file=sys.stderr)
        print(f"{command}: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    finally:
        restore()

