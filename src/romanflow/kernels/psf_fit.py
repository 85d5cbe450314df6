"""PSF fitting of many sources: flux, or flux and position, in a box around each.

Pure kernel: an image, its total error, the error that weights the fit, a
mask, starting positions and an effective PSF sampled ``oversample`` times per
pixel go in; fitted parameters, errors, reduced chi-square and flag bits come
out. The PSF is interpolated with the Keys cubic kernel (a = -1/2), which has
continuous derivatives, so the position fit converges by Gauss-Newton.

Weights and errors are separate: the fit uses ``w = 1 / weight_err²``
(normally the background's error alone, whose weights do not follow the
source's own noisy signal), and the covariance of the parameters is the
sandwich ``(JᵀWJ)⁻¹ JᵀWΣWJ (JᵀWJ)⁻¹`` with Σ the total variance, whose
background share is multiplied by ``background_scale²`` (noise correlation).
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

#: Flag bits of a fit.
FIT_FLAGS = {
    "BOX_INCOMPLETE": 1,  # part of the fit box is off the image or masked
    "LEFT_BOX": 2,  # the fitted position left the fit box
    "NOT_CONVERGED": 4,  # the position had not settled after the last iteration
    "NO_DATA": 8,  # too few usable pixels, or a singular fit
}

MAX_ITER = 30
STEP_LIMIT = 0.5  #: largest position change per iteration (pixels)
TOLERANCE = 1e-4  #: convergence of the position (pixels)


@numba.njit(cache=True, inline="always")
def _keys(t):
    """Keys cubic convolution weights and their derivatives for fractional offset t in [0, 1)."""
    a = -0.5
    w0 = a * (t + 1) ** 3 - 5 * a * (t + 1) ** 2 + 8 * a * (t + 1) - 4 * a
    w1 = (a + 2) * t**3 - (a + 3) * t**2 + 1
    u = 1 - t
    w2 = (a + 2) * u**3 - (a + 3) * u**2 + 1
    w3 = 1.0 - w0 - w1 - w2
    d0 = 3 * a * (t + 1) ** 2 - 10 * a * (t + 1) + 8 * a
    d1 = 3 * (a + 2) * t**2 - 2 * (a + 3) * t
    d2 = -(3 * (a + 2) * u**2 - 2 * (a + 3) * u)
    d3 = -(d0 + d1 + d2)
    return w0, w1, w2, w3, d0, d1, d2, d3


@numba.njit(cache=True)
def _psf_value(epsf, c, oversample, dx, dy):
    """Unit-flux PSF at offset (dx, dy) pixels from the source, and its derivatives in dx, dy."""
    n = epsf.shape[0]
    u = c + dx * oversample
    v = c + dy * oversample
    iu = int(math.floor(u))
    iv = int(math.floor(v))
    if iu < 1 or iv < 1 or iu + 2 >= n or iv + 2 >= n:
        return 0.0, 0.0, 0.0
    wx0, wx1, wx2, wx3, dx0, dx1, dx2, dx3 = _keys(u - iu)
    wy0, wy1, wy2, wy3, dy0, dy1, dy2, dy3 = _keys(v - iv)
    wx = (wx0, wx1, wx2, wx3)
    dxs = (dx0, dx1, dx2, dx3)
    wy = (wy0, wy1, wy2, wy3)
    dys = (dy0, dy1, dy2, dy3)
    val = 0.0
    gx = 0.0
    gy = 0.0
    for j in range(4):
        rowv = 0.0
        rowd = 0.0
        for i in range(4):
            s = epsf[iv - 1 + j, iu - 1 + i]
            rowv += wx[i] * s
            rowd += dxs[i] * s
        val += wy[j] * rowv
        gx += wy[j] * rowd
        gy += dys[j] * rowv
    return val, gx * oversample, gy * oversample


@numba.njit(cache=True, inline="always")
def _jacobian_row(epsf, c, oversample, dx, dy, f, free, row):
    """Fill ``row`` with the model's derivatives in (flux[, x, y]) at one pixel; return the unit PSF there."""
    p, gx, gy = _psf_value(epsf, c, oversample, dx, dy)
    row[0] = p
    if free:
        row[1] = -f * gx
        row[2] = -f * gy
    return p


