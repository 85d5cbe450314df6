"""The PSF of a mosaic at any position, drizzled from its members' library PSFs.

At a mosaic position, each member exposure that covers it contributes its own
effective PSF (:func:`romanflow.psf.psf_model`) at the corresponding detector
position, with the sub-pixel phase the source has there, rendered on a cutout
of the member's pixels. Those cutouts go through the mosaic's own resampling
(:func:`romanflow.mosaic.resample.resample`: the same pixel map, drizzle
kernel, drop size and weights — ``ivm`` weights from each member's read-noise
variance, or exposure times) onto a cutout of the mosaic grid. The result is
the image a unit-flux point source at that position has on the mosaic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from romanflow.detector import N_PIX_SCIENCE
from romanflow.errors import RomanflowError

__all__ = ["MosaicMember", "mosaic_psf"]


@dataclass
class MosaicMember:
    """What the mosaic PSF needs of one member exposure.

    Attributes
    ----------
    detector : str
    wcs : gwcs.WCS or astropy WCS
        Member pixel -> sky.
    shape : (int, int)
        Member science array shape (a patch smaller than 4088² is the detector's central patch).
    var_rnoise : float
        Median read-noise variance ((DN/s)²), which sets an ``ivm`` weight.
    exposure_time : float
        Seconds (the ``exptime`` weight).
    """

    detector: str
    wcs: object
    shape: tuple
    var_rnoise: float = 1.0
    exposure_time: float = 1.0


class _ShiftedInput:
    """Pixel -> sky of a member cutout whose pixel (0, 0) is member pixel (x0, y0)."""

    def __init__(self, wcs, x0, y0):
        self.wcs, self.x0, self.y0 = wcs, x0, y0

    def pixel_to_world(self, x, y):
        from romanflow.mosaic.pixmap import pixel_to_world

        return pixel_to_world(self.wcs, np.asarray(x) + self.x0, np.asarray(y) + self.y0)


class _ShiftedOutput:
    """Sky <-> pixel of a mosaic cutout whose pixel (0, 0) is mosaic pixel (x0, y0)."""

    def __init__(self, wcs, x0, y0, shape):
        self.wcs, self.x0, self.y0 = wcs, x0, y0
        self.array_shape = tuple(shape)

    def pixel_to_world_values(self, x, y):
        from romanflow.mosaic.pixmap import pixel_to_world

        return pixel_to_world(self.wcs, np.asarray(x, float) + self.x0, np.asarray(y, float) + self.y0)

    def world_to_pixel_values(self, ra, dec):
        from romanflow.mosaic.pixmap import world_to_pixel

        x, y = world_to_pixel(self.wcs, ra, dec)
        return x - self.x0, y - self.y0


def mosaic_psf(x: float, y: float, mosaic_wcs, members, optical_element: str, *, kernel: str = "square",
               pixfrac: float = 1.0, weight_type: str = "ivm", half: int = 12, spectrum=None) -> np.ndarray:
    """Image on the mosaic grid of a unit-flux point source at mosaic pixel (x, y).

    Parameters
    ----------
    x, y : float
        Source position (0-based mosaic pixels).
    mosaic_wcs : WCS
        Mosaic pixel <-> sky (astropy WCS or gwcs).
    members : sequence of MosaicMember
    optical_element : str
    kernel, pixfrac, weight_type : as the mosaic was made (:func:`romanflow.mosaic.resample.resample`).
    half : int
        Half-size of the returned image (mosaic pixels) and, scaled, of the member cutouts.
    spectrum : optional
        Spectrum of the source (:mod:`romanflow.psf`).

    Returns
    -------
    ndarray (2·half + 1, 2·half + 1)
        Fraction of the source's flux per mosaic pixel; element ``[half, half]``
        is mosaic pixel ``(round(x), round(y))``. NaN where no member covers.

    Raises
    ------
    RomanflowError
        If no member covers the position.
    """
    from romanflow.exposure import RateImage
    from romanflow.geometry.wcs import local_pixel_scale
    from romanflow.mosaic.pixmap import pixel_to_world, world_to_pixel
    from romanflow.mosaic.resample import resample
    from romanflow.psf import psf_model

    ix, iy = int(np.floor(x + 0.5)), int(np.floor(y + 0.5))
    out_wcs = _ShiftedOutput(mosaic_wcs, ix - half, iy - half, (2 * half + 1, 2 * half + 1))
    ra, dec = pixel_to_world(mosaic_wcs, np.array([x]), np.array([y]))
    out_scale = float(local_pixel_scale(out_wcs, [half], [half])[0])
    inputs = []
    for k, member in enumerate(members):
        mx, my = (float(v[0]) for v in world_to_pixel(member.wcs, ra, dec))
        ny, nx = member.shape
        if not (np.isfinite(mx) and np.isfinite(my) and -0.5 <= mx <= nx - 0.5 and -0.5 <= my <= ny - 0.5):
            continue
        in_scale = float(local_pixel_scale(member.wcs, [mx], [my])[0]) if hasattr(member.wcs, "pixel_to_world_values") \
            else 0.11
        reach = int(np.ceil(half * out_scale / in_scale)) + 3
        jx, jy = int(np.floor(mx + 0.5)), int(np.floor(my + 0.5))
        offset = (N_PIX_SCIENCE - nx) / 2.0, (N_PIX_SCIENCE - ny) / 2.0
        dx_det = min(max(mx + offset[0], 0.0), N_PIX_SCIENCE - 1.0)
        dy_det = min(max(my + offset[1], 0.0), N_PIX_SCIENCE - 1.0)
        stamp = psf_model(member.detector, optical_element, spectrum=spectrum).image(
            dx_det, dy_det, oversample=1, size=2 * reach + 1, phase=(mx - jx, my - jy))
        size = 2 * reach + 1
        shape = (size, size)
        meta = {"filename": f"member{k}", "exposure": {"exposure_time": float(member.exposure_time)}}
        inputs.append(RateImage(data=stamp.astype(np.float32), err=np.ones(shape, np.float32),
                                dq=np.zeros(shape, np.uint32), var_poisson=np.zeros(shape, np.float32),
                                var_rnoise=np.full(shape, float(member.var_rnoise), np.float32), meta=meta,
                                wcs=_ShiftedInput(member.wcs, jx - reach, jy - reach)))
    if not inputs:
        raise RomanflowError(f"mosaic PSF: no member covers mosaic pixel ({x:.1f}, {y:.1f})")
    product = resample(inputs, out_wcs, kernel=kernel, pixfrac=pixfrac, weight_type=weight_type, sky_match=False,
                       units="rate", pixmap_step=8)
    data = np.asarray(product.data if hasattr(product, "data") else product.arrays["data"], np.float64)
    return data
