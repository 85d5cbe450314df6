"""Point-source detection and PSF-fit positions and fluxes on one L2 detector image.

Kernel (:func:`detect_point_sources`): arrays in, table out. Background by
:func:`romanflow.kernels.background.box_background` (sigma-clipped medians in
64-pixel boxes, photutils' Background2D); detection by peaks of the
matched-filter S/N map (image convolved with the effective PSF, divided by the
noise of that sum; :mod:`romanflow.kernels.matched_filter`); positions and
fluxes by fitting the effective PSF with
:func:`romanflow.kernels.psf_fit.fit_psf_sources` (Gauss-Newton in a 5x5 box,
brightest first, each source with the current models of the others
subtracted, over a few passes, so that close neighbours are fitted together).

Wrapper (:func:`source_catalog`): reads the detector and filter from the
metadata, takes the PSF from :mod:`romanflow.psf`, adds sky positions from the
image's WCS. Catalog files: :func:`write_source_catalog` (Parquet with units).
"""

from __future__ import annotations

import numpy as np

from romanflow import dq as dqbits
from romanflow import source_flags
from romanflow.detector import N_PIX_SCIENCE
from romanflow.errors import RomanflowError
from romanflow.kernels.psf_fit import fit_psf_sources

#: The :mod:`romanflow.source_flags` bits of the ``flags`` column: EDGE (fit box not fully on the array, or
#: a DO_NOT_USE pixel in it), BLENDED (another detection within BLEND_RADIUS pixels), SATURATED (a pixel in
#: the fit box saturated with no rate left; pixels that saturated part-way keep a rate from their unsaturated
#: resultants and do not count), PSF_FIT_FAILED (no fit, a non-positive flux, or a position beyond XY_BOUND).
FLAG_NAMES = ("EDGE", "BLENDED", "SATURATED", "PSF_FIT_FAILED")

FIT_SHAPE = 5  #: PSF-fit box (pixels per side)
BLEND_RADIUS = 4.0  #: detections closer than this (pixels) are fitted together and flagged BLENDED
PSF_OVERSAMPLE = 4
MODEL_HALF = 30  #: half-size of each fitted model (wings included) removed while fitting its neighbours
N_PASSES = 3  #: passes over all sources (blends converge as the neighbours' models improve)
XY_BOUND = 1.5  #: largest move of a fit from its detection peak (pixels)

_COLUMNS = {
    # name: (unit, description)
    "id": ("", "source number within the detector"),
    "x": ("pix", "PSF-fit column, 0-based science pixel"),
    "y": ("pix", "PSF-fit row, 0-based science pixel"),
    "x_err": ("pix", "1-sigma uncertainty of x"),
    "y_err": ("pix", "1-sigma uncertainty of y"),
    "flux": ("DN/s", "PSF-fit flux (total, from the effective PSF)"),
    "flux_err": ("DN/s", "1-sigma uncertainty of flux"),
    "snr": ("", "flux / flux_err"),
    "peak_snr": ("", "matched-filter S/N at detection"),
    "flags": ("", "source flags (romanflow.source_flags; 0 = good): " + source_flags.legend(FLAG_NAMES)),
    "ra": ("deg", "ICRS right ascension from the image WCS"),
    "dec": ("deg", "ICRS declination from the image WCS"),
}


