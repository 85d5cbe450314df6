"""Ramp fitting with jump detection for unevenly sampled resultants.

Two estimators of the count rate of every pixel from its resultants (means of
non-destructive reads, as defined by the exposure's read pattern):

``fit_ramps_casertano``
    Optimally weighted least squares of Casertano (2022): the ramp is split
    into segments at flagged resultants, each segment is fitted with weights
    ``w_i = ((1+P)N_i/(1+P N_i)) |(t̄_i - t̄_mid)/t_half|^P`` whose power P grows
    with the segment's signal-to-noise, and segments are averaged with weights
    1/(read-noise variance). Jumps are found from single and double resultant
    differences against a slope-dependent threshold; the two resultants around
    the largest outlier are flagged and both sides are refitted (repeatedly).
    The variance of each statistic (local slope − fitted slope) is computed
    exactly from the resultant covariance, including the covariance of the
    local and fitted slopes; the usual −rate/T approximation of that term
    nearly cancels the variance of double differences spanning most of a short
    segment and produced false jumps on bright, early-saturating pixels.

``fit_ramps_likely``
    Likelihood fit of Brandt (2024): resultant differences d_i = ΔR_i/Δt̄_i
    have a tridiagonal covariance (read noise + Poisson), so the generalised
    least-squares rate and its χ² come from O(n) tridiagonal algebra. The
    covariance is evaluated at a rate first guessed from the median difference
    and then at the fitted rate. Jumps: the single difference (or adjacent
    pair sharing a multi-read resultant) whose removal lowers χ² the most is
    dropped while the improvement exceeds 4.5² (pair: 23.8, the χ²₂ value at
    the same p-value), then the fit is repeated.

Both are pure kernels: arrays in, arrays out, no metadata. Units: resultants
in DN, read noise in DN per read, gain in e⁻/DN; rates in DN/s and variances
in (DN/s)². Poisson variances are computed in electrons and converted back.
The per-pixel loops are numba-compiled and parallel over image rows; all
per-pixel arithmetic is float64 while the cubes stay float32/uint8.
"""

from __future__ import annotations

import math
import warnings
from typing import NamedTuple

import numba
import numpy as np
from numba import prange

from romanflow import dq
from romanflow.detector import ReadPattern
from romanflow.errors import RomanflowError
from romanflow.kernels.checks import resultant_cube

#: Casertano (2022) table 2: signal-to-noise thresholds and weighting powers.
POWER_THRESHOLDS = np.array([5.0, 10.0, 20.0, 50.0, 100.0])
POWERS = np.array([0.0, 0.4, 1.0, 3.0, 6.0, 10.0])

#: Likelihood jump thresholds: χ² improvement for dropping one difference, and
#: for dropping an adjacent pair (χ²₂ quantile at the p-value of 4.5σ).
LIKELY_THRESHOLD_ONE = 4.5**2
LIKELY_THRESHOLD_TWO = 23.8

#: Floor on the per-read variance (DN²) so that noiseless input stays solvable.
_READ_VAR_FLOOR = 1e-8

METHODS = ("casertano", "likely")
#: Method used when none is named (see benchmarks/ramp_methods.py for why).
DEFAULT_METHOD = "casertano"

_JUMP = np.uint8(dq.GROUP_JUMP_DET)
_SAT = np.uint8(dq.GROUP_SATURATED)


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
        JUMP_DET if any jump, SATURATED if every resultant is saturated,
        DO_NOT_USE if at most one resultant is usable, every resultant is
        saturated or unusable, the rate is not finite or its error is not > 0.
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


