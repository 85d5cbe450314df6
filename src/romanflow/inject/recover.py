"""Recover injected sources with the catalog code, and match them to what was injected.

The injected images are catalogued by :func:`romanflow.catalog.source_catalog.make_catalog`
exactly as their parents are (several bands of one sky cell: one multi-band
catalog). A mosaic injected at L3 is measured without PSF fits on its member
exposures, which do not hold the injected sources. Injected sources are then
paired one to one with detections (:func:`romanflow.kernels.matching.match_sources`,
by position and magnitude), and every detection of the injected images that
has no counterpart in the parents' catalog is a *new* detection, true when it
is paired with an injected source (purity).

The output ("injection output catalog") has one row per injected source and
band; :data:`OUTPUT_COLUMNS` documents it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pandas as pd

from romanflow.errors import RomanflowError

_log = logging.getLogger(__name__)

#: Recovery flags (``recovery_flags``).
FLAGS = {
    "BLEND_INJECTED": 1,  # another injected source within the blend radius
    "NEAR_REAL": 2,  # a source of the parent image within the blend radius
    "SEVERAL_CANDIDATES": 4,  # more than one detection within the match radius
    "DEBLENDED": 8,  # the matched detection was split by the deblender
    "EDGE": 16,  # the matched detection's apertures run off the image
}

#: Blend radius (arcsec): neighbours closer than this share light with the source.
BLEND_RADIUS_ARCSEC = 1.0

#: Columns of the output catalog: unit and description.
OUTPUT_COLUMNS = {
    "injection_id": ("", "identifier of the source in the injection catalog"),
    "image": ("", "injected product the source was measured on (the first band's)"),
    "band": ("", "filter"),
    "type": ("", "star, sersic or bulge_disk"),
    "ra": ("deg", "injected right ascension"),
    "dec": ("deg", "injected declination"),
    "half_light_radius": ("arcsec", "injected half-light radius (0 for stars)"),
    "mag_in": ("mag(AB)", "injected AB magnitude"),
    "flux_in": ("nJy", "injected total flux"),
    "stamp_flux": ("nJy", "flux actually added within the stamp"),
    "x": ("pix", "injected position on the image"),
    "y": ("pix", "injected position on the image"),
    "matched": ("", "a detection was paired with the source"),
    "label": ("", "label of the paired detection in the injected image's catalog (-1: none)"),
    "ra_out": ("deg", "measured right ascension (the catalog's best position)"),
    "dec_out": ("deg", "measured declination"),
    "dra": ("arcsec", "measured - injected right ascension, times cos(dec)"),
    "ddec": ("arcsec", "measured - injected declination"),
    "separation": ("arcsec", "distance between measured and injected positions"),
    "flux_out": ("nJy", "measured flux: PSF fit for stars, Kron for galaxies"),
    "flux_out_err": ("nJy", "its 1-sigma error"),
    "mag_out": ("mag(AB)", "AB magnitude of flux_out (NaN when not positive)"),
    "psf_flux": ("nJy", "PSF-fit flux of the detection"),
    "psf_flux_err": ("nJy", "its 1-sigma error"),
    "kron_flux": ("nJy", "Kron flux of the detection"),
    "kron_flux_err": ("nJy", "its 1-sigma error"),
    "is_extended": ("", "the catalog classifies the detection as extended"),
    "n_candidates": ("", "detections within the match radius"),
    "n_injected_neighbours": ("", "other injected sources within the blend radius"),
    "n_real_neighbours": ("", "parent-image sources within the blend radius"),
    "match_radius": ("arcsec", "match radius used for the source"),
    "recovery_flags": ("", "OR of FLAGS: 1 BLEND_INJECTED, 2 NEAR_REAL, 4 SEVERAL_CANDIDATES, 8 DEBLENDED, 16 EDGE"),
}


@dataclass
class Recovery:
    """What :func:`recover` returns."""

    output: pd.DataFrame  # one row per injected source and band (OUTPUT_COLUMNS)
    detections: pd.DataFrame  # one row per detection of the injected image(s): label, band, mag, is_new, injection_id
    injected_catalog: object  # astropy QTable: catalog of the injected image(s)
    parent_catalog: object  # astropy QTable: catalog of the parent image(s)


def catalog_images(paths, *, psf_fwhm_arcsec=None, exposures: bool = False, **options):
    """One catalog of images on one pixel grid (one band each), with the catalog code.

    ``exposures=False`` (the default) leaves out the PSF fits on a mosaic's member exposures: an injected
    mosaic's members do not hold the injected sources, and parents are measured as their injected copies are.
    """
    from romanflow.catalog.products import read_band_image
    from romanflow.catalog.source_catalog import make_catalog

    images = [read_band_image(p, psf_fwhm_arcsec=psf_fwhm_arcsec) for p in paths]
    if not exposures:
        for im in images:
            im.exposures = []
            im.fallbacks = [f for f in im.fallbacks if "member exposure" not in f]
    return make_catalog(images, **options), images


def _tangent(ra, dec, ra0, dec0):
    """Offsets (arcsec) east and north of (ra0, dec0) on a flat local plane."""
    dra = (np.asarray(ra, float) - ra0 + 180.0) % 360.0 - 180.0
    return dra * np.cos(np.radians(dec0)) * 3600.0, (np.asarray(dec, float) - dec0) * 3600.0


def _col(table, name, n):
    if name in table.colnames:
        return np.asarray(getattr(table[name], "value", table[name]), float)
    return np.full(n, np.nan)


def recover(injected_paths, sources_tables, parent_paths=None, *, parent_catalog=None, psf_fwhm_arcsec=None,
            exposures: bool = False, match_radius_arcsec: float | None = None, mag_tolerance: float = 1.0,
            **catalog_options) -> Recovery:
    """Catalog injected images, pair the injected sources with detections, flag blends.

    Parameters
    ----------
    injected_paths : sequence of path
        Injected products on one pixel grid (one band each; one detection image).
    sources_tables : sequence of DataFrame
        The per-image source tables of :func:`romanflow.inject.inject_images`, aligned.
    parent_paths : sequence of path, optional
        The parents, catalogued the same way when ``parent_catalog`` is not given.
    parent_catalog : table, optional
        The parents' catalog (e.g. the sky cell's own L4 catalog), with ``ra``, ``dec``, ``label``.
    psf_fwhm_arcsec : float, optional
        Gaussian PSF of this FWHM for the catalog (as ``romanflow catalog --psf-fwhm``).
    exposures : bool
        Fit PSFs on a mosaic's member exposures (only when those exposures hold the injected sources).
    match_radius_arcsec : float, optional
        Base match radius for point sources; default 1.5 × the PSF FWHM, at least 0.15″.
        A galaxy's radius adds its half-light radius in quadrature.
    mag_tolerance : float
        Magnitude difference weighing as much as a separation of one match radius.
    **catalog_options
        Passed to :func:`~romanflow.catalog.source_catalog.make_catalog`.
    """
    from romanflow.catalog.schema import band_token
    from romanflow.kernels.matching import match_sources, neighbours_within

    injected_paths = list(injected_paths)
    sources_tables = list(sources_tables)
    if len(injected_paths) != len(sources_tables):
        raise ValueError("one source table per injected image")
    table, images = catalog_images(injected_paths, psf_fwhm_arcsec=psf_fwhm_arcsec, exposures=exposures,
                                   **catalog_options)
    if parent_catalog is None:
        if parent_paths is None:
            raise RomanflowError("recover needs the parent images or their catalog")
        parent_catalog, _ = catalog_images(parent_paths, psf_fwhm_arcsec=psf_fwhm_arcsec, exposures=exposures,
                                           **catalog_options)
    ny, nx = images[0].data.shape
    ra0, dec0 = (float(v) for v in images[0].wcs.pixel_to_world_values((nx - 1) / 2, (ny - 1) / 2))
    n_det = len(table)
    det_ra, det_dec = _col(table, "ra", n_det), _col(table, "dec", n_det)
    dx, dy = _tangent(det_ra, det_dec, ra0, dec0)
    n_par = len(parent_catalog)
    px, py = _tangent(_col(parent_catalog, "ra", n_par), _col(parent_catalog, "dec", n_par), ra0, dec0)
    fwhm = max(float(v) for v in table.meta["psf_fwhm_arcsec"].values())
    base_radius = match_radius_arcsec if match_radius_arcsec is not None else max(1.5 * fwhm, 0.15)
    labels = np.asarray(table["label"], np.int64) if n_det else np.zeros(0, np.int64)
    warning = np.asarray(table["warning_flags"], np.int64) if n_det else np.zeros(0, np.int64)
    from romanflow.catalog.schema import WARNING_FLAGS

    # detections with a counterpart in the parents' catalog were there before injection
    if n_par and n_det:
        pre, _, _ = match_sources(px, py, np.full(n_par, np.nan), dx, dy, np.full(n_det, np.nan), radius=base_radius)
        is_new = np.ones(n_det, bool)
        is_new[pre[pre >= 0]] = False
    else:
        is_new = np.ones(n_det, bool)

    rows, det_rows = [], []
    first_band = band_token(images[0].band)
    for image, sources in zip(images, sources_tables):
        b = band_token(image.band)
        src = sources.reset_index(drop=True)
        n = len(src)
        sx, sy = _tangent(src["ra"].to_numpy(float), src["dec"].to_numpy(float), ra0, dec0)
        is_star = (src["type"] == "star").to_numpy()
        psf_flux, psf_err = _col(table, f"psf_{b}_flux", n_det), _col(table, f"psf_{b}_flux_err", n_det)
        kron_flux, kron_err = _col(table, f"kron_{b}_flux", n_det), _col(table, f"kron_{b}_flux_err", n_det)
        with np.errstate(invalid="ignore", divide="ignore"):
            det_mag_psf = np.where(psf_flux > 0, -2.5 * np.log10(psf_flux) + 31.4, np.nan)
            det_mag_kron = np.where(kron_flux > 0, -2.5 * np.log10(kron_flux) + 31.4, np.nan)
        det_mag = np.where(np.isfinite(det_mag_psf), det_mag_psf, det_mag_kron)
        hlr = src["half_light_radius"].to_numpy(float)
        radius = np.hypot(base_radius, hlr)
        index, sep, n_cand = match_sources(sx, sy, src["mag"].to_numpy(float), dx, dy, det_mag, radius=radius,
                                           mag_tolerance=mag_tolerance)
        matched = index >= 0
        j = np.where(matched, index, 0)
        pick = lambda arr: np.where(matched, arr[j] if arr.size else np.nan, np.nan)  # noqa: E731
        flux_out = np.where(is_star, pick(psf_flux), pick(kron_flux))
        flux_err = np.where(is_star, pick(psf_err), pick(kron_err))
        # a star whose PSF fit failed falls back to its Kron flux
        bad = is_star & matched & ~np.isfinite(flux_out)
        flux_out = np.where(bad, pick(kron_flux), flux_out)
        flux_err = np.where(bad, pick(kron_err), flux_err)
        ra_out, dec_out = pick(det_ra), pick(det_dec)
        ox, oy = _tangent(ra_out, dec_out, ra0, dec0)
        n_inj = neighbours_within(sx, sy, BLEND_RADIUS_ARCSEC)
        n_real = neighbours_within(sx, sy, BLEND_RADIUS_ARCSEC, px, py) if n_par else np.zeros(n, np.int64)
        flags = np.where(n_inj > 0, FLAGS["BLEND_INJECTED"], 0) | np.where(n_real > 0, FLAGS["NEAR_REAL"], 0)
        flags |= np.where(n_cand > 1, FLAGS["SEVERAL_CANDIDATES"], 0)
        if n_det:
            w = np.where(matched, warning[j], 0)
            flags |= np.where(w & WARNING_FLAGS["BLENDED"], FLAGS["DEBLENDED"], 0)
            flags |= np.where(w & WARNING_FLAGS["EDGE"], FLAGS["EDGE"], 0)
        ext = _col(table, f"is_extended_{b}", n_det)
        with np.errstate(invalid="ignore", divide="ignore"):
            mag_out = np.where(flux_out > 0, -2.5 * np.log10(flux_out) + 31.4, np.nan)
        rows.append(pd.DataFrame({
            "injection_id": src["injection_id"].to_numpy(np.int64),
            "image": src["image"].astype(str).to_numpy() if "image" in src else "",
            "band": image.band.upper(),
            "type": src["type"].astype(str).to_numpy(),
            "ra": src["ra"].to_numpy(float), "dec": src["dec"].to_numpy(float),
            "half_light_radius": hlr,
            "mag_in": src["mag"].to_numpy(float),
            "flux_in": src["flux_njy"].to_numpy(float),
            "stamp_flux": src["stamp_flux_image"].to_numpy(float) * float(image.njy_per_pixel),
            "x": src["x"].to_numpy(float), "y": src["y"].to_numpy(float),
            "matched": matched,
            "label": np.where(matched, labels[j] if n_det else -1, -1).astype(np.int64),
            "ra_out": ra_out, "dec_out": dec_out,
            "dra": ox - sx, "ddec": oy - sy, "separation": sep,
            "flux_out": flux_out, "flux_out_err": flux_err, "mag_out": mag_out,
            "psf_flux": pick(psf_flux), "psf_flux_err": pick(psf_err),
            "kron_flux": pick(kron_flux), "kron_flux_err": pick(kron_err),
            "is_extended": np.where(matched, pick(ext) > 0, False),
            "n_candidates": n_cand, "n_injected_neighbours": n_inj, "n_real_neighbours": n_real,
            "match_radius": radius, "recovery_flags": flags.astype(np.int32),
        }))
        owner = np.full(n_det, -1, np.int64)
        owner[index[matched]] = src["injection_id"].to_numpy(np.int64)[matched]
        det_rows.append(pd.DataFrame({"label": labels, "band": image.band.upper(), "mag": det_mag,
                                      "is_new": is_new, "injection_id": owner}))
    output = pd.concat(rows, ignore_index=True)
    detections = pd.concat(det_rows, ignore_index=True)
    _log.info("recovered %d of %d injected sources (%s first band)", int(output["matched"].sum()), len(output),
              first_band)
    return Recovery(output, detections, table, parent_catalog)


def write_output_catalog(table: pd.DataFrame, path, *, provenance: dict | None = None):
    """Write an injection output catalog as Parquet with units and descriptions (:data:`OUTPUT_COLUMNS`)."""
    from romanflow.inject.tables import write_documented_parquet

    return write_documented_parquet(table, path, OUTPUT_COLUMNS, provenance)
