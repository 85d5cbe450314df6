"""PSF fitting of many point sources: flux, or flux and position, in a box around each.

One kernel serves point-source detection for registration
(:mod:`romanflow.astrometry.detect`) and catalog photometry
(:mod:`romanflow.catalog.photometry`): an image, its total error, the error
that weights the fit, a mask, starting positions and an oversampled effective
PSF (:mod:`romanflow.kernels.epsf`, Keys cubic interpolation) go in; fluxes,
positions, their errors, a reduced chi-square and flag bits come out.

The fit
-------
The model of a source in its box of ``(2·half + 1)²`` pixels, centred on the
pixel nearest the starting position, is ``f · P(x_pix - x, y_pix - y)`` with
``P`` the effective PSF (fraction of flux per pixel). Fluxes are the total
flux of the effective PSF, wings beyond the box included. With a free
position, ``(f, x, y)`` minimise the weighted sum of squares by Gauss-Newton
(steps of at most :data:`STEP_LIMIT` pixels, until the position moves less
than :data:`TOLERANCE`); with a fixed position the flux is one linear step.

Neighbours
----------
Independent fits (the default, run in parallel over sources) see the image
as it is. With ``subtract_neighbours``, the sources are fitted one after the
other, in the order given (brightest first is best), each on the image minus
the current models of all the others, over ``passes`` passes: blends
converge as their neighbours' models improve. Two fits whose pixels (box and
models) cannot overlap commute exactly, so each fit waits only for the earlier
ones it overlaps: the sources are taken tile by tile (:data:`SCHEDULE_TILE`
pixels, the PSF and the image stay in cache) and tiles that share no pixel
are fitted in parallel, with the results of the given order bit for bit.

Error model
-----------
The fit weights each pixel by ``w = 1 / weight_err²`` and the errors
propagate the total variance ``Σ = err²`` through the sandwich covariance
``C = (JᵀWJ)⁻¹ JᵀWΣWJ (JᵀWJ)⁻¹`` (``J`` the Jacobian of the model in the
parameters, at the solution). With ``weight_err = err`` this is the usual
``(JᵀWJ)⁻¹``. Passing the background-only error as ``weight_err`` keeps the
weights from following each pixel's own noisy signal (which biases bright
fluxes low) while the errors stay those of the actual data. The background's
share of each pixel's variance, ``min(err², weight_err²)``, is multiplied by
``background_scale²`` (noise correlation between pixels). The reduced
chi-square is ``Σ r² / err² / (n_pixels - n_parameters)``.

Flags are bits of :mod:`romanflow.source_flags`: ``EDGE`` (part of the box is
off the image or masked), ``PSF_FIT_FAILED`` (too few usable pixels or
singular normal equations: the values are NaN), ``LEFT_BOX`` (the position
moved more than ``max_shift`` from the box centre), ``NOT_CONVERGED``.
"""

from __future__ import annotations

import math

import numba
import numpy as np
from numba import prange

from romanflow.kernels.epsf import add_point_source, check_epsf, epsf_value, epsf_value_and_gradient
from romanflow.source_flags import EDGE, LEFT_BOX, NOT_CONVERGED, PSF_FIT_FAILED

__all__ = ["FIT_FLAGS", "fit_psf_sources", "MAX_ITER", "STEP_LIMIT", "TOLERANCE"]

#: Names of the :mod:`romanflow.source_flags` bits a fit sets.
FIT_FLAGS = ("EDGE", "PSF_FIT_FAILED", "LEFT_BOX", "NOT_CONVERGED")

MAX_ITER = 30  #: largest number of Gauss-Newton iterations of one fit
STEP_LIMIT = 0.5  #: largest position change per iteration along either axis (pixels)
TOLERANCE = 1e-4  #: a fit has converged when its position changes less than this along both axes (pixels)
SCHEDULE_TILE = 512  #: side (pixels) of the tiles fitted in parallel with ``subtract_neighbours``


@numba.njit(cache=True, inline="always")
def _spd_factor(h, npar):
    """Cholesky factor (lower, in place) of a symmetric positive-definite npar × npar matrix; False if not."""
    for j in range(npar):
        d = h[j, j]
        for k in range(j):
            d -= h[j, k] * h[j, k]
        if not (d > 0.0) or not math.isfinite(d):
            return False
        d = math.sqrt(d)
        h[j, j] = d
        for i in range(j + 1, npar):
            s = h[i, j]
            for k in range(j):
                s -= h[i, k] * h[j, k]
            h[i, j] = s / d
    return True


