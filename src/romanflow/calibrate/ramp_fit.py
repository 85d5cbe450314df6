"""ramp_fit: jump detection and ramp fitting in one step, resultants -> rate image."""

from __future__ import annotations

import numpy as np

from romanflow.calibrate.inputs import check_ramp_exposure, check_ramp_method
from romanflow.calibrate.refpix import RESIDUAL_VARIANCE_KEY
from romanflow.provenance import mark_step
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
    detect_jumps : bool
        Look for cosmic-ray jumps while fitting.

    Raises
    ------
    ParameterError
        Unknown ``method``.
    InputFileError
        The resultants disagree with the exposure's read pattern.

    Notes
    -----
    The nominal gain (mean over the science pixels, e-/DN) is recorded as
    ``meta.photometry.gain``.

    When refpix ran, it left ``exposure.extra[RESIDUAL_VARIANCE_KEY]`` (DN² per
    read): correlated read noise its correction could not remove. It is
    treated as extra white read noise, ``sqrt(read_noise² + residual)`` per
    read. That gives the rate variance the right size, but not its exact
    covariance (the residual is shared by pixels read at nearby times and is
    not white in time), so weights and per-pixel errors are approximate at
    that level.
    """
    check_ramp_method(method, "method")
    check_ramp_exposure(exposure)
    science = (slice(None), _S, _S)
    read_noise = np.asarray(read_noise)[_S, _S]
    residual = float(exposure.extra.get(RESIDUAL_VARIANCE_KEY, 0.0) or 0.0)
    if residual > 0:
        read_noise = np.sqrt(read_noise.astype(np.float64) ** 2 + residual).astype(np.float32)
    fit = fit_ramps(exposure.data[science], exposure.groupdq[science], read_noise, gain[_S, _S],
                    exposure.read_pattern, method=method, detect_jumps=detect_jumps)
    dq = exposure.pixeldq[_S, _S] | fit.pixeldq
    meta = exposure.meta
    # the gain (e-/DN) that the rates refer to once flat-fielded: the flat brings every
    # channel to the detector's nominal gain, the mean over the science pixels
    meta.setdefault("photometry", {})["gain"] = float(np.mean(np.asarray(gain, dtype=np.float64)[_S, _S]))
    meta.setdefault("cal_logs", []).append(
        f"ramp_fit: method={method}, {int(np.count_nonzero(fit.n_jumps))} pixels with jumps, "
        f"residual correlated read noise {residual:.2f} DN^2 per read added to the read noise")
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
