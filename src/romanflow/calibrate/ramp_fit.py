"""ramp_fit: jump detection and ramp fitting in one step, resultants -> rate image."""

from __future__ import annotations

import numpy as np

from romanflow.calibrate.steps_common import mark_step
from romanflow.detector import N_BORDER
from romanflow.exposure import RampExposure, RateImage
from romanflow.kernels.ramp import DEFAULT_METHOD, fit_ramps

_S = slice(N_BORDER, -N_BORDER)


def _border_arrays(exposure: RampExposure) -> dict:
    """The reference border and amp33 kept in the L2 product, as the official files do."""
    data, pdq = exposure.data, exposure.pixeldq
    return {
        "amp33": np.clip(np.rint(exposure.amp33), 0, 65535).astype(np.uint16),
        "border_ref_pix_left": np.ascontiguousarray(data[:, :, :N_BORDER], dtype=np.float32),
        "border_ref_pix_right": np.ascontiguousarray(data[:, :, -N_BORDER:], dtype=np.float32),
        "border_ref_pix_top": np.ascontiguousarray(data[:, -N_BORDER:, :], dtype=np.float32),
        "border_ref_pix_bottom": np.ascontiguousarray(data[:, :N_BORDER, :], dtype=np.float32),
        "dq_border_ref_pix_left": np.ascontiguousarray(pdq[:, :N_BORDER]),
        "dq_border_ref_pix_right": np.ascontiguousarray(pdq[:, -N_BORDER:]),
        "dq_border_ref_pix_top": np.ascontiguousarray(pdq[-N_BORDER:, :]),
        "dq_border_ref_pix_bottom": np.ascontiguousarray(pdq[:N_BORDER, :]),
    }


def ramp_fit(exposure: RampExposure, read_noise: np.ndarray, gain: np.ndarray, *,
             method: str = DEFAULT_METHOD, detect_jumps: bool = True) -> RateImage:
    """Fit the science pixels' ramps; returns the border-trimmed rate image (DN/s).

    Parameters
    ----------
    exposure : RampExposure
        Linearised resultants (DN) with group and pixel flags, reference border included.
    read_noise : ndarray
        Read noise per read (DN), full frame.
    gain : ndarray
        Gain (e-/DN), full frame.
    method : {'likely', 'casertano'}
        Ramp-fitting algorithm.
    """
    science = (slice(None), _S, _S)
    fit = fit_ramps(exposure.data[science], exposure.groupdq[science], read_noise[_S, _S], gain[_S, _S],
                    exposure.read_pattern, method=method, detect_jumps=detect_jumps)
    dq = exposure.pixeldq[_S, _S] | fit.pixeldq
    meta = exposure.meta
    meta.setdefault("cal_logs", []).append(
        f"ramp_fit: method={method}, {int(np.count_nonzero(fit.n_jumps))} pixels with jumps")
    image = RateImage(
        data=fit.slope,
        err=fit.err.astype(np.float32),
        dq=dq,
        var_poisson=fit.var_poisson,
        var_rnoise=fit.var_rnoise,
        meta=meta,
        extra=_border_arrays(exposure),
    )
    mark_step(image.meta, "ramp_fit")
    return image
