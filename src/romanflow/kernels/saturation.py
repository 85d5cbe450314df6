"""Saturation and A/D-floor flagging of resultants.

Pure kernel: resultants (DN) and a per-pixel threshold (DN) in, resultant
flags (uint8) out. Works one resultant plane at a time, so its temporaries are
plane-sized whatever the number of resultants.
"""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.detector import ReadPattern
from romanflow.errors import RomanflowError

#: Threshold used where a pixel must not be checked (above the 16-bit A/D range).
NO_CHECK_THRESHOLD = 65536.0


def flag_saturation(resultants, saturation_threshold, read_pattern: ReadPattern, groupdq=None, *,
                    threshold_dq=None):
    """Flag saturated, about-to-saturate and A/D-floor resultants.

    Parameters
    ----------
    resultants : array (n_resultants, ny, nx)
        Resultants (DN).
    saturation_threshold : array (ny, nx)
        Saturation level (DN). NaN means "do not check" (threshold 65536).
    read_pattern : ReadPattern
        Reads averaged into each resultant (for the averaging dilution).
    groupdq : uint8 array (n_resultants, ny, nx), optional
        Existing resultant flags; the result is ORed into a copy of it.
    threshold_dq : uint32 array (ny, nx), optional
        Flags of the threshold; pixels with NO_SAT_CHECK are not checked.

    Returns
    -------
    groupdq : uint8 array (n_resultants, ny, nx)
        1. A resultant at or above the threshold is SATURATED, and so is every
           later resultant. A resultant at or below 0 DN gets AD_FLOOR | DO_NOT_USE.
        2. Backward pass: a resultant not yet flagged that reaches
           threshold × mean(reads)/max(reads) and is followed by a SATURATED
           resultant gets DO_NOT_USE (a read inside it probably saturated).
        3. Resultant 2 gets DO_NOT_USE when resultant 3 is saturated, resultant
           1 does not predict saturation by the end of resultant 3, and
           resultant 2 exceeds threshold / (reads in resultant 2).
    """
    resultants = np.asarray(resultants)
    if resultants.ndim != 3:
        raise RomanflowError(f"resultants must be 3-D (n_resultants, ny, nx), got shape {resultants.shape}")
    n, ny, nx = resultants.shape
    if n != read_pattern.n_resultants:
        raise RomanflowError(
            f"resultants have {n} planes but the read pattern describes {read_pattern.n_resultants} resultants"
        )
    threshold = np.array(np.broadcast_to(saturation_threshold, (ny, nx)), dtype=np.float32)
    no_check = ~np.isfinite(threshold)
    if threshold_dq is not None:
        no_check |= (np.asarray(threshold_dq).astype(np.uint32) & np.uint32(dq.NO_SAT_CHECK)) != 0
    threshold[no_check] = NO_CHECK_THRESHOLD

    if groupdq is None:
        out = np.zeros((n, ny, nx), dtype=np.uint8)
    else:
        if np.shape(groupdq) != resultants.shape:
            raise RomanflowError(f"groupdq shape {np.shape(groupdq)} differs from resultants shape {resultants.shape}")
        out = np.array(groupdq, dtype=np.uint8, copy=True)

    sat, floor = np.uint8(dq.GROUP_SATURATED), np.uint8(dq.GROUP_AD_FLOOR | dq.GROUP_DO_NOT_USE)
    dnu = np.uint8(dq.GROUP_DO_NOT_USE)
    saturated = np.zeros((ny, nx), dtype=bool)
    for i in range(n):
        plane = resultants[i]
        saturated |= plane >= threshold
        out[i][saturated] |= sat
        out[i][plane <= 0] |= floor

    for i in range(n - 2, -1, -1):
        reads = read_pattern.read_pattern[i]
        dilution = np.mean(reads) / max(reads)
        level = np.where(no_check, threshold, threshold * np.float32(dilution))
        candidate = ((resultants[i] >= level) & ((out[i] & (sat | dnu)) == 0) & ((out[i + 1] & sat) != 0))
        out[i][candidate] |= dnu

    if n > 2:
        pattern = read_pattern.read_pattern
        predicted = resultants[0] / np.float32(np.mean(pattern[0])) * np.float32(pattern[2][-1])
        candidate = (predicted < threshold) & (resultants[1] > threshold / np.float32(len(pattern[1])))
        candidate &= ((out[2] & sat) != 0) & ((out[1] & sat) == 0)
        out[1][candidate] |= dnu
    return out
