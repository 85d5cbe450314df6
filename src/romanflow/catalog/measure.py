"""Measurements of detected sources in one band, and the per-source quantities of the detection image.

:func:`band_photometry` gives one band's aperture, segment, Kron and PSF-fit
columns; the helpers give sky positions, position angles, centroid errors and
the DQ flags of each segment.
"""

from __future__ import annotations

import numpy as np

from romanflow.catalog import photometry
from romanflow.catalog.prepare import PreparedImage
from romanflow.catalog.schema import APERTURE_RADII_ARCSEC, BACKGROUND_ANNULUS_ARCSEC, radius_token

#: Significance (sigma) by which a source's aper04/aper01 ratio must exceed the PSF's to count as extended.
EXTENDED_SIGMA = 3.0


def sky_positions(wcs, x, y):
    """(ra, dec) in deg, ra in [0, 360), of pixel positions."""
    ra, dec = wcs.pixel_to_world_values(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(ra, np.float64) % 360.0, np.asarray(dec, np.float64)


def orientation_sky(wcs, x, y, theta_deg):
    """Position angle (deg E of N, in [0, 180)) of a pixel-frame axis at angle theta (deg)."""
    from astropy.coordinates.angles import position_angle

    t = np.deg2rad(theta_deg)
    ra0, dec0 = sky_positions(wcs, x, y)
    ra1, dec1 = sky_positions(wcs, x + 0.5 * np.cos(t), y + 0.5 * np.sin(t))
    pa = position_angle(np.deg2rad(ra0), np.deg2rad(dec0), np.deg2rad(ra1), np.deg2rad(dec1))
    return np.rad2deg(np.asarray(pa)) % 180.0


def segment_flags(segm_data, dq, n_labels_max):
    """Bitwise OR of DQ over each segment label (index = label)."""
    out = np.zeros(n_labels_max + 1, np.int64)
    if dq is None:
        return out
    sel = (segm_data > 0) & (dq != 0)
    if sel.any():
        np.bitwise_or.at(out, segm_data[sel], dq[sel].astype(np.int64))
    return out


def centroid_errors(data, err, segm_data, labels, xc, yc):
    """Moment-centroid errors ``σ_x² = Σ (x - x̄)² σ² / F²`` per segment (pixels)."""
    from scipy import ndimage

    ny, nx = data.shape
    var = np.where(np.isfinite(err), err.astype(np.float64) ** 2, 0.0)
    yy, xx = np.indices((ny, nx), dtype=np.float64) if ny * nx <= 4e7 else (None, None)
    flux = ndimage.sum_labels(np.maximum(data, 0).astype(np.float64), segm_data, labels)
    s0 = ndimage.sum_labels(var, segm_data, labels)
    sx = ndimage.sum_labels(var * xx, segm_data, labels)
    sy = ndimage.sum_labels(var * yy, segm_data, labels)
    sxx = ndimage.sum_labels(var * xx * xx, segm_data, labels)
    syy = ndimage.sum_labels(var * yy * yy, segm_data, labels)
    with np.errstate(invalid="ignore", divide="ignore"):
        ex = np.sqrt(np.maximum(sxx - 2 * xc * sx + xc**2 * s0, 0)) / flux
        ey = np.sqrt(np.maximum(syy - 2 * yc * sy + yc**2 * s0, 0)) / flux
    return ex, ey


def band_photometry(prep: PreparedImage, segm, detection_cat, x, y, *, psf: bool, point_fraction):
    """One band's columns for sources at pixel positions x, y.

    Returns
    -------
    cols : dict
        Column name (band token resolved) -> ndarray (n,): fluxes in nJy, radii in arcsec.
    edge, low_snr, psf_fail : ndarray of bool (n,)
        Apertures off the image edge, Kron flux not above its error, PSF fit failed.
    """
    from photutils.segmentation import SourceCatalog

    b = prep.band
    cols = {}
    n = len(x)
    radii_pix = [r / prep.scale for r in APERTURE_RADII_ARCSEC]
    flux, flux_err, edge = photometry.aperture_fluxes(prep.data, prep.err, x, y, radii_pix, mask=prep.bad)
    flux_err = flux_err * np.asarray(prep.aperture_noise_scale)[None, :]
    for i, r in enumerate(APERTURE_RADII_ARCSEC):
        cols[f"aper{radius_token(r)}_{b}_flux"] = flux[:, i]
        cols[f"aper{radius_token(r)}_{b}_flux_err"] = flux_err[:, i]
    r_in, r_out = (r / prep.scale for r in BACKGROUND_ANNULUS_ARCSEC)
    level, level_err = photometry.annulus_background(prep.data, x, y, r_in, r_out, mask=prep.bad)
    cols[f"aper_bkg_{b}_flux"] = level / prep.scale**2
    cols[f"aper_bkg_{b}_flux_err"] = level_err / prep.scale**2

    cat = SourceCatalog(
        prep.data, segm, error=np.where(np.isfinite(prep.err), prep.err, 0.0), mask=prep.bad,
        detection_catalog=detection_cat,
    )
    cols[f"segment_{b}_flux"] = np.asarray(cat.segment_flux)
    cols[f"segment_{b}_flux_err"] = np.asarray(cat.segment_flux_err)
    kron = np.asarray(cat.kron_flux, np.float64)
    kron_err = np.asarray(cat.kron_flux_err, np.float64)
    cols[f"kron_{b}_flux"] = kron
    cols[f"kron_{b}_flux_err"] = kron_err
    low_snr = ~(kron > kron_err)
    mag, mag_err = photometry.abmag(np.where(low_snr, np.nan, kron), kron_err)
    cols[f"kron_{b}_abmag"] = mag
    cols[f"kron_{b}_abmag_err"] = mag_err
    # NaN where photutils finds no radius (no measurable Kron flux)
    cols[f"fluxfrac_radius_50_{b}"] = np.asarray(cat.flux_radius(0.5), np.float64) * prep.scale

    # Concentration test for extent: aper04 / aper01 compared with the PSF's own ratio.
    f1, e1 = flux[:, 0], flux_err[:, 0]
    f4, e4 = flux[:, 2], flux_err[:, 2]
    expected = point_fraction[2] / point_fraction[0]
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = f4 / f1
        ratio_err = np.abs(ratio) * np.sqrt((e4 / f4) ** 2 + (e1 / f1) ** 2)
        extended = (f1 > 0) & (ratio - expected > np.maximum(EXTENDED_SIGMA * ratio_err, 0.1 * expected))
    cols[f"is_extended_{b}"] = extended

    psf_fail = np.zeros(n, bool)
    if psf:
        fit = photometry.fit_psf_photometry(
            prep.data, prep.err, x, y, kron, prep.psf_model,
            fit_shape=(5, 5) if prep.psf_fwhm_pix < 3.5 else (7, 7), mask=prep.bad, weight_err=prep.weight_err,
            background_scale=prep.psf_noise_scale,
        )
        psf_fail = (fit["flags"] != 0) | ~np.isfinite(fit["flux"]) | (np.hypot(fit["x"] - x, fit["y"] - y) > 2.0)
        cols[f"x_psf_{b}"], cols[f"y_psf_{b}"] = fit["x"], fit["y"]
        cols[f"x_psf_{b}_err"], cols[f"y_psf_{b}_err"] = fit["x_err"], fit["y_err"]
        cols[f"psf_{b}_flux"], cols[f"psf_{b}_flux_err"] = fit["flux"], fit["flux_err"]
        cols[f"psf_gof_{b}"] = fit["reduced_chi2"]
        cols[f"psf_flags_{b}"] = fit["flags"]
    else:
        for name in (f"x_psf_{b}", f"y_psf_{b}", f"x_psf_{b}_err", f"y_psf_{b}_err", f"psf_{b}_flux",
                     f"psf_{b}_flux_err", f"psf_gof_{b}"):
            cols[name] = np.full(n, np.nan)
        cols[f"psf_flags_{b}"] = np.zeros(n, np.int32)
    return cols, edge, low_snr, psf_fail
