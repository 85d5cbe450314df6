"""Gnomonic (TAN) projection of the sky, and the polygon test done in its plane.

Pure functions on arrays. Sky positions and tangent points are in degrees;
standard coordinates (xi, eta) are in degrees on the tangent plane, north up
and east to +xi. Plane coordinates for :func:`rects_meet_polygon` are in any
one unit (pixels of a projection grid, say).
"""

from __future__ import annotations

import numpy as np


def tan_project(ra, dec, ra0, dec0):
    """Gnomonic projection about (ra0, dec0), north up, east to +xi.

    Parameters
    ----------
    ra, dec : array_like
        Positions (deg).
    ra0, dec0 : float or array_like
        Tangent point (deg).

    Returns
    -------
    xi, eta : ndarray
        Standard coordinates (deg); NaN for points 90 deg or more from the tangent point.
    """
    ra = np.radians(np.asarray(ra, dtype=float))
    dec = np.radians(np.asarray(dec, dtype=float))
    a0 = np.radians(ra0)
    d0 = np.radians(dec0)
    dra = ra - a0
    cos_c = np.sin(d0) * np.sin(dec) + np.cos(d0) * np.cos(dec) * np.cos(dra)
    with np.errstate(divide="ignore", invalid="ignore"):
        xi = np.cos(dec) * np.sin(dra) / cos_c
        eta = (np.cos(d0) * np.sin(dec) - np.sin(d0) * np.cos(dec) * np.cos(dra)) / cos_c
    bad = cos_c <= 1e-6
    xi = np.where(bad, np.nan, np.degrees(xi))
    eta = np.where(bad, np.nan, np.degrees(eta))
    return xi, eta


def tan_deproject(xi, eta, ra0, dec0):
    """Inverse of :func:`tan_project`: standard coordinates (deg) -> (ra, dec) deg."""
    x = np.radians(np.asarray(xi, dtype=float))
    y = np.radians(np.asarray(eta, dtype=float))
    d0 = np.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(divide="ignore", invalid="ignore"):
        sin_dec = np.cos(c) * np.sin(d0) + np.where(rho > 0, y * np.sin(c) * np.cos(d0) / rho, 0.0)
    dra = np.arctan2(x * np.sin(c), rho * np.cos(d0) * np.cos(c) - y * np.sin(d0) * np.sin(c))
    dec = np.degrees(np.arcsin(np.clip(sin_dec, -1, 1)))
    ra = (ra0 + np.degrees(dra)) % 360.0
    return ra, dec


def rects_meet_polygon(x0, x1, y0, y1, px, py) -> np.ndarray:
    """Whether axis-aligned rectangles meet a closed polygon (edge crossing or containment).

    Parameters
    ----------
    x0, x1, y0, y1 : ndarray, (M,)
        Rectangle bounds.
    px, py : ndarray, (E,)
        Polygon vertices in order (the last joins the first).

    Returns
    -------
    ndarray of bool, (M,)
    """
    x0, x1, y0, y1 = (np.asarray(a, dtype=float)[:, None] for a in (x0, x1, y0, y1))
    sx, sy = np.asarray(px, dtype=float)[None, :], np.asarray(py, dtype=float)[None, :]
    ex, ey = np.roll(sx, -1, axis=1), np.roll(sy, -1, axis=1)
    dx, dy = ex - sx, ey - sy
    t0 = np.zeros(np.broadcast_shapes(x0.shape, sx.shape))
    t1 = np.ones_like(t0)
    ok = np.ones(t0.shape, dtype=bool)
    # Liang-Barsky clipping of every polygon edge against every rectangle
    for p, q in ((-dx, sx - x0), (dx, x1 - sx), (-dy, sy - y0), (dy, y1 - sy)):
        p = np.broadcast_to(p, t0.shape)
        q = np.broadcast_to(q, t0.shape)
        parallel = p == 0
        ok &= ~(parallel & (q < 0))
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(parallel, 0.0, q / np.where(parallel, 1.0, p))
        t0 = np.where(~parallel & (p < 0), np.maximum(t0, t), t0)
        t1 = np.where(~parallel & (p > 0), np.minimum(t1, t), t1)
    edge_hit = (ok & (t0 <= t1)).any(axis=1)
    # a rectangle wholly inside the polygon: its centre is inside (even-odd rule)
    cx, cy = 0.5 * (x0 + x1), 0.5 * (y0 + y1)
    crosses = ((sy > cy) != (ey > cy)) & (cx < sx + (cy - sy) * dx / np.where(dy == 0, 1.0, dy))
    inside = (crosses.sum(axis=1) % 2) == 1
    return edge_hit | inside


def angular_separation(ra0, dec0, ra, dec) -> np.ndarray:
    """Angular distance (deg) of positions (ra, dec) from (ra0, dec0), all in deg (haversine formula)."""
    ra0, dec0, ra, dec = (np.radians(v) for v in (ra0, dec0, ra, dec))
    h = np.sin((dec - dec0) / 2) ** 2 + np.cos(dec0) * np.cos(dec) * np.sin((ra - ra0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0))))
