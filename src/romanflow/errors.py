"""Errors romanflow raises for problems a user can fix."""

from __future__ import annotations


class RomanflowError(Exception):
    """A problem with the input or the request, reported as one clear line."""


class InputFileError(RomanflowError):
    """A file cannot be used: it names the file and the problem."""

    def __init__(self, path, problem: str):
        self.path = str(path)
        self.problem = problem
        super().__init__(f"{self.path}: {problem}")


class ReferenceSelectionError(RomanflowError):
    """No reference file matches a reference type and exposure parameters."""
