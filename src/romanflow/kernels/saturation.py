"""Saturation and A/D-floor flagging of resultants.

Pure kernel: resultants (DN) and a per-pixel threshold (DN) in, resultant
flags (uint8) out. The flags are computed row by row in one compiled, parallel
loop, so the only temporaries are a row-sized buffer per thread.
"""

from __future__ import annotations

import numba
import numpy as np
from numba import prange

from romanflow import dq
from romanflow.detector import ReadPattern
from romanflow.kernels.checks import resultant_cube

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
    resultants = resultant_cube(resultants, read_pattern)
    n, ny, nx = resultants.shape
    threshold = np.array(np.broadcast_to(saturation_threshold, (ny, nx)), dtype=np.float32)
    no_check = ~np.isfinite(threshold)
    if threshold_dq is not None:
        no_check |= (np.asarray(threshold_dq).astype(np.uint32) & np.uint32(dq.NO_SAT_CHECK)) != 0
    threshold[no_check] = NO_CHECK_THRESHOLD

    if groupdq is None:
        out = np.zeros((n, ny, nx), dtype=np.uint8)
    else:
        if np.shape(groupdq) != resultants.shape:
            raise ValueError(f"groupdq shape {np.shape(groupdq)} differs from resultants shape {resultants.shape}")
        out = np.array(groupdq, dtype=np.uint8, copy=True)

    pattern = read_pattern.read_pattern
    dilution = np.array([np.mean(r) / max(r) for r in pattern], dtype=np.float32)
    if n > 2:
        second_rule = (np.float32(np.mean(pattern[0])), np.float32(pattern[2][-1]), np.float32(len(pattern[1])))
    else:
        second_rule = (np.float32(1), np.float32(1), np.float32(1))
    _saturation_kernel(resultants, threshold, no_check, dilution, second_rule[0], second_rule[1], second_rule[2],
                       np.uint8(dq.GROUP_SATURATED), np.uint8(dq.GROUP_AD_FLOOR | dq.GROUP_DO_NOT_USE),
                       np.uint8(dq.GROUP_DO_NOT_USE), out)
    return out


@numba.njit(cache=True, parallel=True)
def _saturation_kernel(resultants, threshold, no_check, dilution, first_mean, third_last, second_reads,
                       sat, floor, dnu, out):
    """The three rules of :func:`flag_saturation`, row by row, ORed into ``out`` (uint8) in place.

    threshold : float32 (ny, nx) DN, unchecked pixels already at 65536; no_check : bool (ny, nx);
    dilution : float32 per resultant, mean(reads)/max(reads); first_mean, third_last, second_reads :
    float32 mean read of resultant 1, last read of resultant 3, reads in resultant 2.
    """
    n, ny, nx = resultants.shape
    for y in prange(ny):
        saturated = np.zeros(nx, np.bool_)
        for i in range(n):  # forward: saturation is sticky; A/D floor
            for x in range(nx):
                value = resultants[i, y, x]
                if value >= threshold[y, x]:
                    saturated[x] = True
                if saturated[x]:
                    out[i, y, x] |= sat
                if value <= 0:
                    out[i, y, x] |= floor
        for i in range(n - 2, -1, -1):  # backward: a read inside probably saturated
            for x in range(nx):
                level = threshold[y, x] if no_check[y, x] else threshold[y, x] * dilution[i]
                if (resultants[i, y, x] >= level and (out[i, y, x] & (sat | dnu)) == 0
                        and (out[i + 1, y, x] & sat) != 0):
                    out[i, y, x] |= dnu
        if n > 2:  # resultant 2 jumps to saturation although resultant 1 predicts none
            for x in range(nx):
                predicted = resultants[0, y, x] / first_mean * third_last
                if (predicted < threshold[y, x] and resultants[1, y, x] > threshold[y, x] / second_reads
                        and (out[2, y, x] & sat) != 0 and (out[1, y, x] & sat) == 0):
                    out[1, y, x] |= dnu