@numba.njit(cache=True, inline="always")
def _spd_solve(lower, b, npar):
    """Solve L Lᵀ z = b in place with the factor of :func:`_spd_factor`."""
    for i in range(npar):
        s = b[i]
        for k in range(i):
            s -= lower[i, k] * b[k]
        b[i] = s / lower[i, i]
    for i in range(npar - 1, -1, -1):
        s = b[i]
        for k in range(i + 1, npar):
            s -= lower[k, i] * b[k]
        b[i] = s / lower[i, i]


@numba.njit(cache=True, inline="always")
def _jacobian_row(epsf, oversample, dx, dy, f, free, row):
    """Fill ``row`` with the model's derivatives in (flux[, x, y]) at one pixel; return the unit PSF there."""
    if free:
        p, gx, gy = epsf_value_and_gradient(epsf, oversample, dx, dy)
        row[1] = -f * gx
        row[2] = -f * gy
    else:
        p = epsf_value(epsf, oversample, dx, dy)
    row[0] = p
    return p


@numba.njit(cache=True)
def _usable_box(bad, cx, cy, half, px, py):
    """Collect the usable pixels of the box around (cx, cy) into px, py; return their number."""
    ny, nx = bad.shape
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
    return m


@numba.njit(cache=True)
def _linear_flux(image, wvar, epsf, oversample, px, py, m, x, y):
    """Weighted least-squares flux at a fixed position (NaN if the PSF has no weight in the box)."""
    num = 0.0
    den = 0.0
    for k in range(m):
        p = epsf_value(epsf, oversample, px[k] - x, py[k] - y)
        w = 1.0 / wvar[py[k], px[k]]
        num += w * p * image[py[k], px[k]]
        den += w * p * p
    return num / den if den > 0.0 else np.nan


