"""L1 files to registered L2 files: calibration, then alignment of every exposure to a reference catalog.

The alignment is split as a task graph would run it: point-source detection on each
calibrated file (its own table written beside it), then one fit per exposure that reads
only the source tables and the files' metadata
(:func:`romanflow.astrometry.pipeline.fit_exposure`), never all the images of an
exposure at once. :func:`calibrate_and_detect` is the per-detector half.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

from romanflow.errors import InputFileError


@dataclass
class RegisteredFiles:
    """What :func:`calibrate_and_register` produced.

    Attributes
    ----------
    l2_paths : list of Path
        The calibrated files, in input order (rewritten in place with the aligned WCS when registered).
    alignments : list of (Path, dict)
        Each file and its ``meta.wcs_fit_results``; empty without a reference catalog.
    warnings : list of str
        Warnings the alignment raised (too few matches, a fit kept unchanged, ...).
    """

    l2_paths: list
    alignments: list = field(default_factory=list)
    warnings: list = field(default_factory=list)


def calibrate_and_register(l1_paths, output_dir=None, refcat=None, *, options=None, workers: int | None = None,
                           progress=None, overwrite: bool = False) -> RegisteredFiles:
    """Calibrate L1 files into L2 files, then align each exposure's detectors together to ``refcat``.

    Parameters
    ----------
    l1_paths : sequence of path
        L1 (uncal) files.
    output_dir : path, optional
        Where the L2 files go (default: beside each input).
    refcat : path, optional
        Astrometric reference catalog (Parquet with Gaia DR3 columns); without one the files are only calibrated.
    options : romanflow.calibrate.CalibrationOptions, optional
    workers : int, optional
        Calibration processes (default: one per core).
    progress : callable, optional
        Called with each calibrated path.
    overwrite : bool
        Replace existing L2 files (default False: refused before any work).
    """
    from romanflow.astrometry.pipeline import catalog_path, detect_file, fit_exposure
    from romanflow.astrometry.tweakreg import TweakregWarning
    from romanflow.calibrate import calibrate

    reference = None
    if refcat is not None:  # the whole catalog is checked before any calibration work
        from romanflow.astrometry.refcat import read_refcat

        if not Path(refcat).is_file():
            raise InputFileError(refcat, "reference catalog not found")
        reference = read_refcat(refcat)
    l2_paths = calibrate(l1_paths, output_dir, options=options, workers=workers, progress=progress,
                         overwrite=overwrite)
    if refcat is None:
        return RegisteredFiles(l2_paths)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TweakregWarning)
        tables = [detect_file(path, catalog_path(path))[0] for path in l2_paths]
        alignments = fit_exposure(l2_paths, tables, reference, refcat_name=Path(refcat).name)
    return RegisteredFiles(l2_paths, alignments, [str(w.message) for w in caught])


def calibrate_and_detect(l1_path, output_dir, *, options=None, snr_threshold: float = 5.0) -> dict:
    """One detector's half of registration: L1 -> L2, then its point-source table.

    Returns ``{'l2', 'table', 'calibrate_s', 'detect_s', 'calibrate_steps_s'}`` (paths, seconds); the table is
    :func:`~romanflow.astrometry.pipeline.catalog_path` of the L2 file, which
    :func:`~romanflow.astrometry.pipeline.fit_exposure` then reads with the exposure's other tables.
    """
    import time

    from romanflow.astrometry.pipeline import catalog_path, detect_file
    from romanflow.calibrate import calibrate_file

    start = time.perf_counter()
    l2_path, steps = calibrate_file(l1_path, output_dir, options)
    calibrate_s = time.perf_counter() - start
    table, detect_s = detect_file(l2_path, catalog_path(l2_path), snr_threshold=snr_threshold)
    return {"l2": Path(l2_path), "table": Path(table), "calibrate_s": calibrate_s, "detect_s": detect_s,
            "calibrate_steps_s": dict(steps)}
