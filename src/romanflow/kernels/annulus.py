"""Local background in circular annuli: sigma-clipped median of the pixels around each position.

Pure kernels on arrays (numba): an image, a mask and positions go in; one
level per position and its error come out, in the image's unit per pixel.
"""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["clipped_median", "annulus_levels"]


@numba.njit(cache=True)
def clipped_median(values, sigma, maxiters):
    """Median of values after iterative sigma clipping, and its error.

    Values farther than ``sigma`` standard deviations from the median are
    dropped, up to ``maxiters`` times or until none is (as astropy's
    ``SigmaClip`` with ``cenfunc='median'``, ``stdfunc='std'``).

    Parameters
    ----------
    values : ndarray (n,) float64
        Samples (any unit); not modified.
    sigma : float
        Clipping threshold (standard deviations).
    maxiters : int
        Largest number of clipping passes.

    Returns
    -------
    median, median_err : float
        In the unit of ``values``; the error is ``1.2533 · std / sqrt(n)`` of
        the kept values. NaN, NaN when fewer than 3 values remain.

    Compiled without ``parallel`` so that its sums run in one fixed order: the
    results do not depend on the number of threads.
    """
    v = values.copy()
    for _ in range(maxiters):
        if v.shape[0] < 3:
            break
        med = np.median(v)
        mean = 0.0
        for k in range(v.shape[0]):
            mean += v[k]
        mean /= v.shape[0]
        var = 0.0
        for k in range(v.shape[0]):
            var += (v[k] - mean) ** 2
        std = math.sqrt(var / v.shape[0])
        kept = 0
        for k in range(v.shape[0]):
            if abs(v[k] - med) <= sigma * std:
                v[kept] = v[k]
                kept += 1
        if kept == v.shape[0]:
            break
        v = v[:kept]
    n = v.shape[0]
    if n < 3:
        return np.nan, np.nan
    mean = 0.0
    for k in range(n):
        mean += v[k]
    mean /= n
    var = 0.0
    for k in range(n):
        var += (v[k] - mean) ** 2
    return np.median(v), 1.2533 * math.sqrt(var / n) / math.sqrt(n)


@numba.njit(cache=True, parallel=True)
def _annulus_kernel(data, bad, xs, ys, r_in, r_out, sigma, maxiters, level, level_err):
    ny, nx = data.shape
    r_in2 = r_in * r_in
    r_out2 = r_out * r_out
    reach = int(math.ceil(r_out)) + 1
    for s in numba.prange(xs.shape[0]):
        x0 = xs[s]
        y0 = ys[s]
        if not (math.isfinite(x0) and math.isfinite(y0)):
            continue
        values = np.empty((2 * reach + 1) ** 2)
        n = 0
        for iy in range(max(int(math.floor(y0)) - reach, 0), min(int(math.floor(y0)) + reach + 1, ny)):
            dy2 = (iy - y0) ** 2
            for ix in range(max(int(math.floor(x0)) - reach, 0), min(int(math.floor(x0)) + reach + 1, nx)):
                r2 = (ix - x0) ** 2 + dy2
                if r2 >= r_in2 and r2 < r_out2 and not bad[iy, ix]:
                    values[n] = data[iy, ix]
                    n += 1
        level[s], level_err[s] = clipped_median(values[:n], sigma, maxiters)


def annulus_levels(data, bad, x, y, r_in, r_out, sigma: float = 3.0, maxiters: int = 5):
    """Sigma-clipped median per pixel in a circular annulus around each position, and its error.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Image (any unit per pixel).
    bad : ndarray of bool (ny, nx)
        Pixels not to use.
    x, y : ndarray (n,)
        Annulus centres (pixels, 0-indexed); non-finite ones give NaN.
    r_in, r_out : float
        Radii (pixels): pixels whose centres lie at ``r_in <= r < r_out`` are used.
    sigma, maxiters
        Clipping (:func:`clipped_median`).

    Returns
    -------
    level, level_err : ndarray (n,)
        Unit of ``data``; NaN where fewer than 3 pixels remain.

    Raises
    ------
    ValueError
        If ``data`` and ``bad`` differ in shape, or ``x`` and ``y`` do.
    """
    data = np.ascontiguousarray(data, np.float64)
    bad = np.ascontiguousarray(bad, np.bool_)
    x = np.ascontiguousarray(x, np.float64)
    y = np.ascontiguousarray(y, np.float64)
    if data.ndim != 2 or bad.shape != data.shape:
        raise ValueError(f"data {data.shape} and bad {bad.shape} must be one 2-D shape")
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x {x.shape} and y {y.shape} must be one 1-D shape")
    level = np.full(x.size, np.nan)
    level_err = np.full(x.size, np.nan)
    if x.size:
        _annulus_kernel(data, bad, x, y, float(r_in), float(r_out), float(sigma), int(maxiters), level, level_err)
    return level, level_err
