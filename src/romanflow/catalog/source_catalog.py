"""Source catalogs from one or several co-registered images.

:func:`make_catalog` detects sources (on the image itself, or on the
inverse-variance weighted sum of several bands), measures them in every band
(:mod:`romanflow.catalog.measure`) and, for a mosaic, PSF-fits them on its
member exposures (:mod:`romanflow.catalog.exposure_photometry`).
:class:`BandImage` (:mod:`romanflow.catalog.band_image`), :func:`prepare_image`
(:mod:`romanflow.catalog.prepare`) and :func:`forced_photometry`
(:mod:`romanflow.catalog.forced`) are importable from here too.
"""

from __future__ import annotations

import logging

import numpy as np

from romanflow.catalog import detect, photometry
from romanflow.catalog.band_image import BandImage, record_fallback
from romanflow.catalog.exposure_photometry import exposure_psf_photometry
from romanflow.catalog.forced import forced_photometry
from romanflow.catalog.measure import (
    EXTENDED_SIGMA,
    band_photometry,
    centroid_errors,
    orientation_sky,
    segment_flags,
    sky_positions,
)
from romanflow.catalog.prepare import PreparedImage, estimate_psf_fwhm, prepare_image
from romanflow.catalog.psf_matched import matched_aperture_columns
from romanflow.catalog.schema import APERTURE_RADII_ARCSEC, WARNING_FLAGS, band_token, catalog_columns, make_table
from romanflow.errors import ParameterError, RomanflowError

__all__ = ["EXTENDED_SIGMA", "BandImage", "PreparedImage", "estimate_psf_fwhm", "forced_photometry", "make_catalog",
           "prepare_image"]

_log = logging.getLogger(__name__)


def _exposure_columns(prep: PreparedImage, v: dict, ra_c, dec_c, psf_ok, fallbacks: list, *,
                      enabled: bool = True) -> dict:
    """``psf_exp_*`` columns of one band: PSF fits on the mosaic's member exposures at the
    image's PSF position (the centroid where that fit failed); empty when not ``enabled``.
    What stood in for a missing piece is appended to ``fallbacks``."""
    b = prep.band
    n = len(ra_c)
    names = ("flux", "flux_err", "reduced_chi2", "ra", "dec")
    if not (enabled and prep.exposures):
        if enabled:
            record_fallback(fallbacks, f"{b}: no member exposure to fit; the psf_exp_{b} columns are empty", _log)
        res = {k: np.full(n, np.nan) for k in names}
        res["n_exposures"] = np.zeros(n, np.int16)
    else:
        ok = np.asarray(psf_ok, bool) & np.isfinite(v[f"ra_psf_{b}"]) & np.isfinite(v[f"dec_psf_{b}"])
        ra = np.where(ok, v[f"ra_psf_{b}"], ra_c)
        dec = np.where(ok, v[f"dec_psf_{b}"], dec_c)
        guess = np.where(ok & np.isfinite(v[f"psf_{b}_flux"]), v[f"psf_{b}_flux"], v[f"kron_{b}_flux"])
        res = exposure_psf_photometry(ra, dec, prep.exposures, flux_guess=guess)
        fallbacks += [f for f in res["fallbacks"] if f not in fallbacks]
    return {f"psf_exp_{b}_flux": res["flux"], f"psf_exp_{b}_flux_err": res["flux_err"],
            f"psf_exp_{b}_nexp": res["n_exposures"], f"psf_exp_gof_{b}": res["reduced_chi2"],
            f"ra_psf_exp_{b}": res["ra"], f"dec_psf_exp_{b}": res["dec"]}


