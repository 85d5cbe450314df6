"""dark: subtract the dark current.

The current official convention subtracts a dark *rate* image after the ramp
fit. A reference that carries per-resultant darks for the exposure's MA table
is subtracted from the resultants before the fit instead.
"""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.provenance import mark_step
from romanflow.detector import N_BORDER
from romanflow.errors import RomanflowError


def subtract_dark_rate(rate: np.ndarray, dark_rate: np.ndarray) -> np.ndarray:
    """Rate (DN/s) minus the dark rate (DN/s), same shape; returns a new float32 array."""
    return (rate - dark_rate).astype(np.float32)


def subtract_resultant_dark(resultants: np.ndarray, dark_resultants: np.ndarray) -> None:
    """Subtract per-resultant dark levels (DN) from resultants (DN) in place."""
    resultants -= dark_resultants.astype(np.float32)


def dark_rate_step(image, dark_slope: np.ndarray, dark_dq: np.ndarray | None = None):
    """Subtract a full-frame dark-rate reference (DN/s) from a RateImage (border trimmed)."""
    s = slice(N_BORDER, -N_BORDER)
    slope = dark_slope[s, s] if dark_slope.shape != image.data.shape else dark_slope
    if slope.shape != image.data.shape:
        raise RomanflowError(f"dark reference has shape {dark_slope.shape}, incompatible with image {image.data.shape}")
    image.data = subtract_dark_rate(image.data, np.nan_to_num(slope))
    if dark_dq is not None:
        ddq = dark_dq[s, s] if dark_dq.shape != image.dq.shape else dark_dq
        image.dq |= ddq.astype(np.uint32)
    image.dq[~np.isfinite(slope)] |= dq.UNRELIABLE_DARK
    mark_step(image.meta, "dark")
    return image


def dark_resultant_step(exposure, dark_resultants: np.ndarray):
    """Subtract a per-resultant dark cube (n_res, ny, nx) DN from a RampExposure."""
    if dark_resultants.shape != exposure.data.shape:
        raise RomanflowError(
            f"per-resultant dark has shape {dark_resultants.shape}; the exposure's ramp is {exposure.data.shape}"
            " (was it made for another MA table?)"
        )
    subtract_resultant_dark(exposure.data, dark_resultants)
    mark_step(exposure.meta, "dark")
    return exposure
