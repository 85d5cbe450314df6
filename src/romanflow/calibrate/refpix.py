"""refpix: remove correlated read noise using the reference pixels and amp33.

Self-calibrating: the correction's frequency weights are measured on the
exposure itself (see :mod:`romanflow.kernels.refpix`), so no REFPIX reference
file is needed.
"""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.calibrate.steps_common import mark_step
from romanflow.errors import RomanflowError
from romanflow.exposure import RampExposure
from romanflow.kernels.refpix import correct_reference_pixels

#: Pixel flags that exclude a reference pixel from the correction's estimate.
UNUSABLE_REFERENCE = dq.BAD_REF_PIXEL | dq.DO_NOT_USE


def refpix(exposure: RampExposure) -> RampExposure:
    """Correct the resultants of a ramp (DN) in place; data becomes float32.

    Reference pixels flagged BAD_REF_PIXEL or DO_NOT_USE in ``pixeldq`` are not
    used. Records ``meta.cal_step.refpix = 'COMPLETE'`` and
    ``meta.ref_file.refpix = 'N/A'`` (no reference file is used).
    """
    if exposure.amp33 is None:
        raise RomanflowError("refpix needs the amp33 resultants, but the exposure has none")
    mask = None
    if exposure.pixeldq is not None:
        mask = (np.asarray(exposure.pixeldq) & UNUSABLE_REFERENCE) == 0
    exposure.data = correct_reference_pixels(
        np.asarray(exposure.data, dtype=np.float32), exposure.amp33, reference_mask=mask, overwrite=True)
    exposure.meta.setdefault("ref_file", {})["refpix"] = "N/A"
    mark_step(exposure.meta, "refpix")
    return exposure
