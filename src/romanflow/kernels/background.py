"""Smooth background and background RMS of an image from sigma-clipped statistics in boxes.

The algorithm of :class:`photutils.background.Background2D` with a median
background, a standard-deviation RMS, an inverse-distance fill of excluded
boxes, a median filter of the box map and a cubic-spline zoom to the image:

1. Each box of ``box × box`` pixels (the last row and column of boxes hold
   what is left of the image) is sigma clipped as :class:`astropy.stats.SigmaClip`
   does with its defaults (centre the median, spread the standard deviation,
   at most ``maxiters`` iterations, clipped values re-admitted when inside the
   final bounds). Its background is the median of the kept pixels, its RMS
   their standard deviation.
2. A box that keeps no more than ``(1 - exclude_percentile / 100) · box²``
   pixels is excluded, then filled from its 10 nearest boxes with weights
   ``1 / distance`` (photutils' own interpolator).
3. Both box maps are median filtered over ``filter_size × filter_size``
   boxes (only the boxes inside the map count at its edges).
4. Each map is zoomed ``box`` times with cubic splines (``scipy.ndimage.zoom``,
   ``grid_mode``, ``mode='reflect'``), cropped to the image and clipped to the
   map's range.

The results are photutils' bit for bit: the medians are order statistics, the
RMS is summed as numpy's ``nanstd`` sums (pairwise, in photutils' layout of
each box), and the zoom weighs the spline coefficients in scipy's order. Only
the clip bounds are summed in another order than astropy's (a pixel lying
within rounding, ~1e-16 relative, of a bound could be kept differently).
Units: those of the image.
"""

from __future__ import annotations

import functools
import math

import numba
import numpy as np
from numba import prange

__all__ = ["box_background"]


_SIGN = np.uint64(0x8000000000000000)
_ALL = np.uint64(0xFFFFFFFFFFFFFFFF)


@numba.njit(cache=True)
def _sort_values(values, n, keys, scratch, counts):
    """Sort ``values[:n]`` (finite float64) in place: least-significant-digit radix sort of their bits."""
    bits = values[:n].view(np.uint64)
    any_bits = np.uint64(0)
    all_bits = _ALL
    for i in range(n):
        k = bits[i]
        k = k ^ (_ALL if k & _SIGN else _SIGN)  # order-preserving unsigned key
        keys[i] = k
        any_bits |= k
        all_bits &= k
    varying = any_bits ^ all_bits
    src = keys
    dst = scratch
    for digit in range(8):
        shift = np.uint64(8 * digit)
        if (varying >> shift) & np.uint64(255) == 0:
            continue
        counts[:] = 0
        for i in range(n):
            counts[(src[i] >> shift) & np.uint64(255)] += 1
        total = 0
        for j in range(256):
            c = counts[j]
            counts[j] = total
            total += c
        for i in range(n):
            j = (src[i] >> shift) & np.uint64(255)
            dst[counts[j]] = src[i]
            counts[j] += 1
        src, dst = dst, src
    for i in range(n):
        k = src[i]
        bits[i] = k ^ (_SIGN if k & _SIGN else _ALL)


@numba.njit(cache=True, inline="always")
def _median_sorted(v, a, b):
    """Median of the sorted ``v[a:b]`` (mean of the two middle values for an even number)."""
    n = b - a
    mid = a + n // 2
    return 0.5 * (v[mid] + v[mid - 1]) if n % 2 == 0 else v[mid]


