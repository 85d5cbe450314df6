"""linearity: classic non-linearity correction of the resultants."""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.provenance import mark_step
from romanflow.calibrate.inputs import check_ramp_exposure
from romanflow.errors import RomanflowError
from romanflow.exposure import RampExposure
from romanflow.kernels.linearity import correct_linearity


def linearity(exposure: RampExposure, coeffs: np.ndarray, coeffs_dq: np.ndarray | None = None) -> RampExposure:
    """Linearise unsaturated resultants in place with the LINEARITY polynomial (full frame)."""
    check_ramp_exposure(exposure)
    if np.ndim(coeffs) != 3 or np.shape(coeffs)[1:] != exposure.data.shape[1:] or np.shape(coeffs)[0] < 1:
        raise RomanflowError(f"linearity reference has coefficients of shape {np.shape(coeffs)}; frames are "
                             f"{exposure.data.shape[1:]}")
    data = np.ascontiguousarray(exposure.data, dtype=np.float32)
    exposure.data, no_lin_corr = correct_linearity(data, coeffs, exposure.groupdq,
                                                   read_pattern=exposure.read_pattern, inplace=True)
    exposure.pixeldq[no_lin_corr] |= dq.NO_LIN_CORR
    if coeffs_dq is not None:
        exposure.pixeldq |= coeffs_dq.astype(np.uint32)
    mark_step(exposure.meta, "linearity")
    return exposure
