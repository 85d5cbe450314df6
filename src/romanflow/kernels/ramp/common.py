"""What both ramp fits share: the result type, input preparation, the per-pixel output step, and the
GLS fit of resultant differences with its jump test."""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from romanflow.detector import ReadPattern
from romanflow.kernels.checks import resultant_cube

#: χ² improvement that declares a cosmic-ray hit split between the two differences around a
#: multi-read resultant (:func:`jump_chi2`): 4.75², as for one difference, since the pair is
#: one jump at an unknown split, like the single difference is one jump at an unknown read.
PAIR_THRESHOLD = 4.75**2


class RampFit(NamedTuple):
    """Result of a ramp fit, one value per pixel unless stated.

    Attributes
    ----------
    slope : float32 (ny, nx)
        Count rate (DN/s); NaN where ``pixeldq`` has DO_NOT_USE.
    var_poisson : float32 (ny, nx)
        Poisson variance of the rate ((DN/s)²), evaluated at max(slope, 0).
    var_rnoise : float32 (ny, nx)
        Read-noise variance of the rate ((DN/s)²).
    groupdq : uint8 (n_resultants, ny, nx)
        Input resultant flags with JUMP_DET added where jumps were found.
    pixeldq : uint32 (ny, nx)
        JUMP_DET if any jump, SATURATED if any resultant is saturated (the
        pixel saturated during the exposure; its rate comes from the resultants
        before), DO_NOT_USE if at most one resultant is usable, every resultant
        is saturated or unusable, the rate is not finite or its error is not > 0.
    n_jumps : uint8 (ny, nx)
        Number of jumps found in each pixel.
    """

    slope: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    groupdq: np.ndarray
    pixeldq: np.ndarray
    n_jumps: np.ndarray

    @property
    def err(self) -> np.ndarray:
        """Total error of the rate (DN/s), sqrt(var_poisson + var_rnoise)."""
        return np.sqrt(self.var_poisson + self.var_rnoise)


def prepare_inputs(resultants, groupdq, read_noise, gain, read_pattern):
    """Contiguous float32 resultants (DN), uint8 flags, and read noise (DN) and gain (e⁻/DN) per pixel.

    Raises ``TypeError`` for a read pattern that is not a :class:`ReadPattern` and
    ``ValueError`` for shapes that do not match it.
    """
    if not isinstance(read_pattern, ReadPattern):
        raise TypeError("ramp fitting needs a ReadPattern (romanflow.detector.ReadPattern)")
    resultants = resultant_cube(resultants, read_pattern)
    n, ny, nx = resultants.shape
    resultants = np.ascontiguousarray(resultants, dtype=np.float32)
    if groupdq is None:
        groupdq = np.zeros(resultants.shape, dtype=np.uint8)
    else:
        groupdq = np.asarray(groupdq)
        if groupdq.shape != resultants.shape:
            raise ValueError(f"groupdq shape {groupdq.shape} differs from resultants shape {resultants.shape}")
        groupdq = np.ascontiguousarray(groupdq, dtype=np.uint8)
    read_noise = np.ascontiguousarray(np.broadcast_to(np.asarray(read_noise, dtype=np.float32), (ny, nx)))
    gain = np.ascontiguousarray(np.broadcast_to(np.asarray(gain, dtype=np.float32), (ny, nx)))
    return resultants, groupdq, read_noise, gain


def allocate_outputs(shape2d, n):
    """Empty output arrays of a fit, in :class:`RampFit` order, for (ny, nx) pixels and n resultants."""
    ny, nx = shape2d
    return (
        np.empty((ny, nx), np.float32),
        np.empty((ny, nx), np.float32),
        np.empty((ny, nx), np.float32),
        np.empty((n, ny, nx), np.uint8),
        np.empty((ny, nx), np.uint32),
        np.empty((ny, nx), np.uint8),
    )


@numba.njit(cache=True, inline="always")
def store_pixel(y, x, slope, vread, vpois, n_usable, saturated, n_jumps, slope_out, vread_out, vpois_out,
                pdq_out, njump_out):
    """Write one pixel's rate, variances and flags (4 jump, 2 saturated in some resultant, 1 no fit: NaNs)."""
    pdq = np.uint32(0)
    if n_jumps > 0:
        pdq |= np.uint32(4)
    if saturated:
        pdq |= np.uint32(2)
    if n_usable <= 1 or not math.isfinite(slope) or not (vread + vpois > 0):
        pdq |= np.uint32(1)
        slope = np.nan
        vread = np.nan
        vpois = np.nan
    slope_out[y, x] = slope
    vread_out[y, x] = vread
    vpois_out[y, x] = vpois
    pdq_out[y, x] = pdq
    njump_out[y, x] = min(n_jumps, 255)