# --------------------------------------------------------------------------
# Read-pattern tables (tiny, numpy)
# --------------------------------------------------------------------------
def _casertano_tables(read_pattern: ReadPattern):
    """Segment coefficients for every (start, end, power) of a read pattern.

    Returns ``coeffs`` (n, n, n_powers, n): slope = Σ_i coeffs[s, e, p, i] R_i
    for the segment s..e; ``read_factor`` (n, n, n_powers): Σ K_i²/N_i (1/s²);
    ``poisson_factor`` (n, n, n_powers): Σ K_i² τ_i + 2 Σ_{i<j} K_i K_j t̄_i (1/s),
    the Poisson variance of the slope per unit rate.
    """
    t = read_pattern.mean_times.astype(np.float64)
    n_reads = read_pattern.n_reads.astype(np.float64)
    tau = read_pattern.tau.astype(np.float64)
    n = t.size
    n_pow = POWERS.size
    coeffs = np.zeros((n, n, n_pow, n))
    read_factor = np.zeros((n, n, n_pow))
    poisson_factor = np.zeros((n, n, n_pow))
    for s in range(n):
        for e in range(s + 1, n):
            ts = t[s : e + 1]
            ns = n_reads[s : e + 1]
            half = (ts[-1] - ts[0]) / 2.0
            x = np.abs((ts - (ts[0] + ts[-1]) / 2.0) / (half if half > 0 else 1.0))
            for p, power in enumerate(POWERS):
                w = (1 + power) * ns / (1 + power * ns) * x**power
                f0 = w.sum()
                tc = ts - (w * ts).sum() / f0  # centred times: same K, better rounding
                f2 = (w * tc * tc).sum()
                if f0 <= 0 or f2 <= 0:
                    continue
                k = w * tc / f2
                coeffs[s, e, p, s : e + 1] = k
                read_factor[s, e, p] = (k * k / ns).sum()
                cum = np.cumsum(k[::-1])[::-1]  # Σ_{j>=i} K_j
                after = cum - k  # Σ_{j>i} K_j
                poisson_factor[s, e, p] = (k * k * tau[s : e + 1]).sum() + 2 * (k * after * ts).sum()
    return coeffs, read_factor, poisson_factor


def _jump_variance_tables(read_pattern: ReadPattern, coeffs):
    """Exact variance factors of the jump statistics of every segment.

    For segment s..e fitted with power p, the statistic for the difference
    i -> i+j (j = 1, 2) is δ = (R_{i+j} − R_i)/Δt̄ − slope. Its variance is
    σ²·read[s, e, p, i, j-1] + (rate/gain)·poisson[s, e, p, i, j-1], from the
    resultant covariance σ²/N_i δ_ij + f·(τ_i if i = j else t̄_min(i,j)),
    including the covariance of the local slope with the fitted slope.
    Degenerate statistics (δ identically zero, e.g. a two-resultant segment)
    get zero factors and are skipped.
    """
    t = read_pattern.mean_times.astype(np.float64)
    n_reads = read_pattern.n_reads.astype(np.float64)
    tau = read_pattern.tau.astype(np.float64)
    n = t.size
    cov_p = np.minimum.outer(t, t)
    np.fill_diagonal(cov_p, tau)
    inv_n = 1.0 / n_reads
    read = np.zeros(coeffs.shape[:3] + (n, 2))
    poisson = np.zeros_like(read)
    for s in range(n):
        for e in range(s + 1, n):
            for i in range(s, e):
                for j in (1, 2):
                    if i + j > e:
                        continue
                    local = np.zeros(n)
                    local[i + j] = 1.0 / (t[i + j] - t[i])
                    local[i] = -local[i + j]
                    local_r = (local * local * inv_n).sum()
                    local_p = local @ cov_p @ local
                    v = local[None, :] - coeffs[s, e]  # (n_powers, n)
                    vr = (v * v * inv_n).sum(axis=1)
                    vp = np.einsum("pi,ij,pj->p", v, cov_p, v)
                    keep = (vr > 1e-9 * local_r) | (vp > 1e-9 * local_p)
                    read[s, e, :, i, j - 1] = np.where(keep, vr, 0.0)
                    poisson[s, e, :, i, j - 1] = np.where(keep, vp, 0.0)
    return read, poisson


