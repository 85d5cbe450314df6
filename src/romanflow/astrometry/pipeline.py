"""Detection plus tweakreg on L2 files, one fit per exposure, results written back atomically.

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


def check_alignment_options(*, snr_threshold: float, searchrad: float, minobj: int) -> None:
    """Raise :class:`~romanflow.errors.ParameterError` for an option no fit can use."""
    if not (math.isfinite(snr_threshold) and snr_threshold > 0):
        raise ParameterError("snr_threshold", snr_threshold, "must be a finite number > 0 (sigma)")
    if not (math.isfinite(searchrad) and searchrad > 0):
        raise ParameterError("searchrad", searchrad, "must be a finite number > 0 (arcsec)")
    if int(minobj) != minobj or minobj < 1:
        raise ParameterError("minobj", minobj, "must be a positive integer")


def align_files(paths, refcat, *, output_dir=None, snr_threshold: float = 5.0, fitgeometry: str = "rshift",
                per_detector: bool = False, searchrad: float = 3.0, minobj: int = 10, timings: dict | None = None):
    """Detect point sources on L2 files, align each exposure to a reference catalog, write the results.

    Files of the same exposure (``meta.observation.observation_id`` and start
    time) are fit together. Every file is rewritten (or written to
    ``output_dir``) by :func:`write_alignment`: the corrected WCS and
    ``meta.wcs_fit_results``, every array as it was. Its source catalog goes
    beside it (:func:`catalog_path`). A failed alignment keeps the WCS and
    records the reason.

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
    from romanflow.astrometry.detect import source_catalog, write_source_catalog
    from romanflow.astrometry.refcat import read_refcat
    from romanflow.astrometry.tweakreg import TweakregWarning, tweakreg
    from romanflow.calibrate.assign_wcs import assign_wcs
    from romanflow.formats.asdf_io import read_l2

    check_alignment_options(snr_threshold=snr_threshold, searchrad=searchrad, minobj=minobj)
    paths = [Path(p) for p in paths]
    refcat_name = ""
    if not hasattr(refcat, "columns"):
        refcat_name = Path(refcat).name
        refcat = read_refcat(refcat)
    timings = {} if timings is None else timings
    timings["detect"] = []
    images, catalogs = [], []
    for path in paths:
        image = read_l2(path)
        if image.data.ndim != 2:
            raise InputFileError(path, f"data has shape {image.data.shape}: expected a 2-D image (ny, nx)")
        if image.wcs is None:
            assign_wcs(image, None)
        start = time.perf_counter()
        catalogs.append(source_catalog(image, snr_threshold=snr_threshold))
        timings["detect"].append(time.perf_counter() - start)
        images.append(image)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("always", TweakregWarning)
        tweakreg(images, catalogs, refcat, fitgeometry=fitgeometry, per_detector=per_detector,
                 searchrad=searchrad, minobj=minobj, refcat_name=refcat_name)
    timings["tweakreg"] = time.perf_counter() - start
    if output_dir is not None:
        Path(output_dir).mkdir(parents=True, exist_ok=True)
    results = []
    for path, image, catalog in zip(paths, images, catalogs):
        out = Path(output_dir) / path.name if output_dir is not None else path
        write_alignment(path, image, out)
        write_source_catalog(catalog, catalog_path(out))
        results.append((out, dict(image.meta.get("wcs_fit_results", {}))))
    return results


def describe(path, result: dict) -> str:
    """One line on the alignment of a file."""
    if result.get("status") == "SUCCESS":
        rms = result["rms_arcsec"]
        return (f"{path}: aligned, {result['n_matches']} matches, shift {result['shift_arcsec'][0]:+.3f} "
                f"{result['shift_arcsec'][1]:+.3f} arcsec, rotation {result['rotation_deg']:+.5f} deg, "
                f"rms {1000 * rms[0]:.1f} {1000 * rms[1]:.1f} mas")
    return f"{path}: WCS unchanged ({result.get('reason', 'not aligned')})"