@numba.njit(cache=True, inline="always")
def gls_differences(d, use, m, fcov, rn2, ginv, arn, aph, brn, bph, a_diag, b_off, inv_fwd, y, z):
    """GLS rate of the used resultant differences ``d`` (DN/s) at covariance rate ``fcov`` (DN/s).

    The covariance of the differences is tridiagonal: diagonal rn2·arn + fcov/gain·aph,
    adjacent terms rn2·brn + fcov/gain·bph (see :func:`.tables.difference_covariance`);
    rn2 is the read noise squared (DN²), ginv 1/gain (DN/e⁻). Fills ``a_diag``/``b_off``
    (the covariance, unused differences decoupled with unit variance), ``inv_fwd``
    (inverse LDLᵀ pivots), ``y`` = C⁻¹u for the use indicator u and ``z`` = C⁻¹(d − rate·u).
    Returns (rate, uᵀC⁻¹u).
    """
    q = fcov * ginv
    for i in range(m):
        ui = 1.0 if use[i] else 0.0
        a = rn2 * arn[i] + q * aph[i] if use[i] else 1.0
        vi = d[i] * ui
        if i > 0:
            b = rn2 * brn[i - 1] + q * bph[i - 1] if (use[i] and use[i - 1]) else 0.0
            b_off[i - 1] = b
            l = b * inv_fwd[i - 1]
            a_diag[i] = a
            a -= l * b
            ui -= l * y[i - 1]
            vi -= l * z[i - 1]
        else:
            a_diag[i] = a
        inv_fwd[i] = 1.0 / a
        y[i] = ui
        z[i] = vi
    y[m - 1] *= inv_fwd[m - 1]
    z[m - 1] *= inv_fwd[m - 1]
    for i in range(m - 2, -1, -1):
        y[i] = (y[i] - b_off[i] * y[i + 1]) * inv_fwd[i]
        z[i] = (z[i] - b_off[i] * z[i + 1]) * inv_fwd[i]
    s_tot = 0.0
    num = 0.0
    for i in range(m):
        if use[i]:
            s_tot += y[i]
            num += y[i] * d[i]
    rate = num / s_tot
    for i in range(m):
        z[i] -= rate * y[i]
    return rate, s_tot


@numba.njit(cache=True, inline="always")
def jump_chi2(use, m, pair_ok, a_diag, b_off, inv_fwd, y, z, s_tot):
    """Largest χ² improvements from freeing one used difference or an adjacent pair.

    Works on the state :func:`gls_differences` leaves. Freeing difference i fits it an
    extra signal z_i/P_ii (P = C⁻¹ − C⁻¹uuᵀC⁻¹/uᵀC⁻¹u) and lowers χ² by z_i²/P_ii; only
    added signal counts (charge from a cosmic ray). A hit inside a multi-read resultant
    puts part of its charge in the difference before that resultant and the rest in the
    one after; freeing both (pairs where ``pair_ok``) lowers χ² by z₂ᵀP₂⁻¹z₂, counted
    only when both fitted extra signals are positive, so the pair is the one-parameter
    family "one jump at some split of the resultant" and not any two-difference outlier.
    Returns (best single, its difference, best pair, its first difference); -1 where none.
    """
    best1 = -1.0
    arg1 = -1
    best2 = -1.0
    arg2 = -1
    q_next = 0.0
    p_next = 0.0
    inv_bwd_next = 0.0  # inverse backward pivot of row i+1
    for i in range(m - 1, -1, -1):
        hi = b_off[i] * b_off[i] * inv_bwd_next if i < m - 1 else 0.0
        inv_bwd = 1.0 / (a_diag[i] - hi)
        if use[i]:
            lo = b_off[i - 1] * b_off[i - 1] * inv_fwd[i - 1] if i > 0 else 0.0
            q_ii = 1.0 / (a_diag[i] - lo - hi)  # (C⁻¹)_ii
            p_ii = q_ii - y[i] * y[i] / s_tot
            if p_ii > 0:
                if z[i] > 0 and z[i] * z[i] > best1 * p_ii:
                    best1 = z[i] * z[i] / p_ii
                    arg1 = i
                if i < m - 1 and use[i + 1] and pair_ok[i] and p_next > 0:
                    q_off = -b_off[i] * inv_fwd[i] * q_next  # (C⁻¹)_{i,i+1}
                    p_off = q_off - y[i] * y[i + 1] / s_tot
                    det = p_ii * p_next - p_off * p_off
                    # extra signals det·(α, β) of the two freed differences; a degenerate
                    # pair (no other difference to fix the rate) has det ~ 0
                    alpha = p_next * z[i] - p_off * z[i + 1]
                    beta = p_ii * z[i + 1] - p_off * z[i]
                    if det > 1e-9 * p_ii * p_next and alpha > 0 and beta > 0:
                        dchi2 = (alpha * z[i] + beta * z[i + 1]) / det
                        if dchi2 > best2:
                            best2 = dchi2
                            arg2 = i
            q_next = q_ii
            p_next = p_ii
        else:
            p_next = 0.0
        inv_bwd_next = inv_bwd
    return best1, arg1, best2, arg2
