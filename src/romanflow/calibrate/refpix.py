"""refpix: remove correlated read noise using the reference pixels and amp33.

Self-calibrating: the correction's frequency weights are measured on the
exposure itself (see :mod:`romanflow.kernels.refpix`), so no REFPIX reference
file is needed.
"""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.provenance import mark_step
from romanflow.calibrate.inputs import check_ramp_exposure
from romanflow.errors import RomanflowError
from romanflow.exposure import RampExposure
from romanflow.kernels.refpix import correct_reference_pixels

#: Key of ``RampExposure.extra`` holding the residual correlated variance (DN² per read).
RESIDUAL_VARIANCE_KEY = "residual_correlated_variance"

#: Pixel flags that exclude a reference pixel from the correction's estimate.
UNUSABLE_REFERENCE = dq.BAD_REF_PIXEL | dq.DO_NOT_USE


def refpix(exposure: RampExposure) -> RampExposure:
    """Correct the resultants of a ramp (DN) in place; data becomes float32.

    Reference pixels flagged BAD_REF_PIXEL or DO_NOT_USE in ``pixeldq`` are not
    used. Records ``meta.cal_step.refpix = 'COMPLETE'`` and
    ``meta.ref_file.refpix = 'N/A'`` (no reference file is used).

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
    exposure.data, residual = correct_reference_pixels(
        np.asarray(exposure.data, dtype=np.float32), exposure.amp33, reference_mask=mask, overwrite=True,
        return_residual_variance=True)
    n_reads = np.asarray(exposure.read_pattern.n_reads, dtype=np.float64)
    per_read = float(np.mean(residual * n_reads))
    exposure.extra[RESIDUAL_VARIANCE_KEY] = per_read
    exposure.meta.setdefault("cal_logs", []).append(
        f"refpix: residual correlated read noise {per_read:.2f} DN^2 per read")
    exposure.meta.setdefault("ref_file", {})["refpix"] = "N/A"
    mark_step(exposure.meta, "refpix")
    return exposure
