"""Pure numerical parts of source injection: point-source stamps, adding stamps, Poisson noise for added flux.

Units: positions in 0-based pixels of the target image; fluxes and images in the
image's own unit per pixel (DN/s for L2, MJy/sr for L3, or anything linear);
variances in that unit squared.
"""

from __future__ import annotations

import numpy as np

from romanflow.kernels.epsf import add_point_source, check_epsf


def stamp_origin(x, y, half: int):
    """Lower-left pixel (x0, y0) of the ``(2·half+1)²`` stamp centred on the pixel nearest (x, y)."""
    return (np.floor(np.asarray(x, np.float64) + 0.5).astype(np.int64) - int(half),
            np.floor(np.asarray(y, np.float64) + 0.5).astype(np.int64) - int(half))


def point_source_stamp(epsf, oversample: int, x: float, y: float, flux: float, half: int):
    """Stamp of a point source: ``flux`` times the effective PSF at every pixel of the box.

    Parameters
    ----------
    epsf : ndarray (n, n)
        Oversampled effective PSF, fraction of the total flux per pixel
        (:mod:`romanflow.kernels.epsf` conventions).
    oversample : int
        Samples per pixel.
    x, y : float
        Source position (pixels of the target image).
    flux : float
        Total flux of the source.
    half : int
        Half-size of the stamp (pixels).

    Returns
    -------
    stamp : ndarray (2·half+1, 2·half+1) float64
        Flux per pixel; the stamp's lower-left pixel is :func:`stamp_origin`.
        Slightly negative interpolation ripples of the far wings are set to 0.
    """
    epsf, oversample = check_epsf(epsf, oversample)
    size = 2 * int(half) + 1
    stamp = np.zeros((size, size), np.float64)
    x0, y0 = stamp_origin(x, y, half)
    add_point_source(stamp, epsf, oversample, float(x) - float(x0), float(y) - float(y0), float(flux), int(half))
    return np.clip(stamp, 0.0, None)


def add_stamps(image: np.ndarray, stamps, x0, y0) -> np.ndarray:
    """Add stamps into ``image`` in place, each clipped to the image.

    Parameters
    ----------
    image : ndarray (ny, nx)
    stamps : sequence of ndarray (h, w)
    x0, y0 : sequence of int
        Lower-left pixel of each stamp on the image.

    Returns
    -------
    ndarray (n_stamps,)
        The flux of each stamp that landed on the image.
    """
    ny, nx = image.shape
    landed = np.zeros(len(stamps))
    for k, (stamp, sx, sy) in enumerate(zip(stamps, x0, y0)):
        h, w = stamp.shape
        ax0, ay0 = max(int(sx), 0), max(int(sy), 0)
        ax1, ay1 = min(int(sx) + w, nx), min(int(sy) + h, ny)
        if ax1 <= ax0 or ay1 <= ay0:
            continue
        part = stamp[ay0 - sy:ay1 - sy, ax0 - sx:ax1 - sx]
        image[ay0:ay1, ax0:ax1] += part
        landed[k] = float(part.sum())
    return landed


