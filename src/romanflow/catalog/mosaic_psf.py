"""The PSF of a mosaic at any position, drizzled from its members' library PSFs.

At a mosaic position, each member exposure that covers it contributes its own
effective PSF (:func:`romanflow.psf.psf_model`) at the corresponding detector
position, with the sub-pixel phase the source has there, rendered on a cutout
of the member's pixels, with the pixels the mosaic left out (DO_NOT_USE, and
beyond the member's edges) left out again. Those cutouts go through the mosaic's own resampling
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

__all__ = ["MosaicMember", "MosaicPSF", "mosaic_psf", "mosaic_psf_stamps"]


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
    bad : ndarray of bool, optional
        Pixels the mosaic left out of this member (DO_NOT_USE), ``shape``; none when None.
    """

    detector: str
    wcs: object
    shape: tuple
    var_rnoise: float = 1.0
    exposure_time: float = 1.0
    bad: np.ndarray | None = None


#: Smallest half-size (mosaic pixels) of the grid each stamp is drizzled onto, and the margin cut off it.
_MIN_HALF, _MARGIN = 6, 4


@dataclass
class MosaicPSF:
    """The PSF of one mosaic: its members and how they were drizzled onto its grid.

    Attributes
    ----------
    members : list of MosaicMember
    wcs : WCS
        Mosaic pixel <-> sky.
    optical_element : str
    kernel, pixfrac, weight_type : as the mosaic was made.
    """

    members: list
    wcs: object
    optical_element: str
    kernel: str = "square"
    pixfrac: float = 1.0
    weight_type: str = "ivm"

    def stamps(self, x, y, half: int, centre=None) -> np.ndarray:
        """Unit-flux images of point sources at mosaic pixels (x, y) (:func:`mosaic_psf_stamps`)."""
        return mosaic_psf_stamps(x, y, self.wcs, self.members, self.optical_element, kernel=self.kernel,
                                 pixfrac=self.pixfrac, weight_type=self.weight_type, half=half, centre=centre)


class _LocalFrame:
    """Pixel <-> sky of a small cutout, linearised about one source.

    The "sky" is the tangent plane at the source, in degrees, with its origin moved to
    (180°, 0°) so that no angle wraps: ``(ra, dec) = (180, 0) + J · (pixel - pixel₀) / 3600``,
    ``J`` the 2 × 2 Jacobian (arcsec per pixel) of the full WCS at the source and
    ``pixel₀`` the source's position in the cutout's pixels. Over the few pixels of a PSF
    stamp the full WCS departs from this by far less than a thousandth of a pixel, and
    every call costs two small matrix products instead of a WCS evaluation.
    """

    def __init__(self, jacobian, x0, y0, shape=None):
        self.jacobian = np.asarray(jacobian, np.float64)
        self.inverse = np.linalg.inv(self.jacobian)
        self.x0, self.y0 = float(x0), float(y0)
        if shape is not None:
            self.array_shape = tuple(shape)

    def pixel_to_world_values(self, x, y):
        dx, dy = np.asarray(x, np.float64) - self.x0, np.asarray(y, np.float64) - self.y0
        j = self.jacobian
        return 180.0 + (j[0, 0] * dx + j[0, 1] * dy) / 3600.0, (j[1, 0] * dx + j[1, 1] * dy) / 3600.0

    def world_to_pixel_values(self, ra, dec):
        u, v = (np.asarray(ra, np.float64) - 180.0) * 3600.0, np.asarray(dec, np.float64) * 3600.0
        k = self.inverse
        return self.x0 + k[0, 0] * u + k[0, 1] * v, self.y0 + k[1, 0] * u + k[1, 1] * v


def _cutout_dq(member, x0: int, y0: int, size: int) -> np.ndarray:
    """DQ of a member cutout (lower-left member pixel (x0, y0)): DO_NOT_USE where the mosaic left the
    member's pixel out, and beyond the member's edges."""
    from romanflow import dq as dqbits

    out = np.full((size, size), np.uint32(dqbits.DO_NOT_USE))
    ny, nx = member.shape
    xa, xb, ya, yb = max(x0, 0), min(x0 + size, nx), max(y0, 0), min(y0 + size, ny)
    if xa < xb and ya < yb:
        inside = np.zeros((yb - ya, xb - xa), bool) if member.bad is None else member.bad[ya:yb, xa:xb]
        out[ya - y0:yb - y0, xa - x0:xb - x0] = np.where(inside, np.uint32(dqbits.DO_NOT_USE), np.uint32(0))
    return out


def _jacobians(wcs, x, y, ra, dec) -> np.ndarray:
    """(n, 2, 2) tangent-plane arcsec per pixel of ``wcs`` at pixels (x, y) whose sky positions are (ra, dec)."""
    from romanflow.mosaic.pixmap import pixel_to_world

    cosd = np.cos(np.radians(dec))
    out = np.empty((len(x), 2, 2))
    for axis, (sx, sy) in enumerate(((1.0, 0.0), (0.0, 1.0))):
        r, d = pixel_to_world(wcs, x + sx, y + sy)
        out[:, 0, axis] = ((r - ra + 180.0) % 360.0 - 180.0) * cosd * 3600.0
        out[:, 1, axis] = (d - dec) * 3600.0
    return out


