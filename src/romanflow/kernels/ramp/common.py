"""What both ramp fits share: the result type, input preparation and the per-pixel output step."""

from __future__ import annotations

import math
from typing import NamedTuple

import numba
import numpy as np

from romanflow.detector import ReadPattern
from romanflow.kernels.checks import resultant_cube


class RampFit(NamedTuple):
    """Result of a ramp fit, one value per pixel unless stated.

    Attributes
    ----------
    slope : float32 (ny, nx)
        Count rate (DN/s); NaN where ``pixeldq`` has DO_NOT_USE.
    var_poisson : float32 (ny, nx)
        Poisson variance of the rate ((DN/s)²), evaluated at max(slope, 0).
    var_rnoise : float32 (ny, nx)
        Read-noise variance of the rate ((DN/s)²).
    groupdq : uint8 (n_resultants, ny, nx)
        Input resultant flags with JUMP_DET added where jumps were found.
    pixeldq : uint32 (ny, nx)
        JUMP_DET if any jump, SATURATED if any resultant is saturated (the
        pixel saturated during the exposure; its rate comes from the resultants
        before), DO_NOT_USE if at most one resultant is usable, every resultant
        is saturated or unusable, the rate is not finite or its error is not > 0.
    n_jumps : uint8 (ny, nx)
        Number of jumps found in each pixel.
    """

    slope: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    groupdq: np.ndarray
    pixeldq: np.ndarray
    n_jumps: np.ndarray

    @property
    def err(self) -> np.ndarray:
        """Total error of the rate (DN/s), sqrt(var_poisson + var_rnoise)."""
        return np.sqrt(self.var_poisson + self.var_rnoise)


def prepare_inputs(resultants, groupdq, read_noise, gain, read_pattern):
    """Contiguous float32 resultants (DN), uint8 flags, and read noise (DN) and gain (e⁻/DN) per pixel.

    Raises ``TypeError`` for a read pattern that is not a :class:`ReadPattern` and
    ``ValueError`` for shapes that do not match it.
    """
    if not isinstance(read_pattern, ReadPattern):
        raise TypeError("ramp fitting needs a ReadPattern (romanflow.detector.ReadPattern)")
    resultants = resultant_cube(resultants, read_pattern)
    n, ny, nx = resultants.shape
    resultants = np.ascontiguousarray(resultants, dtype=np.float32)
    if groupdq is None:
        groupdq = np.zeros(resultants.shape, dtype=np.uint8)
    else:
        groupdq = np.asarray(groupdq)
        if groupdq.shape != resultants.shape:
            raise ValueError(f"groupdq shape {groupdq.shape} differs from resultants shape {resultants.shape}")
        groupdq = np.ascontiguousarray(groupdq, dtype=np.uint8)
    read_noise = np.ascontiguousarray(np.broadcast_to(np.asarray(read_noise, dtype=np.float32), (ny, nx)))
    gain = np.ascontiguousarray(np.broadcast_to(np.asarray(gain, dtype=np.float32), (ny, nx)))
    return resultants, groupdq, read_noise, gain


def allocate_outputs(shape2d, n):
    """Empty output arrays of a fit, in :class:`RampFit` order, for (ny, nx) pixels and n resultants."""
    ny, nx = shape2d
    return (
        np.empty((ny, nx), np.float32),
        np.empty((ny, nx), np.float32),
        np.empty((ny, nx), np.float32),
        np.empty((n, ny, nx), np.uint8),
        np.empty((ny, nx), np.uint32),
        np.empty((ny, nx), np.uint8),
    )


@numba.njit(cache=True, inline="always")
def store_pixel(y, x, slope, vread, vpois, n_usable, saturated, n_jumps, slope_out, vread_out, vpois_out,
                pdq_out, njump_out):
    """Write one pixel's rate, variances and flags (4 jump, 2 saturated in some resultant, 1 no fit: NaNs)."""
    pdq = np.uint32(0)
    if n_jumps > 0:
        pdq |= np.uint32(4)
    if saturated:
        pdq |= np.uint32(2)
    if n_usable <= 1 or not math.isfinite(slope) or not (vread + vpois > 0):
        pdq |= np.uint32(1)
        slope = np.nan
        vread = np.nan
        vpois = np.nan
    slope_out[y, x] = slope
    vread_out[y, x] = vread
    vpois_out[y, x] = vpois
    pdq_out[y, x] = pdq
    njump_out[y, x] = min(n_jumps, 255)

