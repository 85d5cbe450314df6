"""refpix: remove correlated read noise using the reference pixels and amp33.

With a REFPIX reference (its ``gamma``, ``zeta``, ``alpha`` frequency
coefficients for the left reference columns, the right ones and amp33), the
correction those coefficients define is applied
(:func:`romanflow.kernels.refpix.apply_irrc`). Without one (the context says
N/A), the self-calibrating correction runs, its frequency weights measured on
the exposure itself (:func:`romanflow.kernels.refpix.correct_reference_pixels`),
and a note is logged.
"""

from __future__ import annotations

import logging

import numpy as np

from romanflow import dq
from romanflow.provenance import mark_step
from romanflow.calibrate.inputs import check_ramp_exposure
from romanflow.errors import RomanflowError
from romanflow.exposure import RampExposure, get_meta
from romanflow.kernels.dark_decay import dark_decay_columns
from romanflow.kernels.refpix import N_REFERENCE_COLUMNS, apply_irrc, correct_reference_pixels

log = logging.getLogger(__name__)

#: Key of ``RampExposure.extra`` holding the residual correlated variance (DN² per read).
RESIDUAL_VARIANCE_KEY = "residual_correlated_variance"

#: Pixel flags that exclude a reference pixel from the correction's estimate.
UNUSABLE_REFERENCE = dq.BAD_REF_PIXEL | dq.DO_NOT_USE

#: Note logged (and written to ``meta.cal_logs``) when no REFPIX reference is available.
SELF_CALIBRATING_NOTE = "refpix: no REFPIX reference; using the self-calibrating correction"


def refpix(exposure: RampExposure, reference=None, decay_table: dict | None = None) -> RampExposure:
    """Correct the resultants of a ramp (DN) in place; data becomes float32.

    Parameters
    ----------
    exposure : RampExposure
        Resultants and amp33 (DN).
    reference : ReferenceData, optional
        A REFPIX reference (``gamma``, ``zeta``, ``alpha``, complex, (1 or
        n_channels, ny·ROW_PERIOD//2 + 1)); None for the self-calibrating correction.
    decay_table : dict, optional
        The DARKDECAYSIGNAL reference's table: with a reference, this detector's
        decay after reset is taken out of the reference columns before they
        estimate the noise (the dark_decay step removes it from the pixels later).

    Reference pixels flagged BAD_REF_PIXEL or DO_NOT_USE in ``pixeldq`` are not
    used. Records ``meta.cal_step.refpix = 'COMPLETE'`` and
    ``meta.ref_file.refpix`` (the file, or ``'N/A'``).

    The common noise the correction leaves (DN² per read: each resultant's
    residual variance times its number of reads, averaged over resultants) is
    stored in ``exposure.extra[RESIDUAL_VARIANCE_KEY]`` for ramp fitting and
    written to ``meta.cal_logs``.
    """
    if exposure.amp33 is None:
        raise RomanflowError("refpix needs the amp33 resultants, but the exposure has none")
    check_ramp_exposure(exposure)
    mask = None
    if exposure.pixeldq is not None:
        mask = (np.asarray(exposure.pixeldq) & UNUSABLE_REFERENCE) == 0
    data = np.asarray(exposure.data, dtype=np.float32)
    logs = exposure.meta.setdefault("cal_logs", [])
    if reference is None:
        log.info(SELF_CALIBRATING_NOTE)
        logs.append(SELF_CALIBRATING_NOTE)
        exposure.data, residual = correct_reference_pixels(
            data, exposure.amp33, reference_mask=mask, overwrite=True, return_residual_variance=True)
        exposure.meta.setdefault("ref_file", {})["refpix"] = "N/A"
    else:
        try:
            exposure.data, residual = apply_irrc(
                data, exposure.amp33, reference["gamma"], reference["zeta"], reference["alpha"],
                reference_mask=mask, column_signal=_column_decay(exposure, decay_table), overwrite=True,
                return_residual_variance=True)
        except ValueError as exc:
            raise RomanflowError(f"{reference.path}: REFPIX reference does not fit the exposure: {exc}") from None
        logs.append(f"refpix: applied the REFPIX reference {reference.path.name}")
        exposure.meta.setdefault("ref_file", {})["refpix"] = reference.path.name
    n_reads = np.asarray(exposure.read_pattern.n_reads, dtype=np.float64)
    per_read = float(np.mean(residual * n_reads))
    exposure.extra[RESIDUAL_VARIANCE_KEY] = per_read
    logs.append(f"refpix: residual correlated read noise {per_read:.2f} DN^2 per read")
    mark_step(exposure.meta, "refpix")
    return exposure


def _column_decay(exposure: RampExposure, decay_table):
    """This detector's decay after reset in the 4 left and 4 right reference columns (DN), or None."""
    entry = (decay_table or {}).get(get_meta(exposure.meta, "instrument.detector"))
    if not entry or entry.get("amplitude") is None or not (entry.get("time_constant") or 0) > 0:
        return None
    shape = exposure.data.shape[1:]
    columns = np.r_[0:N_REFERENCE_COLUMNS, shape[1] - N_REFERENCE_COLUMNS:shape[1]]
    return dark_decay_columns(float(entry["amplitude"]), float(entry["time_constant"]), exposure.read_pattern,
                              shape, columns)