def mosaic_psf_stamps(x, y, mosaic_wcs, members, optical_element: str, *, kernel: str = "square",
                      pixfrac: float = 1.0, weight_type: str = "ivm", half: int = 12, spectrum=None,
                      centre=None) -> np.ndarray:
    """Images on the mosaic grid of unit-flux point sources at mosaic pixels (x, y).

    Parameters
    ----------
    x, y : array_like
        Source positions (0-based mosaic pixels).
    mosaic_wcs : WCS
        Mosaic pixel <-> sky (astropy WCS or gwcs).
    members : sequence of MosaicMember
    optical_element : str
    kernel, pixfrac, weight_type : as the mosaic was made (:func:`romanflow.mosaic.resample.resample`).
    half : int
        Half-size of each image (mosaic pixels) and, scaled, of the member cutouts.
    spectrum : optional
        Spectrum of the sources (:mod:`romanflow.psf`).
    centre : (ndarray of int, ndarray of int), optional
        Mosaic pixel at the centre of each image; the pixel nearest (x, y) by default.

    Returns
    -------
    ndarray (n, 2·half + 1, 2·half + 1)
        Fraction of each source's flux per mosaic pixel; element ``[k, half, half]``
        is mosaic pixel ``centre[k]``. NaN where no member covers (all NaN for a
        source that no member covers).
    """
    from romanflow.exposure import RateImage
    from romanflow.mosaic.pixmap import pixel_to_world, world_to_pixel
    from romanflow.mosaic.resample import resample
    from romanflow.psf import psf_model

    x = np.atleast_1d(np.asarray(x, np.float64))
    y = np.atleast_1d(np.asarray(y, np.float64))
    wanted = int(half)
    # the drizzle of a stamp is wrong near the edges of its output grid (by tens of percent on a grid of a
    # few pixels): drizzle onto a grid _MARGIN pixels larger each side and cut the margin off
    half = max(wanted + _MARGIN, _MIN_HALF)
    n, size_out = len(x), 2 * half + 1
    stamps = np.full((n, size_out, size_out), np.nan)
    if n == 0:
        return stamps
    # every WCS evaluation for all sources at once: positions and local Jacobians
    ra, dec = pixel_to_world(mosaic_wcs, x, y)
    out_jac = _jacobians(mosaic_wcs, x, y, ra, dec)
    out_scale = np.sqrt(np.abs(np.linalg.det(out_jac)))
    placed = []
    for member in members:
        mx, my = world_to_pixel(member.wcs, ra, dec)
        ny, nx = member.shape
        inside = np.isfinite(mx) & np.isfinite(my) & (mx >= -0.5) & (mx <= nx - 0.5) & (my >= -0.5) & (my <= ny - 0.5)
        jac = np.full((n, 2, 2), np.nan)
        if inside.any():
            jac[inside] = _jacobians(member.wcs, mx[inside], my[inside], ra[inside], dec[inside])
        placed.append((member, mx, my, inside, jac))
    models = {}
    if centre is None:
        cx, cy = np.floor(x + 0.5).astype(np.int64), np.floor(y + 0.5).astype(np.int64)
    else:
        cx, cy = (np.broadcast_to(np.asarray(c, np.int64), x.shape) for c in centre)
    for k in range(n):
        ix, iy = int(cx[k]), int(cy[k])
        out_frame = _LocalFrame(out_jac[k], x[k] - (ix - half), y[k] - (iy - half), (size_out, size_out))
        inputs = []
        for m, (member, mx, my, inside, jac) in enumerate(placed):
            if not inside[k] or not np.all(np.isfinite(jac[k])):
                continue
            in_scale = float(np.sqrt(abs(np.linalg.det(jac[k]))))
            reach = int(np.ceil(half * out_scale[k] / in_scale)) + 3
            jx, jy = int(np.floor(mx[k] + 0.5)), int(np.floor(my[k] + 0.5))
            ny, nx = member.shape
            offset = (N_PIX_SCIENCE - nx) / 2.0, (N_PIX_SCIENCE - ny) / 2.0
            dx_det = min(max(mx[k] + offset[0], 0.0), N_PIX_SCIENCE - 1.0)
            dy_det = min(max(my[k] + offset[1], 0.0), N_PIX_SCIENCE - 1.0)
            key = member.detector
            if key not in models:
                models[key] = psf_model(member.detector, optical_element, spectrum=spectrum)
            size = 2 * reach + 1
            stamp = models[key].image(dx_det, dy_det, oversample=1, size=size, phase=(mx[k] - jx, my[k] - jy))
            shape = (size, size)
            meta = {"filename": f"member{m}", "exposure": {"exposure_time": float(member.exposure_time)}}
            inputs.append(RateImage(data=stamp.astype(np.float32), err=np.ones(shape, np.float32),
                                    dq=_cutout_dq(member, jx - reach, jy - reach, size),
                                    var_poisson=np.zeros(shape, np.float32),
                                    var_rnoise=np.full(shape, float(member.var_rnoise), np.float32), meta=meta,
                                    wcs=_LocalFrame(jac[k], mx[k] - (jx - reach), my[k] - (jy - reach))))
        if inputs:
            product = resample(inputs, out_frame, kernel=kernel, pixfrac=pixfrac, weight_type=weight_type,
                               sky_match=False, units="rate", pixmap_step=8)
            stamps[k] = np.asarray(product.arrays["data"], np.float64)
    cut = half - wanted
    return stamps[:, cut:size_out - cut, cut:size_out - cut]


def mosaic_psf(x: float, y: float, mosaic_wcs, members, optical_element: str, *, kernel: str = "square",
               pixfrac: float = 1.0, weight_type: str = "ivm", half: int = 12, spectrum=None) -> np.ndarray:
    """Image on the mosaic grid of a unit-flux point source at mosaic pixel (x, y).

    One source of :func:`mosaic_psf_stamps` (same parameters).

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
    stamp = mosaic_psf_stamps([x], [y], mosaic_wcs, members, optical_element, kernel=kernel, pixfrac=pixfrac,
                              weight_type=weight_type, half=half, spectrum=spectrum)[0]
    if not np.isfinite(stamp).any():
        raise RomanflowError(f"mosaic PSF: no member covers mosaic pixel ({x:.1f}, {y:.1f})")
    return stamp
