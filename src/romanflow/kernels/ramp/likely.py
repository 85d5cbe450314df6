"""Ramp fitting by maximum likelihood on resultant differences (Brandt 2024), with jump detection.

Resultant differences d_i = ΔR_i/Δt̄_i have a tridiagonal covariance (read
noise + Poisson), so the generalised least-squares rate and its χ² come from
O(n) tridiagonal algebra. The covariance is evaluated at a rate first guessed
from the median difference (for the jump search, at the jump-free fit's rate
where that is higher) and then at the fitted rate. Jumps: the single
difference, or the adjacent pair around a multi-read resultant, whose removal
lowers χ² the most is dropped while the improvement exceeds 4.75², then the fit
is repeated. Only differences that rise above the fit count (cosmic rays add
charge), which halves the false jumps of a two-sided test. A pair counts only
when both its differences gain charge: that is a hit inside the resultant,
whose charge is split between the differences before and after it, with the
split as the one free parameter, so it takes the single difference's
threshold (see :func:`.common.jump_chi2`). With the χ²₂ value at the same
p-value (26.2) instead, 0.7 % of the hits of 10-30σ in MA table 4 went
unflagged (benchmarks/ramp_methods.py), nearly all inside multi-read resultants.

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
from romanflow.kernels.ramp.common import (
    PAIR_THRESHOLD,
    RampFit,
    allocate_outputs,
    gls_differences,
    jump_chi2,
    prepare_inputs,
    store_pixel,
)
from romanflow.kernels.ramp.tables import difference_covariance

#: Likelihood jump thresholds: χ² improvement for dropping one difference (4.75σ), and for
#: dropping an adjacent pair whose differences both gain charge (the same). At 4.5σ (pairs then
#: at the χ²₂ quantile, 23.8) about 1e-4 of clean read-noise-dominated pixels got a false jump.
LIKELY_THRESHOLD_ONE = 4.75**2
LIKELY_THRESHOLD_TWO = PAIR_THRESHOLD
#: A pair is dropped instead of the best single difference only if it lowers χ² by this much
#: more: a single jump next to an upward fluctuation then loses one difference, not two, and
#: keeps its flag on the resultant after the jump.
PAIR_MARGIN = 4.0


@numba.njit(cache=True, inline="always")
def _jump_choice(best1, arg1, best2, arg2, thr_one, thr_two, pair_margin):
    """What to drop given :func:`.common.jump_chi2`'s result: 2 the pair, 1 the single difference, 0 nothing.

    The pair when it stands out, unless the best single difference also does and the pair
    improves χ² by at most ``pair_margin`` more (a single jump next to an upward fluctuation).
    """
    if arg2 >= 0 and best2 > thr_two and not (best1 > thr_one and best2 - best1 <= pair_margin):
        return 2
    if arg1 >= 0 and best1 > thr_one:
        return 1
    return 0


@numba.njit(cache=True, parallel=True)
def _likely_kernel(resultants, groupdq, read_noise, gain, dt1, arn, aph, brn, bph, pair_ok, detect_jumps,
                   thr_one, thr_two, pair_margin, slope_out, vpois_out, vread_out, gdq_out, pdq_out, njump_out):
    """Fit every pixel, rows in parallel, into the ``*_out`` arrays (see :func:`fit_ramps_likely`).

    resultants float32 (n, ny, nx) DN; groupdq uint8; read_noise (DN per read) and gain (e⁻/DN)
    float32 (ny, nx); dt1: Δt̄ of single differences (s); arn, aph: diagonal read (1/s²) and
    Poisson (1/s) covariance factors of the differences, brn, bph: the adjacent off-diagonal
    ones; pair_ok: whether adjacent differences share a multi-read resultant; thr_one, thr_two:
    χ² improvements to drop one difference or a pair; pair_margin: how much more a pair must
    improve χ² than the best single difference to be dropped instead.
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
                    rate, s_tot = gls_differences(d, use, m, fcov, rn2, ginv, arn, aph, brn, bph, a_diag, b_off,
                                                  inv_fwd, yv, zv)
                    if not detect_jumps or n_use < 3 or (not first and n_use <= 3):
                        break
                    first = False
                    if rate > fcov:
                        # test at the covariance of the jump-free fit's own rate (the null
                        # hypothesis), or of the median where that is higher: a faint pixel's
                        # median is noisy, and the Poisson variance it missed made false jumps
                        rate, s_tot = gls_differences(d, use, m, rate, rn2, ginv, arn, aph, brn, bph, a_diag,
                                                      b_off, inv_fwd, yv, zv)
                    # χ² improvement from freeing one difference (or an adjacent pair)
                    best1, arg1, best2, arg2 = jump_chi2(use, m, pair_ok, a_diag, b_off, inv_fwd, yv, zv, s_tot)
                    drop = _jump_choice(best1, arg1, best2, arg2, thr_one, thr_two, pair_margin)
                    if drop == 0:
                        break
                    lo = arg2 if drop == 2 else arg1
                    for i in range(lo, lo + drop):
                        use[i] = False
                    n_use -= drop
                    gdq_out[lo + 1, y, x] |= 4
                    n_jumps += 1
                    if n_use == 0:
                        break
                if n_use > 0:
                    # rate iteration: covariance at the fitted rate, then the final fit
                    rate, s_tot = gls_differences(d, use, m, max(rate, 0.0), rn2, ginv, arn, aph, brn, bph,
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
        share a multi-read resultant, both gaining charge (default 4.75²).
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
    dt1, arn, aph, brn, bph, pair_ok = difference_covariance(read_pattern)
    out = allocate_outputs((ny, nx), n)
    _likely_kernel(resultants, groupdq, read_noise, gain, dt1, arn, aph, brn, bph, pair_ok,
                   bool(detect_jumps), float(threshold_one), float(threshold_two), PAIR_MARGIN, *out)
    return RampFit(*out)

