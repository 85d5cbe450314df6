"""Detector projection kernels: 2-D polynomials, velocity aberration and the sky rotation.

Pure functions on arrays. A distortion polynomial is a triangular coefficient
array ``c`` of shape ``(degree + 1, degree + 1)`` with ``c[i, j]`` the
coefficient of ``u**i * v**j`` (entries with ``i + j > degree`` are zero), in
normalised coordinates:

* pixel side: ``u = (x + shift) / pix_norm`` (same for ``v``/``y``), where
  ``x`` is a 0-based pixel coordinate, ``shift`` (pixel) moves it to the
  detector centre and ``pix_norm`` (pixel) scales a full detector to [-1, 1];
* telescope side: ``a = (v2 - v2c) / v_norm``, ``b = (v3 - v3c) / v_norm`` with
  (``v2c``, ``v3c``) the detector centre and ``v_norm`` a scale, all arcsec.

The forward polynomials ``fx``, ``fy`` give (V2, V3) in arcsec; the inverse
ones ``gx``, ``gy`` give (u, v). The rotation matrix ``m`` takes telescope-frame
unit vectors to ICRS unit vectors (``m[:, k]`` is the image of basis vector k);
``va`` scales (V2, V3) about (``v2_ref``, ``v3_ref``) (arcsec) for velocity
aberration.
"""

from __future__ import annotations

import math

import numba
import numpy as np

#: Radians per arcsecond.
ARCSEC_RAD = math.pi / (180.0 * 3600.0)


