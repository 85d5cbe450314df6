"""Checks of the calibration steps' inputs, made before any kernel sees them.

Kernels raise ``ValueError`` for arrays that do not fit together; a user's file
that does not fit (a ramp whose resultants disagree with its read pattern, a
reference of the wrong size) is caught here instead and reported as
:class:`~romanflow.errors.InputFileError` naming the file, or as
:class:`~romanflow.errors.ParameterError` for an option.
"""

from __future__ import annotations

import numpy as np

from romanflow.detector import AMP33_WIDTH, CHANNEL_WIDTH, N_BORDER
from romanflow.errors import InputFileError, ParameterError
from romanflow.kernels.ramp import METHODS

#: Reference types whose arrays may also come trimmed to the science pixels.
TRIMMED_REFERENCE_TYPES = ("dark", "flat")


def exposure_source(meta: dict) -> str:
    """The name an exposure is reported by: its ``meta.filename``, else ``'exposure'``."""
    name = meta.get("filename") if isinstance(meta, dict) else None
    return str(name) if name else "exposure"


def check_ramp_exposure(exposure) -> None:
    """Check that a ramp's arrays agree with each other and with its read pattern.

    ``exposure.data`` must be (n_resultants, ny, nx) with ``n_resultants`` the
    read pattern's, ``nx`` a multiple of the 128-pixel channel width, and
    ``exposure.amp33`` (when present) (n_resultants, ny, 128), the flags (when present)
    the shape of the data and of a frame; at least 2 resultants; the read pattern
    that of its MA table (:func:`romanflow.formats.asdf_io.check_read_pattern`).

    Raises
    ------
    InputFileError
        Naming the exposure's file (``meta.filename``) and the disagreement.
    """
    from romanflow.formats.asdf_io import check_read_pattern

    source = exposure_source(exposure.meta)
    exposure_meta = exposure.meta.get("exposure") if isinstance(exposure.meta, dict) else None
    if isinstance(exposure_meta, dict) and "read_pattern" in exposure_meta:
        check_read_pattern(source, exposure_meta)
    shape = np.shape(exposure.data)
    if len(shape) != 3:
        raise InputFileError(source, f"data has shape {shape}: expected (n_resultants, ny, nx)")
    n_pattern = exposure.read_pattern.n_resultants
    if shape[0] != n_pattern:
        raise InputFileError(source, f"data has {shape[0]} resultants but the read pattern describes {n_pattern}")
    if n_pattern < 2:
        raise InputFileError(source, f"{n_pattern} resultant: ramp fitting needs at least 2")
    if shape[2] % CHANNEL_WIDTH or shape[1] <= 2 * N_BORDER:
        raise InputFileError(source, f"frames of {shape[1]}x{shape[2]} pixels: expected a width that is a multiple "
                                     f"of {CHANNEL_WIDTH} pixels, reference border included")
    if exposure.amp33 is not None and np.shape(exposure.amp33) != (shape[0], shape[1], AMP33_WIDTH):
        raise InputFileError(source, f"amp33 has shape {np.shape(exposure.amp33)}: expected "
                                     f"{(shape[0], shape[1], AMP33_WIDTH)}")
    if exposure.groupdq is not None and np.shape(exposure.groupdq) != shape:
        raise InputFileError(source, f"resultant flags have shape {np.shape(exposure.groupdq)}: expected {shape}")
    if exposure.pixeldq is not None and np.shape(exposure.pixeldq) != shape[1:]:
        raise InputFileError(source, f"pixel flags have shape {np.shape(exposure.pixeldq)}: expected {shape[1:]}")


def check_ramp_method(method: str, name: str = "ramp_method") -> None:
    """Raise :class:`ParameterError` (``name`` as the user spells it) unless ``method`` is a ramp-fitting method."""
    if method not in METHODS:
        raise ParameterError(name, method, f"unknown ramp-fitting method: expected one of {', '.join(METHODS)}")


def check_reference_frame(reference, frame_shape) -> None:
    """Check that a reference's arrays cover the exposure's frames.

    Parameters
    ----------
    reference : romanflow.formats.reference_io.ReferenceData
        A reference as read (its arrays already agree with each other on the image shape).
    frame_shape : (int, int)
        The exposure's full frame (ny, nx), reference border included. Darks and
        flats may also be trimmed to the science pixels (ny − 8, nx − 8).

    Raises
    ------
    InputFileError
        Naming the reference file and both shapes.
    """
    shapes = {value.shape[-2:] for value in reference.content.values() if isinstance(value, np.ndarray)}
    if not shapes:
        return
    if reference.reftype == "refpix":  # (channels or 1, frequencies of one read's time series)
        _check_refpix_layout(reference, shapes.pop(), frame_shape)
        return
    found = shapes.pop()
    full = tuple(int(n) for n in frame_shape)
    allowed = [full]
    if reference.reftype in TRIMMED_REFERENCE_TYPES:
        allowed.append((full[0] - 2 * N_BORDER, full[1] - 2 * N_BORDER))
    if tuple(found) not in allowed:
        raise InputFileError(reference.path, f"{reference.reftype} arrays are {found[0]}x{found[1]} pixels; the "
                                             f"exposure's frames are {full[0]}x{full[1]}")


def check_overrides(overrides: dict, used_reftypes, skipped_reftypes=()) -> None:
    """Check user reference overrides before any work: each is used by a step that runs, and its file holds
    that type of reference.

    Parameters
    ----------
    overrides : dict
        reftype -> path (or ``'N/A'``, which switches the type off).
    used_reftypes : iterable of str
        Reference types the calibration steps read.
    skipped_reftypes : iterable of str
        Types read only by steps that are skipped.

    Raises
    ------
    ParameterError
        A type no step reads, or read only by a skipped step.
    InputFileError
        Naming a file that is missing or is not a reference of that type.
    """
    from romanflow.refdata.selection import check_reference_file, is_not_applicable

    used, skipped = set(used_reftypes), set(skipped_reftypes)
    for reftype, value in overrides.items():
        if reftype not in used:
            raise ParameterError(f"--override-{reftype}", str(value), f"no calibration step reads a {reftype} "
                                 f"reference; steps read {', '.join(sorted(used))}")
        if reftype in skipped:
            raise ParameterError(f"--override-{reftype}", str(value), f"the step reading the {reftype} reference "
                                 "is skipped")
        if value is None or is_not_applicable(value):
            continue
        check_reference_file(value, reftype)


def _check_refpix_layout(reference, found, frame_shape) -> None:
    """A REFPIX reference's coefficients must have one row (or one per channel) and one column per frequency."""
    from romanflow.detector import CHANNEL_WIDTH, ROW_PERIOD

    ny, nx = (int(n) for n in frame_shape)
    n_freq = ny * ROW_PERIOD // 2 + 1
    n_channels = nx // CHANNEL_WIDTH
    if found[1] != n_freq or found[0] not in (1, n_channels):
        raise InputFileError(reference.path, f"refpix coefficients are {found[0]}x{found[1]}; a {ny}x{nx} frame "
                                             f"read at {ROW_PERIOD} pixel times per row needs 1 or {n_channels} "
                                             f"rows of {n_freq} frequencies")
