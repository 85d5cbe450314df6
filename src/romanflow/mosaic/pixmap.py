"""Pixel maps from an input image to an output grid, computed cheaply.

A pixel map gives, for every input pixel centre, its (x, y) position on the
output grid. Evaluating a distorted WCS chain at all 16.7 million pixels of a
detector is the slow part of resampling (``drizzle.utils.calc_pixmap`` takes
seconds). The mapping is smooth, so here it is evaluated exactly on a coarse
grid of nodes (every ``step`` pixels, plus the last row and column) and
interpolated with tensor-product cubic splines. Interpolation onto the full
grid is two dense matrix products per coordinate (``Wy @ F @ Wx.T``), which BLAS
does in a fraction of a second. The error is checked at the midpoints between
nodes against the exact mapping; the step is halved until it is below the
tolerance.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def pixel_to_world(wcs, x, y, clip_to_bounds: bool = False):
    """(ra, dec) deg of pixel positions through any supported transform.

    Parameters
    ----------
    wcs : gwcs.WCS, astropy.wcs.WCS, or an object with ``pixel_to_world(x, y) -> (ra, dec)``
        (e.g. :class:`romanflow.geometry.DetectorProjection`).
    x, y : array_like
        0-based pixel coordinates.
    clip_to_bounds : bool
        For a gwcs, return NaN outside its bounding box.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    try:
        import gwcs

        if isinstance(wcs, gwcs.WCS):
            ra, dec = wcs(x, y, with_bounding_box=clip_to_bounds)
            return np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)
    except ImportError:  # pragma: no cover - gwcs is a dependency
        pass
    if hasattr(wcs, "pixel_to_world_values"):
        ra, dec = wcs.pixel_to_world_values(x, y)
    else:
        ra, dec = wcs.pixel_to_world(x, y)
    return np.asarray(ra, dtype=float), np.asarray(dec, dtype=float)


def world_to_pixel(wcs, ra, dec):
    """0-based pixel positions of (ra, dec) deg on a grid WCS."""
    if hasattr(wcs, "world_to_pixel_values"):
        x, y = wcs.world_to_pixel_values(np.asarray(ra, float), np.asarray(dec, float))
    else:
        x, y = wcs.world_to_pixel(ra, dec)
    return np.asarray(x, dtype=float), np.asarray(y, dtype=float)


def _nodes(n: int, step: int) -> np.ndarray:
    nodes = np.arange(0, n, step, dtype=float)
    if nodes[-1] != n - 1:
        nodes = np.append(nodes, float(n - 1))
    return nodes


def spline_matrix(nodes: np.ndarray, at: np.ndarray, derivative: int = 0) -> np.ndarray:
    """Matrix W with ``W @ f(nodes) = cubic-spline interpolant of f evaluated at ``at``."""
    from scipy.interpolate import make_interp_spline

    k = 3 if nodes.size >= 4 else nodes.size - 1
    spline = make_interp_spline(nodes, np.eye(nodes.size), k=k)
    if derivative:
        spline = spline.derivative(derivative)
    return np.ascontiguousarray(spline(at))


@dataclass
class PixmapResult:
    """A pixel map and how it was made.

    Attributes
    ----------
    pixmap : ndarray, (ny, nx, 2), float64
        Output-grid (x, y) of every input pixel centre.
    area_ratio : ndarray, (ny, nx), float32, or None
        Output pixels per input pixel at every input pixel (|det Jacobian|).
    step : int
        Node spacing used (input pixels).
    max_error : float
        Largest interpolation error found at the check points (output pixels).
    """

    pixmap: np.ndarray
    area_ratio: np.ndarray | None
    step: int
    max_error: float


