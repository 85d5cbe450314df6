"""Source catalogs from one or several co-registered images.

:class:`BandImage` holds one band's arrays, WCS and photometric constant;
:func:`make_catalog` detects sources (on the image itself, or on the
inverse-variance weighted sum of several bands) and measures them in every
band; :func:`forced_photometry` measures given sky positions.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from romanflow.catalog import detect, photometry
from romanflow.catalog.schema import (
    APERTURE_RADII_ARCSEC,
    BACKGROUND_ANNULUS_ARCSEC,
    WARNING_FLAGS,
    band_token,
    catalog_columns,
    make_table,
    radius_token,
)
from romanflow.errors import RomanflowError
from romanflow.geometry import local_pixel_scale

#: Significance (sigma) by which a source's aper04/aper01 ratio must exceed the PSF's to count as extended.
EXTENDED_SIGMA = 3.0


@dataclass
class BandImage:
    """One band's image ready for cataloguing.

    Attributes
    ----------
    band : str
        Filter name (``'F158'``).
    data, err : ndarray (ny, nx)
        Image and its 1-sigma error in native units (DN/s or MJy/sr).
    wcs : object
        Pixel-to-sky transform with ``pixel_to_world_values`` (astropy WCS or gwcs).
    njy_per_pixel : float
        Factor from a native pixel value to nJy in that pixel.
    mask : ndarray of bool, optional
        Pixels not to use.
    dq : ndarray of uint32, optional
        Data-quality flags (L2), OR-ed into ``image_flags``.
    psf_fwhm_arcsec : float, optional
        PSF FWHM; estimated from the image when not given.
    psf_model : photutils PSF model, optional
        Unit-flux PSF in this image's pixels; a Gaussian of ``psf_fwhm_arcsec`` otherwise.
    provenance : dict
        Input file names, reference files, etc.
    exposures : list
        For a mosaic: its calibrated member exposures (L2 paths or BandImages), on
        which point sources are also PSF-fitted (:mod:`romanflow.catalog.exposure_photometry`).
    """

    band: str
    data: np.ndarray
    err: np.ndarray
    wcs: object
    njy_per_pixel: float
    mask: np.ndarray | None = None
    dq: np.ndarray | None = None
    psf_fwhm_arcsec: float | None = None
    psf_model: object = None
    provenance: dict = field(default_factory=dict)
    exposures: list = field(default_factory=list)


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


def prepare_image(image: BandImage, *, background_box: int, detect_snr: float) -> PreparedImage:
    """An image in nJy per pixel with its background removed, the background-only error that
    weights PSF fits, its PSF model and the noise-correlation factors of PSF fits and apertures."""
    data = np.asarray(image.data, np.float32) * np.float32(image.njy_per_pixel)
    err = np.asarray(image.err, np.float32) * np.float32(abs(image.njy_per_pixel))
    if data.shape != err.shape:
        raise RomanflowError(f"band {image.band}: data {data.shape} and err {err.shape} differ in shape")
    bad = ~np.isfinite(data) | ~np.isfinite(err) | (err <= 0)
    if image.mask is not None:
        bad |= np.asarray(image.mask, bool)
    if bad.all():
        raise RomanflowError(f"band {image.band}: no usable pixel")
    ny, nx = data.shape
    scale = float(local_pixel_scale(image.wcs, [nx / 2], [ny / 2])[0])
    # Two-pass background: the second pass masks the sources found with the first.
    background, _ = detect.estimate_background(data, box_size=background_box, mask=bad)
    fwhm_guess = (image.psf_fwhm_arcsec or 0.15) / scale
    segm, _, _ = detect.segment_sources(
        data - background, err, kernel_fwhm_pix=fwhm_guess, snr_threshold=detect_snr, n_pixels=5, deblend=False, mask=bad
    )
    sources = detect.source_mask(segm, dilate=int(np.ceil(2 * fwhm_guess)), shape=data.shape)
    background, _ = detect.estimate_background(data, box_size=background_box, mask=bad | sources)
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
                     psf_noise_scale, aperture_noise_scale, list(image.exposures))


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


def _sky(wcs, x, y):
    ra, dec = wcs.pixel_to_world_values(np.asarray(x, float), np.asarray(y, float))
    return np.asarray(ra, np.float64) % 360.0, np.asarray(dec, np.float64)


def _orientation_sky(wcs, x, y, theta_deg):
    """Position angle (deg E of N, in [0, 180)) of a pixel-frame axis at angle theta."""
    from astropy.coordinates.angles import position_angle

    t = np.deg2rad(theta_deg)
    ra0, dec0 = _sky(wcs, x, y)
    ra1, dec1 = _sky(wcs, x + 0.5 * np.cos(t), y + 0.5 * np.sin(t))
    pa = position_angle(np.deg2rad(ra0), np.deg2rad(dec0), np.deg2rad(ra1), np.deg2rad(dec1))
    return np.rad2deg(np.asarray(pa)) % 180.0


def _segment_flags(segm_data, dq, n_labels_max):
    """Bitwise OR of DQ over each segment label (index = label)."""
    out = np.zeros(n_labels_max + 1, np.int64)
    if dq is None:
        return out
    sel = (segm_data > 0) & (dq != 0)
    if sel.any():
        np.bitwise_or.at(out, segm_data[sel], dq[sel].astype(np.int64))
    return out


def _centroid_errors(data, err, segm_data, labels, xc, yc):
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


def _band_photometry(prep: PreparedImage, segm, detection_cat, x, y, *, psf: bool, point_fraction):
    """All per-band columns (without the band suffix resolved) for sources at x, y."""
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
    try:
        half = np.asarray(cat.flux_radius(0.5), np.float64) * prep.scale
    except Exception:  # noqa: BLE001 - photutils raises when no Kron flux is measurable
        half = np.full(n, np.nan)
    cols[f"fluxfrac_radius_50_{b}"] = half

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


def _exposure_columns(prep: PreparedImage, v: dict, ra_c, dec_c, psf_ok, *, enabled: bool = True) -> dict:
    """``psf_exp_*`` columns of one band: PSF fits on the mosaic's member exposures at the
    image's PSF position (the centroid where that fit failed); empty when not ``enabled``."""
    b = prep.band
    n = len(ra_c)
    names = ("flux", "flux_err", "reduced_chi2", "ra", "dec")
    if not (enabled and prep.exposures):
        res = {k: np.full(n, np.nan) for k in names}
        res["n_exposures"] = np.zeros(n, np.int16)
    else:
        from romanflow.catalog.exposure_photometry import exposure_psf_photometry

        ok = np.asarray(psf_ok, bool) & np.isfinite(v[f"ra_psf_{b}"]) & np.isfinite(v[f"dec_psf_{b}"])
        ra = np.where(ok, v[f"ra_psf_{b}"], ra_c)
        dec = np.where(ok, v[f"dec_psf_{b}"], dec_c)
        guess = np.where(ok & np.isfinite(v[f"psf_{b}_flux"]), v[f"psf_{b}_flux"], v[f"kron_{b}_flux"])
        res = exposure_psf_photometry(ra, dec, prep.exposures, flux_guess=guess)
    return {f"psf_exp_{b}_flux": res["flux"], f"psf_exp_{b}_flux_err": res["flux_err"],
            f"psf_exp_{b}_nexp": res["n_exposures"], f"psf_exp_gof_{b}": res["reduced_chi2"],
            f"ra_psf_exp_{b}": res["ra"], f"dec_psf_exp_{b}": res["dec"]}


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
        describes them, table meta with bands, PSF FWHMs and pixel scale.
    """
    images = [images] if isinstance(images, BandImage) else list(images)
    if not images:
        raise RomanflowError("make_catalog needs at least one image")
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
    meta = {
        "catalog_kind": kind,
        "bands": bands,
        "pixel_scale_arcsec": scale,
        "psf_fwhm_arcsec": {p.band: float(p.psf_fwhm_pix * scale) for p in preps},
        "error_scale": {p.band: {"psf": float(p.psf_noise_scale),
                                 "aperture": [float(f) for f in p.aperture_noise_scale]} for p in preps},
        "detection": {"snr_threshold": snr_threshold, "n_pixels": n_pixels, "deblend": deblend,
                      "kernel_fwhm_pix": kernel_fwhm, "noise_scale": float(noise_scale)},
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
    ex, ey = _centroid_errors(det, det_err, segm.data, labels, x, y)
    v["x_centroid_err"], v["y_centroid_err"] = ex, ey
    ra_c, dec_c = _sky(wcs, x, y)
    v["ra_centroid"], v["dec_centroid"] = ra_c, dec_c
    v["ra_centroid_err"], v["dec_centroid_err"] = ex * scale, ey * scale

    v["segment_area"] = np.asarray(det_cat.area.value, np.float64) * scale**2
    v["semimajor"] = np.asarray(det_cat.semimajor_axis.value) * scale
    v["semiminor"] = np.asarray(det_cat.semiminor_axis.value) * scale
    v["ellipticity"] = np.asarray(det_cat.ellipticity.value)
    theta = np.asarray(det_cat.orientation.value)
    v["orientation_pix"] = theta
    v["orientation_sky"] = _orientation_sky(wcs, x, y, theta)
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
        cols, edge, low_snr, psf_fail = _band_photometry(
            prep, segm, det_cat if len(preps) > 1 else None, x, y, psf=psf_photometry, point_fraction=point_fraction
        )
        v.update(cols)
        warning |= np.where(edge, WARNING_FLAGS["EDGE"], 0).astype(np.int32)
        warning |= np.where(low_snr, WARNING_FLAGS["LOW_SNR_KRON"], 0).astype(np.int32)
        if psf_photometry:
            warning |= np.where(psf_fail, WARNING_FLAGS["PSF_FIT_FAILED"], 0).astype(np.int32)
            v[f"ra_psf_{prep.band}"], v[f"dec_psf_{prep.band}"] = _sky(wcs, cols[f"x_psf_{prep.band}"], cols[f"y_psf_{prep.band}"])
        else:
            v[f"ra_psf_{prep.band}"] = np.full(n, np.nan)
            v[f"dec_psf_{prep.band}"] = np.full(n, np.nan)
        if prep.dq is not None:
            from romanflow import dq as dqbits

            seg_flags = _segment_flags(segm.data, prep.dq, int(labels.max()))[labels]
            image_flags |= seg_flags
            warning |= np.where(seg_flags & dqbits.SATURATED, WARNING_FLAGS["SATURATED"], 0).astype(np.int32)
        if prep.band == first:
            psf_ok_any = psf_photometry & ~psf_fail
        if any(c.name == f"psf_exp_{prep.band}_flux" for c in columns):
            v.update(_exposure_columns(prep, v, ra_c, dec_c, ~psf_fail, enabled=psf_photometry))
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
        fixed-position PSF flux in every band (nJy).
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
    meta = {"catalog_kind": "forced", "bands": bands, "psf_fwhm_arcsec": {}}
    for k, im in enumerate(images):
        prep = prepare_image(im, background_box=background_box, detect_snr=5.0)
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
            v[f"aper{radius_token(r)}_{b}_flux_err"] = np.where(inside, flux_err[:, i] * prep.aperture_noise_scale[i], np.nan)
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
