"""L1 files to registered L2 files: calibration, then alignment of every exposure to a reference catalog."""

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
    from romanflow.astrometry.pipeline import align_files
    from romanflow.astrometry.tweakreg import TweakregWarning
    from romanflow.calibrate import calibrate

    if refcat is not None:  # the whole catalog is checked before any calibration work
        from romanflow.astrometry.refcat import read_refcat

        if not Path(refcat).is_file():
            raise InputFileError(refcat, "reference catalog not found")
        read_refcat(refcat)
    l2_paths = calibrate(l1_paths, output_dir, options=options, workers=workers, progress=progress,
                         overwrite=overwrite)
    if refcat is None:
        return RegisteredFiles(l2_paths)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TweakregWarning)
        alignments = align_files(l2_paths, refcat)
    return RegisteredFiles(l2_paths, alignments, [str(w.message) for w in caught])
