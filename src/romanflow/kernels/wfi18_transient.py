"""The WFI18 first-read transient: a double exponential in read time, fitted on each exposure and removed.

Detector WFI18 shows, in the first read after reset only, an extra signal that
decays during the read, ``a·exp(−t/τa) + b·exp(−t/τb)`` with ``t`` the pixel's
read time within the frame (s, see :func:`romanflow.kernels.dark_decay.pixel_read_times`).
It changes from exposure to exposure, so it is fitted on each one:

1. Extrapolate resultants 2 and 3 (0-based 1 and 2) back to the mean time of
   resultant 1 (0-based 0); the first resultant's excess over that is the
   transient divided by the reads it averages, plus noise.
2. Keep weakly illuminated pixels: their rate between resultants 4 and 5
   (independent of the first three) below the median.
3. Average each row's excess with a sigma clip, and fit the double exponential
   to the rows' mean read times.
4. Subtract the fitted signal from the first resultant at each pixel's read time.

At least 5 resultants are needed; with fewer, or when the fit fails, nothing is
subtracted and the caller masks the affected rows instead.
"""

from __future__ import annotations

import numpy as np

from romanflow.detector import CHANNEL_WIDTH, PIXEL_TIME, ROW_PERIOD, ReadPattern
from romanflow.kernels.dark_decay import pixel_read_times

#: Resultants the fit needs.
MIN_RESULTANTS = 5
#: Fraction of the rows (from the first read) masked when the transient cannot be fitted (1000 of 4096).
MASKED_ROW_FRACTION = 1000 / 4096


def double_exponential(t, a, tau_a, b, tau_b):
    """``a·exp(−t/τa) + b·exp(−t/τb)`` (DN), ``t`` in s."""
    t = np.asarray(t, dtype=np.float64)
    return a * np.exp(-t / tau_a) + b * np.exp(-t / tau_b)


def transient_signal(params, shape) -> np.ndarray:
    """The transient of one read at every pixel of a frame of ``shape`` (DN, float32 (ny, nx))."""
    return double_exponential(pixel_read_times(shape), *params).astype(np.float32)


def first_read_share(read_pattern: ReadPattern) -> float:
    """Weight of read 1 in resultant 1: 1/reads averaged, 0 when resultant 1 does not hold read 1."""
    first = list(read_pattern.read_pattern[0])
    return 1.0 / len(first) if 1 in first else 0.0


def fit_transient(resultants: np.ndarray, read_pattern: ReadPattern, usable: np.ndarray | None = None,
                  *, clip: float = 3.0):
    """Fit the first-read transient of float resultants (DN, (n_res, ny, nx)); returns ``(a, τa, b, τb)`` or None.

    ``usable`` (ny, nx, bool) marks pixels that may enter the fit (e.g. not
    flagged DO_NOT_USE or saturated in resultants 1-5). The amplitudes are per
    read (DN), as the transient is in the first read. None when there are fewer
    than 5 resultants or the fit does not converge to decaying terms.
    """
    from scipy.optimize import curve_fit

    n_res, ny, nx = resultants.shape
    share = first_read_share(read_pattern)
    if n_res < MIN_RESULTANTS or share == 0.0:
        return None
    times = read_pattern.mean_times
    r0, r1, r2 = (resultants[i].astype(np.float64) for i in range(3))
    expected = r1 - (r2 - r1) * (times[1] - times[0]) / (times[2] - times[1])
    excess = (r0 - expected) / share                                   # DN of the first read
    later_rate = (resultants[4].astype(np.float64) - resultants[3]) / (times[4] - times[3])
    keep = np.isfinite(excess) & np.isfinite(later_rate)
    if usable is not None:
        keep &= usable
    if keep.sum() < 4 * ny:
        return None
    keep &= later_rate <= np.median(later_rate[keep])
    rows = np.full(ny, np.nan)
    for y in range(ny):
        values = excess[y, keep[y]]
        for _ in range(3):
            if values.size < 4:
                break
            centre, spread = np.median(values), 1.4826 * np.median(np.abs(values - np.median(values)))
            values = values[np.abs(values - centre) <= clip * max(spread, 1e-6)]
        if values.size >= 4:
            rows[y] = values.mean()
    row_time = (np.arange(ny) * ROW_PERIOD + (CHANNEL_WIDTH - 1) / 2.0) * PIXEL_TIME
    good = np.isfinite(rows)
    if good.sum() < 8:
        return None
    t, v = row_time[good], rows[good]
    frame = row_time[-1] + PIXEL_TIME * ROW_PERIOD
    start = (max(v[:3].mean(), 1.0) * 0.7, 0.05 * frame, max(v[:3].mean(), 1.0) * 0.3, 0.3 * frame)
    try:
        params, _ = curve_fit(double_exponential, t, v, p0=start, maxfev=5000,
                              bounds=([-np.inf, 1e-4, -np.inf, 1e-4], [np.inf, 10 * frame, np.inf, 10 * frame]))
    except (RuntimeError, ValueError):
        return None
    if not np.all(np.isfinite(params)):
        return None
    return tuple(float(p) for p in params)


def subtract_transient(resultants: np.ndarray, params, read_pattern: ReadPattern) -> None:
    """Subtract the fitted transient (per-read parameters) from the first resultant, in place (DN)."""
    share = first_read_share(read_pattern)
    if share:
        resultants[0] -= np.float32(share) * transient_signal(params, resultants.shape[1:])


def masked_rows(ny: int) -> slice:
    """Rows of the first resultant masked when the transient cannot be fitted (the first ~24 %)."""
    return slice(0, max(1, int(round(MASKED_ROW_FRACTION * ny))))
