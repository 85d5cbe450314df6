"""Ramp fitting by maximum likelihood on resultant differences (Brandt 2024), with jump detection.

Resultant differences d_i = ΔR_i/Δt̄_i have a tridiagonal covariance (read
noise + Poisson), so the generalised least-squares rate and its χ² come from
O(n) tridiagonal algebra. The covariance is evaluated at a rate first guessed
from the median difference and then at the fitted rate. Jumps: the single
difference (or adjacent pair sharing a multi-read resultant) whose removal
lowers χ² the most is dropped while the improvement exceeds 4.75² (pair: 26.2,
the χ²₂ value at the same p-value), then the fit is repeated. Only differences
that rise above the fit count (cosmic rays add charge), which halves the false
jumps of a two-sided test.

Units: resultants in DN, read noise in DN per read, gain in e⁻/DN; rates in
DN/s and variances in (DN/s)².
"""

from __future__ import annotations

import math
import warnings

import numba
import numpy as np
from numba import prange

from romanflow.detector import ReadPattern
from romanflow.kernels.ramp.casertano import fit_ramps_casertano
from romanflow.kernels.ramp.common import RampFit, allocate_outputs, prepare_inputs, store_pixel
from romanflow.kernels.ramp.tables import difference_tables

#: Likelihood jump thresholds: χ² improvement for dropping one difference (4.75σ), and for
#: dropping an adjacent pair (the χ²₂ quantile at the same p-value, 26.2). At 4.5σ (23.8 for
#: pairs) about 1e-4 of clean read-noise-dominated pixels got a false jump.
LIKELY_THRESHOLD_ONE = 4.75**2
LIKELY_THRESHOLD_TWO = -2.0 * math.log(math.erfc(4.75 / math.sqrt(2.0)))