def variance_per_flux(data, var_poisson, *, max_anticorrelation: float = 0.5, min_fraction: float = 0.25,
                      max_fraction: float = 4.0) -> np.ndarray:
    """Poisson variance per unit of flux of every pixel, from ``var_poisson / data``.

    A calibrated image's Poisson variance is its fitted signal times a
    per-pixel factor (1/(gain · effective time), divided by the flat, with the
    ramp fit's weighting), so the ratio gives that factor exactly wherever the
    signal is positive, and each pixel keeps its own (the median standing in where
    the signal is not positive or the ratio is off by more than [min_fraction,
    max_fraction] times the median: a quantised value). An image whose Poisson
    variance follows another signal than its data (a noiseless model, a smoothed
    one) has ratios that fall as its data fluctuate up: when the correlation of
    the log ratio with the data's deviation from their 5×5 mean is below
    ``-max_anticorrelation``, the median applies everywhere.

    Returns
    -------
    ndarray (ny, nx) float64, in the image's unit (variance / flux).

    Raises
    ------
    ValueError
        If no pixel has a positive signal and Poisson variance.
    """
    data = np.asarray(data, np.float64)
    var = np.asarray(var_poisson, np.float64)
    good = np.isfinite(data) & np.isfinite(var) & (data > 0) & (var > 0)
    if not good.any():
        raise ValueError("no pixel with positive signal and Poisson variance: the variance per flux is unknown")
    ratio = np.zeros_like(data)
    ratio[good] = var[good] / data[good]
    median = float(np.median(ratio[good]))
    from scipy.ndimage import uniform_filter

    local = uniform_filter(np.where(np.isfinite(data), data, 0.0), 5)
    with np.errstate(divide="ignore", invalid="ignore"):
        deviation = ((data - local) / np.abs(local))[good]
    lr = np.log(ratio[good])
    use = np.isfinite(deviation)
    if use.sum() > 2 and np.std(lr[use]) > 0 and np.std(deviation[use]) > 0:
        if np.corrcoef(lr[use], deviation[use])[0, 1] < -max_anticorrelation:
            return np.full(data.shape, median)
    ok = good & (ratio >= min_fraction * median) & (ratio <= max_fraction * median)
    return np.where(ok, ratio, median)


def poisson_noise_for(added, variance_per_flux, rng: np.random.Generator) -> np.ndarray:
    """Noise of added flux: ``k · Poisson(added / k) − added`` per pixel, ``k`` the variance per flux.

    The counts ``added / k`` are the photo-electrons (times the flat and the ramp
    fit's weighting) that the added flux would have produced, so the noise has
    the variance ``k · added`` and the skew of real photon noise. Pixels where
    nothing was added get exactly 0.

    Parameters
    ----------
    added : ndarray (ny, nx)
        Flux added to each pixel (>= 0).
    variance_per_flux : ndarray (ny, nx) or float
        :func:`variance_per_flux`.
    rng : numpy.random.Generator

    Returns
    -------
    ndarray (ny, nx) float64
    """
    added = np.asarray(added, np.float64)
    k = np.broadcast_to(np.asarray(variance_per_flux, np.float64), added.shape)
    noise = np.zeros(added.shape)
    where = (added > 0) & (k > 0)
    counts = added[where] / k[where]
    noise[where] = k[where] * rng.poisson(counts) - added[where]
    return noise


def correlation_kernel(correlation) -> np.ndarray:
    """A kernel ``h`` whose autocorrelation is ``correlation``: white noise of unit variance
    convolved with ``h`` has that correlation between pixels (and unit variance).

    Parameters
    ----------
    correlation : ndarray (2L + 1, 2L + 1)
        Normalised noise correlation, ``ρ[L + dy, L + dx]``, ``ρ[L, L] = 1``
        (:func:`romanflow.catalog.detect.noise_correlation` divided by its centre).

    Returns
    -------
    ndarray (4L + 1, 4L + 1)
        ``h``, centred, with ``Σ h² = 1``: the square root of the correlation's power
        spectrum (negative powers, from a noisy measurement, set to 0).
    """
    rho = np.asarray(correlation, np.float64)
    if rho.ndim != 2 or rho.shape[0] != rho.shape[1] or rho.shape[0] % 2 == 0:
        raise ValueError(f"correlation must be a square array with an odd side, got {rho.shape}")
    lag = rho.shape[0] // 2
    n = 4 * lag + 1
    padded = np.zeros((n, n))
    padded[lag:lag + rho.shape[0], lag:lag + rho.shape[0]] = rho
    power = np.fft.fft2(np.fft.ifftshift(padded)).real
    h = np.fft.fftshift(np.fft.ifft2(np.sqrt(np.clip(power, 0.0, None))).real)
    norm = np.sqrt(np.sum(h**2))
    if not (np.isfinite(norm) and norm > 0):
        raise ValueError("the correlation has no positive power")
    return h / norm