def horner2d(c: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Σ c[i, j] u^i v^j over i + j <= degree, by nested Horner.

    Parameters
    ----------
    c : (degree + 1, degree + 1) float array
        Triangular coefficients.
    u, v : float arrays of one shape
        Normalised coordinates (dimensionless).

    Returns
    -------
    float array of the shape of ``v``, in the unit of ``c``.
    """
    degree = c.shape[0] - 1
    out = None
    for i in range(degree, -1, -1):
        row = c[i]
        inner = np.full_like(v, row[degree - i])
        for j in range(degree - i - 1, -1, -1):
            inner *= v
            inner += row[j]
        if out is None:
            out = inner
        else:
            out *= u
            out += inner
    return out


def poly_derivatives(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients of ∂p/∂u and ∂p/∂v of the triangular polynomial ``c`` (same shape)."""
    degree = c.shape[0] - 1
    k = np.arange(degree + 1, dtype=float)
    du = np.zeros_like(c)
    du[:-1] = c[1:] * k[1:, None]
    dv = np.zeros_like(c)
    dv[:, :-1] = c[:, 1:] * k[None, 1:]
    return du, dv


def fit_poly2d(u: np.ndarray, v: np.ndarray, target: np.ndarray, degree: int) -> np.ndarray:
    """Least-squares triangular polynomial of ``degree`` with p(u, v) ≈ target.

    Parameters
    ----------
    u, v, target : 1-D float arrays of one length
        Sample positions (normalised) and values (any unit).
    degree : int
        Total degree.

    Returns
    -------
    (degree + 1, degree + 1) float array of coefficients, in the unit of ``target``.
    """
    cols, index = [], []
    for i in range(degree + 1):
        for j in range(degree + 1 - i):
            cols.append(u**i * v**j)
            index.append((i, j))
    solution, *_ = np.linalg.lstsq(np.stack(cols, axis=-1), target, rcond=None)
    c = np.zeros((degree + 1, degree + 1))
    for (i, j), value in zip(index, solution):
        c[i, j] = value
    return c


@numba.njit(inline="always")
def poly_point(c, u, v):
    """Σ c[i, j] u^i v^j for scalars u, v (nested Horner, compiled)."""
    degree = c.shape[0] - 1
    out = 0.0
    for i in range(degree, -1, -1):
        inner = 0.0
        for j in range(degree - i, -1, -1):
            inner = inner * v + c[i, j]
        out = out * u + inner
    return out


@numba.njit(parallel=True, cache=True)
def pixel_to_world_points(x, y, shift, pix_norm, fx, fy, v2_ref, v3_ref, va, m, ra, dec):
    """Pixel (x, y) -> ICRS (ra, dec) in degrees, per point, written into ``ra`` and ``dec``.

    Parameters
    ----------
    x, y : 1-D float64 arrays
        0-based pixel coordinates.
    shift, pix_norm : float
        Pixel offset to the detector centre and normalisation (pixel).
    fx, fy : float64 arrays
        Forward polynomials to (V2, V3), arcsec.
    v2_ref, v3_ref : float
        Velocity-aberration centre (arcsec).
    va : float
        Velocity-aberration scale (1 for none).
    m : (3, 3) float64 array
        Telescope -> ICRS rotation.
    ra, dec : 1-D float64 arrays
        Outputs (deg), ``ra`` in [0, 360).
    """
    for k in numba.prange(x.size):
        u = (x[k] + shift) / pix_norm
        v = (y[k] + shift) / pix_norm
        v2 = poly_point(fx, u, v)
        v3 = poly_point(fy, u, v)
        v2 = (v2_ref + va * (v2 - v2_ref)) * ARCSEC_RAD
        v3 = (v3_ref + va * (v3 - v3_ref)) * ARCSEC_RAD
        c3 = math.cos(v3)
        px = c3 * math.cos(v2)
        py = c3 * math.sin(v2)
        pz = math.sin(v3)
        X = m[0, 0] * px + m[0, 1] * py + m[0, 2] * pz
        Y = m[1, 0] * px + m[1, 1] * py + m[1, 2] * pz
        Z = m[2, 0] * px + m[2, 1] * py + m[2, 2] * pz
        a = math.degrees(math.atan2(Y, X))
        if a < 0.0:
            a += 360.0
        ra[k] = a
        dec[k] = math.degrees(math.asin(min(1.0, max(-1.0, Z))))


@numba.njit(parallel=True, cache=True)
def world_to_pixel_points(ra, dec, shift, pix_norm, fx, fy, dfx_du, dfx_dv, dfy_du, dfy_dv, gx, gy, v2c, v3c,
                          v_norm, v2_ref, v3_ref, va, m, n_newton, x, y):
    """ICRS (ra, dec) in degrees -> pixel (x, y), per point, written into ``x`` and ``y``.

    The inverse polynomials ``gx``, ``gy`` give a first guess, refined by
    ``n_newton`` Newton steps on the forward polynomials ``fx``, ``fy`` with
    their derivative polynomials (see :func:`poly_derivatives`). (``v2c``,
    ``v3c``) and ``v_norm`` (arcsec) normalise the inverse polynomials' input;
    the other parameters are those of :func:`pixel_to_world_points`. Points off
    the detector get extrapolated values.
    """
    for k in numba.prange(ra.size):
        r = math.radians(ra[k])
        d = math.radians(dec[k])
        cd = math.cos(d)
        X = cd * math.cos(r)
        Y = cd * math.sin(r)
        Z = math.sin(d)
        px = m[0, 0] * X + m[1, 0] * Y + m[2, 0] * Z
        py = m[0, 1] * X + m[1, 1] * Y + m[2, 1] * Z
        pz = m[0, 2] * X + m[1, 2] * Y + m[2, 2] * Z
        v2 = math.atan2(py, px) / ARCSEC_RAD
        v3 = math.asin(min(1.0, max(-1.0, pz))) / ARCSEC_RAD
        v2 = v2_ref + (v2 - v2_ref) / va
        v3 = v3_ref + (v3 - v3_ref) / va
        a = (v2 - v2c) / v_norm
        b = (v3 - v3c) / v_norm
        u = poly_point(gx, a, b)
        v = poly_point(gy, a, b)
        for _ in range(n_newton):
            r2 = poly_point(fx, u, v) - v2
            r3 = poly_point(fy, u, v) - v3
            j11 = poly_point(dfx_du, u, v)
            j12 = poly_point(dfx_dv, u, v)
            j21 = poly_point(dfy_du, u, v)
            j22 = poly_point(dfy_dv, u, v)
            det = j11 * j22 - j12 * j21
            u -= (j22 * r2 - j12 * r3) / det
            v -= (j11 * r3 - j21 * r2) / det
        x[k] = u * pix_norm - shift
        y[k] = v * pix_norm - shift
