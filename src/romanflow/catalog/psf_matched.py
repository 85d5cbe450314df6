"""PSF-matched aperture photometry: colours on one PSF.

A fixed aperture holds a different fraction of a source's light in each band when the
bands' PSFs differ (F213's is twice as wide as F062's), so the ratio of raw aperture
fluxes is not the source's colour. Here every band of a multi-band catalog is first
convolved to the PSF of its broadest band with a matching kernel
(:func:`romanflow.psf.matching_kernel`, from each band's PSF on the image's pixels:
the mosaic's own PSF averaged over the sources when the mosaic has one, else the PSF
model), then measured in one circular aperture of
:data:`MATCHED_APERTURE_ARCSEC` at the same positions: for a source whose colour does
not change across it, the flux ratio is its colour.

Errors: the convolved variance ``err² ⊛ K²`` gives each aperture its propagated error,
multiplied by the factor of the noise correlation measured on the convolved image
between sources (:func:`romanflow.catalog.detect.kernel_noise_scale`), which holds
both the resampling's and the kernel's correlations.
"""

from __future__ import annotations

import numpy as np

from romanflow.catalog import detect, photometry

__all__ = ["MATCHED_APERTURE_ARCSEC", "band_psf_image", "matched_aperture_columns", "pixel_psf"]

#: Radius (arcsec) of the aperture of the PSF-matched fluxes.
MATCHED_APERTURE_ARCSEC = 0.5
#: Half-size (pixels) of the PSF images the matching kernels are computed from.
_PSF_HALF_PIX = 15
#: Largest number of positions whose mosaic PSFs are averaged into a band's PSF image.
_N_MOSAIC_PSF = 64
#: Tikhonov regularisation of the kernels (fraction of the peak power): suppresses the
#: frequencies where the narrower PSF has no power.
_REGULARIZATION = 1e-3


def pixel_psf(psf_model, half: int = _PSF_HALF_PIX) -> np.ndarray:
    """A unit-flux PSF model sampled at the image's pixel centres, source on the central pixel,
    ``(2·half + 1)²`` pixels, normalised to sum 1."""
    model = psf_model.copy()
    model.x_0, model.y_0, model.flux = 0.0, 0.0, 1.0
    offsets = np.arange(-half, half + 1, dtype=np.float64)
    yy, xx = np.meshgrid(offsets, offsets, indexing="ij")
    image = np.asarray(model(xx, yy), np.float64)
    total = image.sum()
    if not (np.isfinite(total) and total > 0):
        raise ValueError("the PSF model has no flux on its central pixels")
    return image / total


def band_psf_image(prep, x, y, half: int = _PSF_HALF_PIX, n_max: int = _N_MOSAIC_PSF) -> np.ndarray:
    """The PSF a band's sources have on its image, sampled at pixel centres, ``(2·half + 1)²``.

    On a mosaic with its own PSF (:attr:`PreparedImage.mosaic_psf`): the mean of that PSF at up
    to ``n_max`` of the sources' positions (x, y), spread over the image and over the sub-pixel
    phases of the members' pixels, each for a source on the nearest mosaic pixel centre: the
    drizzled PSF as it is on average, wings cut at ``half`` pixels (its sum is the fraction of
    the flux inside). Otherwise the image's PSF model (:func:`pixel_psf`)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    if getattr(prep, "mosaic_psf", None) is None or len(x) == 0:
        return pixel_psf(prep.psf_model, half)
    pick = np.linspace(0, len(x) - 1, min(len(x), n_max)).round().astype(int)
    # sources placed on pixel centres: the members' pixel phases still vary from place to place
    stamps = prep.mosaic_psf.stamps(np.round(x[pick]), np.round(y[pick]), half=half)
    covered = np.isfinite(stamps).mean(axis=(1, 2)) > 0.99  # a gap in a member's coverage may touch a corner
    if not covered.any():
        return pixel_psf(prep.psf_model, half)
    return np.nan_to_num(stamps[covered]).mean(axis=0)


def matched_aperture_columns(preps, x, y, sources_mask) -> tuple[dict, str]:
    """``aper_matched_<band>_flux`` and ``_err`` (nJy) of every band, and the band matched to.

    Parameters
    ----------
    preps : sequence of PreparedImage
        The catalog's bands, on one pixel grid.
    x, y : ndarray (n,)
        Source positions (pixels).
    sources_mask : ndarray of bool (ny, nx)
        Pixels of detected sources (left out of the noise-correlation measurement).
    """
    from romanflow.psf import convolve_same, matching_kernel

    target = max(preps, key=lambda p: p.psf_fwhm_pix)
    psf_to = band_psf_image(target, x, y)
    cols = {}
    for prep in preps:
        data = np.where(prep.bad, 0.0, prep.data).astype(np.float64)
        var = np.where(prep.bad, 0.0, np.asarray(prep.err, np.float64) ** 2)
        bad = prep.bad
        if prep is not target:
            kernel = matching_kernel(band_psf_image(prep, x, y), psf_to, regularization=_REGULARIZATION)
            data = convolve_same(data, kernel)
            var = convolve_same(var, kernel**2)
            # a pixel is unusable when an unusable pixel carries more than 1% of its kernel
            bad = convolve_same(bad.astype(np.float64), np.abs(kernel)) > 0.01 * np.abs(kernel).sum()
        err = np.sqrt(np.clip(var, 0.0, None))
        err = np.where(bad | (err <= 0), np.inf, err)
        radius = MATCHED_APERTURE_ARCSEC / prep.scale
        flux, flux_err, _ = photometry.aperture_fluxes(data, err, x, y, [radius], mask=bad)
        scale = detect.kernel_noise_scale(data, err, detect.disk_kernel(radius), bad | sources_mask)
        cols[f"aper_matched_{prep.band}_flux"] = flux[:, 0]
        cols[f"aper_matched_{prep.band}_flux_err"] = flux_err[:, 0] * scale
    return cols, target.band