def _difference_tables(read_pattern: ReadPattern):
    """Per-difference timing factors shared by both methods.

    Returns arrays over differences i (resultants i -> i+1) and double
    differences (i -> i+2): Δt̄, read factor (1/N_i + 1/N_j) and Poisson factor
    τ_i + τ_j − 2 t̄_i (s), plus the off-diagonal covariance factors of
    adjacent single differences: −1/N_{i+1} (read) and t̄_{i+1} − τ_{i+1}
    (Poisson, s).
    """
    t = read_pattern.mean_times.astype(np.float64)
    nr = read_pattern.n_reads.astype(np.float64)
    tau = read_pattern.tau.astype(np.float64)
    dt1 = t[1:] - t[:-1]
    rf1 = 1 / nr[1:] + 1 / nr[:-1]
    pf1 = tau[1:] + tau[:-1] - 2 * t[:-1]
    dt2 = t[2:] - t[:-2]
    rf2 = 1 / nr[2:] + 1 / nr[:-2]
    pf2 = tau[2:] + tau[:-2] - 2 * t[:-2]
    off_read = -1 / nr[1:-1]
    off_poisson = t[1:-1] - tau[1:-1]
    pair_ok = nr[1:-1] > 1
    return dt1, rf1, pf1, dt2, rf2, pf2, off_read, off_poisson, pair_ok


# --------------------------------------------------------------------------
# Input handling
# --------------------------------------------------------------------------
def _prepare(resultants, groupdq, read_noise, gain, read_pattern):
    if not isinstance(read_pattern, ReadPattern):
        raise RomanflowError("ramp fitting needs a ReadPattern (romanflow.detector.ReadPattern)")
    resultants = resultant_cube(resultants, read_pattern)
    n, ny, nx = resultants.shape
    resultants = np.ascontiguousarray(resultants, dtype=np.float32)
    if groupdq is None:
        groupdq = np.zeros(resultants.shape, dtype=np.uint8)
    else:
        groupdq = np.asarray(groupdq)
        if groupdq.shape != resultants.shape:
            raise RomanflowError(f"groupdq shape {groupdq.shape} differs from resultants shape {resultants.shape}")
        groupdq = np.ascontiguousarray(groupdq, dtype=np.uint8)
    read_noise = np.ascontiguousarray(np.broadcast_to(np.asarray(read_noise, dtype=np.float32), (ny, nx)))
    gain = np.ascontiguousarray(np.broadcast_to(np.asarray(gain, dtype=np.float32), (ny, nx)))
    return resultants, groupdq, read_noise, gain


def _outputs(shape2d, n):
    ny, nx = shape2d
    return (
        np.empty((ny, nx), np.float32),
        np.empty((ny, nx), np.float32),
        np.empty((ny, nx), np.float32),
        np.empty((n, ny, nx), np.uint8),
        np.empty((ny, nx), np.uint32),
        np.empty((ny, nx), np.uint8),
    )


# --------------------------------------------------------------------------
# Casertano (2022)
# --------------------------------------------------------------------------
@numba.njit(cache=True, inline="always")
def _store_pixel(y, x, slope, vread, vpois, n_usable, all_saturated, n_jumps, slope_out, vread_out, vpois_out,
                 pdq_out, njump_out):
    """Write one pixel's rate, variances and flags (4 jump, 2 saturated throughout, 1 no fit: NaNs)."""
    pdq = np.uint32(0)
    if n_jumps > 0:
        pdq |= np.uint32(4)
    if all_saturated:
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


@numba.njit(cache=True, parallel=True)
def _casertano_kernel(resultants, groupdq, read_noise, gain, t_bar, coeffs, read_factor, poisson_factor,
                      power_thresholds, inv_dt1, inv_dt2, stat_read, stat_poisson, detect_jumps, thr_intercept,
                      thr_constant, slope_out, vpois_out, vread_out, gdq_out, pdq_out, njump_out):
    n, ny, nx = resultants.shape
    n_pow_thr = power_thresholds.size
    for y in prange(ny):
        r = np.empty(n)
        flags = np.empty(n, np.uint8)
        seg_s = np.empty(2 * n + 2, np.int64)
        seg_e = np.empty(2 * n + 2, np.int64)
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
                # weighting power from the segment's signal-to-noise (electrons)
                dr = max(r[e] - r[s], 0.0) * g
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
            _store_pixel(y, x, slope, vread, vpois, n_usable, n_sat == n, n_jumps, slope_out, vread_out, vpois_out,
                         pdq_out, njump_out)