@numba.njit(cache=True, inline="always")
def _add_outer(matrix, row, weight):
    """matrix += weight · row rowᵀ."""
    n = matrix.shape[0]
    for i in range(n):
        for j in range(n):
            matrix[i, j] += weight * row[i] * row[j]


@numba.njit(cache=True, parallel=True)
def _fit_kernel(data, var, wvar, bad, x0, y0, f0, epsf, oversample, half, free, bscale2,
                flux, xf, yf, flux_err, x_err, y_err, chi2, flags):
    ny, nx = data.shape
    c = (epsf.shape[0] - 1) / 2.0
    nbox = (2 * half + 1) ** 2
    npar = 3 if free else 1
    for s in prange(x0.shape[0]):
        flags[s] = 0
        if not (math.isfinite(x0[s]) and math.isfinite(y0[s])):
            flags[s] = 8
            continue
        cx = int(math.floor(x0[s] + 0.5))
        cy = int(math.floor(y0[s] + 0.5))
        # usable pixels of the box around the starting position
        px = np.empty(nbox, np.int64)
        py = np.empty(nbox, np.int64)
        m = 0
        for j in range(-half, half + 1):
            for i in range(-half, half + 1):
                xx = cx + i
                yy = cy + j
                if xx < 0 or yy < 0 or xx >= nx or yy >= ny or bad[yy, xx]:
                    continue
                px[m] = xx
                py[m] = yy
                m += 1
        if m < nbox:
            flags[s] |= 1
        if m <= npar:
            flags[s] |= 8
            continue
        x = x0[s]
        y = y0[s]
        # a fixed position is one linear step from zero flux
        f = (f0[s] if (math.isfinite(f0[s]) and f0[s] > 0) else 1.0) if free else 0.0
        row = np.zeros(npar)
        ok = True
        converged = not free
        for it in range(MAX_ITER if free else 1):
            # normal equations of the weighted least squares at the current parameters
            hmat = np.zeros((npar, npar))
            rhs = np.zeros(npar)
            for k in range(m):
                p = _jacobian_row(epsf, c, oversample, px[k] - x, py[k] - y, f, free, row)
                w = 1.0 / wvar[py[k], px[k]]
                _add_outer(hmat, row, w)
                r = data[py[k], px[k]] - f * p
                for i in range(npar):
                    rhs[i] += w * row[i] * r
            det = np.linalg.det(hmat)
            if not (det > 0) or not math.isfinite(det):
                ok = False
                break
            step = np.linalg.solve(hmat, rhs)
            if not free:
                f += step[0]
                break
            move = max(abs(step[1]), abs(step[2]))
            if move > STEP_LIMIT:
                step *= STEP_LIMIT / move
            f += step[0]
            x += step[1]
            y += step[2]
            if abs(x - cx) > half + 0.5 or abs(y - cy) > half + 0.5:
                flags[s] |= 2
                break
            if move < TOLERANCE:
                converged = True
                break
        if not ok:
            flags[s] |= 8
            continue
        if not converged and (flags[s] & 2) == 0:
            flags[s] |= 4
        # covariance (sandwich) and chi-square at the solution
        hmat = np.zeros((npar, npar))
        mmat = np.zeros((npar, npar))
        c2 = 0.0
        for k in range(m):
            p = _jacobian_row(epsf, c, oversample, px[k] - x, py[k] - y, f, free, row)
            vb = wvar[py[k], px[k]]
            vt = var[py[k], px[k]]
            # the background's share of the variance carries its correlation
            vs = vt + (bscale2 - 1.0) * min(vt, vb)
            _add_outer(hmat, row, 1.0 / vb)
            _add_outer(mmat, row, vs / (vb * vb))
            r = data[py[k], px[k]] - f * p
            c2 += r * r / vt
        flux[s] = f
        xf[s] = x
        yf[s] = y
        chi2[s] = c2 / (m - npar)
        if not (np.linalg.det(hmat) > 0):
            flags[s] |= 8
            continue
        bread = np.linalg.inv(hmat)
        cov = bread @ mmat @ bread
        flux_err[s] = math.sqrt(max(cov[0, 0], 0.0))
        if free:
            x_err[s] = math.sqrt(max(cov[1, 1], 0.0))
            y_err[s] = math.sqrt(max(cov[2, 2], 0.0))


