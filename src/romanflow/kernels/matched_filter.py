"""Matched-filter detection of point sources: S/N map and its local peaks.

* :func:`detection_images`: background-subtracted image, per-pixel error and
  sky variance from an image, its error, a mask and the background maps.
* :func:`matched_filter_snr`: ``(image ⊛ k) / sqrt(variance ⊛ k²)`` for a small
  kernel ``k`` (the PSF at native pixels); the convolutions are those of
  :func:`astropy.convolution.convolve` with ``normalize_kernel=False,
  boundary='fill', fill_value=0`` on finite images, bit for bit (same terms,
  same order of summation).
* :func:`local_peaks`: pixels above a threshold that are the maximum of their
  3×3 neighbourhood (ties all kept), off the one-pixel border, in row-major
  order: :func:`photutils.detection.find_peaks` with ``box_size=3,
  border_width=1`` on a finite, non-constant image.

Units: any; the S/N map is dimensionless.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

__all__ = ["detection_images", "matched_filter_snr", "local_peaks"]

_COLUMN_BLOCK = 512  #: output pixels of a row accumulated together (kept in the first-level cache)


@numba.njit(cache=True, parallel=True)
def _detection_images(data, err, bad, background, background_rms, sigma):
    ny, nx = data.shape
    for j in prange(ny):
        for i in range(nx):
            rms = background_rms[j, i]
            e = np.float64(err[j, i])
            s = e if (math.isfinite(e) and e > 0.0) else rms
            sigma[j, i] = s
            if bad[j, i]:
                background[j, i] = 0.0
                background_rms[j, i] = 0.0
            else:
                background[j, i] = np.float64(data[j, i]) - background[j, i]
                sky = min(s, rms)
                background_rms[j, i] = sky * sky


def detection_images(data, err, bad, background, background_rms):
    """Inputs of a matched-filter detection and of PSF fits.

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Image and its 1-sigma error (one unit); a non-finite or non-positive
        error falls back to ``background_rms``.
    bad : ndarray of bool (ny, nx)
        Pixels not to use (non-finite data among them).
    background, background_rms : ndarray (ny, nx) float64, C-contiguous
        Background and its RMS (unit of ``data``); overwritten: they become
        ``residual`` and ``sky_variance``.

    Returns
    -------
    residual, sigma, sky_variance : ndarray (ny, nx) float64
        ``data - background`` (0 where bad), the error, and the sky's share of
        the variance ``min(sigma, background_rms)²`` (0 where bad).
    """
    if not (background.flags.c_contiguous and background_rms.flags.c_contiguous and background.dtype == np.float64
            and background_rms.dtype == np.float64):
        raise ValueError("background and background_rms must be C-contiguous float64 arrays (they are overwritten)")
    sigma = np.empty(np.shape(data))
    _detection_images(np.asarray(data), np.asarray(err), np.asarray(bad, np.bool_), background, background_rms, sigma)
    return background, sigma, background_rms


@numba.njit(cache=True)
def _add_taps(signal, noise, image_row, variance_row, weights, weights_squared, x0, lo, hi, h):
    """Add one kernel row's terms to the sums of output columns [lo, hi), column by column near the edges."""
    nk = weights.shape[0]
    nx = image_row.shape[0]
    for b in range(nk):
        for i in range(max(lo, h - b), min(hi, nx + h - b)):
            signal[i - x0] += image_row[i + b - h] * weights[b]
            noise[i - x0] += variance_row[i + b - h] * weights_squared[b]