@numba.njit(cache=True)
def _standard_deviation(v, a, b):
    """Population standard deviation of ``v[a:b]`` (mean, then squared deviations, each summed in eight
    interleaved parts)."""
    n = b - a
    m = a + (n // 8) * 8
    parts = np.zeros(8)
    for i in range(a, m, 8):
        for j in range(8):
            parts[j] += v[i + j]
    total = ((parts[0] + parts[1]) + (parts[2] + parts[3])) + ((parts[4] + parts[5]) + (parts[6] + parts[7]))
    for i in range(m, b):
        total += v[i]
    mean = total / n
    parts[:] = 0.0
    for i in range(a, m, 8):
        for j in range(8):
            d = v[i + j] - mean
            parts[j] += d * d
    total = ((parts[0] + parts[1]) + (parts[2] + parts[3])) + ((parts[4] + parts[5]) + (parts[6] + parts[7]))
    for i in range(m, b):
        d = v[i] - mean
        total += d * d
    return math.sqrt(total / n)


@numba.njit(cache=True, inline="always")
def _first_above(v, a, b, limit, inclusive):
    """First index in the sorted ``v[a:b]`` whose value is >= limit (``inclusive``) or > limit; b if none."""
    while a < b:
        mid = (a + b) // 2
        if v[mid] < limit or (not inclusive and v[mid] == limit):
            a = mid + 1
        else:
            b = mid
    return a


@numba.njit(cache=True)
def _clipped_range(v, n, sigma, maxiters):
    """Kept range ``[a, b)`` of the sorted ``v[:n]`` after sigma clipping (astropy's iteration and final mask).

    Each iteration takes the median and standard deviation of the values still kept and keeps those within
    ``sigma`` of the median; it stops when nothing changes, nothing is left or after ``maxiters``. The values
    kept in the end are all those within the last bounds.
    """
    a = 0
    b = n
    lower = upper = np.nan
    for _ in range(maxiters):
        if b <= a:
            break
        centre = _median_sorted(v, a, b)
        spread = _standard_deviation(v, a, b)
        lower = centre - sigma * spread
        upper = centre + sigma * spread
        new_a = _first_above(v, a, b, lower, True)
        new_b = _first_above(v, new_a, b, upper, False)
        if (new_a == a and new_b == b) or new_b == new_a:
            break
        a = new_a
        b = new_b
    if math.isnan(lower):
        return 0, 0
    a = _first_above(v, 0, n, lower, True)
    return a, _first_above(v, a, n, upper, False)


@numba.njit(cache=True)
def _block_sum(a, first, n):
    """numpy's sum of at most 128 values: eight interleaved partial sums, or one for fewer than 8 values."""
    if n < 8:
        total = 0.0
        for i in range(first, first + n):
            total += a[i]
        return total
    r0 = a[first]
    r1 = a[first + 1]
    r2 = a[first + 2]
    r3 = a[first + 3]
    r4 = a[first + 4]
    r5 = a[first + 5]
    r6 = a[first + 6]
    r7 = a[first + 7]
    end = first + n - n % 8
    for i in range(first + 8, end, 8):
        r0 += a[i]
        r1 += a[i + 1]
        r2 += a[i + 2]
        r3 += a[i + 3]
        r4 += a[i + 4]
        r5 += a[i + 5]
        r6 += a[i + 6]
        r7 += a[i + 7]
    total = ((r0 + r1) + (r2 + r3)) + ((r4 + r5) + (r6 + r7))
    for i in range(end, first + n):
        total += a[i]
    return total


@numba.njit(cache=True)
def _pairwise_sum(a, first, n):
    """``numpy.sum`` of ``a[first:first + n]`` bit for bit: numpy's pairwise summation of float64 (blocks of
    at most 128 values, halves split at a multiple of 8), walked with an explicit stack."""
    starts = np.empty(64, np.int64)
    sizes = np.empty(64, np.int64)
    stage = np.empty(64, np.int64)
    partial = np.empty(64)
    top = 0
    done = 0
    starts[0] = first
    sizes[0] = n
    stage[0] = 0
    while top >= 0:
        m = sizes[top]
        half = m // 2
        half -= half % 8
        if m <= 128:
            partial[done] = _block_sum(a, starts[top], m)
            done += 1
            top -= 1
        elif stage[top] < 2:
            stage[top] += 1
            offset = 0 if stage[top] == 1 else half
            starts[top + 1] = starts[top] + offset
            sizes[top + 1] = half if stage[top] == 1 else m - half
            stage[top + 1] = 0
            top += 1
        else:
            done -= 1
            partial[done - 1] = partial[done - 1] + partial[done]
            top -= 1
    return partial[0]


@numba.njit(cache=True)
def _box_values(data, bad, y0, y1, x0, x1, column_major, lower, upper, values, kept):
    """The box's pixels in photutils' layout (column by column for the boxes of the last row or column):
    ``values`` gets each pixel (0 where not kept), ``kept`` whether it is usable and within [lower, upper]
    (NaN bounds: usable). Returns the number of pixels and the number kept."""
    n = 0
    m = 0
    any_value = math.isnan(lower)
    outer, inner = (x1 - x0, y1 - y0) if column_major else (y1 - y0, x1 - x0)
    # pixel (p, q) of the layout is row y0 + p·dy_p + q·dy_q, column x0 + p·dx_p + q·dx_q
    dy_p, dy_q, dx_p, dx_q = (0, 1, 1, 0) if column_major else (1, 0, 0, 1)
    for p in range(outer):
        for q in range(inner):
            j = y0 + p * dy_p + q * dy_q
            i = x0 + p * dx_p + q * dx_q
            v = np.float64(data[j, i])
            ok = not bad[j, i] and math.isfinite(v) and (any_value or (v >= lower and v <= upper))
            kept[n] = ok
            values[n] = v if ok else 0.0
            m += ok
            n += 1
    return n, m


@numba.njit(cache=True, parallel=True)
def _box_statistics(data, bad, box, sigma, maxiters, median, rms, kept):
    """Sigma-clipped median, standard deviation and number of kept pixels of every box."""
    ny, nx = data.shape
    nby, nbx = median.shape
    for b in prange(nby * nbx):
        by = b // nbx
        bx = b - by * nbx
        y0 = by * box
        x0 = bx * box
        y1 = min(y0 + box, ny)
        x1 = min(x0 + box, nx)
        column_major = (y1 - y0 < box) != (x1 - x0 < box)
        values = np.empty(box * box)
        usable = np.empty(box * box, np.bool_)
        keys = np.empty(box * box, np.uint64)
        scratch = np.empty(box * box, np.uint64)
        counts = np.empty(256, np.int64)
        size, n = _box_values(data, bad, y0, y1, x0, x1, column_major, np.nan, np.nan, values, usable)
        k = 0
        for i in range(size):
            if usable[i]:
                values[k] = values[i]
                k += 1
        _sort_values(values, n, keys, scratch, counts)
        first, end = _clipped_range(values, n, sigma, maxiters)
        kept[by, bx] = end - first
        if end == first:
            median[by, bx] = np.nan
            rms[by, bx] = np.nan
            continue
        median[by, bx] = _median_sorted(values, first, end)
        # numpy.nanstd of the kept pixels, summed in photutils' layout
        lower = values[first]
        upper = values[end - 1]
        size, n = _box_values(data, bad, y0, y1, x0, x1, column_major, lower, upper, values, usable)
        mean = _pairwise_sum(values, 0, size) / n
        for i in range(size):
            d = values[i] - mean if usable[i] else 0.0
            values[i] = d * d
        rms[by, bx] = math.sqrt(_pairwise_sum(values, 0, size) / n)


@numba.njit(cache=True)
def _median(a, n):
    """Median of ``a[:n]`` (mean of the two middle values for even n), sorting ``a[:n]``."""
    a[:n].sort()
    return _median_sorted(a, 0, n)


@numba.njit(cache=True)
def _median_filter(grid, size):
    """Median over ``size × size`` neighbourhoods of a 2-D map, ignoring what lies beyond its edges."""
    ny, nx = grid.shape
    h = size // 2
    out = np.empty_like(grid)
    window = np.empty(size * size)
    for j in range(ny):
        for i in range(nx):
            n = 0
            for jj in range(max(j - h, 0), min(j + h + 1, ny)):
                for ii in range(max(i - h, 0), min(i + h + 1, nx)):
                    window[n] = grid[jj, ii]
                    n += 1
            out[j, i] = _median(window, n)
    return out


def _reflect(coordinate, n):
    """A coordinate beyond ``[0, n - 1]`` folded back as scipy.ndimage's 'reflect' mode folds it."""
    if coordinate < 0:
        if n <= 1:
            return 0.0
        period = 2 * n
        if coordinate < -period:
            coordinate = period * int(-coordinate / period) + coordinate
        return coordinate + period if coordinate < -n else (1e-15 if coordinate > -1e-15 else -coordinate) - 1
    if coordinate > n - 1:
        if n <= 1:
            return 0.0
        period = 2 * n
        coordinate -= period * int(coordinate / period)
        if coordinate >= n:
            coordinate = period - coordinate - 1
    return coordinate


@functools.lru_cache(maxsize=8)
def _zoom_axis(n_boxes: int, box: int, n_pixels: int):
    """Cubic-spline zoom by ``box`` along one axis, as ``scipy.ndimage.zoom(..., grid_mode=True,
    mode='reflect')`` computes it: the 4 spline coefficients each output pixel reads ``(n_pixels, 4)`` and
    their weights ``(n_pixels, 4)`` (read-only)."""
    scale = float(np.divide(n_boxes, n_boxes * box))
    index = np.empty((n_pixels, 4), np.int64)
    weight = np.empty((n_pixels, 4))
    for o in range(n_pixels):
        cc = float(o)
        cc += 0.5
        cc *= scale
        cc -= 0.5
        cc = _reflect(cc, n_boxes)
        start = math.floor(cc) - 1
        for k in range(4):
            index[o, k] = start + k
            if start < 0 or start + 3 >= n_boxes:
                index[o, k] = int(_reflect(float(start + k), n_boxes))
        x = cc - math.floor(cc)
        z = 1.0 - x
        weight[o, 1] = (x * x * (x - 2.0) * 3.0 + 4.0) / 6.0
        weight[o, 2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0
        weight[o, 0] = z * z * z / 6.0
        last = 1.0
        for k in range(3):
            last -= weight[o, k]
        weight[o, 3] = last
    index.flags.writeable = False
    weight.flags.writeable = False
    return index, weight


@numba.njit(cache=True, parallel=True)
def _zoom(coefficients, row_index, row_weight, column_index, column_weight, low, high, out):
    """``out[j, i] = Σ_a Σ_b c[row_index[j, a], column_index[i, b]] · row_weight[j, a] · column_weight[i, b]``,
    summed in scipy's order, clipped to [low, high]."""
    ny, nx = out.shape
    # runs of output columns that read the same coefficients
    starts = [0]
    for i in range(1, nx):
        for b in range(4):
            if column_index[i, b] != column_index[i - 1, b]:
                starts.append(i)
                break
    starts.append(nx)
    wx = np.ascontiguousarray(column_weight.T)
    for j in prange(ny):
        q = np.empty((4, 4))
        for r in range(len(starts) - 1):
            i0 = starts[r]
            for a in range(4):
                for b in range(4):
                    q[a, b] = coefficients[row_index[j, a], column_index[i0, b]] * row_weight[j, a]
            for i in range(i0, starts[r + 1]):
                t = 0.0
                for a in range(4):
                    for b in range(4):
                        t += q[a, b] * wx[b, i]
                out[j, i] = min(max(t, low), high)


def _fill_excluded(grid):
    """Excluded (NaN) boxes filled by inverse-distance weighting of the 10 nearest others (photutils' fill)."""
    missing = np.isnan(grid)
    if not missing.any():
        return grid
    from photutils.utils import ShepardIDWInterpolator

    interpolate = ShepardIDWInterpolator(np.column_stack(np.nonzero(~missing)), grid[~missing])
    filled = grid.copy()
    filled[missing] = interpolate(np.column_stack(np.nonzero(missing)), n_neighbors=10, power=1.0, eps=0.0,
                                  regularization=0.0)
    return filled


def _zoom_to_image(grid, box, shape):
    """Box map -> image: cubic-spline zoom by ``box``, cropped to ``shape``, clipped to the map's range."""
    from scipy.ndimage import spline_filter

    low, high = float(np.min(grid)), float(np.max(grid))
    if low == high:
        return np.full(shape, low)
    image = np.empty(shape)
    _zoom(spline_filter(grid, 3, output=np.float64, mode="reflect"), *_zoom_axis(grid.shape[0], box, shape[0]),
          *_zoom_axis(grid.shape[1], box, shape[1]), low, high, image)
    return image


def box_background(data, mask, box: int, *, sigma: float = 3.0, maxiters: int = 5, exclude_percentile: float = 10.0,
                   filter_size: int = 3):
    """Background and background RMS images of ``data`` from sigma-clipped statistics in boxes.

    Parameters
    ----------
    data : ndarray (ny, nx) float32 or float64
        Image (any unit); non-finite pixels are not used.
    mask : ndarray of bool (ny, nx)
        Pixels not to use.
    box : int
        Side of the boxes (pixels), at most the image's smaller side.
    sigma, maxiters : float, int
        Clip bounds (standard deviations either side of the median) and most clipping iterations.
    exclude_percentile : float
        Boxes with more than this percentage of their ``box²`` pixels masked or clipped are excluded.
    filter_size : int
        Side (boxes, odd) of the median filter of the box maps.

    Returns
    -------
    background, background_rms : ndarray (ny, nx) float64
        In the unit of ``data``.

    Raises
    ------
    ValueError
        If ``box`` does not fit the image or every box is excluded.
    """
    data = np.asarray(data)
    if data.dtype not in (np.float32, np.float64):
        data = data.astype(np.float64)
    mask = np.asarray(mask, np.bool_)
    ny, nx = data.shape
    box = int(box)
    if mask.shape != data.shape:
        raise ValueError(f"mask {mask.shape} must have the shape of data {data.shape}")
    if not 0 < box <= min(ny, nx):
        raise ValueError(f"box {box} must be between 1 and the image's smaller side {min(ny, nx)}")
    nby, nbx = -(-ny // box), -(-nx // box)
    median = np.empty((nby, nbx))
    rms = np.empty((nby, nbx))
    kept = np.empty((nby, nbx), np.int64)
    _box_statistics(data, mask, box, float(sigma), int(maxiters), median, rms, kept)
    excluded = kept <= (1 - exclude_percentile / 100.0) * box * box
    if excluded.all():
        raise ValueError(f"every {box}x{box} box has too few usable pixels for a background")
    median[excluded] = np.nan
    rms[excluded] = np.nan
    maps = [_fill_excluded(grid) for grid in (median, rms)]
    if filter_size > 1:
        maps = [_median_filter(grid, int(filter_size)) for grid in maps]
    return tuple(_zoom_to_image(grid, box, (ny, nx)) for grid in maps)
