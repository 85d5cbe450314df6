"""romanflow: Roman WFI data processing end to end — simulate, calibrate, mosaic, catalog."""

from __future__ import annotations

from romanflow.errors import InputFileError, RomanflowError
from romanflow.version import __version__

__all__ = ["__version__", "RomanflowError", "InputFileError", "simulate", "calibrate"]


def __getattr__(name):
    # Heavy levels load on first use so that `import romanflow` stays fast.
    if name == "simulate":
        from romanflow.simulate import simulate

        return simulate
    if name == "calibrate":
        from romanflow.calibrate import calibrate

        return calibrate
    raise AttributeError(f"module 'romanflow' has no attribute {name!r}")
