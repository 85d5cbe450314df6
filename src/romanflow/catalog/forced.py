"""Forced photometry: apertures and fixed-position PSF fluxes at given sky positions, in every band."""

from __future__ import annotations

import numpy as np

from romanflow.catalog import photometry
from romanflow.catalog.band_image import BandImage
from romanflow.catalog.prepare import prepare_image
from romanflow.catalog.schema import (
    APERTURE_RADII_ARCSEC,
    WARNING_FLAGS,
    band_token,
    catalog_columns,
    make_table,
    radius_token,
)


def forced_photometry(images, ra, dec, ids=None, *, psf_fit_shape=(5, 5), background_box: int = 64):
    """Photometry at fixed sky positions in every band (time-domain use).

    Parameters
    ----------
    images : BandImage or sequence of BandImage
        Images to measure (any pixel grids).
    ra, dec : ndarray (n,)
        Positions (deg, ICRS), e.g. from a reference catalog.
    ids : ndarray of int (n,), optional
        Identifiers carried to the ``id`` column (0..n-1 by default).

    Returns
    -------
    astropy.table.QTable
        The ``forced`` catalog flavour: circular-aperture fluxes and the
        fixed-position PSF flux in every band (nJy). Table meta ``fallbacks``
        lists every substitute used (see :attr:`BandImage.fallbacks`).
    """
    images = [images] if isinstance(images, BandImage) else list(images)
    ra = np.asarray(ra, np.float64)
    dec = np.asarray(dec, np.float64)
    n = len(ra)
    ids = np.arange(n) if ids is None else np.asarray(ids)
    bands = [band_token(im.band) for im in images]
    columns = catalog_columns("forced", bands)
    v = {"id": ids, "ra": ra, "dec": dec}
    warning = np.zeros(n, np.int32)
    meta = {"catalog_kind": "forced", "bands": bands, "psf_fwhm_arcsec": {}, "fallbacks": []}
    for k, im in enumerate(images):
        prep = prepare_image(im, background_box=background_box, detect_snr=5.0)
        meta["fallbacks"] += [f for f in prep.fallbacks if f not in meta["fallbacks"]]
        x, y = im.wcs.world_to_pixel_values(ra, dec)
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        if k == 0:
            v["x"], v["y"] = x, y
        b = prep.band
        radii_pix = [r / prep.scale for r in APERTURE_RADII_ARCSEC]
        inside = np.isfinite(x) & np.isfinite(y)
        flux, flux_err, edge = photometry.aperture_fluxes(
            prep.data, prep.err, np.where(inside, x, -1e6), np.where(inside, y, -1e6), radii_pix, mask=prep.bad
        )
        for i, r in enumerate(APERTURE_RADII_ARCSEC):
            v[f"aper{radius_token(r)}_{b}_flux"] = np.where(inside, flux[:, i], np.nan)
            v[f"aper{radius_token(r)}_{b}_flux_err"] = np.where(inside, flux_err[:, i] * prep.aperture_noise_scale[i],
                                                                np.nan)
        pf, pe, chi2 = photometry.forced_psf_fluxes(prep.data, prep.err, x, y, prep.psf_model, fit_shape=psf_fit_shape,
                                                    mask=prep.bad, weight_err=prep.weight_err,
                                                    background_scale=prep.psf_noise_scale)
        v[f"psf_{b}_flux"], v[f"psf_{b}_flux_err"], v[f"psf_gof_{b}"] = pf, pe, chi2
        warning |= np.where(edge | ~inside, WARNING_FLAGS["EDGE"], 0).astype(np.int32)
        meta["psf_fwhm_arcsec"][b] = float(prep.psf_fwhm_pix * prep.scale)
    if n == 0:
        v["x"], v["y"] = np.zeros(0), np.zeros(0)
    v["warning_flags"] = warning
    return make_table(columns, v, meta)
