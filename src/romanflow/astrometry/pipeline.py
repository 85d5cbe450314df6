"""Detection plus tweakreg on L2 files, one fit per exposure, results written back atomically.

The work is split in two so that an exposure's join is small: :func:`detect_file`
reads one L2 image and writes its point-source table (one task per detector, in
parallel), and :func:`fit_exposure` reads only those tables and the files'
metadata and WCS (:func:`read_l2_header`, no arrays) to make the one fit per
exposure. :func:`align_files` chains the two.

A file is rewritten from its own model: only the WCS and the metadata tweakreg
owns (:data:`OWNED_WCSINFO`, ``velocity_aberration.scale_factor``,
``wcs_fit_results``, ``cal_step.tweakreg``) change, every array is kept as it
was, and the new file replaces the old one in one rename. A failed fit changes
only ``wcs_fit_results`` and ``cal_step.tweakreg``.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

from romanflow.errors import InputFileError, ParameterError

#: ``meta.wcsinfo`` entries a successful fit changes.
OWNED_WCSINFO = ("ra_ref", "dec_ref", "roll_ref", "s_region")


def catalog_path(path) -> Path:
    """``<root>_wfiNN_cal.asdf`` -> ``<root>_wfiNN_cat.parquet`` (same folder)."""
    path = Path(path)
    stem = path.name[: -len(".asdf")] if path.name.endswith(".asdf") else path.stem
    for suffix in ("_cal", "_l2"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return path.with_name(f"{stem}_cat.parquet")


def write_alignment(source, image, out) -> Path:
    """Write L2 file ``source`` to ``out`` (which may be ``source``) with ``image``'s alignment.

    ``image`` is ``source`` read and passed through
    :func:`~romanflow.astrometry.tweakreg.tweakreg`. After a successful fit the
    WCS, :data:`OWNED_WCSINFO` and the velocity-aberration scale come from
    ``image``; in every case ``wcs_fit_results`` and ``cal_step.tweakreg`` do.
    Nothing else of the file changes; it is written under a temporary name and
    renamed into place.
    """
    from romanflow.exposure import get_meta
    from romanflow.formats.asdf_io import atomic_path, open_model

    result = dict(image.meta.get("wcs_fit_results", {}))
    status = get_meta(image.meta, "cal_step.tweakreg")
    with open_model(source, "ImageModel") as model:
        if result.get("status") == "SUCCESS":
            model.meta["wcs"] = image.wcs
            for key in OWNED_WCSINFO:
                value = get_meta(image.meta, f"wcsinfo.{key}")
                if value is not None:
                    model.meta.wcsinfo[key] = value
            scale = get_meta(image.meta, "velocity_aberration.scale_factor")
            if scale is not None and "velocity_aberration" in model.meta:
                model.meta.velocity_aberration["scale_factor"] = float(scale)
        model.meta["wcs_fit_results"] = result
        if status is not None and "cal_step" in model.meta:
            model.meta.cal_step["tweakreg"] = status
        with atomic_path(out) as tmp:
            model.save(tmp)
    return Path(out)


def check_alignment_options(*, snr_threshold: float | None = None, searchrad: float, minobj: int) -> None:
    """Raise :class:`~romanflow.errors.ParameterError` for an option no fit can use."""
    if snr_threshold is not None and not (math.isfinite(snr_threshold) and snr_threshold > 0):
        raise ParameterError("snr_threshold", snr_threshold, "must be a finite number > 0 (sigma)")
    if not (math.isfinite(searchrad) and searchrad > 0):
        raise ParameterError("searchrad", searchrad, "must be a finite number > 0 (arcsec)")
    if int(minobj) != minobj or minobj < 1:
        raise ParameterError("minobj", minobj, "must be a positive integer")


@dataclass
class L2Header:
    """What the fit needs of an L2 file, read without its arrays.

    ``data`` is a zero-strided stand-in of the science array's shape (no memory), so that
    code asking for the image's shape (``assign_wcs``) works on it unchanged.
    """

    path: Path
    meta: dict
    wcs: object
    shape: tuple

    @property
    def data(self):
        import numpy as np

        return np.broadcast_to(np.float32(0), self.shape)


def read_l2_header(path) -> L2Header:
    """Metadata, WCS and science-array shape of an L2 file; the arrays are not read."""
    import asdf

    from romanflow.formats.asdf_io import to_plain

    path = Path(path)
    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        with asdf.open(path, lazy_load=True, memmap=False) as af:
            node = af.tree["roman"]
            meta = to_plain({k: node["meta"][k] for k in node["meta"].keys() if k != "wcs"})
            wcs = node["meta"].get("wcs")
            shape = tuple(int(v) for v in node["data"].shape)
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise InputFileError(path, f"not a readable L2 product: {exc}") from None
    if meta.get("model_type") not in (None, "ImageModel"):
        raise InputFileError(path, f"wrong product type {meta.get('model_type')}: expected ImageModel")
    if len(shape) != 2:
        raise InputFileError(path, f"data has shape {shape}: expected a 2-D image (ny, nx)")
    return L2Header(path, meta, wcs, shape)


def detect_file(path, catalog_out=None, *, snr_threshold: float = 5.0) -> tuple[Path, float]:
    """Detect the point sources of one L2 file and write its table (:func:`catalog_path` by default).

    Returns the table's path and the detection time (s). The table records the L2 file's
    name in its metadata (``l2_file``).
    """
    from romanflow.astrometry.detect import source_catalog, write_source_catalog
    from romanflow.calibrate.assign_wcs import assign_wcs
    from romanflow.formats.asdf_io import read_l2

    path = Path(path)
    image = read_l2(path)
    if image.data.ndim != 2:
        raise InputFileError(path, f"data has shape {image.data.shape}: expected a 2-D image (ny, nx)")
    if image.wcs is None:
        assign_wcs(image, None)
    start = time.perf_counter()
    catalog = source_catalog(image, snr_threshold=snr_threshold)
    seconds = time.perf_counter() - start
    catalog.meta["l2_file"] = path.name
    out = Path(catalog_out) if catalog_out is not None else catalog_path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_source_catalog(catalog, out)
    return out, seconds


def fit_exposure(l2_paths, catalog_paths, refcat, *, output_dir=None, fitgeometry: str = "rshift",
                 per_detector: bool = False, searchrad: float = 3.0, minobj: int = 10,
                 refcat_name: str | None = None, timings: dict | None = None):
    """Align exposures to a reference catalog from their source tables; write the results.

    ``refcat`` is a path or a table already read (then ``refcat_name`` names it in the results).
    Reads each L2 file's metadata and WCS (not its arrays) and its source table from
    :func:`detect_file`; files of the same exposure are fit together
    (:func:`~romanflow.astrometry.tweakreg.tweakreg`). Each file is then rewritten, one
    at a time, by :func:`write_alignment` (to ``output_dir`` when given), and its table,
    with the aligned ``ra``/``dec``, goes beside it (:func:`catalog_path`).

    Returns
    -------
    list of (Path, dict)
        Output path and ``wcs_fit_results`` of each file, in input order.
    """
    from romanflow.astrometry.detect import read_source_catalog, write_source_catalog
    from romanflow.astrometry.refcat import read_refcat
    from romanflow.astrometry.tweakreg import TweakregWarning, tweakreg
    from romanflow.calibrate.assign_wcs import assign_wcs

    check_alignment_options(searchrad=searchrad, minobj=minobj)
    paths = [Path(p) for p in l2_paths]
    if len(paths) != len(catalog_paths):
        raise ParameterError("catalog_paths", len(catalog_paths), f"need one source table per L2 file ({len(paths)})")
    if not hasattr(refcat, "columns"):
        refcat_name = Path(refcat).name if refcat_name is None else refcat_name
        refcat = read_refcat(refcat)
    headers, catalogs = [], []
    for path, table_path in zip(paths, catalog_paths):
        header = read_l2_header(path)
        if header.wcs is None:
            assign_wcs(header, None)
        catalog = read_source_catalog(table_path)
        named = catalog.meta.get("l2_file")
        if named is not None and named != path.name:
            raise InputFileError(table_path, f"is the source table of {named}, not of {path.name}")
        headers.append(header)
        catalogs.append(catalog)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always", TweakregWarning)
        tweakreg(headers, catalogs, refcat, fitgeometry=fitgeometry, per_detector=per_detector,
                 searchrad=searchrad, minobj=minobj, refcat_name=refcat_name or "")
    if timings is not None:
        timings["tweakreg"] = time.perf_counter() - start
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    results = []
    for path, header, catalog in zip(paths, headers, catalogs):
        out = Path(output_dir) / path.name if output_dir is not None else path
        write_alignment(path, header, out)
        catalog.meta["l2_file"] = out.name
        write_source_catalog(catalog, catalog_path(out))
        results.append((out, dict(header.meta.get("wcs_fit_results", {}))))
    return results


def align_files(paths, refcat, *, output_dir=None, snr_threshold: float = 5.0, fitgeometry: str = "rshift",
                per_detector: bool = False, searchrad: float = 3.0, minobj: int = 10, timings: dict | None = None):
    """Detect point sources on L2 files, align each exposure to a reference catalog, write the results.

    :func:`detect_file` on every file, then :func:`fit_exposure` on the tables. Files of
    the same exposure (``meta.observation.observation_id`` and start time) are fit
    together. Every file is rewritten (or written to ``output_dir``) by
    :func:`write_alignment`: the corrected WCS and ``meta.wcs_fit_results``, every array
    as it was. Its source catalog goes beside it (:func:`catalog_path`). A failed
    alignment keeps the WCS and records the reason.

    Parameters
    ----------
    paths : sequence of path
        L2 (cal) files.
    refcat : path or pandas.DataFrame
        Reference catalog (Parquet with Gaia DR3 columns) or one already read.
    timings : dict, optional
        Filled with ``'detect'`` (list of seconds per file) and ``'tweakreg'`` (seconds).

    Returns
    -------
    list of (Path, dict)
        Output path and ``wcs_fit_results`` of each file, in input order.
    """
    from romanflow.astrometry.refcat import read_refcat

    check_alignment_options(snr_threshold=snr_threshold, searchrad=searchrad, minobj=minobj)
    paths = [Path(p) for p in paths]
    refcat_name = ""
    if not hasattr(refcat, "columns"):  # read (and checked) before any detection
        refcat_name = Path(refcat).name
        refcat = read_refcat(refcat)
    for path in paths:  # every input checked (metadata only) before any table is written
        read_l2_header(path)
    timings = {} if timings is None else timings
    timings["detect"] = []
    tables = []
    for path in paths:
        out = Path(output_dir) / path.name if output_dir is not None else path
        table, seconds = detect_file(path, catalog_path(out), snr_threshold=snr_threshold)
        tables.append(table)
        timings["detect"].append(seconds)
    return fit_exposure(paths, tables, refcat, output_dir=output_dir, fitgeometry=fitgeometry,
                        per_detector=per_detector, searchrad=searchrad, minobj=minobj, refcat_name=refcat_name,
                        timings=timings)


def describe(path, result: dict) -> str:
    """One line on the alignment of a file."""
    if result.get("status") == "SUCCESS":
        rms = result["rms_arcsec"]
        return (f"{path}: aligned, {result['n_matches']} matches, shift {result['shift_arcsec'][0]:+.3f} "
                f"{result['shift_arcsec'][1]:+.3f} arcsec, rotation {result['rotation_deg']:+.5f} deg, "
                f"rms {1000 * rms[0]:.1f} {1000 * rms[1]:.1f} mas")
    return f"{path}: WCS unchanged ({result.get('reason', 'not aligned')})"
