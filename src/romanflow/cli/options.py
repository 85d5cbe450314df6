"""The grammar every ``romanflow`` sub-command shares.

One spelling per idea, on every command that has it:

=======================  ==============================================================================
``-o/--output-dir DIR``  folder for a command's products (``-o/--output FILE`` where it writes one file)
``--size SIZE``          science pixels per detector side: ``full`` (4088), ``small`` (248) or a number
``--detectors WFInn``    detectors, or ``all``
``--filter`` / ``--filters``  imaging filters, case-insensitive, checked against the WFI's list
``--ma-table N``         an MA table number the WFI knows
``--seed N``             random seed
``--pointing-error``     one true-minus-commanded pointing offset (``simulate``: RA, Dec in arcsec, roll in
                         deg); ``--pointing-error-rms ARCSEC`` draws one per exposure (``plan``)
``-v/--verbose``         more messages on standard error (``-vv`` for debugging)
``-q/--quiet``           only errors on standard error: no progress bars, no warnings
=======================  ==============================================================================
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import warnings
from pathlib import Path

from romanflow.detector import DETECTORS, IMAGING_FILTERS, MA_TABLES, N_PIX_SCIENCE, SMALL_SCIENCE_SIZE

#: Named science sizes accepted by ``--size``.
NAMED_SIZES = {"full": N_PIX_SCIENCE, "small": SMALL_SCIENCE_SIZE}


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser, reporting a bad argument as one line (with a pointer to ``--help``), exit 2."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def science_size(text: str) -> int:
    """``--size``: ``full``, ``small`` or a positive number of science pixels whose border-inclusive
    size is a whole number of 128-column channels (248, 504, 1016, ..., 4088)."""
    from romanflow.detector import total_size
    from romanflow.errors import RomanflowError

    value = NAMED_SIZES.get(str(text).lower())
    if value is None:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"{text!r}: expected full, small or a number of pixels such as 504") from None
    try:
        total_size(value)
    except RomanflowError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return value


def filter_name(text: str) -> str:
    """An imaging filter, case-insensitive (``f158`` -> ``F158``)."""
    name = str(text).upper()
    if name not in IMAGING_FILTERS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected one of {', '.join(IMAGING_FILTERS)}")
    return name


def detector(text: str) -> str:
    """A detector name (``wfi07``, ``WFI07``) or the word ``all``."""
    if str(text).lower() == "all":
        return "all"
    name = str(text).upper()
    if name not in DETECTORS:
        raise argparse.ArgumentTypeError(f"{text!r}: expected WFI01..WFI18 or all")
    return name


def detector_list(values) -> list[str]:
    """The detectors a ``--detectors`` list names (``all`` expands to the 18)."""
    return list(DETECTORS) if "all" in values else list(dict.fromkeys(values))


def _integer(text: str, minimum: int, wanted: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {wanted}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text!r}: expected {wanted}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    return _integer(text, 1, "a positive integer")


def _number(text: str) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a number") from None


def non_negative_int(text: str) -> int:
    """An integer >= 0 (a random seed, a count that may be zero)."""
    return _integer(text, 0, "an integer >= 0")


def name_token(text: str) -> str:
    """A name that becomes part of file names: 1-64 letters, digits, '_', '-' or '.', not starting with '.'."""
    import re

    if not re.fullmatch(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]{0,63}", str(text)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected 1-64 letters, digits, '_', '-' or '.' "
                                         "(it becomes part of file names)")
    return str(text)


def finite_float(text: str) -> float:
    """A finite number (no nan or inf)."""
    value = _number(text)
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number")
    return value


def positive_float(text: str) -> float:
    """A finite number > 0."""
    value = _number(text)
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number > 0")
    return value


def non_negative_float(text: str) -> float:
    """A finite number >= 0."""
    value = _number(text)
    if not (math.isfinite(value) and value >= 0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a finite number >= 0")
    return value


def latitude(text: str) -> float:
    """A latitude or declination in degrees, -90..90."""
    value = _number(text)
    if not (math.isfinite(value) and -90.0 <= value <= 90.0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected degrees from -90 to 90")
    return value


def right_ascension(text: str) -> float:
    """A right ascension or longitude in degrees, [0, 360)."""
    value = _number(text)
    if not (math.isfinite(value) and 0.0 <= value < 360.0):
        raise argparse.ArgumentTypeError(f"{text!r}: expected degrees in [0, 360)")
    return value


def iso_time(text: str):
    """A UTC date and time in ISO form (``2027-06-01T00:00:00``, ``2027-06-01 12:00``, ``2027-06-01``),
    as an astropy ``Time``."""
    from astropy.time import Time

    for fmt in ("isot", "iso"):
        try:
            return Time(str(text).strip().removesuffix("Z"), format=fmt, scale="utc")
        except ValueError:
            continue
    raise argparse.ArgumentTypeError(f"{text!r}: expected a UTC date and time such as 2027-06-01T00:00:00")


def memory_size(text: str) -> int:
    """A positive amount of memory, in bytes: ``8GiB``, ``500MB``, ``2e9``."""
    from dask.utils import parse_bytes

    problem = f"{text!r}: expected an amount of memory such as 8GiB or 500MB"
    if not any(c.isdigit() for c in str(text)):
        raise argparse.ArgumentTypeError(problem)
    try:
        value = parse_bytes(str(text).strip())
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(problem) from None
    if value <= 0:
        raise argparse.ArgumentTypeError(problem)
    return int(value)


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        return 255


def _check_writable_location(text: str) -> None:
    """Raise ArgumentTypeError unless ``text`` could be created: no part of it is a file, names fit."""
    absolute = os.path.abspath(text)
    if len(os.fsencode(absolute)) >= 4096:
        raise argparse.ArgumentTypeError(f"{text}: path too long")
    existing = absolute
    while not os.path.lexists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not a folder")
    name_max = _name_max(Path(existing))
    for part in Path(os.path.relpath(absolute, existing)).parts:
        if part != "." and len(os.fsencode(part)) > name_max:
            raise argparse.ArgumentTypeError(f"{text}: name too long ({len(part)} characters, at most {name_max})")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise argparse.ArgumentTypeError(f"{text}: {existing} is not writable")


def output_dir(text: str) -> str:
    """A folder products can be written to: an existing folder, or one that can be created. Nothing is
    created here."""
    if not str(text):
        raise argparse.ArgumentTypeError("'': expected a folder")
    if os.path.lexists(text) and not os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: exists and is not a folder")
    _check_writable_location(str(text))
    return str(text)


def output_file(text: str) -> str:
    """A file that can be written: not a folder, in a folder that exists or can be created. Nothing is
    created here."""
    if not str(text) or str(text).endswith(("/", os.sep)):
        raise argparse.ArgumentTypeError(f"{text!r}: expected a file name")
    if os.path.isdir(text):
        raise argparse.ArgumentTypeError(f"{text}: is a folder, expected a file name")
    _check_writable_location(str(text))
    return str(text)


def add_output_dir(parser, *, required: bool = False, help: str = "folder for the products") -> None:
    parser.add_argument("-o", "--output-dir", type=output_dir, required=required, metavar="DIR", help=help)


def add_size(parser, *, default=N_PIX_SCIENCE) -> None:
    parser.add_argument("--size", type=science_size, default=default, metavar="SIZE",
                        help=f"science pixels per detector side: full ({N_PIX_SCIENCE}), small "
                             f"({SMALL_SCIENCE_SIZE}) or a number such as 504 (default {default})")


def add_detectors(parser, *, default, help: str = "detectors, or all") -> None:
    parser.add_argument("--detectors", nargs="+", type=detector, default=default, metavar="WFInn",
                        help=f"{help} (default: {' '.join(default)})")


def add_ma_table(parser, *, default) -> None:
    parser.add_argument("--ma-table", type=int, default=default, choices=sorted(MA_TABLES), metavar="N",
                        help=f"MA table number, one of {', '.join(map(str, sorted(MA_TABLES)))} (default {default})")


def verbosity_parent() -> argparse.ArgumentParser:
    """Parent parser giving a sub-command ``-v/--verbose`` and ``-q/--quiet``."""
    parent = argparse.ArgumentParser(add_help=False)
    group = parent.add_mutually_exclusive_group()
    group.add_argument("-v", "--verbose", action="count", default=0,
                       help="more messages on standard error (-vv: debugging)")
    group.add_argument("-q", "--quiet", action="store_true",
                       help="only errors on standard error: no progress bars, no warnings")
    return parent


def add_command(subparsers, name: str, **kwargs) -> ArgumentParser:
    """A sub-command parser with the shared ``-v``/``-q`` options; ``args.command_name`` is its full name."""
    parser = subparsers.add_parser(name, parents=[verbosity_parent()], **kwargs)
    parser.set_defaults(command_name=parser.prog)
    return parser


def progress_bar(args, **kwargs):
    """A tqdm bar on standard error when it is a terminal, silent under ``-q``; a bar ended by an error is
    erased, so that the error stays the one line shown."""
    from tqdm import tqdm

    class ErasedOnError(tqdm):
        def __exit__(self, exc_type, exc_value, tb):
            if exc_type is not None:
                self.leave = False
            return super().__exit__(exc_type, exc_value, tb)

    quiet = bool(getattr(args, "quiet", False))
    return ErasedOnError(file=sys.stderr, disable=True if quiet else None, **kwargs)


class _OneLineFormatter(logging.Formatter):
    def __init__(self, command: str):
        super().__init__()
        self.command = command

    def format(self, record):
        message = record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"{self.command}: {record.levelname.lower()}: {message}"
        if record.levelno <= logging.DEBUG:
            return f"{self.command}: debug: {record.name}: {message}"
        return f"{self.command}: {message}"


def configure_logging(command: str, *, verbose: int = 0, quiet: bool = False):
    """Send romanflow's log records and Python warnings to standard error, one line each.

    Level: WARNING by default, INFO with ``-v``, DEBUG with ``-vv``, ERROR with ``-q``. Returns a
    function that undoes the configuration (the command may run inside a longer-lived process).
    """
    level = logging.ERROR if quiet else (logging.WARNING, logging.INFO, logging.DEBUG)[min(int(verbose), 2)]
    logger = logging.getLogger("romanflow")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLineFormatter(command))
    old_level, old_propagate = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False
    old_showwarning = warnings.showwarning

    def showwarning(message, category, filename, lineno, file=None, line=None):
        logging.getLogger("romanflow.warnings").warning(f"{message} ({category.__name__})"
                                                        if category is not UserWarning else f"{message}")

    warnings.showwarning = showwarning

    def restore():
        logger.removeHandler(handler)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
        warnings.showwarning = old_showwarning

    return restore