def fit_ramps_casertano(resultants, groupdq, read_noise, gain, read_pattern: ReadPattern, *,
                        detect_jumps: bool = True, threshold_intercept: float = 5.5,
                        threshold_constant: float = 1 / 3) -> RampFit:
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

    Returns
    -------
    RampFit
    """
    resultants, groupdq, read_noise, gain = _prepare(resultants, groupdq, read_noise, gain, read_pattern)
    n, ny, nx = resultants.shape
    if n < 2:
        raise RomanflowError(f"ramp fitting needs at least 2 resultants, got {n}")
    coeffs, read_factor, poisson_factor = _casertano_tables(read_pattern)
    stat_read, stat_poisson = _jump_variance_tables(read_pattern, coeffs)
    dt1, _, _, dt2, _, _, _, _, _ = _difference_tables(read_pattern)
    if dt2.size == 0:
        dt2 = np.ones(1)
    out = _outputs((ny, nx), n)
    _casertano_kernel(resultants, groupdq, read_noise, gain, read_pattern.mean_times.astype(np.float64),
                      coeffs, read_factor, poisson_factor, POWER_THRESHOLDS, 1 / dt1, 1 / dt2, stat_read, stat_poisson,
                      bool(detect_jumps), float(threshold_intercept), float(threshold_constant), *out)
    return RampFit(*out)


# --------------------------------------------------------------------------
# Likelihood fit (Brandt 2024)
# --------------------------------------------------------------------------
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
                            if p_ii > 0:
                                dchi = zv[i] * zv[i] / p_ii
                                if dchi > best1:
                                    best1 = dchi
                                    arg1 = i
                                if i < m - 1 and use[i + 1] and pair_ok[i]:
                                    q_off = -b_off[i] * inv_fwd[i] * q_next
                                    p_off = q_off - yv[i] * yv[i + 1] / s_tot
                                    det = p_ii * p_next - p_off * p_off
                                    if det > 0:
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
            _store_pixel(y, x, slope, vread, vpois, n_usable, n_sat == n, n_jumps, slope_out, vread_out, vpois_out,
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
        χ² improvement needed to drop one difference (default 4.5²).
    threshold_two : float
        χ² improvement needed to drop an adjacent pair of differences that
        share a multi-read resultant (default 23.8).
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
    resultants, groupdq, read_noise, gain = _prepare(resultants, groupdq, read_noise, gain, read_pattern)
    n, ny, nx = resultants.shape
    if n < 4:
        warnings.warn(
            f"the likelihood ramp fit needs at least 4 resultants (got {n}); using the Casertano fit instead",
            RuntimeWarning, stacklevel=2,
        )
        return fit_ramps_casertano(resultants, groupdq, read_noise, gain, read_pattern,
                                   detect_jumps=detect_jumps, threshold_intercept=threshold_intercept,
                                   threshold_constant=threshold_constant)
    dt1, rf1, pf1, _, _, _, off_read, off_poisson, pair_ok = _difference_tables(read_pattern)
    arn = rf1 / dt1**2
    aph = pf1 / dt1**2
    brn = off_read / (dt1[1:] * dt1[:-1])
    bph = off_poisson / (dt1[1:] * dt1[:-1])
    if brn.size == 0:
        brn = np.zeros(1)
        bph = np.zeros(1)
    out = _outputs((ny, nx), n)
    _likely_kernel(resultants, groupdq, read_noise, gain, dt1, arn, aph, brn, bph, pair_ok,
                   bool(detect_jumps), float(threshold_one), float(threshold_two), *out)
    return RampFit(*out)


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
    raise RomanflowError(f"unknown ramp-fitting method {method!r}: expected one of {', '.join(METHODS)}")
