"""Classic non-linearity correction of resultants.

Pure kernel: resultants (DN) and the correction polynomial coefficients in,
linearised resultants (DN) and a NO_LIN_CORR pixel mask out. The correction is
linear = Σ_k c_k m^k evaluated by Horner's method on each unsaturated
resultant.

Non-linearity acts on every read, but a resultant is the mean of its reads, and
the polynomial of a mean is not the mean of the polynomial: for a resultant of
reads m_j with mean M, mean(c(m_j)) ≈ c(M) + ½ c''(M) Var(m_j). With a read
pattern given, the kernel adds this term, rebuilding the spread of the reads
from the ramp itself: the rate per frame is estimated from the first and last
unflagged linearised resultants, converted to measured units by c'(M), and
Var(m_j) = (rate/c'(M))² · Var(read numbers of the resultant). The cubic
polynomial has no odd third-moment term for evenly spaced reads, so this is
the read-reconstruction correction to second order.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from romanflow import dq
from romanflow.detector import ReadPattern


@numba.njit(cache=True, parallel=True)
def _linearity_kernel(resultants, coeffs, groupdq, mean_reads, var_reads, use_reads, out, no_lin):
    """Row by row, resultant plane by plane (contiguous inner loops over x); float64 arithmetic."""
    n, ny, nx = resultants.shape
    nc = coeffs.shape[0]
    for y in prange(ny):
        ok = np.empty(nx, np.bool_)
        first = np.full(nx, -1, np.int64)
        last = np.full(nx, -1, np.int64)
        rate = np.zeros(nx)
        lin = np.empty((n, nx))
        for x in range(nx):
            good = True
            for k in range(nc):
                if not math.isfinite(coeffs[k, y, x]):
                    good = False
            ok[x] = good
            no_lin[y, x] = not good
        for i in range(n):
            for x in range(nx):
                m = float(resultants[i, y, x])
                if not ok[x] or (groupdq[i, y, x] & 2):
                    lin[i, x] = m
                    continue
                v = float(coeffs[nc - 1, y, x])
                for k in range(nc - 2, -1, -1):
                    v = v * m + coeffs[k, y, x]
                lin[i, x] = v
                if groupdq[i, y, x] == 0:  # the rate comes from clean resultants only: one flagged
                    if first[x] < 0:     # DO_NOT_USE before saturation may hold reads past full well
                        first[x] = i
                    last[x] = i
        if use_reads:
            for x in range(nx):
                f, la = first[x], last[x]
                if ok[x] and la > f >= 0:
                    rate[x] = (lin[la, x] - lin[f, x]) / (mean_reads[la] - mean_reads[f])  # DN per frame
            for i in range(n):
                if var_reads[i] <= 0:
                    continue
                for x in range(nx):
                    f, la = first[x], last[x]
                    if not ok[x] or not la > f >= 0 or (groupdq[i, y, x] & 2):
                        continue
                    m = float(resultants[i, y, x])
                    d1 = 0.0
                    d2 = 0.0
                    for k in range(nc - 1, 0, -1):  # derivatives by Horner
                        d1 = d1 * m + k * coeffs[k, y, x]
                    for k in range(nc - 1, 1, -1):
                        d2 = d2 * m + k * (k - 1) * coeffs[k, y, x]
                    if d1 > 0:
                        s = rate[x] / d1
                        lin[i, x] += 0.5 * d2 * s * s * var_reads[i]
        for i in range(n):
            for x in range(nx):
                if ok[x]:
                    out[i, y, x] = lin[i, x]
                else:
                    out[i, y, x] = resultants[i, y, x]


def correct_linearity(resultants, coeffs, groupdq=None, *, read_pattern: ReadPattern | None = None,
                      inplace: bool = False):
    """Linearise resultants with the correction polynomial.

    Parameters
    ----------
    resultants : array (n_resultants, ny, nx)
        Resultants (DN) on the scale the coefficients were measured on.
    coeffs : array (n_coeffs, ny, nx)
        Correction polynomial: linear = Σ_k coeffs[k] m^k (DN). A pixel with
        any non-finite coefficient is left unchanged and reported.
    groupdq : uint8 array (n_resultants, ny, nx), optional
        Resultants with SATURATED set are left unchanged.
    read_pattern : ReadPattern, optional
        If given, add the second-order term for averaging non-linear reads
        (see the module notes); without it each resultant is treated as one read.
    inplace : bool
        Write into ``resultants`` (must then be a float32 C-contiguous array).

    Returns
    -------
    corrected : float32 array (n_resultants, ny, nx)
        Linearised resultants (DN).
    no_lin_corr : bool array (ny, nx)
        Pixels left uncorrected (add dq.NO_LIN_CORR to their pixel flags).
    """
    resultants = np.asarray(resultants)
    if resultants.ndim != 3:
        raise ValueError(f"resultants must be 3-D (n_resultants, ny, nx), got shape {resultants.shape}")
    n, ny, nx = resultants.shape
    coeffs = np.ascontiguousarray(coeffs, dtype=np.float32)
    if coeffs.ndim != 3 or coeffs.shape[1:] != (ny, nx) or coeffs.shape[0] < 1:
        raise ValueError(f"linearity coefficients of shape {coeffs.shape} do not match resultants {resultants.shape}")
    if groupdq is None:
        groupdq = np.zeros((1, 1, 1), np.uint8)
        groupdq = np.broadcast_to(groupdq, resultants.shape)
    groupdq = np.ascontiguousarray(groupdq, dtype=np.uint8)
    if inplace:
        if resultants.dtype != np.float32 or not resultants.flags.c_contiguous:
            raise TypeError("in-place linearity correction needs a C-contiguous float32 resultant array")
        out = resultants
    else:
        resultants = np.ascontiguousarray(resultants, dtype=np.float32)
        out = np.empty_like(resultants)
    if read_pattern is not None:
        if read_pattern.n_resultants != n:
            raise ValueError(
                f"resultants have {n} planes but the read pattern describes {read_pattern.n_resultants} resultants")
        mean_reads = np.array([np.mean(r) for r in read_pattern.read_pattern], dtype=np.float64)
        var_reads = np.array([np.var(r) for r in read_pattern.read_pattern], dtype=np.float64)
    else:
        mean_reads = np.arange(n, dtype=np.float64)
        var_reads = np.zeros(n)
    no_lin = np.empty((ny, nx), dtype=np.bool_)
    _linearity_kernel(resultants, coeffs, groupdq, mean_reads, var_reads, read_pattern is not None, out, no_lin)
    return out, no_lin


#: Pixel flag to set where ``no_lin_corr`` is True.
NO_LIN_CORR = dq.NO_LIN_CORR
