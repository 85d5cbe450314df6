"""wfi18_transient: fit and remove the first-read transient of detector WFI18 (no reference file).

The transient changes from exposure to exposure, so it is fitted on each one
(:mod:`romanflow.kernels.wfi18_transient`); the installed Roman schemas define the
step (``meta.cal_step.wfi18_transient``) and its group flag but no reference type.
On other detectors the step does nothing and records ``N/A``.
"""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.calibrate.inputs import check_ramp_exposure
from romanflow.exposure import RampExposure, get_meta
from romanflow.kernels.wfi18_transient import fit_transient, masked_rows, subtract_transient
from romanflow.provenance import mark_step

#: Detector the step applies to.
TRANSIENT_DETECTOR = "WFI18"
#: Group flag of resultants masked for the transient (rdm ``dqflags.group.WFI18_TRANSIENT``).
GROUP_WFI18_TRANSIENT = 128

_UNUSABLE = dq.DO_NOT_USE | dq.SATURATED


def wfi18_transient(exposure: RampExposure) -> RampExposure:
    """Remove the first-read transient of a WFI18 ramp (DN) in place; other detectors are left alone.

    When it cannot be fitted (fewer than 5 resultants, or no convergence), the
    first ~24 % of the rows of resultant 1 get DO_NOT_USE and the WFI18_TRANSIENT
    group flag instead. The fitted parameters are written to ``meta.cal_logs``.
    """
    detector = get_meta(exposure.meta, "instrument.detector")
    if str(detector).upper() != TRANSIENT_DETECTOR:
        mark_step(exposure.meta, "wfi18_transient", "N/A")
        return exposure
    check_ramp_exposure(exposure)
    data = exposure.data
    usable = None
    if exposure.groupdq is not None:
        usable = ((np.asarray(exposure.groupdq)[:5] & _UNUSABLE) == 0).all(axis=0)
    if exposure.pixeldq is not None:
        clean = (np.asarray(exposure.pixeldq) & dq.DO_NOT_USE) == 0
        usable = clean if usable is None else usable & clean
    params = fit_transient(data, exposure.read_pattern, usable)
    logs = exposure.meta.setdefault("cal_logs", [])
    if params is None:
        if exposure.groupdq is None:
            exposure.groupdq = np.zeros(data.shape, dtype=np.uint8)
        exposure.groupdq[0, masked_rows(data.shape[1])] |= np.uint8(dq.DO_NOT_USE | GROUP_WFI18_TRANSIENT)
        logs.append("wfi18_transient: not fitted; first rows of resultant 1 masked")
    else:
        subtract_transient(data, params, exposure.read_pattern)
        a, tau_a, b, tau_b = params
        logs.append(f"wfi18_transient: subtracted {a:.2f} DN exp(-t/{tau_a:.3f} s) + {b:.2f} DN exp(-t/{tau_b:.3f} s) "
                    "from the first read")
    mark_step(exposure.meta, "wfi18_transient")
    return exposure
