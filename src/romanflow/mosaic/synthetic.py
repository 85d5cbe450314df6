"""Synthetic L2 rate images with point sources of known flux, for mosaic tests and benchmarks.

Stars are circular Gaussians integrated exactly over each pixel (error
functions), placed through the detector's true geometry
(:mod:`romanflow.geometry`), so the total flux of every star on the detector is
known to float precision. Noise is Gaussian with the variances written into
``var_poisson`` and ``var_rnoise``.
"""

from __future__ import annotations

import numpy as np
from scipy.special import erf

from romanflow.exposure import RateImage

#: MJy/sr per DN/s given to synthetic inputs (the order of the WFI filters' conversion).
PHOTMJSR = 0.3


def _pixel_integrated_gaussian(x0, y0, sigma, half, nx, ny):
    """Per-pixel fractions of a unit Gaussian at (x0, y0) over a (2·half+1)² stamp."""
    ix0, iy0 = int(round(x0)), int(round(y0))
    xs = np.arange(max(ix0 - half, 0), min(ix0 + half + 1, nx))
    ys = np.arange(max(iy0 - half, 0), min(iy0 + half + 1, ny))
    s = sigma * np.sqrt(2.0)
    fx = 0.5 * (erf((xs + 0.5 - x0) / s) - erf((xs - 0.5 - x0) / s))
    fy = 0.5 * (erf((ys + 0.5 - y0) / s) - erf((ys - 0.5 - y0) / s))
    return ys, xs, np.outer(fy, fx)


def render_stars(shape, x, y, flux, sigma: float = 1.2, half: int = 10) -> np.ndarray:
    """Image (DN/s) of Gaussian stars of total ``flux`` (DN/s) at 0-based pixel positions."""
    ny, nx = shape
    img = np.zeros(shape, dtype=np.float64)
    for xi, yi, fi in zip(np.atleast_1d(x), np.atleast_1d(y), np.atleast_1d(flux)):
        if not (-half <= xi < nx + half and -half <= yi < ny + half):
            continue
        ys, xs, stamp = _pixel_integrated_gaussian(float(xi), float(yi), sigma, half, nx, ny)
        if ys.size and xs.size:
            img[np.ix_(ys, xs)] += fi * stamp
    return img


def make_rate_image(detector, pointing, science_size: int, stars=None, *, sky: float = 0.5,
                    read_noise_var: float = 4e-4, exptime: float = 139.8, sigma_pix: float = 1.2,
                    seed: int = 0, noise: bool = True, optical_element: str = "F158",
                    exposure: int = 1) -> RateImage:
    """A calibrated-looking L2 image of a star field.

    Parameters
    ----------
    detector : str
        ``'WFI01'`` … ``'WFI18'``.
    pointing : romanflow.geometry.Pointing
    science_size : int
        Pixels per side (a central patch of the detector when < 4088).
    stars : (ra, dec, flux) arrays, optional
        Positions (deg) and total fluxes (DN/s).
    sky : float
        Background (DN/s per pixel).
    read_noise_var : float
        Read-noise variance ((DN/s)^2 per pixel).
    exptime : float
        Exposure time (s), sets the Poisson variance ``signal / exptime``.
    sigma_pix : float
        Gaussian PSF sigma (input pixels).
    noise : bool
        Add noise drawn from the stated variances.
    exposure : int
        ``meta.observation.exposure`` number.
    """
    from romanflow.geometry import DetectorProjection, detector_gwcs

    rng = np.random.default_rng(seed)
    n = int(science_size)
    truth = np.zeros((n, n))
    if stars is not None:
        ra, dec, flux = (np.atleast_1d(np.asarray(v, dtype=float)) for v in stars)
        px, py = DetectorProjection(detector, pointing, n).world_to_pixel(ra, dec)
        truth = render_stars((n, n), px, py, flux, sigma=sigma_pix)
    signal = truth + sky
    var_poisson = np.clip(signal, 0, None) / exptime
    var_rnoise = np.full((n, n), read_noise_var)
    data = signal + (rng.normal(size=(n, n)) * np.sqrt(var_poisson + var_rnoise) if noise else 0.0)
    meta = {
        "instrument": {"name": "WFI", "detector": str(detector), "optical_element": optical_element},
        "exposure": {"exposure_time": float(exptime), "effective_exposure_time": float(exptime)},
        "photometry": {"conversion_megajanskys": PHOTMJSR, "conversion_megajanskys_uncertainty": 0.0,
                       "pixel_area": (0.11 / 206264.806) ** 2},
        "observation": {"program": 1, "execution_plan": 1, "pass": 1, "segment": 1, "observation": 1,
                        "visit": 1, "exposure": int(exposure)},
    }
    return RateImage(
        data=data.astype(np.float32),
        err=np.sqrt(var_poisson + var_rnoise).astype(np.float32),
        dq=np.zeros((n, n), np.uint32),
        var_poisson=var_poisson.astype(np.float32),
        var_rnoise=var_rnoise.astype(np.float32),
        var_flat=np.zeros((n, n), np.float32),
        meta=meta,
        wcs=detector_gwcs(detector, pointing, n),
    )
