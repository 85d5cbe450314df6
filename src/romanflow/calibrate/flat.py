"""flat_field: divide by the pixel response."""

from __future__ import annotations

import numpy as np

from romanflow import dq
from romanflow.provenance import mark_step
from romanflow.detector import N_BORDER


def apply_flat(data, var_poisson, var_rnoise, flat, flat_err=None):
    """Flat-field a rate image.

    Parameters
    ----------
    data : ndarray
        Rate (DN/s).
    var_poisson, var_rnoise : ndarray
        Variances ((DN/s)²).
    flat : ndarray
        Pixel response (dimensionless); NaN or 0 are treated as 1 and reported.
    flat_err : ndarray, optional
        1-sigma error of the flat.

    Returns
    -------
    data, var_poisson, var_rnoise, var_flat, bad : ndarrays
        Flat-fielded quantities and the mask of pixels without a usable flat.
    """
    bad = ~np.isfinite(flat) | (flat == 0)
    f = np.where(bad, np.float32(1.0), flat).astype(np.float32, copy=False)
    f2 = f * f  # computed once, used three times
    data = data / f
    var_poisson = var_poisson / f2
    var_rnoise = var_rnoise / f2
    if flat_err is None:
        var_flat = np.zeros_like(data)
    else:
        var_flat = np.nan_to_num(flat_err)
        var_flat *= var_flat
        var_flat = var_flat * (data * data)
        var_flat /= f2
        var_flat = var_flat.astype(np.float32, copy=False)
    return (data.astype(np.float32, copy=False), var_poisson.astype(np.float32, copy=False),
            var_rnoise.astype(np.float32, copy=False), var_flat, bad)


def flat_field(image, flat: np.ndarray, flat_err: np.ndarray | None = None, flat_dq: np.ndarray | None = None):
    """Apply a full-frame (or already trimmed) FLAT reference to a RateImage."""
    s = slice(N_BORDER, -N_BORDER)

    def trim(a):
        return None if a is None else (a[s, s] if a.shape != image.data.shape else a)

    data, vp, vr, vf, bad = apply_flat(image.data, image.var_poisson, image.var_rnoise, trim(flat), trim(flat_err))
    image.data, image.var_poisson, image.var_rnoise, image.var_flat = data, vp, vr, vf
    image.dq[bad] |= dq.NO_FLAT_FIELD
    if flat_dq is not None:
        image.dq |= trim(flat_dq).astype(np.uint32)
    image.err = np.sqrt(vp + vr + vf).astype(np.float32)
    mark_step(image.meta, "flat_field")
    return image
