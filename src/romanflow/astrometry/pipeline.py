"""Detection plus tweakreg on L2 files, one fit per exposure, results written back atomically."""

from __future__ import annotations

import time
import warnings
from pathlib import Path


def catalog_path(path) -> Path:
    """``<root>_wfiNN_cal.asdf`` -> ``<root>_wfiNN_cat.parquet`` (same folder)."""
    path = Path(path)
    stem = path.name[: -len(".asdf")] if path.name.endswith(".asdf") else path.stem
    for suffix in ("_cal", "_l2"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return path.with_name(f"{stem}_cat.parquet")


def align_files(paths, refcat, *, output_dir=None, snr_threshold: float = 5.0, fitgeometry: str = "rshift",
                per_detector: bool = False, searchrad: float = 3.0, minobj: int = 10, timings: dict | None = None):
    """Detect point sources on L2 files, align each exposure to a reference catalog, write the results.

    Files of the same exposure (``meta.observation.observation_id`` and start
    time) are fit together. Every file is rewritten (or written to
    ``output_dir``) with the corrected WCS and ``meta.wcs_fit_results``, and its
    source catalog goes beside it (:func:`catalog_path`). A failed alignment
    keeps the WCS and records the reason.

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
    from romanflow.formats.asdf_io import read_l2, write_l2

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
        write_l2(image, out)
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