@numba.njit(cache=True)
def _fit_one(image, var, wvar, bad, x_start, y_start, f_start, x_box, y_box, epsf, oversample, half, free,
             max_shift, bscale2, px, py):
    """Fit one source; return (flux, x, y, flux_err, x_err, y_err, reduced chi2, flags).

    The box is centred on the pixel nearest (x_box, y_box); the iteration
    starts at (x_start, y_start, f_start), a non-finite or non-positive
    f_start meaning the linear flux at the starting position.
    """
    nan = np.nan
    flags = 0
    if not (math.isfinite(x_start) and math.isfinite(y_start) and math.isfinite(x_box) and math.isfinite(y_box)):
        return nan, nan, nan, nan, nan, nan, nan, PSF_FIT_FAILED
    cx = int(math.floor(x_box + 0.5))
    cy = int(math.floor(y_box + 0.5))
    m = _usable_box(bad, cx, cy, half, px, py)
    if m < (2 * half + 1) ** 2:
        flags |= EDGE
    npar = 3 if free else 1
    if m <= npar:
        return nan, nan, nan, nan, nan, nan, nan, flags | PSF_FIT_FAILED
    x = x_start
    y = y_start
    if not free:
        f = 0.0  # a fixed position is one linear step from zero flux
    elif math.isfinite(f_start) and f_start > 0.0:
        f = f_start
    else:
        f = _linear_flux(image, wvar, epsf, oversample, px, py, m, x, y)
        if not math.isfinite(f):
            return nan, nan, nan, nan, nan, nan, nan, flags | PSF_FIT_FAILED
    row = np.zeros(npar)
    hmat = np.zeros((npar, npar))
    rhs = np.zeros(npar)
    converged = not free
    for it in range(MAX_ITER if free else 1):
        # normal equations of the weighted least squares at the current parameters
        hmat[:, :] = 0.0
        rhs[:] = 0.0
        for k in range(m):
            p = _jacobian_row(epsf, oversample, px[k] - x, py[k] - y, f, free, row)
            w = 1.0 / wvar[py[k], px[k]]
            r = image[py[k], px[k]] - f * p
            for i in range(npar):
                rhs[i] += w * row[i] * r
                for j in range(i + 1):
                    hmat[i, j] += w * row[i] * row[j]
        if not _spd_factor(hmat, npar):
            return nan, nan, nan, nan, nan, nan, nan, flags | PSF_FIT_FAILED
        _spd_solve(hmat, rhs, npar)
        if not free:
            f += rhs[0]
            break
        move = max(abs(rhs[1]), abs(rhs[2]))
        scale = STEP_LIMIT / move if move > STEP_LIMIT else 1.0
        f += rhs[0] * scale
        x += rhs[1] * scale
        y += rhs[2] * scale
        if abs(x - cx) > max_shift or abs(y - cy) > max_shift:
            flags |= LEFT_BOX
            break
        if move < TOLERANCE:
            converged = True
            break
    if not converged and (flags & LEFT_BOX) == 0:
        flags |= NOT_CONVERGED
    # sandwich covariance and chi-square at the solution
    hmat[:, :] = 0.0
    meat = np.zeros((npar, npar))
    c2 = 0.0
    for k in range(m):
        p = _jacobian_row(epsf, oversample, px[k] - x, py[k] - y, f, free, row)
        vb = wvar[py[k], px[k]]
        vt = var[py[k], px[k]]
        # the background's share of the variance carries its correlation
        vs = vt + (bscale2 - 1.0) * min(vt, vb)
        for i in range(npar):
            for j in range(i + 1):
                hmat[i, j] += row[i] * row[j] / vb
                meat[i, j] += row[i] * row[j] * vs / (vb * vb)
        r = image[py[k], px[k]] - f * p
        c2 += r * r / vt
    chi2 = c2 / (m - npar)
    if not _spd_factor(hmat, npar):
        return nan, nan, nan, nan, nan, nan, nan, flags | PSF_FIT_FAILED
    # bread = H⁻¹, column by column from the factor
    bread = np.zeros((npar, npar))
    for j in range(npar):
        col = np.zeros(npar)
        col[j] = 1.0
        _spd_solve(hmat, col, npar)
        bread[:, j] = col
    for i in range(npar):
        for j in range(i):
            meat[j, i] = meat[i, j]
    cov = bread @ meat @ bread
    flux_err = math.sqrt(max(cov[0, 0], 0.0))
    x_err = math.sqrt(max(cov[1, 1], 0.0)) if free else nan
    y_err = math.sqrt(max(cov[2, 2], 0.0)) if free else nan
    return f, x, y, flux_err, x_err, y_err, chi2, flags


@numba.njit(cache=True, parallel=True)
def _pixel_arrays(data, err, weight_err, mask, image, bad, var, wvar, same_weights):
    """Fill the fit's pixel arrays: ``bad`` (unusable), ``image`` (0 where bad), ``var``/``wvar`` (1 where bad)."""
    ny, nx = data.shape
    masked = mask.shape[0] > 0
    for j in prange(ny):
        for i in range(nx):
            d = data[j, i]
            e = err[j, i]
            w = weight_err[j, i]
            b = not (math.isfinite(d) and math.isfinite(e) and e > 0.0 and math.isfinite(w) and w > 0.0)
            if masked and mask[j, i]:
                b = True
            bad[j, i] = b
            image[j, i] = 0.0 if b else d
            e = 1.0 if b else e
            var[j, i] = e * e
            if not same_weights:
                w = 1.0 if b else w
                wvar[j, i] = w * w


@numba.njit(cache=True, parallel=True)
def _fit_independent(data, var, wvar, bad, x0, y0, f0, epsfs, which, oversample, half, free, max_shift, bscale2,
                     flux, xf, yf, flux_err, x_err, y_err, chi2, flags):
    nbox = (2 * half + 1) ** 2
    for s in prange(x0.shape[0]):
        px = np.empty(nbox, np.int64)
        py = np.empty(nbox, np.int64)
        (flux[s], xf[s], yf[s], flux_err[s], x_err[s], y_err[s], chi2[s],
         flags[s]) = _fit_one(data, var, wvar, bad, x0[s], y0[s], f0[s], x0[s], y0[s], epsfs[which[s]], oversample,
                              half, free, max_shift, bscale2, px, py)