@numba.njit(cache=True, inline="always")
def _likely_solve(d, use, m, fcov, rn2, ginv, arn, aph, brn, bph, a_diag, b_off, inv_fwd, y, z):
    """GLS fit of the used differences at covariance rate ``fcov`` (DN/s).

    Fills ``a_diag``/``b_off`` (the covariance, unused differences decoupled
    with unit variance), ``inv_fwd`` (inverse LDLᵀ pivots), ``y`` = C⁻¹u for
    the use indicator u and ``z`` = C⁻¹(d − rate·u). Returns (rate, uᵀC⁻¹u).
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


@numba.njit(cache=True, parallel=True)
def _likely_kernel(resultants, groupdq, read_noise, gain, dt1, arn, aph, brn, bph, pair_ok, detect_jumps,
                   thr_one, thr_two, slope_out, vpois_out, vread_out, gdq_out, pdq_out, njump_out):
    """Fit every pixel, rows in parallel, into the ``*_out`` arrays (see :func:`fit_ramps_likely`).

    resultants float32 (n, ny, nx) DN; groupdq uint8; read_noise (DN per read) and gain (e⁻/DN)
    float32 (ny, nx); dt1: Δt̄ of single differences (s); arn, aph: diagonal read (1/s²) and
    Poisson (1/s) covariance factors of the differences, brn, bph: the adjacent off-diagonal
    ones; pair_ok: whether adjacent differences share a multi-read resultant; thr_one, thr_two:
    χ² improvements to drop one difference or a pair.
    """
    n, ny, nx = resultants.shape
    m = n - 1
    for y in prange(ny):
        r = np.empty(n)
        flags = np.empty(n, np.uint8)
        d = np.empty(m)
        use = np.empty(m, np.bool_)
        a_diag = np.empty(m)
        b_off = np.empty(max(m - 1, 1))
        inv_fwd = np.empty(m)
        yv = np.empty(m)
        zv = np.empty(m)
        srt = np.empty(m)
        for x in range(nx):
            rn2 = max(float(read_noise[y, x]) ** 2, 1e-8)
            g = float(gain[y, x])
            if not g > 0:
                g = 1.0
            ginv = 1.0 / g
            n_usable = 0
            n_sat = 0
            for i in range(n):
                r[i] = resultants[i, y, x]
                f = groupdq[i, y, x]
                gdq_out[i, y, x] = f
                if not math.isfinite(r[i]):
                    f = f | 1
                flags[i] = f
                if f == 0:
                    n_usable += 1
                if f & 2:
                    n_sat += 1
            n_use = 0
            for i in range(m):
                use[i] = flags[i] == 0 and flags[i + 1] == 0
                d[i] = (r[i + 1] - r[i]) / dt1[i]
                if use[i]:
                    n_use += 1
            n_jumps = 0
            slope = np.nan
            vread = np.nan
            vpois = np.nan
            if n_use > 0:
                first = True
                while True:
                    # covariance rate: median of the used differences, >= 0
                    k = 0
                    for i in range(m):
                        if use[i]:
                            v = d[i]
                            j = k
                            while j > 0 and srt[j - 1] > v:
                                srt[j] = srt[j - 1]
                                j -= 1
                            srt[j] = v
                            k += 1
                    med = srt[k // 2] if k % 2 == 1 else 0.5 * (srt[k // 2 - 1] + srt[k // 2])
                    fcov = max(med, 0.0)
                    rate, s_tot = _likely_solve(d, use, m, fcov, rn2, ginv, arn, aph, brn, bph, a_diag, b_off,
                                                inv_fwd, yv, zv)
                    if not detect_jumps or n_use < 3 or (not first and n_use <= 3):
                        break
                    first = False
                    # χ² improvement from freeing one difference (or an adjacent pair)
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
                            q_ii = 1.0 / (a_diag[i] - lo - hi)
                            p_ii = q_ii - yv[i] * yv[i] / s_tot
                            # only positive jumps (charge added): the fitted extra signal of a
                            # freed difference is z_i/p_ii, of a freed pair the sum of P₂⁻¹z₂
                            if p_ii > 0:
                                dchi = zv[i] * zv[i] / p_ii
                                if zv[i] > 0 and dchi > best1:
                                    best1 = dchi
                                    arg1 = i
                                if i < m - 1 and use[i + 1] and pair_ok[i]:
                                    q_off = -b_off[i] * inv_fwd[i] * q_next
                                    p_off = q_off - yv[i] * yv[i + 1] / s_tot
                                    det = p_ii * p_next - p_off * p_off
                                    added = (p_next - p_off) * zv[i] + (p_ii - p_off) * zv[i + 1]
                                    if det > 0 and added > 0:
                                        dchi2 = (p_next * zv[i] * zv[i] - 2 * p_off * zv[i] * zv[i + 1]
                                                 + p_ii * zv[i + 1] * zv[i + 1]) / det
                                        if dchi2 > best2:
                                            best2 = dchi2
                                            arg2 = i
                            q_next = q_ii
                            p_next = p_ii
                        inv_bwd_next = inv_bwd
                    one_better = best1 - thr_one > best2 - thr_two
                    if one_better and best1 > thr_one:
                        use[arg1] = False
                        n_use -= 1
                        gdq_out[arg1 + 1, y, x] |= 4
                        n_jumps += 1
                    elif (not one_better) and best2 > thr_two:
                        use[arg2] = False
                        use[arg2 + 1] = False
                        n_use -= 2
                        gdq_out[arg2 + 1, y, x] |= 4
                        n_jumps += 1
                    else:
                        break
                    if n_use == 0:
                        break
                if n_use > 0:
                    # rate iteration: covariance at the fitted rate, then the final fit
                    rate, s_tot = _likely_solve(d, use, m, max(rate, 0.0), rn2, ginv, arn, aph, brn, bph,
                                                a_diag, b_off, inv_fwd, yv, zv)
                    slope = rate
                    vr = 0.0
                    vp = 0.0
                    for i in range(m):
                        if use[i]:
                            w = yv[i] / s_tot
                            vr += w * w * arn[i]
                            vp += w * w * aph[i]
                            if i < m - 1 and use[i + 1]:
                                w2 = yv[i + 1] / s_tot
                                vr += 2 * w * w2 * brn[i]
                                vp += 2 * w * w2 * bph[i]
                    vread = rn2 * vr
                    vpois = vp * ginv * max(slope, 0.0)
            store_pixel(y, x, slope, vread, vpois, n_usable, n_sat > 0, n_jumps, slope_out, vread_out, vpois_out,
                         pdq_out, njump_out)


def fit_ramps_likely(resultants, groupdq, read_noise, gain, read_pattern: ReadPattern, *,
                     detect_jumps: bool = True, threshold_one: float = LIKELY_THRESHOLD_ONE,
                     threshold_two: float = LIKELY_THRESHOLD_TWO, threshold_intercept: float = 5.5,
                     threshold_constant: float = 1 / 3) -> RampFit:
    """Fit ramps by maximum likelihood on resultant differences (Brandt 2024).

    Parameters
    ----------
    resultants, groupdq, read_noise, gain, read_pattern
        As for :func:`fit_ramps_casertano` (DN, flags, DN per read, e⁻/DN).
        A flagged resultant removes both differences it enters.
    detect_jumps : bool
        Drop jump-contaminated differences and refit.
    threshold_one : float
        χ² improvement needed to drop one difference (default 4.75²).
    threshold_two : float
        χ² improvement needed to drop an adjacent pair of differences that
        share a multi-read resultant (default 26.2).
    threshold_intercept, threshold_constant : float
        Used only by the Casertano fallback for fewer than 4 resultants.

    Returns
    -------
    RampFit
        A dropped difference i (resultants i → i+1) flags resultant i+1 with
        JUMP_DET; a dropped pair i, i+1 flags their shared resultant i+1.

    Notes
    -----
    Needs at least 4 resultants to tell a jump from noise; with fewer it
    warns and returns :func:`fit_ramps_casertano` instead.
    """
    resultants, groupdq, read_noise, gain = prepare_inputs(resultants, groupdq, read_noise, gain, read_pattern)
    n, ny, nx = resultants.shape
    if n < 4:
        warnings.warn(
            f"the likelihood ramp fit needs at least 4 resultants (got {n}); using the Casertano fit instead",
            RuntimeWarning, stacklevel=2,
        )
        return fit_ramps_casertano(resultants, groupdq, read_noise, gain, read_pattern,
                                   detect_jumps=detect_jumps, threshold_intercept=threshold_intercept,
                                   threshold_constant=threshold_constant)
    dt1, rf1, pf1, _, _, _, off_read, off_poisson, pair_ok = difference_tables(read_pattern)
    arn = rf1 / dt1**2
    aph = pf1 / dt1**2
    brn = off_read / (dt1[1:] * dt1[:-1])
    bph = off_poisson / (dt1[1:] * dt1[:-1])
    if brn.size == 0:
        brn = np.zeros(1)
        bph = np.zeros(1)
    out = allocate_outputs((ny, nx), n)
    _likely_kernel(resultants, groupdq, read_noise, gain, dt1, arn, aph, brn, bph, pair_ok,
                   bool(detect_jumps), float(threshold_one), float(threshold_two), *out)
    return RampFit(*out)

