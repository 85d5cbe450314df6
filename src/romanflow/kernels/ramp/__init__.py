"""Ramp fitting with jump detection for unevenly sampled resultants.

Two estimators of the count rate of every pixel from its resultants (means of
non-destructive reads, as defined by the exposure's read pattern):

``fit_ramps_casertano`` (:mod:`.casertano`)
    Optimally weighted least squares of Casertano (2022), segments split at
    flagged resultants and jumps.
``fit_ramps_likely`` (:mod:`.likely`)
    Likelihood fit of Brandt (2024) on resultant differences with their
    tridiagonal covariance.

:func:`fit_ramps` picks one by name. The per-read-pattern tables are in
:mod:`.tables`; the result type, the per-pixel output step and the GLS jump test
on resultant differences (the likelihood fit's, and the Casertano fit's for hits
split across a multi-read resultant) in :mod:`.common`.

Both are pure kernels: arrays in, arrays out, no metadata. Units: resultants
in DN, read noise in DN per read, gain in e⁻/DN; rates in DN/s and variances
in (DN/s)². Poisson variances are computed in electrons and converted back.
The per-pixel loops are numba-compiled and parallel over image rows; all
per-pixel arithmetic is float64 while the cubes stay float32/uint8.
"""

from __future__ import annotations

from romanflow.detector import ReadPattern
from romanflow.kernels.ramp.casertano import fit_ramps_casertano
from romanflow.kernels.ramp.common import RampFit
from romanflow.kernels.ramp.likely import LIKELY_THRESHOLD_ONE, LIKELY_THRESHOLD_TWO, fit_ramps_likely
from romanflow.kernels.ramp.tables import POWER_THRESHOLDS, POWERS

__all__ = [
    "DEFAULT_METHOD",
    "LIKELY_THRESHOLD_ONE",
    "LIKELY_THRESHOLD_TWO",
    "METHODS",
    "POWERS",
    "POWER_THRESHOLDS",
    "RampFit",
    "fit_ramps",
    "fit_ramps_casertano",
    "fit_ramps_likely",
]

#: Ramp-fitting methods by name.
METHODS = ("casertano", "likely")
#: Method used when none is named (see benchmarks/ramp_methods.py for why).
DEFAULT_METHOD = "casertano"


def fit_ramps(resultants, groupdq, read_noise, gain, read_pattern: ReadPattern, *, method: str = DEFAULT_METHOD,
              detect_jumps: bool = True, **options) -> RampFit:
    """Fit ramps with the named method (``'casertano'``, the default, or ``'likely'``).

    Both give the same bias and error honesty; Casertano is about twice as
    fast (the figures are in benchmarks/ramp_methods.py), likely finds slightly
    more of the faint jumps.

    See :func:`fit_ramps_likely` and :func:`fit_ramps_casertano` for the
    arguments (DN, flags, DN per read, e⁻/DN) and the method options.
    """
    if method == "casertano":
        return fit_ramps_casertano(resultants, groupdq, read_noise, gain, read_pattern,
                                   detect_jumps=detect_jumps, **options)
    if method == "likely":
        return fit_ramps_likely(resultants, groupdq, read_noise, gain, read_pattern,
                                detect_jumps=detect_jumps, **options)
    raise ValueError(f"unknown ramp-fitting method {method!r}: expected one of {', '.join(METHODS)}")