def fast_pixmap(wcs_in, shape_in, wcs_out, step: int = 32, tolerance: float = 0.01, area: bool = True,
                min_step: int = 4) -> PixmapResult:
    """Pixel map from an input image to an output grid by spline interpolation.

    Parameters
    ----------
    wcs_in : gwcs.WCS, astropy WCS or DetectorProjection
        Input pixel -> sky.
    shape_in : (ny, nx)
        Input image shape.
    wcs_out : astropy.wcs.WCS
        Output grid (sky -> pixel).
    step : int
        Initial node spacing (input pixels).
    tolerance : float
        Largest acceptable interpolation error (output pixels).
    area : bool
        Also return the map of output-pixel area per input pixel.
    min_step : int
        Smallest node spacing tried.

    Returns
    -------
    PixmapResult
    """
    ny, nx = (int(v) for v in shape_in)
    step = int(step)
    while True:
        xn, yn = _nodes(nx, step), _nodes(ny, step)
        # exact mapping at the nodes and at the midpoints between them (the check points)
        xm = 0.5 * (xn[:-1] + xn[1:])
        ym = 0.5 * (yn[:-1] + yn[1:])
        xs = np.concatenate([xn, xm])
        ys = np.concatenate([yn, ym])
        gx, gy = np.meshgrid(xs, ys)
        ra, dec = pixel_to_world(wcs_in, gx, gy)
        ox, oy = world_to_pixel(wcs_out, ra, dec)
        nnx, nny = xn.size, yn.size
        FX, FY = ox[:nny, :nnx], oy[:nny, :nnx]
        Wxm, Wym = spline_matrix(xn, xm), spline_matrix(yn, ym)
        Wxn, Wyn = spline_matrix(xn, xn), spline_matrix(yn, yn)
        # interpolated vs exact at mid-row/mid-column points and cell centres
        err = 0.0
        for Wy_, Wx_, ty, tx in (
            (Wym, Wxn, slice(nny, None), slice(0, nnx)),
            (Wyn, Wxm, slice(0, nny), slice(nnx, None)),
            (Wym, Wxm, slice(nny, None), slice(nnx, None)),
        ):
            if Wy_.shape[0] == 0 or Wx_.shape[0] == 0:
                continue
            ix = Wy_ @ FX @ Wx_.T
            iy = Wy_ @ FY @ Wx_.T
            err = max(err, float(np.nanmax(np.hypot(ix - ox[ty, tx], iy - oy[ty, tx]))))
        if not np.isfinite(err):
            raise ValueError("the output WCS cannot place some input pixels (non-finite positions)")
        if err <= tolerance or step <= min_step:
            break
        step = max(step // 2, min_step)

    Wx = spline_matrix(xn, np.arange(nx, dtype=float))
    Wy = spline_matrix(yn, np.arange(ny, dtype=float))
    pixmap = np.empty((ny, nx, 2), dtype=np.float64)
    pixmap[..., 0] = (Wy @ FX) @ Wx.T
    pixmap[..., 1] = (Wy @ FY) @ Wx.T
    area_ratio = None
    if area:
        dWxn, dWyn = spline_matrix(xn, xn, 1), spline_matrix(yn, yn, 1)
        dX_dx, dX_dy = FX @ dWxn.T, dWyn @ FX
        dY_dx, dY_dy = FY @ dWxn.T, dWyn @ FY
        jac = np.abs(dX_dx * dY_dy - dX_dy * dY_dx)
        area_ratio = ((Wy @ jac) @ Wx.T).astype(np.float32)
    return PixmapResult(pixmap=pixmap, area_ratio=area_ratio, step=step, max_error=err)


def exact_pixmap(wcs_in, shape_in, wcs_out) -> np.ndarray:
    """Pixel map evaluated at every pixel (slow reference; for checks)."""
    ny, nx = shape_in
    gx, gy = np.meshgrid(np.arange(nx, dtype=float), np.arange(ny, dtype=float))
    ra, dec = pixel_to_world(wcs_in, gx, gy)
    ox, oy = world_to_pixel(wcs_out, ra, dec)
    return np.dstack([ox, oy])
