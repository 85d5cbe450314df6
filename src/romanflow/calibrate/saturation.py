"""saturation: flag saturated resultants, judged from the read pattern."""

from __future__ import annotations

import numpy as np

from romanflow.provenance import mark_step
from romanflow.errors import RomanflowError
from romanflow.calibrate.inputs import check_ramp_exposure
from romanflow.exposure import RampExposure
from romanflow.kernels.saturation import flag_saturation


def saturation(exposure: RampExposure, threshold: np.ndarray, threshold_dq: np.ndarray | None = None) -> RampExposure:
    """Flag resultants at or near the SATURATION reference's threshold (DN, full frame)."""
    check_ramp_exposure(exposure)
    if threshold.shape != exposure.data.shape[1:]:
        raise RomanflowError(f"saturation reference has shape {threshold.shape}; frames are {exposure.data.shape[1:]}")
    exposure.groupdq = flag_saturation(exposure.data, threshold, exposure.read_pattern, exposure.groupdq,
                                       threshold_dq=threshold_dq)
    if threshold_dq is not None:
        exposure.pixeldq |= threshold_dq.astype(np.uint32)
    mark_step(exposure.meta, "saturation")
    return exposure