def _mosaic_psf_columns(prep: PreparedImage, v: dict, wcs) -> dict:
    """``psf_<band>_flux`` (and its error, goodness of fit and flags) from the mosaic's own PSF
    (:attr:`PreparedImage.mosaic_psf`, the members' PSFs drizzled as the data were) at each
    source's best position: the PSF fits on the exposures, else a fit of the position with the
    mosaic's PSF started from the mean PSF's fit (or the centroid where that fit failed).

    A drizzled PSF changes with the source's place among the members' pixels; one mean PSF
    fitted everywhere biases fluxes by percents on an undersampled band."""
    b = prep.band
    x, y = (np.asarray(v[f"{a}_psf_{b}"], np.float64).copy() for a in ("x", "y"))
    start = np.isfinite(x) & np.isfinite(y)
    x = np.where(start, x, np.asarray(v["x_centroid"], np.float64))
    y = np.where(start, y, np.asarray(v["y_centroid"], np.float64))
    from_exposures = np.zeros(len(x), bool)
    if f"ra_psf_exp_{b}" in v:
        ex, ey = (np.asarray(a, np.float64) for a in wcs.world_to_pixel_values(v[f"ra_psf_exp_{b}"],
                                                                               v[f"dec_psf_exp_{b}"]))
        from_exposures = np.isfinite(ex) & np.isfinite(ey)
        x, y = np.where(from_exposures, ex, x), np.where(from_exposures, ey, y)
    ok = np.isfinite(x) & np.isfinite(y)
    fit_half = 2 if prep.psf_fwhm_pix < 3.5 else 3
    # without the exposures' position, the mean PSF's fit misplaces a star by up to a tenth of a pixel
    # (the drizzled PSF is lopsided, depending on the pixel phases): fit the position with the mosaic's PSF
    refine = np.nonzero(ok & ~from_exposures)[0]
    if refine.size:
        x[refine], y[refine] = photometry.refine_positions_with_stamps(
            prep.data, prep.weight_err, x[refine], y[refine], prep.mosaic_psf.stamps, fit_half=fit_half,
            mask=prep.bad)
    out = {f"psf_{b}_flux": np.asarray(v[f"psf_{b}_flux"], np.float64).copy(),
           f"psf_{b}_flux_err": np.asarray(v[f"psf_{b}_flux_err"], np.float64).copy(),
           f"psf_gof_{b}": np.asarray(v[f"psf_gof_{b}"], np.float64).copy()}
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return out
    stamps = prep.mosaic_psf.stamps(x[idx], y[idx], half=fit_half + 3)
    # drizzling correlates the members' noise, the sources' Poisson noise as much as the background's:
    # the whole variance takes the matched-filter factor measured on the background
    scale = float(prep.psf_noise_scale)
    fit = photometry.stamp_psf_fluxes(prep.data, prep.err * scale, x[idx], y[idx], stamps, fit_half=fit_half,
                                      mask=prep.bad, weight_err=prep.weight_err * scale)
    # a box partly masked (EDGE) is still a fit of the exact image there: kept, and flagged
    good = np.isfinite(fit["flux"]) & np.isfinite(fit["flux_err"])
    for name, key in ((f"psf_{b}_flux", "flux"), (f"psf_{b}_flux_err", "flux_err"), (f"psf_gof_{b}", "reduced_chi2")):
        out[name][idx[good]] = fit[key][good]
    out[f"psf_flags_{b}"] = np.asarray(v[f"psf_flags_{b}"], np.int32).copy()
    out[f"psf_flags_{b}"][idx[good]] |= fit["flags"][good].astype(np.int32)
    return out


