"""The errors romanflow raises, and the one rule that decides which to raise.

The rule
--------
* A problem the **user** can fix (a file that cannot be used, a parameter out of range, no reference
  file for an exposure, an output that would overwrite something) raises a subclass of
  :class:`RomanflowError`. Its message is one line naming the file or parameter and the problem; the
  command line prints exactly that line and exits with status 2.
* A broken **contract between two pieces of romanflow** (a kernel handed arrays of mismatched shapes, a
  wrong dtype, an unknown enum value passed by our own code) is a programming error: it raises the
  built-in ``ValueError`` / ``TypeError`` / ``RuntimeError``. The command line reports it as an internal
  error with its traceback and exits with status 1. Kernels in :mod:`romanflow.kernels` raise only these:
  they never see files, so they cannot name one; the wrapper that read the file validates it first.

Every class here pickles (``__reduce__`` rebuilds it from its constructor arguments), so an error raised
in a worker process (process pool, Dask) reaches the parent as the same class with the same message.
"""

from __future__ import annotations

__all__ = [
    "RomanflowError",
    "InputFileError",
    "ParameterError",
    "ReferenceSelectionError",
    "OutputExistsError",
]


def one_line(text) -> str:
    """``text`` with its lines joined by "; " (library messages often span several lines)."""
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


class RomanflowError(Exception):
    """A problem with the input or the request, reported to the user as one clear line."""

    def __reduce__(self):
        return (type(self), self.args)


class InputFileError(RomanflowError):
    """A file cannot be used.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    problem : str
        What is wrong with it, as a phrase ("not an ASDF file", "missing meta.exposure.start_time").
    """

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = one_line(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem))


class ParameterError(RomanflowError, ValueError):
    """A parameter's value cannot be used.

    Parameters
    ----------
    name : str
        The parameter as the user spells it (``--size``, ``science_size``).
    value : object
        The value given.
    problem : str
        Why it cannot be used, as a phrase ("must be a positive integer").
    """

    def __init__(self, name: str, value, problem: str):
        self.name = str(name)
        self.value = value
        self.problem = one_line(problem)
        super().__init__(f"{self.name}={value!r}: {self.problem}")

    def __reduce__(self):
        return (type(self), (self.name, self.value, self.problem))


class ReferenceSelectionError(RomanflowError):
    """No reference file matches a reference type and exposure parameters."""


class OutputExistsError(RomanflowError):
    """An output would replace something that exists and that the request did not allow replacing."""

    def __init__(self, path, problem: str = "exists; pass --overwrite to replace it"):
        self.path = str(path)
        self.problem = str(problem)
        super().__init__(f"{self.path}: {self.problem}")

    def __reduce__(self):
        return (type(self), (self.path, self.problem))