def _native_kernel(psf, oversample):
    """Effective PSF sampled at native pixels around its centre (fraction of flux per pixel)."""
    n = psf.shape[0]
    c = (n - 1) // 2
    half = min(c // oversample, 3)
    idx = c + oversample * np.arange(-half, half + 1)
    kernel = np.asarray(psf)[np.ix_(idx, idx)]
    return kernel


def detect_point_sources(data, err, dq, psf, *, oversample: int = PSF_OVERSAMPLE, snr_threshold: float = 5.0,
                         background_box: int | None = None):
    """Detect point sources and fit their positions and fluxes.

    Parameters
    ----------
    data : ndarray (ny, nx)
        Count rate (DN/s).
    err : ndarray (ny, nx)
        1-sigma uncertainty (DN/s); non-finite or non-positive values fall back
        to the background RMS.
    dq : ndarray of uint32 (ny, nx)
        Pixel flags; DO_NOT_USE pixels are masked in the fit.
    psf : ndarray or romanflow.psf.PSFModel
        Effective PSF with ``oversample`` samples per pixel, source at the
        central sample (:mod:`romanflow.kernels.epsf` conventions); or a
        PSFModel, whose PSF varies over the detector (a square image smaller
        than 4088² is taken as the detector's central patch). Blends are fitted
        together by the one PSF fitter (:mod:`romanflow.kernels.psf_fit` with
        ``subtract_neighbours``).
    snr_threshold : float
        Detection threshold on the matched-filter S/N.
    background_box : int, optional
        Background mesh size (pixels); default ``min(64, n // 4)``.

    Returns
    -------
    astropy.table.QTable
        Columns ``id, x, y, x_err, y_err, flux, flux_err, snr, peak_snr, flags``
        (units as in :data:`_COLUMNS`; flags :data:`FLAG_NAMES`). The fits are
        weighted by ``1 / err²`` and their errors are those of
        :mod:`romanflow.kernels.psf_fit`; a rejected fit (``PSF_FIT_FAILED``)
        keeps its detection peak as position and has NaN flux and errors.
        Empty (zero rows) when nothing is found.
    """
    from romanflow.kernels.background import box_background
    from romanflow.kernels.matched_filter import detection_images, local_peaks, matched_filter_snr

    data = np.asarray(data)
    if data.dtype.kind != "f":
        data = data.astype(float)
    ny, nx = data.shape
    dq = np.zeros(data.shape, np.uint32) if dq is None else np.asarray(dq)
    bad = (dq & dqbits.DO_NOT_USE) != 0
    bad |= ~np.isfinite(data)
    box = background_box or max(16, min(64, min(ny, nx) // 4))
    try:
        background, background_rms = box_background(data, bad, box, sigma=3.0)
    except ValueError:  # e.g. everything masked
        return _empty_table()
    err = np.full(data.shape, np.nan, np.float32) if err is None else np.asarray(err)
    # the detection noise is the sky's (the sources' own shot noise would carve a dip, and a ring of
    # false peaks, into the S/N map of every bright star)
    residual, sigma, sky_variance = detection_images(data, err, bad, background, background_rms)

    stack = index = model = None
    offset = 0.0
    if hasattr(psf, "stack"):  # a romanflow.psf.PSFModel: the PSF varies over the detector
        offset = (N_PIX_SCIENCE - ny) / 2.0 if ny == nx else 0.0
        model, oversample = psf, psf.oversample
        psf = model.epsf(float(np.clip(offset + (nx - 1) / 2.0, 0, N_PIX_SCIENCE - 1)),
                         float(np.clip(offset + (ny - 1) / 2.0, 0, N_PIX_SCIENCE - 1)))
    snr_map = matched_filter_snr(residual, sky_variance, _native_kernel(psf, oversample))
    del sky_variance
    x_peak, y_peak = local_peaks(snr_map, snr_threshold)
    if x_peak.size == 0:
        return _empty_table()
    px = x_peak.astype(float)
    py = y_peak.astype(float)
    peak_snr = snr_map[y_peak, x_peak]
    if model is not None:
        stack, index = model.stack(px, py, offset=offset)
    return _fit_sources(residual, sigma, dq, bad, psf if stack is None else stack, oversample, px, py, peak_snr,
                        psf_index=index)


def _fit_sources(residual, sigma, dq, bad, psf, oversample, px, py, peak_snr, psf_index=None):
    """PSF fits of the detections (neighbours subtracted, brightest first) and their flags."""
    ny, nx = residual.shape
    half = FIT_SHAPE // 2
    order = np.argsort(-peak_snr, kind="stable")  # brightest first: their models leave the faint ones
    fit = fit_psf_sources(residual, sigma, px[order], py[order], psf, oversample, mask=bad, half=half,
                          max_shift=XY_BOUND, subtract_neighbours=True, passes=N_PASSES, model_half=MODEL_HALF,
                          psf_index=None if psf_index is None else psf_index[order])
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    x, y, flux = fit["x"][back], fit["y"][back], fit["flux"][back]
    x_err, y_err, flux_err = fit["x_err"][back], fit["y_err"][back], fit["flux_err"][back]
    fit_flags = fit["flags"][back]

    flags = np.zeros(len(x), np.uint32)
    with np.errstate(invalid="ignore"):
        ok = (((fit_flags & (source_flags.PSF_FIT_FAILED | source_flags.LEFT_BOX)) == 0) & (flux > 0)
              & np.isfinite(flux_err) & (flux_err > 0))
    flags[~ok] |= source_flags.PSF_FIT_FAILED
    # a rejected fit: the detection peak, no flux
    x, y = np.where(ok, x, px), np.where(ok, y, py)
    for values in (flux, flux_err, x_err, y_err):
        values[~ok] = np.nan
    xi = np.rint(x).astype(int)
    yi = np.rint(y).astype(int)
    edge = (xi - half < 0) | (yi - half < 0) | (xi + half > nx - 1) | (yi + half > ny - 1)
    flags[edge] |= source_flags.EDGE
    if len(x) > 1:
        from scipy.spatial import cKDTree

        pairs = cKDTree(np.column_stack([x, y])).query_pairs(BLEND_RADIUS, output_type="ndarray")
        flags[np.unique(pairs.ravel())] |= source_flags.BLENDED
    saturated = np.zeros(len(x), bool)
    unusable = np.zeros(len(x), bool)
    for dy in range(-half, half + 1):
        for dx in range(-half, half + 1):
            yy, xx = yi + dy, xi + dx
            inside = (yy >= 0) & (yy < ny) & (xx >= 0) & (xx < nx)
            box = np.where(inside, dq[np.clip(yy, 0, ny - 1), np.clip(xx, 0, nx - 1)], 0)
            unusable |= (box & dqbits.DO_NOT_USE) != 0
            saturated |= ((box & dqbits.SATURATED) != 0) & ((box & dqbits.DO_NOT_USE) != 0)
    flags[saturated] |= source_flags.SATURATED
    flags[unusable] |= source_flags.EDGE
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.where(flux_err > 0, flux / flux_err, 0.0)
    rows = {
        "id": np.arange(1, len(x) + 1, dtype=np.int64), "x": x, "y": y, "x_err": x_err, "y_err": y_err,
        "flux": flux, "flux_err": flux_err, "snr": snr, "peak_snr": peak_snr, "flags": flags,
    }
    return _table_from(rows)


def _empty_table():
    rows = {name: np.zeros(0, dtype=np.int64 if name == "id" else (np.uint32 if name == "flags" else float))
            for name in _COLUMNS if name not in ("ra", "dec")}
    return _table_from(rows)


def _table_from(rows):
    from astropy import units as u
    from astropy.table import Column, QTable

    table = QTable()
    for name, values in rows.items():
        unit, description = _COLUMNS[name]
        unit = u.Unit(unit) if unit and unit != "DN/s" else (u.DN / u.s if unit == "DN/s" else None)
        table[name] = Column(values, unit=unit, description=description) if unit is None else \
            u.Quantity(values, unit)
        table[name].info.description = description
    return table


def source_catalog(image, *, snr_threshold: float = 5.0, spectrum=None):
    """Catalog of the point sources of an L2 :class:`~romanflow.exposure.RateImage`.

    Uses the PSF library of the image's detector and optical element
    (:func:`romanflow.psf.psf_model`, varying over the detector; ``spectrum``
    as there, G2V by default) and, when
    the image has a WCS, adds ``ra``/``dec`` (deg). The table's ``meta`` carries
    ``detector``, ``optical_element`` and ``exposure_time`` (MJD of start, when known).
    """
    from romanflow.exposure import get_meta
    from romanflow.psf import psf_model

    detector = get_meta(image.meta, "instrument.detector")
    element = get_meta(image.meta, "instrument.optical_element")
    if detector is None or element is None:
        raise RomanflowError("source catalog: metadata lacks instrument.detector or instrument.optical_element")
    model = psf_model(detector, element, spectrum=spectrum)
    table = detect_point_sources(image.data, image.err, image.dq, model, snr_threshold=snr_threshold)
    add_sky_positions(table, image.wcs)
    table.meta.update({"detector": str(detector), "optical_element": str(element)})
    return table


def add_sky_positions(table, wcs):
    """Set ``ra``/``dec`` (deg) columns of a source table from a pixel -> sky transform."""
    from astropy import units as u

    x = np.asarray(table["x"].value if hasattr(table["x"], "value") else table["x"], dtype=float)
    y = np.asarray(table["y"].value if hasattr(table["y"], "value") else table["y"], dtype=float)
    if wcs is None:
        ra = dec = np.full(len(x), np.nan)
    elif len(x) == 0:
        ra = dec = np.zeros(0)
    else:
        ra, dec = wcs(x, y, with_bounding_box=False)
    table["ra"] = np.asarray(ra, dtype=float) * u.deg
    table["dec"] = np.asarray(dec, dtype=float) * u.deg
    for name in ("ra", "dec"):
        table[name].info.description = _COLUMNS[name][1]
    return table


def write_source_catalog(table, path):
    """Write a source table to Parquet (units and descriptions kept, plus Arrow field metadata)."""
    import pyarrow.parquet as pq

    from romanflow.formats.asdf_io import atomic_path

    with atomic_path(path) as tmp:
        table.write(tmp, format="parquet", overwrite=True)
        # also describe the columns for non-astropy readers
        parquet = pq.read_table(tmp)
        fields = []
        for field in parquet.schema:
            if field.name in table.colnames:
                col = table[field.name]
                unit = getattr(col, "unit", None)
                meta = {"unit": str(unit) if unit is not None else "",
                        "description": col.info.description or ""}
                field = field.with_metadata({k: v for k, v in meta.items()})
            fields.append(field)
        import pyarrow as pa

        schema = pa.schema(fields, metadata=parquet.schema.metadata)
        pq.write_table(parquet.cast(schema), tmp)
    return path


def read_source_catalog(path):
    """Read a catalog written by :func:`write_source_catalog` (an astropy QTable)."""
    from astropy.table import QTable

    from romanflow.errors import InputFileError

    try:
        return QTable.read(path, format="parquet")
    except FileNotFoundError:
        raise InputFileError(path, "file not found") from None
    except Exception as exc:
        raise InputFileError(path, f"not a readable Parquet source catalog: {exc}") from None