def fit_psf_sources(data, err, x, y, epsf, oversample: int, *, flux_guess=None, weight_err=None, mask=None,
                    half: int = 2, free_position: bool = True, background_scale: float = 1.0) -> dict:
    """Fit a sampled effective PSF to sources in an image.

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Background-subtracted image and its total 1-sigma error (same unit).
    x, y : ndarray (n,)
        Starting (or, without ``free_position``, fixed) positions (pixels, 0-indexed).
    epsf : ndarray (m, m)
        Unit-flux effective PSF: the fraction of a source's flux in a pixel whose
        centre is at that sample's offset, sampled ``oversample`` times per pixel,
        source at the centre sample.
    oversample : int
        Samples per pixel of ``epsf``.
    flux_guess : ndarray (n,), optional
        Starting fluxes.
    weight_err : ndarray (ny, nx), optional
        Error defining the weights; ``err`` when not given.
    mask : ndarray of bool, optional
        Pixels not to use.
    half : int
        Half-size of the fit box ((2·half + 1)² pixels around the starting position).
    free_position : bool
        Fit flux and position (Gauss-Newton), or the flux alone (linear).
    background_scale : float
        Actual / propagated noise of the background for a PSF-weighted sum.

    Returns
    -------
    dict of ndarray (n,)
        ``flux``, ``x``, ``y``, ``flux_err``, ``x_err``, ``y_err`` (NaN for a fixed
        position), ``reduced_chi2`` (with ``err``), ``flags`` (:data:`FIT_FLAGS`);
        NaN values where ``flags`` has NO_DATA.
    """
    data = np.asarray(data, np.float64)
    err = np.asarray(err, np.float64)
    weight_err = err if weight_err is None else np.asarray(weight_err, np.float64)
    bad = ~np.isfinite(data) | ~np.isfinite(err) | (err <= 0) | ~np.isfinite(weight_err) | (weight_err <= 0)
    if mask is not None:
        bad |= np.asarray(mask, bool)
    x = np.ascontiguousarray(x, np.float64)
    y = np.ascontiguousarray(y, np.float64)
    n = x.size
    f0 = np.full(n, 1.0) if flux_guess is None else np.ascontiguousarray(flux_guess, np.float64)
    out = {k: np.full(n, np.nan) for k in ("flux", "x", "y", "flux_err", "x_err", "y_err", "reduced_chi2")}
    out["flags"] = np.zeros(n, np.int32)
    if n == 0:
        return out
    var = np.where(bad, 1.0, err) ** 2
    wvar = np.where(bad, 1.0, weight_err) ** 2
    _fit_kernel(np.where(bad, 0.0, data), var, wvar, bad, x, y, f0, np.ascontiguousarray(epsf, np.float64),
                int(oversample), int(half), bool(free_position), float(background_scale) ** 2,
                out["flux"], out["x"], out["y"], out["flux_err"], out["x_err"], out["y_err"], out["reduced_chi2"],
                out["flags"])
    failed = (out["flags"] & FIT_FLAGS["NO_DATA"]) != 0
    for key in ("flux", "x", "y", "flux_err", "x_err", "y_err", "reduced_chi2"):
        out[key][failed] = np.nan
    return out
