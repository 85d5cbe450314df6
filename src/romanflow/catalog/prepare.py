"""One band made ready for measurement: nJy per pixel, background removed, fit weights, PSF, noise correlation."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np

from romanflow.catalog import detect, photometry
from romanflow.catalog.band_image import BandImage, record_fallback
from romanflow.catalog.schema import APERTURE_RADII_ARCSEC, band_token
from romanflow.errors import RomanflowError
from romanflow.geometry import local_pixel_scale

_log = logging.getLogger(__name__)


@dataclass
class PreparedImage:
    """One band ready for measurement (:func:`prepare_image`)."""

    band: str
    data: np.ndarray  # background-subtracted, nJy/pixel
    err: np.ndarray  # nJy/pixel, total
    weight_err: np.ndarray  # nJy/pixel, background only (smooth): weights of PSF fits
    bad: np.ndarray
    scale: float  # arcsec/pixel
    psf_model: object
    psf_fwhm_pix: float
    dq: np.ndarray | None
    psf_noise_scale: float = 1.0  # actual / propagated noise of a PSF-weighted sum
    aperture_noise_scale: tuple = ()  # same for each of APERTURE_RADII_ARCSEC
    exposures: list = field(default_factory=list)  # member L2 images of a mosaic
    fallbacks: list = field(default_factory=list)  # substitutes used, one sentence each (BandImage.fallbacks)
    mosaic_psf: object = None  # a mosaic's own PSF (BandImage.mosaic_psf)


def prepare_image(image: BandImage, *, background_box: int, detect_snr: float) -> PreparedImage:
    """An image in nJy per pixel with its background removed, the background-only error that
    weights PSF fits, its PSF model and the noise-correlation factors of PSF fits and apertures.

    Without a PSF model or FWHM, the PSF is a Gaussian of the FWHM estimated from
    the image, a substitute recorded in the result's ``fallbacks``.
    """
    data = np.asarray(image.data, np.float32) * np.float32(image.njy_per_pixel)
    err = np.asarray(image.err, np.float32) * np.float32(abs(image.njy_per_pixel))
    if data.shape != err.shape:
        raise RomanflowError(f"band {image.band}: data {data.shape} and err {err.shape} differ in shape")
    bad = ~np.isfinite(data) | ~np.isfinite(err) | (err <= 0)
    if image.mask is not None:
        bad |= np.asarray(image.mask, bool)
    if bad.all():
        raise RomanflowError(f"band {image.band}: no usable pixel")
    fallbacks = list(image.fallbacks)
    ny, nx = data.shape
    scale = float(local_pixel_scale(image.wcs, [nx / 2], [ny / 2])[0])
    # Two-pass background: the second pass masks the sources found with the first.
    background, _ = detect.estimate_background(data, box_size=background_box, mask=bad)
    fwhm_guess = (image.psf_fwhm_arcsec or 0.15) / scale
    segm, _, _ = detect.segment_sources(
        data - background, err, kernel_fwhm_pix=fwhm_guess, snr_threshold=detect_snr, n_pixels=5, deblend=False, mask=bad
    )
    sources = detect.source_mask(segm, dilate=int(np.ceil(2 * fwhm_guess)), shape=data.shape)
    try:
        background, _ = detect.estimate_background(data, box_size=background_box, mask=bad | sources)
    except RomanflowError:  # sources cover nearly every box: keep the first pass
        sources = np.zeros_like(bad)
        record_fallback(fallbacks, f"{image.band}: sources cover too much of the image for a source-masked "
                                   "background; the background is from all usable pixels", _log)
    data = np.where(bad, 0.0, data - background).astype(np.float32)
    # PSF fits are weighted by the error of the background alone: the total error's Poisson
    # part follows each pixel's own noisy signal, and such weights bias bright sources low.
    background_var, _ = detect.estimate_background(np.where(bad, 0.0, err.astype(np.float64) ** 2),
                                                   box_size=background_box, mask=bad | sources)
    weight_err = np.where(bad, np.inf, np.sqrt(np.clip(background_var, 0.0, None))).astype(np.float32)
    err = np.where(bad, np.inf, err).astype(np.float32)
    if image.psf_model is not None:
        psf_model = image.psf_model
        fwhm_pix = float(image.psf_fwhm_arcsec / scale) if image.psf_fwhm_arcsec else fwhm_guess
    else:
        if image.psf_fwhm_arcsec is not None:
            fwhm_pix = image.psf_fwhm_arcsec / scale
        else:
            fwhm_pix = estimate_psf_fwhm(data, err, segm, fwhm_guess)
            record_fallback(fallbacks, f"{image.band}: no PSF model; PSF fits use a Gaussian of the FWHM estimated "
                                       f"from the image ({fwhm_pix * scale:.3f} arcsec)", _log)
        psf_model = photometry.gaussian_psf(fwhm_pix)
    # Resampled images have correlated pixels: errors propagated pixel by pixel are too small.
    # The factor for a PSF fit is that of the matched filter (PSF-shaped weights), for an
    # aperture that of its top-hat, both from the noise correlation between source-free pixels.
    correlation = detect.noise_correlation(data, err, bad | sources)
    psf_noise_scale = detect.kernel_noise_scale(data, err, detect.gaussian_kernel(fwhm_pix), correlation=correlation)
    aperture_noise_scale = tuple(detect.kernel_noise_scale(data, err, detect.disk_kernel(r / scale),
                                                           correlation=correlation)
                                 for r in APERTURE_RADII_ARCSEC)
    return PreparedImage(band_token(image.band), data, err, weight_err, bad, scale, psf_model, fwhm_pix, image.dq,
                         psf_noise_scale, aperture_noise_scale, list(image.exposures), fallbacks,
                         image.mosaic_psf)


def estimate_psf_fwhm(data, err, segm, fwhm_guess_pix: float, n_max: int = 200) -> float:
    """PSF FWHM (pixels) from Gaussian fits with free width to the brightest compact sources.

    The star locus is the narrowest tight group of fitted widths: the median
    of widths within 10% of the 10th percentile.
    """
    from photutils.segmentation import SourceCatalog

    if segm is None or segm.n_labels < 3:
        return fwhm_guess_pix
    cat = SourceCatalog(data, segm, error=np.where(np.isfinite(err), err, 0.0))
    snr = np.asarray(cat.segment_flux) / np.asarray(cat.segment_flux_err)
    order = np.argsort(-np.nan_to_num(snr, nan=-1))
    order = order[snr[order] > 30][:n_max]
    if len(order) < 3:
        return fwhm_guess_pix
    box = int(2 * np.ceil(1.5 * fwhm_guess_pix) + 1)
    widths = _fit_widths(
        data, err, np.asarray(cat.x_centroid)[order], np.asarray(cat.y_centroid)[order],
        np.asarray(cat.segment_flux)[order], fwhm_guess_pix, box,
    )
    widths = widths[np.isfinite(widths) & (widths > 0.5)]
    if len(widths) < 3:
        return fwhm_guess_pix
    low = np.percentile(widths, 10)
    return float(np.median(widths[widths <= 1.1 * low]))


def _fit_widths(data, err, x, y, flux, fwhm0, box):
    """Fitted Gaussian FWHM (pixels) of each source in a ``box``-pixel stamp; NaN where not fitted."""
    from astropy.modeling import fitting

    model0 = photometry.gaussian_psf(fwhm0)
    model0.fwhm.fixed = False
    fitter = fitting.LevMarLSQFitter()
    half = box // 2
    out = np.full(len(x), np.nan)
    ny, nx = data.shape
    for i in range(len(x)):
        if not (np.isfinite(x[i]) and np.isfinite(y[i])):
            continue
        xc, yc = int(round(x[i])), int(round(y[i]))
        if xc - half < 0 or yc - half < 0 or xc + half >= nx or yc + half >= ny:
            continue
        yy, xx = np.mgrid[yc - half : yc + half + 1, xc - half : xc + half + 1]
        stamp = data[yy, xx]
        w = 1.0 / err[yy, xx]
        if not np.all(np.isfinite(w)):
            continue
        m = model0.copy()
        m.x_0, m.y_0, m.flux = x[i], y[i], flux[i]
        fitted = fitter(m, xx, yy, stamp, weights=w)
        out[i] = fitted.fwhm.value
    return out
