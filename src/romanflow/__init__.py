"""romanflow: Roman WFI data processing end to end — simulate, calibrate, mosaic, catalog.

``romanflow.simulate(...)`` and ``romanflow.calibrate(...)`` call the main function of the package of
the same name; the packages themselves stay importable (``from romanflow.calibrate import
CalibrationOptions``) and are loaded on first use, so that ``import romanflow`` stays fast.
"""

from __future__ import annotations

import importlib
import sys
import types

from romanflow.errors import InputFileError, RomanflowError
from romanflow.version import __version__

__all__ = ["__version__", "RomanflowError", "InputFileError", "simulate", "calibrate"]

#: Packages that can be called as their main function of the same name.
_CALLABLE_PACKAGES = ("simulate", "calibrate")


class _CallablePackage(types.ModuleType):
    """A package that is also its main function: ``romanflow.calibrate(...)`` is ``romanflow.calibrate.calibrate(...)``."""

    def __call__(self, *args, **kwargs):
        return getattr(self, self.__name__.rpartition(".")[2])(*args, **kwargs)


class _RomanflowPackage(types.ModuleType):
    # Importing a submodule binds it as an attribute of its parent package; making the bound module
    # callable keeps ``romanflow.calibrate(...)`` working whichever way the package was imported first.
    def __setattr__(self, name, value):
        if name in _CALLABLE_PACKAGES and type(value) is types.ModuleType:
            value.__class__ = _CallablePackage
        super().__setattr__(name, value)


def __getattr__(name):
    if name in _CALLABLE_PACKAGES:
        importlib.import_module(f"romanflow.{name}")  # the import binds the (callable) package here
        return sys.modules[f"romanflow.{name}"]
    raise AttributeError(f"module 'romanflow' has no attribute {name!r}")


sys.modules[__name__].__class__ = _RomanflowPackage