def make_catalog(
    images,
    *,
    snr_threshold: float = 5.0,
    n_pixels: int = 5,
    deblend: bool = True,
    psf_photometry: bool = True,
    background_box: int = 64,
    kind: str | None = None,
):
    """Detect and measure sources in one band, or in several co-registered bands.

    Parameters
    ----------
    images : BandImage or sequence of BandImage
        One image (single-band catalog) or several on the same pixel grid
        (multi-band catalog detected on their inverse-variance weighted mean).
    snr_threshold : float
        Detection threshold in sigma of the PSF-smoothed detection image.
    n_pixels : int
        Minimum connected pixels of a detection.
    deblend : bool
        Deblend overlapping sources.
    psf_photometry : bool
        Fit a PSF (position and flux) to every source in every band.
    background_box : int
        Background mesh size (pixels).
    kind : str, optional
        Catalog flavour; ``'detector'`` if one image has a DQ array, ``'skycell'``
        for one image otherwise, ``'multiband'`` for several.

    Returns
    -------
    astropy.table.QTable
        Columns exactly as :func:`romanflow.catalog.schema.catalog_columns`
        describes them, table meta with bands, PSF FWHMs and pixel scale, and
        ``fallbacks``: every substitute a result was computed with (a member
        exposure not found, a Gaussian PSF, an unknown orientation), one
        sentence each, each also logged as a warning.
    """
    images = [images] if isinstance(images, BandImage) else list(images)
    if not images:
        raise RomanflowError("make_catalog needs at least one image")
    if not (np.isfinite(snr_threshold) and snr_threshold > 0):
        raise ParameterError("snr_threshold", snr_threshold, "must be a finite number > 0 (sigma)")
    if int(n_pixels) != n_pixels or n_pixels < 1:
        raise ParameterError("n_pixels", n_pixels, "must be a positive integer (pixels)")
    if int(background_box) != background_box or background_box < 4:
        raise ParameterError("background_box", background_box, "must be an integer >= 4 (pixels)")
    for im in images:
        if np.ndim(im.data) != 2:
            raise RomanflowError(f"band {im.band}: data has shape {np.shape(im.data)}: expected a 2-D image")
    shape = images[0].data.shape
    for im in images[1:]:
        if im.data.shape != shape:
            raise RomanflowError(
                f"band {im.band} has shape {im.data.shape}, band {images[0].band} has {shape}: "
                "a multi-band catalog needs images on one pixel grid"
            )
    bands = [band_token(im.band) for im in images]
    if len(set(bands)) != len(bands):
        raise RomanflowError(f"bands repeat: {bands}")
    if kind is None:
        kind = "multiband" if len(images) > 1 else ("detector" if images[0].dq is not None else "skycell")
    preps = [prepare_image(im, background_box=background_box, detect_snr=snr_threshold) for im in images]
    wcs = images[0].wcs
    scale = preps[0].scale

    if len(preps) == 1:
        det, det_err = preps[0].data, preps[0].err
    else:
        det, det_err = detect.inverse_variance_detection_image([p.data for p in preps], [p.err for p in preps])
    det_bad = np.logical_and.reduce([p.bad for p in preps])
    kernel_fwhm = float(np.max([p.psf_fwhm_pix for p in preps]))
    segm, convolved, noise_scale = detect.segment_sources(
        det, det_err, kernel_fwhm_pix=kernel_fwhm, snr_threshold=snr_threshold, n_pixels=n_pixels,
        deblend=deblend, mask=det_bad,
    )
    columns = catalog_columns(kind, bands)
    fallbacks = []
    for prep in preps:
        fallbacks += [f for f in prep.fallbacks if f not in fallbacks]
    meta = {
        "catalog_kind": kind,
        "bands": bands,
        "pixel_scale_arcsec": scale,
        "psf_fwhm_arcsec": {p.band: float(p.psf_fwhm_pix * scale) for p in preps},
        "error_scale": {p.band: {"psf": float(p.psf_noise_scale),
                                 "aperture": [float(f) for f in p.aperture_noise_scale]} for p in preps},
        "detection": {"snr_threshold": snr_threshold, "n_pixels": n_pixels, "deblend": deblend,
                      "kernel_fwhm_pix": kernel_fwhm, "noise_scale": float(noise_scale)},
        "fallbacks": fallbacks,
    }
    if segm is None:
        return make_table(columns, {c.name: np.zeros(0, c.dtype) for c in columns}, meta)
    return _measure(preps, segm, convolved, det, det_err, det_bad, wcs, columns, meta, psf_photometry)