@numba.njit(cache=True)
def _visit(work, var, wvar, bad, s, first_pass, x0, y0, f0, epsfs, which, oversample, half, free, max_shift, bscale2,
           model_half, mx, my, mf, flux, xf, yf, flux_err, x_err, y_err, chi2, flags, px, py):
    """Fit source ``s`` on ``work`` with its own model put back, then subtract its new model from ``work``."""
    epsf = epsfs[which[s]]
    add_point_source(work, epsf, oversample, mx[s], my[s], mf[s], model_half)
    start_flux = f0[s] if first_pass else mf[s]
    (flux[s], xf[s], yf[s], flux_err[s], x_err[s], y_err[s], chi2[s],
     flags[s]) = _fit_one(work, var, wvar, bad, mx[s], my[s], start_flux, x0[s], y0[s], epsf, oversample,
                          half, free, max_shift, bscale2, px, py)
    # a fit that failed, left its box or has no positive flux leaves the previous model in place
    if (flags[s] & (PSF_FIT_FAILED | LEFT_BOX)) == 0 and flux[s] > 0.0:
        mx[s] = xf[s]
        my[s] = yf[s]
        mf[s] = flux[s]
    add_point_source(work, epsf, oversample, mx[s], my[s], -mf[s], model_half)


@numba.njit(cache=True)
def _overlap_lists(cx, cy, placed, reach):
    """Sources whose pixels within ``reach`` of their box centres may overlap: CSR ``(start, members)``.

    ``cx, cy`` are the box centres (pixels); sources not ``placed`` touch no pixel and overlap nothing.
    """
    n = cx.shape[0]
    size = 2 * reach
    lo_x = hi_x = lo_y = hi_y = 0
    first = True
    for s in range(n):
        if placed[s]:
            if first:
                lo_x = hi_x = cx[s]
                lo_y = hi_y = cy[s]
                first = False
            lo_x = min(lo_x, cx[s])
            hi_x = max(hi_x, cx[s])
            lo_y = min(lo_y, cy[s])
            hi_y = max(hi_y, cy[s])
    nbx = (hi_x - lo_x) // size + 1
    nby = (hi_y - lo_y) // size + 1
    bucket = np.full(n, -1, np.int64)
    count = np.zeros(nbx * nby + 1, np.int64)
    for s in range(n):
        if placed[s]:
            bucket[s] = ((cy[s] - lo_y) // size) * nbx + (cx[s] - lo_x) // size
            count[bucket[s] + 1] += 1
    for b in range(nbx * nby):
        count[b + 1] += count[b]
    members_of_bucket = np.empty(count[-1], np.int64)
    fill = count[:-1].copy()
    for s in range(n):
        if placed[s]:
            members_of_bucket[fill[bucket[s]]] = s
            fill[bucket[s]] += 1
    start = np.zeros(n + 1, np.int64)
    for sweep in range(2):
        members = np.empty(start[-1] if sweep == 1 else 0, np.int64)
        for s in range(n):
            if not placed[s]:
                if sweep == 0:
                    start[s + 1] = 0
                continue
            bx = (cx[s] - lo_x) // size
            by = (cy[s] - lo_y) // size
            k = start[s]
            for jy in range(max(by - 1, 0), min(by + 2, nby)):
                for jx in range(max(bx - 1, 0), min(bx + 2, nbx)):
                    b = jy * nbx + jx
                    for q in range(count[b], count[b + 1]):
                        t = members_of_bucket[q]
                        if t != s and abs(cx[t] - cx[s]) <= size and abs(cy[t] - cy[s]) <= size:
                            if sweep == 1:
                                members[k] = t
                            k += 1
            if sweep == 0:
                start[s + 1] = k - start[s]
        if sweep == 0:
            for s in range(n):
                start[s + 1] += start[s]
    return start, members


@numba.njit(cache=True)
def _run_tile(t, queue, queue_start, head, tail, tile, waiting, start, members, n, passes, work, var, wvar, bad, x0,
              y0, f0, epsfs, which, oversample, half, free, max_shift, bscale2, model_half, mx, my, mf, flux, xf, yf,
              flux_err, x_err, y_err, chi2, flags):
    """Fit the ready sources of tile ``t`` until none is left, releasing those of the same tile that wait on them."""
    nbox = (2 * half + 1) ** 2
    px = np.empty(nbox, np.int64)
    py = np.empty(nbox, np.int64)
    while head[t] < tail[t]:
        v = queue[queue_start[t] + head[t]]
        head[t] += 1
        p = v // n
        s = v - p * n
        _visit(work, var, wvar, bad, s, p == 0, x0, y0, f0, epsfs, which, oversample, half, free, max_shift, bscale2,
               model_half, mx, my, mf, flux, xf, yf, flux_err, x_err, y_err, chi2, flags, px, py)
        for w in _successors(s, p, n, passes, start, members):
            if w >= 0 and tile[w % n] == t:
                waiting[w] -= 1
                if waiting[w] == 0:
                    queue[queue_start[t] + tail[t]] = w
                    tail[t] += 1


@numba.njit(cache=True)
def _successors(s, p, n, passes, start, members):
    """Visits (``pass · n + source``) that must follow visit ``(p, s)``; -1 for none."""
    out = np.full(start[s + 1] - start[s] + 1, -1, np.int64)
    if p + 1 < passes:
        out[0] = (p + 1) * n + s
    for k in range(start[s], start[s + 1]):
        t = members[k]
        if t > s:
            out[k - start[s] + 1] = p * n + t
        elif p + 1 < passes:
            out[k - start[s] + 1] = (p + 1) * n + t
    return out


@numba.njit(cache=True, parallel=True)
def _fit_with_neighbours(data, var, wvar, bad, x0, y0, f0, epsfs, which, oversample, half, free, max_shift, bscale2,
                         passes, model_half, reach, tile_size, flux, xf, yf, flux_err, x_err, y_err, chi2, flags):
    """Fits of all sources, each with the current models of the others subtracted (``data`` becomes the residual).

    The result is that of visiting the sources in the order given, pass after pass. Two visits whose
    pixels (fit box and models) cannot overlap commute exactly, so each visit waits only for the earlier
    visits it overlaps (every pixel a visit touches lies within ``reach`` pixels of the source's box
    centre); the sources are grouped in tiles of ``tile_size`` pixels (at least ``2 · reach``), and tiles
    two apart, which share no pixel, are fitted in parallel. ``tile_size`` 0 visits them in the order given.
    """
    n = x0.shape[0]
    ny, nx = data.shape
    mx = x0.copy()
    my = y0.copy()
    mf = np.zeros(n)
    if tile_size == 0:
        nbox = (2 * half + 1) ** 2
        px = np.empty(nbox, np.int64)
        py = np.empty(nbox, np.int64)
        for p in range(passes):
            for s in range(n):
                _visit(data, var, wvar, bad, s, p == 0, x0, y0, f0, epsfs, which, oversample, half, free, max_shift,
                       bscale2, model_half, mx, my, mf, flux, xf, yf, flux_err, x_err, y_err, chi2, flags, px, py)
        return
    placed = np.empty(n, np.bool_)
    cx = np.zeros(n, np.int64)
    cy = np.zeros(n, np.int64)
    for s in range(n):
        placed[s] = math.isfinite(x0[s]) and math.isfinite(y0[s])
        if placed[s]:
            cx[s] = int(math.floor(min(max(x0[s], -2.0 * reach), nx + 2.0 * reach) + 0.5))
            cy[s] = int(math.floor(min(max(y0[s], -2.0 * reach), ny + 2.0 * reach) + 0.5))
    start, members = _overlap_lists(cx, cy, placed, reach)
    ntx = max((nx + tile_size - 1) // tile_size, 1)
    nty = max((ny + tile_size - 1) // tile_size, 1)
    ntiles = ntx * nty
    tile = np.empty(n, np.int64)
    sources_in_tile = np.zeros(ntiles + 1, np.int64)
    for s in range(n):
        tile[s] = (min(max(cy[s] // tile_size, 0), nty - 1) * ntx + min(max(cx[s] // tile_size, 0), ntx - 1)
                   if placed[s] else 0)
        sources_in_tile[tile[s] + 1] += 1
    queue_start = np.zeros(ntiles, np.int64)
    for t in range(1, ntiles):
        queue_start[t] = queue_start[t - 1] + passes * sources_in_tile[t]
    queue = np.empty(passes * n, np.int64)
    head = np.zeros(ntiles, np.int64)
    tail = np.zeros(ntiles, np.int64)
    # earlier overlapping visits each visit waits for
    waiting = np.empty(passes * n, np.int64)
    for s in range(n):
        earlier = 0
        for k in range(start[s], start[s + 1]):
            if members[k] < s:
                earlier += 1
        waiting[s] = earlier
        for p in range(1, passes):
            waiting[p * n + s] = 1 + start[s + 1] - start[s]
        if earlier == 0:
            queue[queue_start[tile[s]] + tail[tile[s]]] = s
            tail[tile[s]] += 1
    active = np.empty(ntiles, np.int64)
    first = np.empty(ntiles, np.int64)
    done = 0
    while done < passes * n:
        before = done
        for colour in range(4):
            m = 0
            for t in range(ntiles):
                if ((t // ntx) % 2) * 2 + (t % ntx) % 2 == colour and head[t] < tail[t]:
                    active[m] = t
                    first[m] = head[t]
                    m += 1
            for i in prange(m):
                _run_tile(active[i], queue, queue_start, head, tail, tile, waiting, start, members, n, passes, data,
                          var, wvar, bad, x0, y0, f0, epsfs, which, oversample, half, free, max_shift, bscale2,
                          model_half, mx, my, mf, flux, xf, yf, flux_err, x_err, y_err, chi2, flags)
            # release the visits of other tiles that waited on the ones just made
            for i in range(m):
                t = active[i]
                for q in range(first[i], head[t]):
                    v = queue[queue_start[t] + q]
                    p = v // n
                    for w in _successors(v - p * n, p, n, passes, start, members):
                        if w >= 0 and tile[w % n] != t:
                            waiting[w] -= 1
                            if waiting[w] == 0:
                                u = tile[w % n]
                                queue[queue_start[u] + tail[u]] = w
                                tail[u] += 1
                done += head[t] - first[i]
        if done == before:
            raise RuntimeError("fit schedule: visits wait on each other")


def fit_psf_sources(data, err, x, y, epsf, oversample: int, *, flux_guess=None, weight_err=None, mask=None,
                    half: int = 2, free_position: bool = True, background_scale: float = 1.0,
                    max_shift: float | None = None, subtract_neighbours: bool = False, passes: int = 1,
                    model_half: int | None = None, psf_index=None) -> dict:
    """Fit an oversampled effective PSF to point sources in an image.

    Parameters
    ----------
    data, err : ndarray (ny, nx)
        Background-subtracted image and its total 1-sigma error (one flux unit
        per pixel, e.g. DN/s or nJy).
    x, y : ndarray (n,)
        Starting (or, without ``free_position``, fixed) positions (pixels,
        0-indexed). Each fit box is centred on the pixel nearest them.
    epsf : ndarray (m, m) or (k, m, m)
        Unit-flux effective PSF (:mod:`romanflow.kernels.epsf` conventions:
        fraction of a source's flux per pixel, sampled ``oversample`` times
        per pixel, source at the central sample, m odd), or a stack of ``k``
        of them (a PSF varying over the field) chosen per source by ``psf_index``.
    oversample : int
        Samples per pixel of ``epsf``.
    flux_guess : ndarray (n,), optional
        Starting fluxes (data unit); where absent, non-finite or not positive,
        the linear fit at the starting position.
    weight_err : ndarray (ny, nx), optional
        Error defining the weights (data unit); ``err`` when not given.
    mask : ndarray of bool (ny, nx), optional
        Pixels not to use.
    half : int
        Half-size of the fit box ((2·half + 1)² pixels).
    free_position : bool
        Fit flux and position (Gauss-Newton), or the flux alone (linear).
    background_scale : float
        Actual / propagated noise of the background for a PSF-weighted sum.
    max_shift : float, optional
        Largest distance (pixels, along either axis) of the fitted position
        from the box centre before the fit stops with ``LEFT_BOX``;
        ``half + 0.5`` (the box's edge) by default.
    subtract_neighbours : bool
        Fit the sources one after the other, in the order given, each with the
        current models of all others subtracted (see the module notes).
    passes : int
        Passes over all sources with ``subtract_neighbours``.
    model_half : int, optional
        Half-size (pixels) of each source's model subtracted for its
        neighbours; the effective PSF's extent by default.
    psf_index : ndarray of int (n,), optional
        With a stack of effective PSFs, the one each source uses (0 by default).

    Returns
    -------
    dict of ndarray (n,)
        ``flux``, ``x``, ``y``, ``flux_err``, ``x_err``, ``y_err`` (NaN for a
        fixed position), ``reduced_chi2`` (with ``err``) and ``flags`` (int32,
        bits :data:`FIT_FLAGS` of :mod:`romanflow.source_flags`); NaN values
        where ``flags`` has ``PSF_FIT_FAILED``.

    Raises
    ------
    ValueError
        If the arrays' shapes disagree, ``epsf`` is not square with an odd
        side, or ``half``, ``oversample`` or ``passes`` is not positive.
    """
    data = np.asarray(data, np.float64)
    err = np.asarray(err, np.float64)
    weight_err = err if weight_err is None else np.asarray(weight_err, np.float64)
    if data.ndim != 2 or err.shape != data.shape or weight_err.shape != data.shape:
        raise ValueError(f"data {data.shape}, err {err.shape} and weight_err {weight_err.shape} must be one 2-D shape")
    stack = np.asarray(epsf, np.float64)
    if stack.ndim == 3:
        epsfs = np.ascontiguousarray(stack)
        check_epsf(epsfs[0], oversample)
        oversample = int(oversample)
    else:
        epsf, oversample = check_epsf(epsf, oversample)
        epsfs = epsf[None]
    half = int(half)
    passes = int(passes)
    if half < 0 or passes < 1:
        raise ValueError(f"half ({half}) must be >= 0 and passes ({passes}) >= 1")
    if mask is not None:
        mask = np.asarray(mask, bool)
        if mask.shape != data.shape:
            raise ValueError(f"mask {mask.shape} must have the shape of data {data.shape}")
    x = np.ascontiguousarray(x, np.float64)
    y = np.ascontiguousarray(y, np.float64)
    n = x.size
    if y.shape != x.shape or x.ndim != 1:
        raise ValueError(f"x {x.shape} and y {y.shape} must be one 1-D shape")
    f0 = np.full(n, np.nan) if flux_guess is None else np.ascontiguousarray(flux_guess, np.float64)
    if f0.shape != x.shape:
        raise ValueError(f"flux_guess {f0.shape} must have the shape of x {x.shape}")
    which = np.zeros(n, np.int64) if psf_index is None else np.ascontiguousarray(psf_index, np.int64)
    if which.shape != x.shape or (n and (which.min() < 0 or which.max() >= epsfs.shape[0])):
        raise ValueError(f"psf_index must be {x.shape} indices into {epsfs.shape[0]} effective PSFs")
    out = {k: np.full(n, np.nan) for k in ("flux", "x", "y", "flux_err", "x_err", "y_err", "reduced_chi2")}
    out["flags"] = np.zeros(n, np.int32)
    if n == 0:
        return out
    shift = half + 0.5 if max_shift is None else float(max_shift)
    same_weights = weight_err is err
    image = np.empty(data.shape)
    bad = np.empty(data.shape, np.bool_)
    var = np.empty(data.shape)
    wvar = var if same_weights else np.empty(data.shape)
    _pixel_arrays(data, err, weight_err, np.zeros((0, 0), np.bool_) if mask is None else mask, image, bad, var, wvar,
                  same_weights)
    results = (out["flux"], out["x"], out["y"], out["flux_err"], out["x_err"], out["y_err"], out["reduced_chi2"],
               out["flags"])
    if subtract_neighbours:
        extent = (epsfs.shape[1] - 1) // 2 // oversample
        model_half = extent if model_half is None else int(model_half)
        # every pixel a source's fits and models touch lies within `reach` of its box centre
        reach = max(half, model_half + max(math.floor(shift + 0.5), 0) + 1) if math.isfinite(shift) else math.inf
        tile = max(SCHEDULE_TILE, 2 * reach)
        if tile >= max(data.shape):  # one tile: the sources one after the other
            reach = tile = 0
        _fit_with_neighbours(image, var, wvar, bad, x, y, f0, epsfs, which, oversample, half, bool(free_position), shift,
                             float(background_scale) ** 2, passes, model_half, int(reach), int(tile), *results)
    else:
        _fit_independent(image, var, wvar, bad, x, y, f0, epsfs, which, oversample, half, bool(free_position), shift,
                         float(background_scale) ** 2, *results)
    failed = (out["flags"] & PSF_FIT_FAILED) != 0
    for key in ("flux", "x", "y", "flux_err", "x_err", "y_err", "reduced_chi2"):
        out[key][failed] = np.nan
    return out
