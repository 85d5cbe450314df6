"""Numerical kernels shared by steps: pure functions on arrays.

Kernels take arrays and numbers (units in each docstring), never files or metadata, and import
nothing from romanflow but its base modules. Arrays that do not fit together, a wrong dtype or an
unknown option raise the built-in ``ValueError`` / ``TypeError``; the callers that read a user's
files check them first (see :mod:`romanflow.errors`).
"""