def _measure(preps, segm, convolved, det, det_err, det_bad, wcs, columns, meta, psf_photometry):
    from photutils.segmentation import SourceCatalog
    from scipy.spatial import cKDTree

    scale = meta["pixel_scale_arcsec"]
    det_cat = SourceCatalog(
        det, segm, convolved_data=convolved, error=np.where(np.isfinite(det_err), det_err, 0.0), mask=det_bad
    )
    labels = np.asarray(det_cat.label)
    n = len(labels)
    x = np.asarray(det_cat.x_centroid, np.float64)
    y = np.asarray(det_cat.y_centroid, np.float64)
    good_pos = np.isfinite(x) & np.isfinite(y)
    x = np.where(good_pos, x, np.asarray(det_cat.bbox_xmin) + 0.5 * (np.asarray(det_cat.bbox_xmax) - np.asarray(det_cat.bbox_xmin)))
    y = np.where(good_pos, y, np.asarray(det_cat.bbox_ymin) + 0.5 * (np.asarray(det_cat.bbox_ymax) - np.asarray(det_cat.bbox_ymin)))
    v = {"label": labels}
    for name in ("bbox_xmin", "bbox_xmax", "bbox_ymin", "bbox_ymax"):
        v[name] = np.asarray(getattr(det_cat, name))
    v["x_centroid"], v["y_centroid"] = x, y
    ex, ey = centroid_errors(det, det_err, segm.data, labels, x, y)
    v["x_centroid_err"], v["y_centroid_err"] = ex, ey
    ra_c, dec_c = sky_positions(wcs, x, y)
    v["ra_centroid"], v["dec_centroid"] = ra_c, dec_c
    v["ra_centroid_err"], v["dec_centroid_err"] = ex * scale, ey * scale

    v["segment_area"] = np.asarray(det_cat.area.value, np.float64) * scale**2
    v["semimajor"] = np.asarray(det_cat.semimajor_axis.value) * scale
    v["semiminor"] = np.asarray(det_cat.semiminor_axis.value) * scale
    v["ellipticity"] = np.asarray(det_cat.ellipticity.value)
    theta = np.asarray(det_cat.orientation.value)
    v["orientation_pix"] = theta
    v["orientation_sky"] = orientation_sky(wcs, x, y, theta)
    v["cxx"] = np.asarray(det_cat.ellipse_cxx.value) / scale**2
    v["cxy"] = np.asarray(det_cat.ellipse_cxy.value) / scale**2
    v["cyy"] = np.asarray(det_cat.ellipse_cyy.value) / scale**2
    v["fwhm"] = np.asarray(det_cat.fwhm.value) * scale
    v["kron_radius"] = np.asarray(det_cat.kron_radius.value) * scale

    warning = np.zeros(n, np.int32)
    deblended = set(np.asarray(getattr(segm, "deblended_labels", []), int).tolist())
    if deblended:
        warning |= np.where(np.isin(labels, list(deblended)), WARNING_FLAGS["BLENDED"], 0).astype(np.int32)
    image_flags = np.zeros(n, np.int64)
    psf_ok_any = np.zeros(n, bool)
    first = preps[0].band
    for prep in preps:
        point_fraction = photometry.psf_encircled_fraction(
            prep.psf_model, [r / prep.scale for r in APERTURE_RADII_ARCSEC]
        )
        cols, edge, low_snr, psf_fail = band_photometry(
            prep, segm, det_cat if len(preps) > 1 else None, x, y, psf=psf_photometry, point_fraction=point_fraction
        )
        v.update(cols)
        warning |= np.where(edge, WARNING_FLAGS["EDGE"], 0).astype(np.int32)
        warning |= np.where(low_snr, WARNING_FLAGS["LOW_SNR_KRON"], 0).astype(np.int32)
        if psf_photometry:
            warning |= np.where(psf_fail, WARNING_FLAGS["PSF_FIT_FAILED"], 0).astype(np.int32)
            v[f"ra_psf_{prep.band}"], v[f"dec_psf_{prep.band}"] = sky_positions(wcs, cols[f"x_psf_{prep.band}"], cols[f"y_psf_{prep.band}"])
        else:
            v[f"ra_psf_{prep.band}"] = np.full(n, np.nan)
            v[f"dec_psf_{prep.band}"] = np.full(n, np.nan)
        if prep.dq is not None:
            from romanflow import dq as dqbits

            seg_flags = segment_flags(segm.data, prep.dq, int(labels.max()))[labels]
            image_flags |= seg_flags
            warning |= np.where(seg_flags & dqbits.SATURATED, WARNING_FLAGS["SATURATED"], 0).astype(np.int32)
        if prep.band == first:
            psf_ok_any = psf_photometry & ~psf_fail
        if any(c.name == f"psf_exp_{prep.band}_flux" for c in columns):
            v.update(_exposure_columns(prep, v, ra_c, dec_c, ~psf_fail, meta["fallbacks"], enabled=psf_photometry))
        if psf_photometry and prep.mosaic_psf is not None:
            v.update(_mosaic_psf_columns(prep, v, wcs))
    if any(c.name.startswith("aper_matched_") for c in columns):
        sources = detect.source_mask(segm, dilate=int(np.ceil(2 * max(p.psf_fwhm_pix for p in preps))),
                                     shape=det.shape)
        matched, meta["psf_matched_to"] = matched_aperture_columns(preps, x, y, sources | det_bad)
        v.update(matched)
    # Best position: the first band's PSF fits on the exposures, else on the image, else the centroid.
    ra_psf, dec_psf = v[f"ra_psf_{first}"], v[f"dec_psf_{first}"]
    use_psf = psf_ok_any & np.isfinite(ra_psf) & np.isfinite(dec_psf)
    v["ra"] = np.where(use_psf, ra_psf, ra_c)
    v["dec"] = np.where(use_psf, dec_psf, dec_c)
    if f"ra_psf_exp_{first}" in v:
        use_exp = np.isfinite(v[f"ra_psf_exp_{first}"]) & np.isfinite(v[f"dec_psf_exp_{first}"])
        v["ra"] = np.where(use_exp, v[f"ra_psf_exp_{first}"], v["ra"])
        v["dec"] = np.where(use_exp, v[f"dec_psf_exp_{first}"], v["dec"])

    if n > 1:
        tree = cKDTree(np.column_stack([x, y]))
        dist, idx = tree.query(np.column_stack([x, y]), k=2)
        v["nn_label"] = labels[idx[:, 1]]
        v["nn_distance"] = dist[:, 1] * scale
    else:
        v["nn_label"] = np.zeros(n, np.int32)
        v["nn_distance"] = np.full(n, np.nan)
    v["warning_flags"] = warning
    if any(c.name == "image_flags" for c in columns):
        v["image_flags"] = image_flags.astype(np.int32)
    table = make_table(columns, v, meta)
    return table
