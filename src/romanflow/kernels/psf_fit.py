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


@numba.njit(cache=True, parallel=True)
def _fit_kernel(data, var, wvar, bad, x0, y0, f0, epsf, oversample, half, free, bscale2,
                flux, xf, yf, flux_err, x_err, y_err, chi2, flags):
    ny, nx = data.shape
    c = (epsf.shape[0] - 1) / 2.0
    nbox = (2 * half + 1) ** 2
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
        npar = 3 if free else 1
        if m <= npar:
            flags[s] |= 8
            continue
        x = x0[s]
        y = y0[s]
        f = f0[s] if (math.isfinite(f0[s]) and f0[s] > 0) else 1.0
        ok = True
        converged = not free
        for it in range(MAX_ITER if free else 1):
            # normal equations of the weighted least squares at the current position
            a00 = a01 = a02 = a11 = a12 = a22 = 0.0
            b0 = b1 = b2 = 0.0
            for k in range(m):
                p, gx, gy = _psf_value(epsf, c, oversample, px[k] - x, py[k] - y)
                w = 1.0 / wvar[py[k], px[k]]
                d = data[py[k], px[k]]
                if free:
                    r = d - f * p
                    j1 = -f * gx
                    j2 = -f * gy
                    a00 += w * p * p
                    a01 += w * p * j1
                    a02 += w * p * j2
                    a11 += w * j1 * j1
                    a12 += w * j1 * j2
                    a22 += w * j2 * j2
                    b0 += w * p * r
                    b1 += w * j1 * r
                    b2 += w * j2 * r
                else:
                    a00 += w * p * p
                    b0 += w * p * d
            if not free:
                if a00 <= 0:
                    ok = False
                else:
                    f = b0 / a00
                break
            det = (a00 * (a11 * a22 - a12 * a12) - a01 * (a01 * a22 - a12 * a02)
                   + a02 * (a01 * a12 - a11 * a02))
            if not (det > 0) or not math.isfinite(det):
                ok = False
                break
            df = (b0 * (a11 * a22 - a12 * a12) - a01 * (b1 * a22 - a12 * b2) + a02 * (b1 * a12 - a11 * b2)) / det
            dxp = (a00 * (b1 * a22 - a12 * b2) - b0 * (a01 * a22 - a12 * a02) + a02 * (a01 * b2 - b1 * a02)) / det
            dyp = (a00 * (a11 * b2 - b1 * a12) - a01 * (a01 * b2 - b1 * a02) + b0 * (a01 * a12 - a11 * a02)) / det
            step = max(abs(dxp), abs(dyp))
            if step > STEP_LIMIT:
                dxp *= STEP_LIMIT / step
                dyp *= STEP_LIMIT / step
                df *= STEP_LIMIT / step
            f += df
            x += dxp
            y += dyp
            if abs(x - cx) > half + 0.5 or abs(y - cy) > half + 0.5:
                flags[s] |= 2
                break
            if step < TOLERANCE:
                converged = True
                break
        if not ok:
            flags[s] |= 8
            continue
        if not converged and (flags[s] & 2) == 0:
            flags[s] |= 4
        # covariance (sandwich) and chi-square at the solution
        h00 = h01 = h02 = h11 = h12 = h22 = 0.0
        m00 = m01 = m02 = m11 = m12 = m22 = 0.0
        c2 = 0.0
        for k in range(m):
            p, gx, gy = _psf_value(epsf, c, oversample, px[k] - x, py[k] - y)
            vb = wvar[py[k], px[k]]
            vt = var[py[k], px[k]]
            w = 1.0 / vb
            vs = vt + (bscale2 - 1.0) * min(vt, vb)
            j1 = -f * gx if free else 0.0
            j2 = -f * gy if free else 0.0
            h00 += w * p * p
            h01 += w * p * j1
            h02 += w * p * j2
            h11 += w * j1 * j1
            h12 += w * j1 * j2
            h22 += w * j2 * j2
            ww = w * w * vs
            m00 += ww * p * p
            m01 += ww * p * j1
            m02 += ww * p * j2
            m11 += ww * j1 * j1
            m12 += ww * j1 * j2
            m22 += ww * j2 * j2
            r = data[py[k], px[k]] - f * p
            c2 += r * r / vt
        flux[s] = f
        xf[s] = x
        yf[s] = y
        chi2[s] = c2 / (m - npar)
        if free:
            hm = np.array([[h00, h01, h02], [h01, h11, h12], [h02, h12, h22]])
            mm = np.array([[m00, m01, m02], [m01, m11, m12], [m02, m12, m22]])
            det = np.linalg.det(hm)
            if not (det > 0):
                flags[s] |= 8
                continue
            hi = np.linalg.inv(hm)
            cov = hi @ mm @ hi
            flux_err[s] = math.sqrt(max(cov[0, 0], 0.0))
            x_err[s] = math.sqrt(max(cov[1, 1], 0.0))
            y_err[s] = math.sqrt(max(cov[2, 2], 0.0))
        else:
            flux_err[s] = math.sqrt(m00) / h00 if h00 > 0 else np.nan


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
