"""Synthetic L2 images of point sources at known positions (galsim effective PSF)."""

from __future__ import annotations

import numpy as np
from astropy.time import Time

from romanflow import geometry
from romanflow.calibrate.assign_wcs import assign_wcs
from romanflow.exposure import RateImage

SKY = 0.5  # DN/s per pixel
NOISE = 0.05  # DN/s per pixel (background-limited)
STAMP = 10  # half-size of a rendered star stamp (pixels); the library PSF the fit uses


def render(shape, x, y, flux, detector, optical_element="F158"):
    """Noise-free image (DN/s) of point sources at pixel positions x, y with total fluxes (DN/s).

    Stamps are ±STAMP pixels: the light beyond them (a few per cent) is left out, as it is from a
    real image by the fit box, so fitted total fluxes should match ``flux``.
    """
    from romanflow.kernels.epsf import add_point_source
    from romanflow.psf import psf_model

    model = psf_model(detector, optical_element)
    epsf = model.epsf(2043.5, 2043.5)  # the detector centre: these patches are small
    image = np.zeros(shape)
    for xi, yi, fi in zip(x, y, flux):
        add_point_source(image, epsf, model.oversample, float(xi), float(yi), float(fi), STAMP)
    return image


def flux_for_snr(snr, detector="WFI01", optical_element="F158"):
    """Flux (DN/s) giving a PSF-fit S/N of ``snr`` on the background noise alone."""
    from romanflow.psf import psf_image

    native = psf_image(detector, optical_element, 2043.5, 2043.5, size=21)
    return snr * NOISE / np.sqrt(np.sum(native**2))


def rate_image(data, rng, detector, pointing, science_size, optical_element="F158", start_mjd=61500.0):
    """Noisy RateImage with metadata and the WCS of ``pointing`` assigned."""
    noisy = data + SKY + rng.normal(0.0, NOISE, data.shape)
    err = np.full(data.shape, NOISE, np.float32)
    meta = {
        "instrument": {"name": "WFI", "detector": detector, "optical_element": optical_element},
        "exposure": {"start_time": Time(start_mjd, format="mjd", scale="utc")},
        "observation": {"observation_id": "test"},
        "wcsinfo": {k: v for k, v in geometry.wcsinfo_meta(detector, pointing, science_size).items()
                    if k != "s_region"},
        "velocity_aberration": {"scale_factor": pointing.va_scale},
    }
    image = RateImage(noisy.astype(np.float32), err, np.zeros(data.shape, np.uint32), err**2, err**2, meta)
    return assign_wcs(image, None)


def star_field(detectors, pointing_true, pointing_assigned, rng, *, science_size=248, n_per_detector=14,
               snr_range=(100.0, 800.0), margin=8):
    """Images (WCS of ``pointing_assigned``) of stars placed with ``pointing_true``.

    Returns (images, truth) with truth[k] = dict(x, y, flux, ra, dec) of image k.
    """
    images, truth = [], []
    for det in detectors:
        n = n_per_detector
        x = rng.uniform(margin, science_size - 1 - margin, n)
        y = rng.uniform(margin, science_size - 1 - margin, n)
        flux = flux_for_snr(rng.uniform(*snr_range, n), det)
        data = render((science_size, science_size), x, y, flux, det)
        ra, dec = geometry.DetectorProjection(det, pointing_true, science_size).pixel_to_world(x, y)
        images.append(rate_image(data, rng, det, pointing_assigned, science_size))
        truth.append({"x": x, "y": y, "flux": flux, "ra": ra, "dec": dec})
    return images, truth
