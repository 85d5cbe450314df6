"""Per-read-pattern coefficient tables of the ramp fits (tiny, numpy).

Everything here depends only on the read pattern: resultant mean times t̄_i (s),
reads per resultant N_i and the Poisson time factors τ_i (s). The tables are
computed once per fit and handed to the compiled per-pixel kernels.
"""

from __future__ import annotations

import numpy as np

from romanflow.detector import ReadPattern

#: Casertano (2022) table 2: signal-to-noise thresholds and weighting powers.
POWER_THRESHOLDS = np.array([5.0, 10.0, 20.0, 50.0, 100.0])
POWERS = np.array([0.0, 0.4, 1.0, 3.0, 6.0, 10.0])


def casertano_tables(read_pattern: ReadPattern):
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


def jump_variance_tables(read_pattern: ReadPattern, coeffs):
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


def difference_tables(read_pattern: ReadPattern):
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


def difference_covariance(read_pattern: ReadPattern):
    """Covariance factors of the single differences d_i = (R_{i+1} − R_i)/Δt̄_i (DN/s).

    Returns ``dt1`` (Δt̄_i, s); ``arn``, ``aph``: the diagonal read (1/s², times σ² in DN²)
    and Poisson (1/s, times rate/gain in DN²/s) factors; ``brn``, ``bph``: those of
    adjacent differences (at least one element); ``pair_ok``: whether differences i and
    i+1 share a multi-read resultant (a hit inside it splits its charge between them).
    """
    dt1, rf1, pf1, _, _, _, off_read, off_poisson, pair_ok = difference_tables(read_pattern)
    arn = rf1 / dt1**2
    aph = pf1 / dt1**2
    brn = off_read / (dt1[1:] * dt1[:-1])
    bph = off_poisson / (dt1[1:] * dt1[:-1])
    if brn.size == 0:
        brn = np.zeros(1)
        bph = np.zeros(1)
        pair_ok = np.zeros(1, bool)
    return dt1, arn, aph, brn, bph, pair_ok
