"""dq_init: raw resultants to a float ramp with initial data-quality flags."""

from __future__ import annotations

import numpy as np

from romanflow.provenance import mark_step
from romanflow.exposure import RampExposure, get_meta


def initialize_ramp(data: np.ndarray, reference_read=None, encoding_offset: float = 0.0) -> np.ndarray:
    """Float32 resultants (DN) from raw uint16, restoring an on-board subtracted reference read.

    Parameters
    ----------
    data : ndarray (n_res, ny, nx), uint16
        Raw resultants (DN).
    reference_read : ndarray (ny, nx), optional
        Reference read subtracted on board (DN); added back when given.
    encoding_offset : float
        Data-encoding offset added on board with the reference read (DN), removed.
    """
    ramp = data.astype(np.float32)
    if reference_read is not None:
        ramp += reference_read.astype(np.float32)[None]
        ramp -= np.float32(encoding_offset)
    return ramp


def dq_init(exposure: RampExposure, mask_dq: np.ndarray | None) -> RampExposure:
    """Convert to float32 DN, initialise group and pixel DQ from the MASK reference.

    ``mask_dq`` is the full-frame uint32 mask (None: no mask, all clean).
    """
    offset = float(get_meta(exposure.meta, "instrument.data_encoding_offset", 0.0) or 0.0)
    exposure.data = initialize_ramp(exposure.data, exposure.reference_read, offset)
    exposure.amp33 = initialize_ramp(exposure.amp33, exposure.reference_amp33, offset)
    exposure.reference_read = exposure.reference_amp33 = None
    if exposure.groupdq is None:
        exposure.groupdq = np.zeros(exposure.data.shape, dtype=np.uint8)
    else:
        exposure.groupdq = exposure.groupdq.astype(np.uint8, copy=True)
    pixeldq = np.zeros(exposure.data.shape[1:], dtype=np.uint32)
    if mask_dq is not None:
        if mask_dq.shape != pixeldq.shape:
            from romanflow.errors import RomanflowError

            raise RomanflowError(f"mask reference has shape {mask_dq.shape}, data frames are {pixeldq.shape}")
        pixeldq |= mask_dq.astype(np.uint32)
    exposure.pixeldq = pixeldq if exposure.pixeldq is None else (exposure.pixeldq | pixeldq)
    mark_step(exposure.meta, "dq_init")
    return exposure
