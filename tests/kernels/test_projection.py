"""Projection kernels: polynomials, their fit and derivatives, and the per-point sky mapping."""

import math

import numpy as np

from romanflow.kernels.projection import (
    fit_poly2d,
    horner2d,
    pixel_to_world_points,
    poly_derivatives,
    poly_point,
    world_to_pixel_points,
)


def _triangular(rng, degree, scale=1.0):
    c = rng.normal(0.0, scale, (degree + 1, degree + 1))
    i, j = np.indices(c.shape)
    c[i + j > degree] = 0.0
    return c


def _direct(c, u, v):
    return sum(c[i, j] * u**i * v**j for i in range(c.shape[0]) for j in range(c.shape[0] - i))


def test_horner_and_point_evaluation_match_the_direct_sum():
    rng = np.random.default_rng(0)
    c = _triangular(rng, 5)
    u, v = rng.uniform(-1, 1, 200), rng.uniform(-1, 1, 200)
    np.testing.assert_allclose(horner2d(c, u.copy(), v.copy()), _direct(c, u, v), rtol=0, atol=1e-12)
    assert abs(poly_point(c, u[3], v[3]) - _direct(c, u[3], v[3])) < 1e-12


def test_fit_recovers_a_polynomial_exactly():
    rng = np.random.default_rng(1)
    c = _triangular(rng, 4)
    u, v = rng.uniform(-1, 1, 300), rng.uniform(-1, 1, 300)
    np.testing.assert_allclose(fit_poly2d(u, v, _direct(c, u, v), 4), c, atol=1e-10)


def test_derivatives_match_finite_differences():
    rng = np.random.default_rng(2)
    c = _triangular(rng, 5)
    du, dv = poly_derivatives(c)
    u, v, h = rng.uniform(-0.9, 0.9, 50), rng.uniform(-0.9, 0.9, 50), 1e-6
    np.testing.assert_allclose(horner2d(du, u, v), (_direct(c, u + h, v) - _direct(c, u - h, v)) / (2 * h), atol=1e-6)
    np.testing.assert_allclose(horner2d(dv, u, v), (_direct(c, u, v + h) - _direct(c, u, v - h)) / (2 * h), atol=1e-6)


def test_pixel_world_round_trip():
    # A detector of 0.11 arcsec pixels with a mild quadratic distortion, centred at (V2, V3) = (1000, -500) arcsec.
    pix_norm, shift, v2c, v3c, v_norm = 2044.0, -2043.5, 1000.0, -500.0, 300.0
    fx = np.zeros((3, 3)); fx[0, 0], fx[1, 0], fx[2, 0] = v2c, 0.11 * pix_norm, 0.02
    fy = np.zeros((3, 3)); fy[0, 0], fy[0, 1], fy[1, 1] = v3c, 0.11 * pix_norm, 0.01
    gx = np.zeros((3, 3)); gx[1, 0] = v_norm / (0.11 * pix_norm)
    gy = np.zeros((3, 3)); gy[0, 1] = v_norm / (0.11 * pix_norm)
    dfx_du, dfx_dv = poly_derivatives(fx)
    dfy_du, dfy_dv = poly_derivatives(fy)
    a = math.radians(30.0)
    m = np.array([[math.cos(a), -math.sin(a), 0.0], [math.sin(a), math.cos(a), 0.0], [0.0, 0.0, 1.0]])
    rng = np.random.default_rng(3)
    x, y = rng.uniform(-0.5, 4087.5, 1000), rng.uniform(-0.5, 4087.5, 1000)
    ra, dec = np.empty_like(x), np.empty_like(x)
    pixel_to_world_points(x, y, shift, pix_norm, fx, fy, v2c, v3c, 1.0001, m, ra, dec)
    assert np.all((ra >= 0.0) & (ra < 360.0)) and np.all(np.abs(dec) < 1.0)
    xb, yb = np.empty_like(x), np.empty_like(x)
    world_to_pixel_points(ra, dec, shift, pix_norm, fx, fy, dfx_du, dfx_dv, dfy_du, dfy_dv, gx, gy, v2c, v3c,
                          v_norm, v2c, v3c, 1.0001, m, 3, xb, yb)
    assert np.abs(xb - x).max() < 1e-6 and np.abs(yb - y).max() < 1e-6, "x or y off by > 1e-6 pixel"
