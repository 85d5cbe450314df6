"""tweakreg: align an exposure's detectors to an astrometric reference catalog.

All detectors of an exposure share one pointing, so by default one fit is made
from the sources of all detectors together, in the gnomonic tangent plane
(ξ east, η north, arcsec) about the exposure's reference point
(``wcsinfo.ra_ref``, ``dec_ref``):

1. Coarse search: for trial rotations spanning ±``max_rotation`` the source
   positions are rotated about the tangent point and every source–reference
   offset within ``searchrad`` is voted into a 2-D histogram; the densest cell
   gives the rotation and shift (handles ~2″ and ~0.05° errors).
2. Matching: one-to-one nearest neighbours within ``tolerance``.
3. Fit: ``ref = s·R(θ)·src + t`` (``rshift``: s = 1; ``rscale``: s free) by weighted
   least squares (weights 1/σ² from the PSF-fit and catalog position errors)
   with ``nclip`` rounds of ``sigma`` clipping; then the match
   tolerance shrinks to a few times the residual RMS and the fit is redone.
4. The fit becomes a new pointing: the reference point moves to the image of
   the tangent point, ``roll_ref`` changes by −θ, the velocity-aberration scale
   by s. Every detector's gwcs is rebuilt from its own distortion and the new
   pointing; steps 2–4 repeat until the correction is negligible.

Too few matches keep the WCS unchanged, warn, and record the failure in
``meta.wcs_fit_results`` (``meta.cal_step.tweakreg = 'SKIPPED'``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import replace

import numpy as np

from romanflow import geometry
from romanflow.astrometry.detect import add_sky_positions
from romanflow.astrometry.refcat import decimal_year, refcat_at_epoch
from romanflow.provenance import COMPLETE, SKIPPED, mark_step
from romanflow.source_flags import SOURCE_FLAGS
from romanflow.detector import PIXEL_SCALE
from romanflow.errors import ParameterError
from romanflow.exposure import get_meta

#: Flags that exclude a source from the fit.
EXCLUDE_FLAGS = SOURCE_FLAGS["SATURATED"] | SOURCE_FLAGS["EDGE"] | SOURCE_FLAGS["PSF_FIT_FAILED"]


#: Added in quadrature to every pair's position error (arcsec): PSF-model and distortion residuals.
POSITION_ERROR_FLOOR = 0.001


class TweakregWarning(UserWarning):
    """The alignment could not be made; the WCS was kept."""


# ----------------------------------------------------------------- tangent plane
def tangent_plane(ra, dec, ra0, dec0):
    """Gnomonic projection about (ra0, dec0): (ξ east, η north) in arcsec."""
    ra, dec = np.radians(np.asarray(ra, float)), np.radians(np.asarray(dec, float))
    a0, d0 = math.radians(ra0), math.radians(dec0)
    cosc = math.sin(d0) * np.sin(dec) + math.cos(d0) * np.cos(dec) * np.cos(ra - a0)
    xi = np.cos(dec) * np.sin(ra - a0) / cosc
    eta = (math.cos(d0) * np.sin(dec) - math.sin(d0) * np.cos(dec) * np.cos(ra - a0)) / cosc
    return np.degrees(xi) * 3600.0, np.degrees(eta) * 3600.0


def from_tangent_plane(xi, eta, ra0, dec0):
    """Inverse of :func:`tangent_plane`: (ξ, η) arcsec -> (ra, dec) deg."""
    x = np.radians(np.asarray(xi, float) / 3600.0)
    y = np.radians(np.asarray(eta, float) / 3600.0)
    a0, d0 = math.radians(ra0), math.radians(dec0)
    rho = np.hypot(x, y)
    c = np.arctan(rho)
    with np.errstate(invalid="ignore", divide="ignore"):
        dec = np.arcsin(np.cos(c) * math.sin(d0) + np.where(rho > 0, y * np.sin(c) * math.cos(d0) / rho, 0.0))
    ra = a0 + np.arctan2(x * np.sin(c), rho * math.cos(d0) * np.cos(c) - y * math.sin(d0) * np.sin(c))
    return np.degrees(ra) % 360.0, np.degrees(dec)


# ------------------------------------------------------------------ matching
def coarse_offset(src, ref, *, searchrad=3.0, max_rotation=0.1, bin_arcsec=0.25):
    """Rotation (deg, about the origin) and shift (arcsec) maximising offset votes.

    Returns ``(theta_deg, shift (2,), votes)``.
    """
    from scipy.spatial import cKDTree

    if len(src) == 0 or len(ref) == 0:
        return 0.0, np.zeros(2), 0
    tree = cKDTree(ref)
    radius = max(float(np.max(np.hypot(src[:, 0], src[:, 1]))), 1.0)
    step = math.degrees(bin_arcsec / radius)
    n = int(math.ceil(max_rotation / step)) if max_rotation > 0 else 0
    edges = np.arange(-searchrad, searchrad + bin_arcsec, bin_arcsec)
    best = (0, 0.0, np.zeros(2))
    for theta in np.linspace(-n * step, n * step, 2 * n + 1):
        c, s = math.cos(math.radians(theta)), math.sin(math.radians(theta))
        rotated = np.column_stack([c * src[:, 0] - s * src[:, 1], s * src[:, 0] + c * src[:, 1]])
        pairs = tree.query_ball_point(rotated, searchrad)
        d = [ref[p] - rotated[k] for k, p in enumerate(pairs) if p]
        if not d:
            continue
        d = np.vstack(d)
        hist, _, _ = np.histogram2d(d[:, 0], d[:, 1], bins=(edges, edges))
        # votes in 2x2 neighbourhoods (a true offset may straddle a bin edge)
        pooled = hist[:-1, :-1] + hist[1:, :-1] + hist[:-1, 1:] + hist[1:, 1:]
        i, j = np.unravel_index(np.argmax(pooled), pooled.shape)
        votes = int(pooled[i, j])
        if votes > best[0]:
            near = ((d[:, 0] >= edges[i]) & (d[:, 0] < edges[i + 2]) & (d[:, 1] >= edges[j])
                    & (d[:, 1] < edges[j + 2]))
            best = (votes, float(theta), np.median(d[near], axis=0))
    return best[1], best[2], best[0]


def match_one_to_one(src, ref, tolerance):
    """Indices (i_src, i_ref) of mutual nearest neighbours closer than ``tolerance``."""
    from scipy.spatial import cKDTree

    if len(src) == 0 or len(ref) == 0:
        return np.zeros(0, int), np.zeros(0, int)
    d, j = cKDTree(ref).query(src, distance_upper_bound=tolerance)
    ok = np.isfinite(d)
    i = np.nonzero(ok)[0]
    j = j[ok]
    if len(i) == 0:
        return i, j
    _, back = cKDTree(src).query(ref[j])
    mutual = back == i
    return i[mutual], j[mutual]


def fit_similarity(src, ref, *, fitgeometry="rshift", weights=None):
    """Weighted least-squares ``ref ≈ s·R(θ)·src + t``. Returns (theta_deg, scale, t (2,)).

    ``weights`` (n,): 1/σ² of each pair (equal weights when None).
    """
    w = np.ones(len(src)) if weights is None else np.asarray(weights, float)
    wsum = max(float(w.sum()), 1e-300)
    cs, cr = (w @ src) / wsum, (w @ ref) / wsum
    a, b = src - cs, ref - cr
    sxx = np.sum(w * (a[:, 0] * b[:, 0] + a[:, 1] * b[:, 1]))
    sxy = np.sum(w * (a[:, 0] * b[:, 1] - a[:, 1] * b[:, 0]))
    theta = math.atan2(sxy, sxx)
    if fitgeometry == "rscale":
        scale = math.hypot(sxx, sxy) / max(np.sum(w[:, None] * a**2), 1e-300)
    elif fitgeometry == "rshift":
        scale = 1.0
    else:
        raise ValueError(f"unknown fitgeometry {fitgeometry!r}: expected 'rshift' or 'rscale'")
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]]) * scale
    t = cr - rot @ cs
    return math.degrees(theta), scale, t


def _apply(theta_deg, scale, t, xy):
    c, s = math.cos(math.radians(theta_deg)), math.sin(math.radians(theta_deg))
    rot = np.array([[c, -s], [s, c]]) * scale
    return xy @ rot.T + t


def clipped_fit(src, ref, *, fitgeometry="rshift", nclip=3, sigma=3.0, min_matches=3, errors=None):
    """:func:`fit_similarity` with ``nclip`` rounds of ``sigma`` clipping.

    ``errors`` (n,): 1-σ position uncertainty of each pair (arcsec, per axis);
    the fit is weighted by 1/errors² and pairs are clipped on their residual in
    units of their error, scaled by the RMS of those normalised residuals.

    Returns (theta_deg, scale, t, keep mask, residuals (n, 2) arcsec).
    """
    err = np.ones(len(src)) if errors is None else np.maximum(np.asarray(errors, float), 1e-6)
    weights = 1.0 / err**2
    keep = np.ones(len(src), bool)
    for _ in range(nclip + 1):
        if keep.sum() < min_matches:
            break
        theta, scale, t = fit_similarity(src[keep], ref[keep], fitgeometry=fitgeometry, weights=weights[keep])
        resid = ref - _apply(theta, scale, t, src)
        chi = np.hypot(resid[:, 0], resid[:, 1]) / err
        spread = math.sqrt(np.mean(chi[keep] ** 2) / 2.0) if keep.any() else 0.0
        new_keep = chi <= sigma * max(spread, 1e-6) * math.sqrt(2.0)
        if np.array_equal(new_keep, keep):
            break
        keep = new_keep
    theta, scale, t = fit_similarity(src[keep], ref[keep], fitgeometry=fitgeometry, weights=weights[keep]) \
        if keep.sum() >= 2 else (0.0, 1.0, np.zeros(2))
    resid = ref - _apply(theta, scale, t, src)
    return theta, scale, t, keep, resid


# -------------------------------------------------------------------- driver
def _xy(table):
    x = table["x"]
    y = table["y"]
    return (np.asarray(getattr(x, "value", x), float), np.asarray(getattr(y, "value", y), float))


def _position_error(table):
    """Per-axis 1-σ position error of each source (arcsec), from the PSF-fit x/y errors."""
    x_err = np.asarray(getattr(table["x_err"], "value", table["x_err"]), float)
    y_err = np.asarray(getattr(table["y_err"], "value", table["y_err"]), float)
    err = np.sqrt((x_err**2 + y_err**2) / 2.0) * PIXEL_SCALE
    return np.where(np.isfinite(err), err, 1.0)


def _usable(table, snr_min):
    flags = np.asarray(table["flags"]).astype(np.int64)
    snr = np.asarray(getattr(table["snr"], "value", table["snr"]), float)
    return ((flags & EXCLUDE_FLAGS) == 0) & np.isfinite(snr) & (snr >= snr_min)


def _pointing_after(pointing, theta_deg, scale, t):
    """Pointing whose sky positions are the old ones moved by the tangent-plane transform."""
    ra, dec = from_tangent_plane(np.array([t[0]]), np.array([t[1]]), pointing.ra_ref, pointing.dec_ref)
    return replace(pointing, ra_ref=float(ra[0]), dec_ref=float(dec[0]),
                   roll_ref=float((pointing.roll_ref - theta_deg) % 360.0),
                   va_scale=float(pointing.va_scale * scale))


def _distortion(image):
    wcs = image.wcs
    if wcs is None:
        return None
    return wcs.get_transform("detector", "v2v3")


def _set_wcs(image, pointing):
    detector = get_meta(image.meta, "instrument.detector")
    size = image.data.shape[-1]
    image.wcs = geometry.detector_gwcs(detector, pointing, science_size=size, distortion=_distortion(image))
    info = image.meta.setdefault("wcsinfo", {})
    info.update({"ra_ref": pointing.ra_ref, "dec_ref": pointing.dec_ref, "roll_ref": pointing.roll_ref})
    lo, hi = -0.5, size - 0.5
    ra, dec = image.wcs(np.array([lo, hi, hi, lo]), np.array([lo, lo, hi, hi]), with_bounding_box=False)
    info["s_region"] = geometry.polygon_s_region(ra, dec)
    image.meta.setdefault("velocity_aberration", {})["scale_factor"] = float(pointing.va_scale)


def _fail(images, reason, n_matches, fitgeometry, refcat_name):
    warnings.warn(f"tweakreg: {reason}; WCS left unchanged", TweakregWarning, stacklevel=3)
    for image in images:
        image.meta["wcs_fit_results"] = {
            "status": "FAILED", "reason": reason, "n_matches": int(n_matches), "fitgeom": fitgeometry,
            "refcat": refcat_name,
        }
        mark_step(image.meta, "tweakreg", SKIPPED)


def _align_group(images, catalogs, refcat, *, fitgeometry, searchrad, max_rotation, tolerance, minobj,
                 nclip, sigma, snr_min, refcat_name, max_iterations=4):
    pointing = geometry.pointing_from_meta(images[0].meta)
    if any(im.wcs is None for im in images):
        _fail(images, "an image has no WCS (run assign_wcs first)", 0, fitgeometry, refcat_name)
        return
    start = get_meta(images[0].meta, "exposure.start_time")
    ref = refcat_at_epoch(refcat, decimal_year(start)) if start is not None else refcat
    if len(ref) == 0:
        _fail(images, "the reference catalog is empty", 0, fitgeometry, refcat_name)
        return
    ref_xy = np.column_stack(tangent_plane(ref["ra"].to_numpy(), ref["dec"].to_numpy(),
                                           pointing.ra_ref, pointing.dec_ref))
    good = [_usable(cat, snr_min) for cat in catalogs]
    pix = [_xy(cat) for cat in catalogs]
    if sum(int(g.sum()) for g in good) < minobj:
        _fail(images, f"only {sum(int(g.sum()) for g in good)} usable sources (need {minobj})", 0,
              fitgeometry, refcat_name)
        return

    src = np.column_stack(tangent_plane(*_sky(images, pix, good).T, pointing.ra_ref, pointing.dec_ref))
    src_err = np.concatenate([_position_error(cat)[g] for cat, g in zip(catalogs, good)])
    ref_err = np.hypot(ref["ra_error"].to_numpy(float), ref["dec_error"].to_numpy(float)) / math.sqrt(2) / 1000.0
    # keep the reference stars near the sources
    lo, hi = src.min(axis=0) - 2 * searchrad - 10, src.max(axis=0) + 2 * searchrad + 10
    near = np.all((ref_xy >= lo) & (ref_xy <= hi), axis=1)
    ref_xy = ref_xy[near]
    ref_err = ref_err[near]
    theta0, shift0, votes = coarse_offset(src, ref_xy, searchrad=searchrad, max_rotation=max_rotation)
    if votes < max(3, minobj // 2):
        _fail(images, f"no consistent offset between sources and reference stars ({votes} votes)", votes,
              fitgeometry, refcat_name)
        return
    guess = (theta0, 1.0, shift0)
    current = pointing
    total = None
    rms_total = tolerance
    for iteration in range(max_iterations):
        moved = _apply(*guess, src)
        tol = tolerance if iteration == 0 else min(tolerance, max(5.0 * rms_total, 0.05))
        i, j = match_one_to_one(moved, ref_xy, tol)
        if len(i) < minobj:
            _fail(images, f"only {len(i)} matches within {tol:.2f} arcsec (need {minobj})", len(i),
                  fitgeometry, refcat_name)
            if current is not pointing:  # restore the original WCS
                for im in images:
                    _set_wcs(im, pointing)
            return
        errors = np.sqrt(src_err[i] ** 2 + ref_err[j] ** 2 + POSITION_ERROR_FLOOR**2)
        theta, scale, t, keep, resid = clipped_fit(src[i], ref_xy[j], fitgeometry=fitgeometry, nclip=nclip,
                                                   sigma=sigma, errors=errors)
        rms = np.sqrt(np.mean(resid[keep] ** 2, axis=0))
        rms_total = float(np.hypot(*rms))
        # express the fit, made in the tangent plane of `current`, as a new pointing
        new = _pointing_after(current, theta, scale, t)
        for im in images:
            _set_wcs(im, new)
        # size of this correction at the field edge (~1500 arcsec from the reference point)
        step = math.hypot(*t) + abs(math.radians(theta)) * 1500.0 + abs(scale - 1.0) * 1500.0
        total = (new, int(keep.sum()), len(i), rms, theta, scale, t)
        current = new
        src = np.column_stack(tangent_plane(*_sky(images, pix, good).T, current.ra_ref, current.dec_ref))
        ref_xy = np.column_stack(tangent_plane(ref["ra"].to_numpy()[near], ref["dec"].to_numpy()[near],
                                               current.ra_ref, current.dec_ref))
        guess = (0.0, 1.0, np.zeros(2))
        if step < 1e-4:  # arcsec
            break
    new, n_used, n_matched, rms, _, _, _ = total
    dra, ddec = tangent_plane(np.array([new.ra_ref]), np.array([new.dec_ref]), pointing.ra_ref, pointing.dec_ref)
    result = {
        "status": "SUCCESS",
        "fitgeom": fitgeometry,
        "refcat": refcat_name,
        "n_matches": int(n_matched),
        "n_used": int(n_used),
        "rms_arcsec": [float(rms[0]), float(rms[1])],
        "shift_arcsec": [float(dra[0]), float(ddec[0])],
        "rotation_deg": float(((pointing.roll_ref - new.roll_ref + 180.0) % 360.0) - 180.0),
        "scale": float(new.va_scale / pointing.va_scale),
        "ra_ref": float(new.ra_ref),
        "dec_ref": float(new.dec_ref),
        "roll_ref": float(new.roll_ref),
        "detectors": [str(get_meta(im.meta, "instrument.detector")) for im in images],
    }
    for im, cat in zip(images, catalogs):
        im.meta["wcs_fit_results"] = dict(result)
        mark_step(im.meta, "tweakreg", COMPLETE)
        add_sky_positions(cat, im.wcs)


def _sky(images, pix, good):
    radec = []
    for im, (x, y), g in zip(images, pix, good):
        if g.any():
            radec.append(np.column_stack(im.wcs(x[g], y[g], with_bounding_box=False)))
    return np.vstack(radec)


def tweakreg(images, catalogs, refcat, *, fitgeometry: str = "rshift", per_detector: bool = False,
             searchrad: float = 3.0, max_rotation: float = 0.1, tolerance: float = 0.7, minobj: int = 10,
             nclip: int = 3, sigma: float = 3.0, snr_min: float = 10.0, refcat_name: str = ""):
    """Align L2 images to a reference catalog; update their WCS and metadata in place.

    Parameters
    ----------
    images : list of RateImage
        Detectors with a WCS (assign_wcs done). Images sharing
        ``meta.observation.observation_id`` and ``exposure.start_time`` are fit
        together (one exposure), unless ``per_detector``.
    catalogs : list of astropy tables
        Source tables of the images (:func:`~romanflow.astrometry.detect.source_catalog`);
        their ``ra``/``dec`` are updated.
    refcat : pandas.DataFrame
        Reference catalog (:func:`~romanflow.astrometry.refcat.read_refcat`);
        propagated to each exposure's epoch.
    fitgeometry : {'rshift', 'rscale'}
        Shift + rotation, or shift + rotation + scale.
    per_detector : bool
        Fit every detector on its own.
    searchrad : float
        Largest initial offset searched (arcsec).
    max_rotation : float
        Largest initial rotation searched (deg).
    tolerance : float
        Matching radius after the coarse search (arcsec).
    minobj : int
        Fewest matches for a fit.
    nclip, sigma : int, float
        Sigma-clipping rounds and threshold.
    snr_min : float
        Sources below this S/N are not used.

    Returns
    -------
    list of RateImage
        The same images (updated). ``meta.wcs_fit_results['status']`` is
        ``'SUCCESS'`` or ``'FAILED'`` (with a ``reason``).
    """
    images = list(images)
    catalogs = list(catalogs)
    if len(images) != len(catalogs):
        raise ValueError("tweakreg needs one source catalog per image")
    if fitgeometry not in ("rshift", "rscale"):
        raise ValueError(f"unknown fitgeometry {fitgeometry!r}: expected 'rshift' or 'rscale'")
    for name, value in (("searchrad", searchrad), ("tolerance", tolerance), ("sigma", sigma)):
        if not (math.isfinite(value) and value > 0):
            raise ParameterError(name, value, "must be a finite number > 0")
    if not (math.isfinite(max_rotation) and max_rotation >= 0):
        raise ParameterError("max_rotation", max_rotation, "must be a finite number >= 0 (deg)")
    if int(minobj) != minobj or minobj < 1:
        raise ParameterError("minobj", minobj, "must be a positive integer")
    groups: dict = {}
    for k, im in enumerate(images):
        if per_detector:
            key = k
        else:
            key = (get_meta(im.meta, "observation.observation_id"), str(get_meta(im.meta, "exposure.start_time")))
        groups.setdefault(key, []).append(k)
    for members in groups.values():
        _align_group([images[k] for k in members], [catalogs[k] for k in members], refcat,
                     fitgeometry=fitgeometry, searchrad=searchrad, max_rotation=max_rotation,
                     tolerance=tolerance, minobj=minobj, nclip=nclip, sigma=sigma, snr_min=snr_min,
                     refcat_name=refcat_name)
    return images
