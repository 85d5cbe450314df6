"""Ramp fitting with the optimal weighting of Casertano (2022), with jump detection.

The ramp is split into segments at flagged resultants, each segment is fitted
with weights ``w_i = ((1+P)N_i/(1+P N_i)) |(t̄_i - t̄_mid)/t_half|^P`` whose
power P grows with the segment's expected signal-to-noise, and segments are
averaged with weights 1/(read-noise variance). The signal-to-noise that picks
P comes from a rate independent of the pixel's own noise: the trimmed mean of
its 8 neighbours' end-to-end rates. Weights chosen from the very values they
average bias the rate (+1.2 % at a 0.19 DN/s sky, S/N 4-5 next to the first
threshold); with fixed weights the fit is linear, hence unbiased. Jumps are found from single and double
resultant differences against a slope-dependent threshold; the two resultants
around the largest outlier are flagged and both sides are refitted
(repeatedly). The variance of each statistic (local slope − fitted slope) is
computed exactly from the resultant covariance, including the covariance of
the local and fitted slopes; the usual −rate/T approximation of that term
nearly cancels the variance of double differences spanning most of a short
segment and produced false jumps on bright, early-saturating pixels.

A hit inside a multi-read resultant splits its charge between the differences
before and after it, and the fitted slope absorbs part of it, so neither
statistic may reach the threshold. Where none does, the pair of differences
around each multi-read resultant is freed in the GLS fit of the segment's
differences (the likelihood fit's test, :func:`.common.jump_chi2`); a χ²
improvement above 4.75² flags that resultant alone and splits the segment
around it. Without this test 1.0 % of the hits of 10-30σ in MA table 4 went
unflagged (benchmarks/ramp_methods.py), nearly all inside multi-read resultants.

Units: resultants in DN, read noise in DN per read, gain in e⁻/DN; rates in
DN/s and variances in (DN/s)².
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from romanflow.detector import ReadPattern
from romanflow.kernels.ramp.common import (
    PAIR_THRESHOLD,
    RampFit,
    allocate_outputs,
    gls_differences,
    jump_chi2,
    prepare_inputs,
    store_pixel,
)
from romanflow.kernels.ramp.tables import (
    POWER_THRESHOLDS,
    casertano_tables,
    difference_covariance,
    difference_tables,
    jump_variance_tables,
)


#: The GLS pair test runs only on segments where the double-difference statistic across some
#: multi-read resultant exceeds this (σ). Split hits of 10-30σ in MA table 4 that the pair test
#: finds all pass it (none lost at 2.5, 2 in 50,000 at 3.0), and most clean pixels skip the solve.
SPLIT_GATE = 2.5


@numba.njit(cache=True, parallel=True)
def _end_to_end_rates(resultants, groupdq, t_bar, out):
    """Rough rate of every pixel (DN/s): first to last usable resultant; NaN with fewer than two.

    Scans from each end and stops at the first usable resultant, so an unflagged
    pixel reads two resultants, not all of them.
    """
    n, ny, nx = resultants.shape
    for y in prange(ny):
        for x in range(nx):
            first = 0
            while first < n and (groupdq[first, y, x] != 0 or not math.isfinite(resultants[first, y, x])):
                first += 1
            last = n - 1
            while last > first and (groupdq[last, y, x] != 0 or not math.isfinite(resultants[last, y, x])):
                last -= 1
            if last > first:
                out[y, x] = (resultants[last, y, x] - resultants[first, y, x]) / (t_bar[last] - t_bar[first])
            else:
                out[y, x] = np.nan


@numba.njit(cache=True, parallel=True)
def _neighbour_rates(rates, out):
    """Trimmed mean of each pixel's finite 8-neighbours (highest and lowest dropped), itself excluded.

    Its own value where it has no finite neighbour; the plain mean with fewer than three.
    """
    ny, nx = rates.shape
    for y in prange(ny):
        for x in range(nx):
            total = 0.0
            count = 0
            high = -np.inf
            low = np.inf
            for dy in range(-1, 2):
                yy = y + dy
                if yy < 0 or yy >= ny:
                    continue
                for dx in range(-1, 2):
                    xx = x + dx
                    if xx < 0 or xx >= nx or (dy == 0 and dx == 0):
                        continue
                    v = rates[yy, xx]
                    if math.isfinite(v):
                        total += v
                        count += 1
                        high = max(high, v)
                        low = min(low, v)
            if count >= 3:
                out[y, x] = (total - high - low) / (count - 2)
            elif count > 0:
                out[y, x] = total / count
            else:
                out[y, x] = rates[y, x]


@numba.njit(cache=True, parallel=True)
def _casertano_kernel(resultants, groupdq, read_noise, gain, weight_rate, t_bar, coeffs, read_factor,
                      poisson_factor, power_thresholds, inv_dt1, inv_dt2, stat_read, stat_poisson, arn, aph, brn, bph,
                      pair_ok, detect_jumps, thr_intercept, thr_constant, thr_pair, split_gate2, slope_out, vpois_out,
                      vread_out, gdq_out, pdq_out, njump_out):
    """Fit every pixel, rows in parallel, into the ``*_out`` arrays (see :func:`fit_ramps_casertano`).

    resultants float32 (n, ny, nx) DN; groupdq uint8; read_noise (DN per read) and gain (e⁻/DN)
    float32 (ny, nx); weight_rate float32 (ny, nx): the rate (DN/s) that sets the weighting power,
    independent of the pixel's own noise; the tables from :mod:`.tables`; inv_dt1, inv_dt2: 1/Δt̄ of
    single and double differences (1/s); thr_intercept, thr_constant: the jump threshold's terms;
    arn, aph, brn, bph, pair_ok: the difference covariance of :func:`.tables.difference_covariance`;
    thr_pair: χ² improvement that flags a hit split across a multi-read resultant; split_gate2: the
    square of :data:`SPLIT_GATE`.
    """
    n, ny, nx = resultants.shape
    m = n - 1
    n_pow_thr = power_thresholds.size
    for y in prange(ny):
        r = np.empty(n)
        flags = np.empty(n, np.uint8)
        seg_s = np.empty(2 * n + 2, np.int64)
        seg_e = np.empty(2 * n + 2, np.int64)
        d = np.empty(max(m, 1))
        use = np.empty(max(m, 1), np.bool_)
        a_diag = np.empty(max(m, 1))
        b_off = np.empty(max(m - 1, 1))
        inv_fwd = np.empty(max(m, 1))
        yv = np.empty(max(m, 1))
        zv = np.empty(max(m, 1))
        for x in range(nx):
            rn2 = max(float(read_noise[y, x]) ** 2, 1e-8)
            g = float(gain[y, x])
            if not g > 0:
                g = 1.0
            n_usable = 0
            n_sat = 0
            for i in range(n):
                r[i] = resultants[i, y, x]
                f = groupdq[i, y, x]
                if not math.isfinite(r[i]):
                    f = f | 1
                flags[i] = f
                gdq_out[i, y, x] = groupdq[i, y, x]
                if f == 0:
                    n_usable += 1
                if f & 2:
                    n_sat += 1
            # initial segments: runs of unflagged resultants
            top = 0
            i = 0
            while i < n:
                if flags[i] == 0:
                    j = i
                    while j + 1 < n and flags[j + 1] == 0:
                        j += 1
                    seg_s[top] = i
                    seg_e[top] = j
                    top += 1
                    i = j + 1
                else:
                    i += 1
            w_tot = 0.0
            slope_sum = 0.0
            vread_sum = 0.0
            vpois_sum = 0.0
            n_jumps = 0
            while top > 0:
                top -= 1
                s = seg_s[top]
                e = seg_e[top]
                if e <= s:
                    continue
                # weighting power from the segment's expected signal-to-noise (electrons) at a
                # rate that does not depend on this pixel's noise: weights chosen from the noisy
                # values they average would bias read-noise-dominated rates
                wr = float(weight_rate[y, x])
                dr = max(wr if math.isfinite(wr) else r[e] - r[s], 0.0) * g
                if math.isfinite(wr):
                    dr *= t_bar[e] - t_bar[s]
                snr = dr / math.sqrt(rn2 * g * g + dr)
                p = 0
                for k in range(n_pow_thr):
                    if snr >= power_thresholds[k]:
                        p = k + 1
                slope = 0.0
                for i in range(s, e + 1):
                    slope += coeffs[s, e, p, i] * r[i]
                vread = rn2 * read_factor[s, e, p]
                if detect_jumps and e > s:
                    # statistic (local slope − slope)/sqrt(var) of single and double
                    # differences; only positive values matter, so the largest is
                    # tracked through num²/var without divisions or square roots.
                    fpos = max(slope, 0.0) / g  # Poisson variance per unit time (DN²/s)
                    best_num2 = 0.0
                    best_var = 1.0
                    arg = -1
                    maybe_split = False
                    for i in range(s, e):
                        num = (r[i + 1] - r[i]) * inv_dt1[i] - slope
                        var = rn2 * stat_read[s, e, p, i, 0] + fpos * stat_poisson[s, e, p, i, 0]
                        if num > 0 and var > 0 and num * num * best_var > best_num2 * var:
                            best_num2 = num * num
                            best_var = var
                            arg = i
                        if i + 2 <= e:
                            num = (r[i + 2] - r[i]) * inv_dt2[i] - slope
                            var = rn2 * stat_read[s, e, p, i, 1] + fpos * stat_poisson[s, e, p, i, 1]
                            if num > 0 and var > 0 and num * num * best_var > best_num2 * var:
                                best_num2 = num * num
                                best_var = var
                                arg = i
                            if pair_ok[i] and num > 0 and num * num > split_gate2 * var:
                                maybe_split = True
                    best = math.sqrt(best_num2 / best_var)
                    slope_e = min(max(slope * g, 1.0), 1e4)
                    if arg >= 0 and best > thr_intercept - thr_constant * math.log10(slope_e):
                        gdq_out[arg, y, x] |= 4
                        gdq_out[arg + 1, y, x] |= 4
                        n_jumps += 1
                        if arg > s:
                            seg_s[top] = s
                            seg_e[top] = arg - 1
                            top += 1
                        if arg + 1 < e:
                            seg_s[top] = arg + 2
                            seg_e[top] = e
                            top += 1
                        continue
                    if maybe_split and e - s >= 3 and thr_pair > 0:
                        # a hit inside a multi-read resultant splits its charge between the
                        # differences around it, and neither may stand out alone: free both in
                        # the GLS fit of the segment's differences (covariance at the segment's
                        # rate) and test the χ² improvement
                        for i in range(m):
                            use[i] = s <= i < e
                            d[i] = (r[i + 1] - r[i]) * inv_dt1[i] if use[i] else 0.0
                        _, s_tot = gls_differences(d, use, m, max(slope, 0.0), rn2, 1.0 / g, arn, aph, brn, bph,
                                                   a_diag, b_off, inv_fwd, yv, zv)
                        _, _, best2, arg2 = jump_chi2(use, m, pair_ok, a_diag, b_off, inv_fwd, yv, zv, s_tot)
                        if best2 > thr_pair:
                            gdq_out[arg2 + 1, y, x] |= 4
                            n_jumps += 1
                            seg_s[top] = s
                            seg_e[top] = arg2
                            top += 1
                            seg_s[top] = arg2 + 2
                            seg_e[top] = e
                            top += 1
                            continue
                w = 1.0 / max(vread, 1e-30)
                w_tot += w
                slope_sum += w * slope
                vread_sum += w * w * vread
                vpois_sum += w * w * poisson_factor[s, e, p] / g
            if w_tot > 0:
                slope = slope_sum / w_tot
                vread = vread_sum / (w_tot * w_tot)
                vpois = vpois_sum / (w_tot * w_tot) * max(slope, 0.0)
            else:
                slope = np.nan
                vread = np.nan
                vpois = np.nan
            store_pixel(y, x, slope, vread, vpois, n_usable, n_sat > 0, n_jumps, slope_out, vread_out, vpois_out,
                         pdq_out, njump_out)


def fit_ramps_casertano(resultants, groupdq, read_noise, gain, read_pattern: ReadPattern, *,
                        detect_jumps: bool = True, threshold_intercept: float = 5.5,
                        threshold_constant: float = 1 / 3, threshold_pair: float = PAIR_THRESHOLD) -> RampFit:
    """Fit ramps with the optimal weighting of Casertano (2022) and find jumps.

    Parameters
    ----------
    resultants : array (n_resultants, ny, nx)
        Resultants (DN), linearity- and reference-pixel-corrected; float32 is
        used as is, other dtypes are converted.
    groupdq : uint8 array (n_resultants, ny, nx) or None
        Resultant flags; any nonzero value excludes that resultant (saturated,
        DO_NOT_USE…) and breaks the ramp into segments there.
    read_noise : array (ny, nx) or scalar
        White read noise per read (DN).
    gain : array (ny, nx) or scalar
        Gain (e⁻/DN).
    read_pattern : ReadPattern
        Read numbers and frame time of the resultants.
    detect_jumps : bool
        Search for jumps (cosmic rays) and split the ramp around them.
    threshold_intercept, threshold_constant : float
        A jump is declared where the largest single- or double-difference
        statistic exceeds ``intercept - constant * log10(rate)``, the rate in
        e⁻/s clipped to [1, 10⁴].
    threshold_pair : float
        Where no difference stands out, a hit split between the two differences
        around a multi-read resultant is declared when freeing both in the GLS
        fit of the segment's differences lowers χ² by more than this, both
        gaining charge (:func:`.common.jump_chi2`); 0 turns that test off.

    Returns
    -------
    RampFit
    """
    resultants, groupdq, read_noise, gain = prepare_inputs(resultants, groupdq, read_noise, gain, read_pattern)
    n, ny, nx = resultants.shape
    if n < 2:
        raise ValueError(f"ramp fitting needs at least 2 resultants, got {n}")
    coeffs, read_factor, poisson_factor = casertano_tables(read_pattern)
    stat_read, stat_poisson = jump_variance_tables(read_pattern, coeffs)
    dt1, _, _, dt2, _, _, _, _, _ = difference_tables(read_pattern)
    _, arn, aph, brn, bph, pair_ok = difference_covariance(read_pattern)
    if dt2.size == 0:
        dt2 = np.ones(1)
    t_bar = read_pattern.mean_times.astype(np.float64)
    rough = np.empty((ny, nx), np.float32)
    _end_to_end_rates(resultants, groupdq, t_bar, rough)
    weight_rate = np.empty((ny, nx), np.float32)
    _neighbour_rates(rough, weight_rate)
    del rough
    out = allocate_outputs((ny, nx), n)
    _casertano_kernel(resultants, groupdq, read_noise, gain, weight_rate, t_bar, coeffs, read_factor,
                      poisson_factor, POWER_THRESHOLDS, 1 / dt1, 1 / dt2, stat_read, stat_poisson, arn, aph, brn, bph,
                      pair_ok, bool(detect_jumps), float(threshold_intercept), float(threshold_constant),
                      float(threshold_pair), SPLIT_GATE**2, *out)
    return RampFit(*out)

