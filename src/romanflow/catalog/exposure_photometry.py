"""PSF photometry of mosaic sources on the calibrated exposures that make the mosaic.

A drizzled image of an undersampled PSF depends on where each star fell within
the pixels of each input: with a few dithers, stars look lumpy in ways a single
PSF model cannot follow, and a PSF fit on the mosaic is off by a few percent
star to star (worse in the bluer, more undersampled bands). On each exposure's
native pixels the PSF is known exactly. So every catalogued source is fitted
(position and flux) on each exposure covering it, and the fluxes are combined
by inverse variance; their scatter about the mean is reported as a reduced
chi-square, which also flags variable sources.
"""

from __future__ import annotations

import logging

import numpy as np

from romanflow.catalog import photometry
from romanflow.catalog.band_image import BandImage, record_fallback
from romanflow.catalog.prepare import prepare_image
from romanflow.catalog.products import read_band_image

_log = logging.getLogger(__name__)

#: Largest shift (exposure pixels) of a fit from the catalogued position before it is rejected.
MAX_SHIFT_PIX = 1.0
#: Margin (exposure pixels) a position must keep from the exposure's edges.
EDGE_MARGIN_PIX = 3


def exposure_psf_photometry(ra, dec, exposures, flux_guess=None, *, background_box: int = 64):
    """Fit the PSF at sky positions on each exposure and combine the fluxes.

    Parameters
    ----------
    ra, dec : ndarray (n,)
        Source positions (deg, ICRS), e.g. from a mosaic catalog.
    exposures : sequence of str, Path or BandImage
        Calibrated (L2) images in one band, read one at a time when paths.
    flux_guess : ndarray (n,), optional
        Starting fluxes (nJy).
    background_box : int
        Background mesh size (exposure pixels).

    Returns
    -------
    dict of ndarray (n,)
        ``flux``, ``flux_err`` (nJy), ``n_exposures``, ``reduced_chi2`` (of the
        exposures' fluxes about their mean; NaN with fewer than two),
        ``ra``, ``dec`` (deg, inverse-variance mean of the fitted positions).
        Fluxes are NaN where no exposure gave a good fit. Also ``fallbacks``
        (list of str): what stood in for a missing piece (an exposure without a
        PSF model is left out; see :attr:`BandImage.fallbacks`).
    """
    ra = np.asarray(ra, np.float64)
    dec = np.asarray(dec, np.float64)
    n = len(ra)
    guess = np.full(n, 1.0) if flux_guess is None else np.asarray(flux_guess, np.float64)
    s0, s1, s2 = np.zeros(n), np.zeros(n), np.zeros(n)
    count = np.zeros(n, np.int16)
    pos_w, pos_ra, pos_dec = np.zeros(n), np.zeros(n), np.zeros(n)
    fallbacks: list[str] = []
    for item in exposures:
        image = item if isinstance(item, BandImage) else read_band_image(item)
        fallbacks += [f for f in image.fallbacks if f not in fallbacks]
        if image.psf_model is None:
            name = (image.provenance.get("inputs") or ["(in memory)"])[0] if item is image else str(item)
            record_fallback(fallbacks, f"{image.band}: exposure {name} has no PSF model and is left out of the "
                                       "PSF fits on the exposures", _log)
            continue
        prep = prepare_image(image, background_box=background_box, detect_snr=5.0)
        ny, nx = prep.data.shape
        x, y = (np.asarray(v, np.float64) for v in image.wcs.world_to_pixel_values(ra, dec))
        inside = (np.isfinite(x) & np.isfinite(y) & (x > EDGE_MARGIN_PIX) & (y > EDGE_MARGIN_PIX)
                  & (x < nx - 1 - EDGE_MARGIN_PIX) & (y < ny - 1 - EDGE_MARGIN_PIX))
        idx = np.nonzero(inside)[0]
        if idx.size == 0:
            continue
        fit = photometry.fit_psf_photometry(
            prep.data, prep.err, x[idx], y[idx], guess[idx], prep.psf_model,
            fit_shape=(5, 5) if prep.psf_fwhm_pix < 3.5 else (7, 7), mask=prep.bad, weight_err=prep.weight_err,
            background_scale=prep.psf_noise_scale,
        )
        flux_err = fit["flux_err"]
        good = ((fit["flags"] == 0) & np.isfinite(fit["flux"]) & np.isfinite(flux_err) & (flux_err > 0)
                & (np.hypot(fit["x"] - x[idx], fit["y"] - y[idx]) < MAX_SHIFT_PIX))
        k = idx[good]
        w = 1.0 / flux_err[good] ** 2
        s0[k] += w
        s1[k] += w * fit["flux"][good]
        s2[k] += w * fit["flux"][good] ** 2
        count[k] += 1
        fra, fdec = image.wcs.pixel_to_world_values(fit["x"][good], fit["y"][good])
        pw = 1.0 / (fit["x_err"][good] ** 2 + fit["y_err"][good] ** 2)
        pw = np.where(np.isfinite(pw), pw, 0.0)
        # RA about the catalogued position, so that the mean does not wrap at 0/360
        pos_ra[k] += pw * ((np.asarray(fra) - ra[k] + 180.0) % 360.0 - 180.0)
        pos_dec[k] += pw * (np.asarray(fdec) - dec[k])
        pos_w[k] += pw
        del image, prep
    with np.errstate(invalid="ignore", divide="ignore"):
        flux = np.where(count > 0, s1 / s0, np.nan)
        flux_err = np.where(count > 0, 1.0 / np.sqrt(s0), np.nan)
        chi2 = np.where(count > 1, (s2 - s0 * flux**2) / (count - 1), np.nan)
        out_ra = np.where(pos_w > 0, (ra + pos_ra / pos_w) % 360.0, np.nan)
        out_dec = np.where(pos_w > 0, dec + pos_dec / pos_w, np.nan)
    return {"flux": flux, "flux_err": flux_err, "n_exposures": count, "reduced_chi2": chi2,
            "ra": out_ra, "dec": out_dec, "fallbacks": fallbacks}
