"""Numerical kernels shared by steps: pure functions on arrays."""