@numba.njit(cache=True, parallel=True)
def _matched_filter(image, variance, flipped, flipped_squared, snr, nk):
    numba.literally(nk)  # a constant number of taps: the inner loop is unrolled and the columns vectorized
    ny, nx = image.shape
    h = nk // 2
    for j in prange(ny):
        signal = np.empty(_COLUMN_BLOCK)
        noise = np.empty(_COLUMN_BLOCK)
        for x0 in range(0, nx, _COLUMN_BLOCK):
            x1 = min(x0 + _COLUMN_BLOCK, nx)
            lo = min(max(x0, h), x1)  # columns [lo, hi) have every term inside the image
            hi = max(min(x1, nx - h), lo)
            signal[:] = 0.0
            noise[:] = 0.0
            # each pixel's terms in astropy's order: kernel rows, then columns; terms beyond the image are
            # zero and leave the sums unchanged
            for a in range(nk):
                r = j + a - h
                if r < 0 or r >= ny:
                    continue
                _add_taps(signal, noise, image[r], variance[r], flipped[a], flipped_squared[a], x0, x0, lo, h)
                _add_taps(signal, noise, image[r], variance[r], flipped[a], flipped_squared[a], x0, hi, x1, h)
                s = signal[lo - x0:hi - x0]
                v = noise[lo - x0:hi - x0]
                image_row = image[r, lo - h:hi + h]
                variance_row = variance[r, lo - h:hi + h]
                w = flipped[a]
                w2 = flipped_squared[a]
                for k in range(hi - lo):
                    t = s[k]
                    u = v[k]
                    for b in range(nk):
                        t += image_row[k + b] * w[b]
                        u += variance_row[k + b] * w2[b]
                    s[k] = t
                    v[k] = u
            for i in range(x0, x1):
                sd = math.sqrt(noise[i - x0])
                snr[j, i] = signal[i - x0] / sd if sd > 0.0 else 0.0


def matched_filter_snr(image, variance, kernel):
    """Matched-filter S/N map: ``(image ⊛ kernel) / sqrt(variance ⊛ kernel²)``, 0 where the noise is 0.

    Parameters
    ----------
    image : ndarray (ny, nx) float64
        Background-subtracted image, finite (0 on unusable pixels).
    variance : ndarray (ny, nx) float64
        Its noise variance, finite, non-negative (0 on unusable pixels).
    kernel : ndarray (m, m), m odd
        Filter (e.g. the PSF at native pixels, fraction of flux per pixel).

    Returns
    -------
    ndarray (ny, nx) float64
        Convolutions with zeros beyond the image, as
        ``astropy.convolution.convolve(..., normalize_kernel=False, boundary='fill', fill_value=0)``.
    """
    kernel = np.asarray(kernel, np.float64)
    if kernel.ndim != 2 or kernel.shape[0] != kernel.shape[1] or kernel.shape[0] % 2 == 0:
        raise ValueError(f"kernel must be square with an odd side, got {kernel.shape}")
    flipped = np.ascontiguousarray(kernel[::-1, ::-1])
    snr = np.empty(np.shape(image))
    _matched_filter(np.ascontiguousarray(image, np.float64), np.ascontiguousarray(variance, np.float64), flipped,
                    flipped**2, snr, int(kernel.shape[0]))
    return snr


@numba.njit(cache=True, inline="always")
def _is_peak(image, j, i, threshold):
    v = image[j, i]
    if not v > threshold:
        return False
    for jj in range(j - 1, j + 2):
        for ii in range(i - 1, i + 2):
            if image[jj, ii] > v:
                return False
    return True


@numba.njit(cache=True, parallel=True)
def _count_peaks(image, threshold, counts):
    ny, nx = image.shape
    for j in prange(1, ny - 1):
        c = 0
        for i in range(1, nx - 1):
            if _is_peak(image, j, i, threshold):
                c += 1
        counts[j] = c


@numba.njit(cache=True, parallel=True)
def _list_peaks(image, threshold, first, x, y):
    ny, nx = image.shape
    for j in prange(1, ny - 1):
        k = first[j]
        for i in range(1, nx - 1):
            if _is_peak(image, j, i, threshold):
                x[k] = i
                y[k] = j
                k += 1


def local_peaks(image, threshold: float):
    """Local maxima of an image above a threshold.

    Parameters
    ----------
    image : ndarray (ny, nx) float64
        Finite image.
    threshold : float
        Peaks are strictly above it.

    Returns
    -------
    x, y : ndarray of int64
        Column and row of every pixel off the one-pixel border that exceeds
        ``threshold`` and none of its 8 neighbours, in row-major order.
    """
    image = np.ascontiguousarray(image, np.float64)
    ny = image.shape[0]
    counts = np.zeros(ny + 1, np.int64)
    if min(image.shape) >= 3:
        _count_peaks(image, float(threshold), counts[1:])
    first = np.cumsum(counts)[:-1]
    x = np.empty(counts.sum(), np.int64)
    y = np.empty_like(x)
    if x.size:
        _list_peaks(image, float(threshold), first, x, y)
    return x, y
