"""Comparisons of products with the simulator's truth.

Used by the main job, the benchmarks and the tests: rate accuracy of L2 images,
jump-detection completeness, and catalog completeness, photometry and astrometry.

A measured source is the true source it lies within :data:`MATCH_RADIUS_ARCSEC` of
(:func:`match_sky`); every function here that matches to the truth takes that radius
as its default.
"""

from __future__ import annotations

import numpy as np

from romanflow import dq as flags
from romanflow.detector import PIXEL_SCALE, ReadPattern

#: Largest separation (arcsec) at which a measured source is taken to be a true one: 0.9 detector
#: pixel, 1.8 mosaic pixels, about 60 times the position error of a star at S/N 50 (1.5 mas).
MATCH_RADIUS_ARCSEC = 0.1

#: Radius (arcsec) within which another true source blends into a star's measured flux (any
#: source brighter than a fraction of the star); farther out, to :data:`BLEND_WING_RADIUS_ARCSEC`,
#: only sources bright enough for their PSF wings to matter (:func:`blended_stars`).
BLEND_RADIUS_ARCSEC = 0.5

#: Farthest separation (arcsec) at which a much brighter source's PSF wings blend into a star.
BLEND_WING_RADIUS_ARCSEC = 2.0

#: AB magnitude of a flux of 1 nJy.
AB_ZEROPOINT_NJY = 31.4


def _unit_vectors(ra, dec) -> np.ndarray:
    """Unit vectors (n, 3) of sky positions (deg)."""
    ra, dec = np.radians(ra), np.radians(dec)
    return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])


def _chord(radius_arcsec: float) -> float:
    """Chord length between unit vectors ``radius_arcsec`` apart on the sphere."""
    return 2 * np.sin(np.radians(radius_arcsec / 3600.0) / 2)


def _arcsec(chord) -> np.ndarray:
    """Angle (arcsec) of a chord between unit vectors."""
    return np.degrees(2 * np.arcsin(np.clip(np.asarray(chord) / 2, 0, 1))) * 3600.0


def rate_accuracy(rate, err, dq, truth, decades=((0.1, 1.0), (1.0, 10.0), (10.0, 100.0), (100.0, 1e5)),
                  min_pixels: int = 500) -> dict:
    """Bias and error honesty of a rate image (DN/s) against the noiseless truth (DN/s).

    A pixel is usable when its ``dq`` lacks DO_NOT_USE, its rate is finite and its
    ``err`` (DN/s) is positive. Returns ``pixels`` (usable), ``pixels_above_1dns`` and
    ``bias_above_1dns``, the median of (rate − truth)/truth over usable pixels with
    truth above 1 DN/s (NaN when there are none), and ``decades``: per flux decade
    (lo, hi] in DN/s with at least ``min_pixels`` usable pixels without JUMP_DET, the
    pixel count, median relative bias and ``z_width``, the 5-sigma-clipped standard
    deviation of (rate − truth)/err. A decade with fewer pixels is left out.
    """
    from astropy.stats import sigma_clipped_stats

    rate, err, dq, truth = (np.asarray(a) for a in (rate, err, dq, truth))
    if not rate.shape == err.shape == dq.shape == truth.shape:
        raise ValueError(f"rate, err, dq and truth shapes differ: {rate.shape}, {err.shape}, {dq.shape}, "
                         f"{truth.shape}")
    usable = ((dq & flags.DO_NOT_USE) == 0) & np.isfinite(rate) & (err > 0) & np.isfinite(truth)
    bright = usable & (truth > 1.0)
    out = {
        "pixels": int(usable.sum()),
        "pixels_above_1dns": int(bright.sum()),
        "bias_above_1dns": float(np.median((rate[bright] - truth[bright]) / truth[bright])) if bright.any()
        else float("nan"),
        "decades": [],
    }
    clean = usable & ((dq & flags.JUMP_DET) == 0)
    for lo, hi in decades:
        sel = clean & (truth > lo) & (truth <= hi)
        if sel.sum() < min_pixels:
            continue
        z = (rate[sel] - truth[sel]) / err[sel].astype(np.float64)
        out["decades"].append({
            "range_dns": (lo, hi),
            "pixels": int(sel.sum()),
            "bias": float(np.median((rate[sel] - truth[sel]) / truth[sel])),
            "z_width": float(sigma_clipped_stats(z, sigma=5.0)[2]),
        })
    return out


def jump_significance(first_read, amplitude_dn, rate_dn, read_noise, read_pattern: ReadPattern) -> np.ndarray:
    """Largest step each cosmic-ray hit makes in consecutive resultant differences, in sigma.

    Parameters
    ----------
    first_read : int array
        1-based number of the first read that contains the hit (the truth table's ``read``).
    amplitude_dn : array
        Charge of the hit (DN).
    rate_dn : array
        Count rate of the pixel (DN/s), for the Poisson part of the noise.
    read_noise : array
        Read noise per read (DN).
    read_pattern : ReadPattern
        The exposure's read pattern. A hit in read 1 only changes the intercept: significance 0.
    """
    reads = [np.asarray(r) for r in read_pattern.read_pattern]
    t, tau, n = read_pattern.mean_times, read_pattern.tau, read_pattern.n_reads
    fraction = np.array([[np.mean(rr >= k) for rr in reads] for k in np.asarray(first_read)])
    if fraction.size == 0:
        return np.zeros(0)
    step = np.diff(fraction, axis=1) * np.asarray(amplitude_dn)[:, None]
    var = (np.asarray(read_noise)[:, None] ** 2 * (1 / n[:-1] + 1 / n[1:])
           + np.asarray(rate_dn)[:, None] * (tau[:-1] + tau[1:] - 2 * t[:-1]))
    return np.max(step / np.sqrt(var), axis=1)


def jump_completeness(dq, cosmic_rays, rate_dn, gain, read_noise, read_pattern: ReadPattern,
                      min_sigma: float = 10.0) -> dict:
    """Fraction of injected hits above ``min_sigma`` flagged JUMP_DET, and the false-flag rate.

    ``dq`` and the per-pixel arrays (``rate_dn`` DN/s, ``gain`` e/DN, ``read_noise`` DN)
    are science-area images; ``cosmic_rays`` has columns x, y (science pixels), read
    (1-based) and amplitude_e. Returns ``hits``, the number of hits above ``min_sigma``
    (:func:`jump_significance`) on pixels without DO_NOT_USE or SATURATED;
    ``completeness``, the fraction of those flagged JUMP_DET (NaN without any); and
    ``false_rate``, the fraction of pixels without hits or DO_NOT_USE flagged JUMP_DET
    (NaN without any).
    """
    x = cosmic_rays["x"].to_numpy(int)
    y = cosmic_rays["y"].to_numpy(int)
    significance = jump_significance(cosmic_rays["read"].to_numpy(int),
                                     cosmic_rays["amplitude_e"].to_numpy() / gain[y, x],
                                     rate_dn[y, x], read_noise[y, x], read_pattern)
    usable = (dq[y, x] & (flags.DO_NOT_USE | flags.SATURATED)) == 0
    strong = (significance > min_sigma) & usable
    flagged = (dq[y, x] & flags.JUMP_DET) != 0
    hit = np.zeros(dq.shape, bool)
    hit[y, x] = True
    clean = ~hit & ((dq & flags.DO_NOT_USE) == 0)
    return {
        "hits": int(strong.sum()),
        "completeness": float(flagged[strong].mean()) if strong.any() else float("nan"),
        "false_rate": float(((dq[clean] & flags.JUMP_DET) != 0).mean()) if clean.any() else float("nan"),
    }


def match_sky(ra1, dec1, ra2, dec2, radius_arcsec: float = MATCH_RADIUS_ARCSEC, *, one_to_one: bool = False):
    """Match sky positions (deg) of list 1 to list 2 closer than ``radius_arcsec``.

    Returns (index1, index2, separation in arcsec), in increasing index1. By default each
    entry of list 1 takes its nearest entry of list 2, so several may take the same one
    (a cone search when list 2 is one position). With ``one_to_one`` the closest pairs
    are taken first and no entry of either list is used twice: an entry whose nearest
    partner is taken by a closer one takes its next nearest within the radius, or none.
    Positions that are not finite match nothing.
    """
    from scipy.spatial import cKDTree

    ra1, dec1, ra2, dec2 = (np.asarray(a, dtype=float).ravel() for a in (ra1, dec1, ra2, dec2))
    if ra1.shape != dec1.shape or ra2.shape != dec2.shape:
        raise ValueError(f"ra and dec lengths differ: {ra1.shape} vs {dec1.shape}, {ra2.shape} vs {dec2.shape}")
    ok1 = np.flatnonzero(np.isfinite(ra1) & np.isfinite(dec1))
    ok2 = np.flatnonzero(np.isfinite(ra2) & np.isfinite(dec2))
    if len(ok1) == 0 or len(ok2) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    chord = _chord(radius_arcsec)
    tree2 = cKDTree(_unit_vectors(ra2[ok2], dec2[ok2]))
    if not one_to_one:
        dist, idx = tree2.query(_unit_vectors(ra1[ok1], dec1[ok1]), distance_upper_bound=chord)
        hit = dist < chord
        return ok1[hit], ok2[idx[hit]], _arcsec(dist[hit])
    tree1 = cKDTree(_unit_vectors(ra1[ok1], dec1[ok1]))
    pairs = tree1.sparse_distance_matrix(tree2, chord, output_type="ndarray")
    pairs = pairs[pairs["v"] < chord]
    used1, used2 = np.zeros(len(ok1), bool), np.zeros(len(ok2), bool)
    keep = []
    for k in np.lexsort((pairs["j"], pairs["i"], pairs["v"])):  # closest first; ties by index
        i, j = pairs["i"][k], pairs["j"][k]
        if not (used1[i] or used2[j]):
            used1[i] = used2[j] = True
            keep.append(k)
    chosen = pairs[np.array(keep, dtype=int)]
    chosen = chosen[np.argsort(chosen["i"], kind="stable")]
    return ok1[chosen["i"]], ok2[chosen["j"]], _arcsec(chosen["v"])


def point_source_flux_column(catalog, band: str) -> str:
    """The catalog's best point-source flux column for a band: the PSF fits on the exposures
    (``psf_exp_<band>_flux``) when the catalog has them, else the PSF fit on the image."""
    b = band.lower()
    name = f"psf_exp_{b}_flux"
    if name in catalog.colnames and np.isfinite(np.asarray(catalog[name], dtype=float)).any():
        return name
    return f"psf_{b}_flux"


def _matched_stars(catalog, truth, match_radius_arcsec):
    """The true stars and the one-to-one matches (catalog index, star index, arcsec) of the catalog to them."""
    stars = truth[truth["type"] == "star"]
    ic, it, sep = match_sky(np.asarray(catalog["ra"], float), np.asarray(catalog["dec"], float),
                            stars["ra"].to_numpy(), stars["dec"].to_numpy(), match_radius_arcsec, one_to_one=True)
    return stars, ic, it, sep


def survey_truth(run_dir):
    """The simulated scene of a run folder (``scene/scene.parquet``), positions moved to the epoch
    of its observations (stars have proper motions), as a pandas DataFrame."""
    from pathlib import Path

    import pandas as pd

    from romanflow.astrometry.refcat import decimal_year
    from romanflow.formats import read_l2
    from romanflow.simulate import Scene

    run_dir = Path(run_dir)
    scene = pd.read_parquet(run_dir / "scene" / "scene.parquet")
    first = next((run_dir / "l2").glob("*_cal.asdf"))
    epoch = decimal_year(read_l2(first).meta["exposure"]["start_time"])
    scene["ra"], scene["dec"] = Scene(scene).positions_at(epoch)
    return scene


def covered_by(image, truth, margin_pix: float = 15.0) -> np.ndarray:
    """True for true sources on usable pixels of an image (``data``, ``err``, ``wcs``), at least
    ``margin_pix`` from its edges.

    The pixel of a source is the one whose centre (integer 0-based coordinates) is nearest;
    it is usable when its data are finite and its error positive.
    """
    ny, nx = image.data.shape
    tx, ty = image.wcs.world_to_pixel_values(truth["ra"].to_numpy(), truth["dec"].to_numpy())
    tx, ty = np.nan_to_num(tx, nan=-1.0), np.nan_to_num(ty, nan=-1.0)
    inside = (tx > margin_pix) & (ty > margin_pix) & (tx < nx - margin_pix) & (ty < ny - margin_pix)
    ix = np.clip(np.floor(tx + 0.5).astype(int), 0, nx - 1)
    iy = np.clip(np.floor(ty + 0.5).astype(int), 0, ny - 1)
    return inside & np.isfinite(image.data[iy, ix]) & (image.err[iy, ix] > 0)


def blended_stars(truth, stars, band: str, *, radius_arcsec: float = BLEND_RADIUS_ARCSEC,
                  flux_fraction: float = 0.05, wing_radius_arcsec: float = BLEND_WING_RADIUS_ARCSEC) -> np.ndarray:
    """True for stars whose measured flux in ``band`` mixes in another true source.

    A source within ``radius_arcsec`` blends when brighter than ``flux_fraction`` of the star.
    Beyond, out to ``wing_radius_arcsec``, only its PSF wings reach the star's 5×5-pixel fit box,
    a share of its flux that falls about as ``d^-2.5`` with the distance ``d`` (1.8% at 0.5″,
    0.6% at 0.9″, 0.06% at 2″ for the F106 and F158 library PSFs): it blends when brighter than
    ``flux_fraction · (d / radius)^2.5`` times the star (a source 500 times brighter 0.9″ away
    adds three times a faint star's flux to its fit box).

    ``stars`` are rows of ``truth``: each finds itself among its neighbours and is not counted.
    """
    from scipy.spatial import cKDTree

    out = np.zeros(len(stars), bool)
    if len(stars) == 0 or len(truth) < 2:
        return out
    mags = truth[f"mag_{band.upper()}"].to_numpy()
    vectors = _unit_vectors(truth["ra"].to_numpy(float), truth["dec"].to_numpy(float))
    tree = cKDTree(vectors)
    star_vectors = _unit_vectors(stars["ra"].to_numpy(float), stars["dec"].to_numpy(float))
    near_lists = tree.query_ball_point(star_vectors, _chord(max(radius_arcsec, wing_radius_arcsec)))
    star_mags = stars[f"mag_{band.upper()}"].to_numpy()
    for i, (near, mag) in enumerate(zip(near_lists, star_mags)):
        near = np.asarray(near, int)
        d = _arcsec(np.linalg.norm(vectors[near] - star_vectors[i], axis=1))
        threshold = flux_fraction * np.maximum(d / radius_arcsec, 1.0) ** 2.5
        # the star itself is at distance 0 with the same magnitude; any other bright enough source blends
        bright = (mags[near] < mag - 2.5 * np.log10(threshold)) & (d <= wing_radius_arcsec)
        out[i] = bright.sum() > 1
    return out


def _ab_to_njy(mag) -> np.ndarray:
    """Flux (nJy) of AB magnitudes."""
    return 10 ** (-0.4 * (np.asarray(mag, dtype=float) - AB_ZEROPOINT_NJY))


def catalog_accuracy(catalog, truth, band: str, *, flux_column: str | None = None,
                     match_radius_arcsec: float = MATCH_RADIUS_ARCSEC) -> dict:
    """Completeness, photometry and astrometry of a catalog against true stars.

    Parameters
    ----------
    catalog : table
        Catalog with ``ra``, ``dec`` (deg) and a flux column with its ``_err`` (nJy).
    truth : pandas.DataFrame
        True sources with ``ra``, ``dec``, ``type`` and ``mag_<BAND>`` (AB), restricted
        to the catalogued area by the caller.
    band : str
        e.g. ``'F158'``.
    flux_column : str, optional
        Flux to test; :func:`point_source_flux_column` by default.
    match_radius_arcsec : float
        Catalog sources and true stars are paired one to one within this radius
        (:func:`match_sky`).

    Returns
    -------
    dict
        ``photometric_bias`` (median flux / true − 1), ``photometric_scatter`` and
        ``normalized_residual_std`` (std of (flux − true) / error) of stars with
        S/N > 50, the same std for S/N > 20 (``normalized_residual_std_snr20``),
        ``astrometric_rms_mas`` of stars with S/N > 50, all without the stars that
        another true source blends (:func:`blended_stars`, counted in
        ``n_blended``); ``completeness_snr10`` over all stars. A figure is NaN when
        fewer than 3 stars qualify for it (``n_bright``, ``n_snr20`` and ``n_snr10``,
        the stars with 8 < S/N < 12 that set the S/N-10 flux, say how many did).
    """
    nan = float("nan")
    flux_column = flux_column or point_source_flux_column(catalog, band)
    flux = np.asarray(catalog[flux_column], dtype=float)
    flux_err = np.asarray(catalog[f"{flux_column}_err"], dtype=float)
    stars, ic, it, sep = _matched_stars(catalog, truth, match_radius_arcsec)
    star_flux = _ab_to_njy(stars[f"mag_{band.upper()}"].to_numpy())
    true_flux = star_flux[it]
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = flux[ic] / flux_err[ic]
        z = (flux[ic] - true_flux) / flux_err[ic]
    isolated = ~blended_stars(truth, stars.iloc[it], band)
    bright = np.isfinite(snr) & (snr > 50) & isolated
    medium = np.isfinite(snr) & (snr > 20) & isolated
    near10 = np.isfinite(snr) & (snr > 8) & (snr < 12)
    out = {"flux_column": flux_column, "stars_matched": int(len(ic)),
           "n_blended": int((~isolated & np.isfinite(snr) & (snr > 20)).sum()),
           "photometric_bias": nan, "photometric_scatter": nan, "normalized_residual_std": nan,
           "astrometric_rms_mas": nan, "n_bright": int(bright.sum()),
           "normalized_residual_std_snr20": nan, "n_snr20": int(medium.sum()),
           "completeness_snr10": nan, "stars_above_snr10": 0, "n_snr10": int(near10.sum())}
    if bright.sum() >= 3:
        ratio = flux[ic][bright] / true_flux[bright]
        out.update(photometric_bias=float(np.median(ratio) - 1), photometric_scatter=float(np.std(ratio)),
                   normalized_residual_std=float(np.std(z[bright])),
                   astrometric_rms_mas=float(np.sqrt(np.mean(sep[bright] ** 2)) * 1e3))
    if medium.sum() >= 3:
        out.update(normalized_residual_std_snr20=float(np.std(z[medium])))
    # Completeness at S/N 10: the true flux at which the catalog's S/N is 10, from its own errors.
    if near10.sum() >= 3:
        flux10 = float(np.median(true_flux[near10] * 10.0 / snr[near10]))
        above = star_flux >= flux10
        found = np.zeros(len(stars), bool)
        found[it] = True
        out.update(completeness_snr10=float(found[above].mean()) if above.any() else nan,
                   stars_above_snr10=int(above.sum()))
    return out


def colour_accuracy(catalog, truth, band1: str, band2: str, *, min_snr: float = 50.0,
                    match_radius_arcsec: float = MATCH_RADIUS_ARCSEC) -> dict:
    """Measured ``band1 − band2`` colours (AB mag) of stars against the truth.

    Uses each band's :func:`point_source_flux_column`; stars matched one to one within
    ``match_radius_arcsec`` with S/N > ``min_snr`` in both bands. Returns
    ``colour_bias`` (median measured − true, mag), ``colour_scatter`` (std, mag),
    ``colour_residual_std`` (std of the difference over its error), each NaN when
    fewer than 3 stars qualify, and ``n_stars``.
    """
    nan = float("nan")
    stars, ic, it, _ = _matched_stars(catalog, truth, match_radius_arcsec)
    mags, errs = [], []
    for band in (band1, band2):
        col = point_source_flux_column(catalog, band)
        f = np.asarray(catalog[col], dtype=float)[ic]
        e = np.asarray(catalog[f"{col}_err"], dtype=float)[ic]
        with np.errstate(invalid="ignore", divide="ignore"):
            mags.append(-2.5 * np.log10(f) + AB_ZEROPOINT_NJY)
            errs.append(np.where(f > 0, 2.5 / np.log(10) * e / f, np.nan))
    max_err = 2.5 / np.log(10) / min_snr  # mag error of a flux at S/N = min_snr
    use = np.isfinite(mags[0]) & np.isfinite(mags[1]) & (errs[0] < max_err) & (errs[1] < max_err)
    true = (stars[f"mag_{band1.upper()}"].to_numpy() - stars[f"mag_{band2.upper()}"].to_numpy())[it]
    diff = (mags[0] - mags[1] - true)[use]
    if use.sum() < 3:
        return {"colour_bias": nan, "colour_scatter": nan, "colour_residual_std": nan, "n_stars": int(use.sum())}
    err = np.hypot(errs[0], errs[1])[use]
    return {"colour_bias": float(np.median(diff)), "colour_scatter": float(np.std(diff)),
            "colour_residual_std": float(np.std(diff / err)), "n_stars": int(use.sum())}


def matched_colour_accuracy(catalog, truth, band1: str, band2: str, *, kind: str = "galaxy",
                            min_snr: float = 20.0, match_radius_arcsec: float = 0.15) -> dict:
    """PSF-matched ``band1 − band2`` colours (``aper_matched_<band>_flux``, AB mag) of true
    stars (``kind='star'``) or galaxies (``'galaxy'``: every other type) against the truth.

    Sources are paired one to one within ``match_radius_arcsec`` (galaxy centroids move more
    than stars' PSF positions), left out when blended in either band (:func:`blended_stars`) or
    below ``min_snr`` in either band. Returns ``colour_bias`` (median measured − true, mag),
    ``colour_scatter`` (std, mag), ``colour_residual_std`` (std of the difference over its
    error), each NaN when fewer than 3 qualify, and ``n``.
    """
    nan = float("nan")
    rows = truth[truth["type"] == "star"] if kind == "star" else truth[truth["type"] != "star"]
    ic, it, _ = match_sky(np.asarray(catalog["ra"], float), np.asarray(catalog["dec"], float),
                          rows["ra"].to_numpy(), rows["dec"].to_numpy(), match_radius_arcsec, one_to_one=True)
    flux = [np.asarray(catalog[f"aper_matched_{b.lower()}_flux"], float)[ic] for b in (band1, band2)]
    err = [np.asarray(catalog[f"aper_matched_{b.lower()}_flux_err"], float)[ic] for b in (band1, band2)]
    matched = rows.iloc[it]
    isolated = ~blended_stars(truth, matched, band1) & ~blended_stars(truth, matched, band2)
    with np.errstate(invalid="ignore", divide="ignore"):
        snr = np.minimum(flux[0] / err[0], flux[1] / err[1])
        colour = -2.5 * np.log10(flux[0] / flux[1])
        colour_err = 2.5 / np.log(10) * np.hypot(err[0] / flux[0], err[1] / flux[1])
    use = isolated & np.isfinite(snr) & (snr > min_snr) & np.isfinite(colour)
    if use.sum() < 3:
        return {"colour_bias": nan, "colour_scatter": nan, "colour_residual_std": nan, "n": int(use.sum())}
    diff = (colour - (matched[f"mag_{band1.upper()}"].to_numpy() - matched[f"mag_{band2.upper()}"].to_numpy()))[use]
    return {"colour_bias": float(np.median(diff)), "colour_scatter": float(np.std(diff)),
            "colour_residual_std": float(np.std(diff / colour_err[use])), "n": int(use.sum())}


def _wrapped_deg(delta) -> np.ndarray:
    """Angle differences (deg) brought into [-180, 180)."""
    return (np.asarray(delta, dtype=float) + 180.0) % 360.0 - 180.0


def sky_errors_mas(image, catalog, truth, *, snr_min: float = 100.0,
                   match_radius_arcsec: float = MATCH_RADIUS_ARCSEC) -> np.ndarray:
    """(Δα·cos δ, Δδ) in mas of catalogued bright stars against their true positions.

    ``catalog`` is an L2 point-source table (``x``, ``y``, ``snr``, ``flags``), ``truth``
    the simulator's sources of that detector (``x``, ``y``, ``ra``, ``dec``, ``type``).
    A source with S/N above ``snr_min`` and no flags is a star when the nearest true
    star lies within ``match_radius_arcsec`` on the detector (true pixel positions, so
    that the match does not depend on the WCS under test; radius converted at the
    nominal pixel scale); its PSF-fit pixel position is carried to the sky with the
    image's WCS. Returns an (n, 2) array, empty when nothing matches.
    """
    from scipy.spatial import cKDTree

    stars = truth[truth["type"] == "star"]
    x = np.asarray(getattr(catalog["x"], "value", catalog["x"]), float)
    y = np.asarray(getattr(catalog["y"], "value", catalog["y"]), float)
    if len(x) == 0 or len(stars) == 0:
        return np.zeros((0, 2))
    radius_pix = match_radius_arcsec / PIXEL_SCALE
    candidates = np.isfinite(x) & np.isfinite(y)
    d = np.full(len(x), np.inf)
    i = np.zeros(len(x), int)
    d[candidates], i[candidates] = cKDTree(np.column_stack([stars["x"], stars["y"]])).query(
        np.column_stack([x[candidates], y[candidates]]))
    use = (d < radius_pix) & (np.asarray(catalog["snr"]) > snr_min) & (np.asarray(catalog["flags"]) == 0)
    if not use.any():
        return np.zeros((0, 2))
    ra, dec = image.wcs(x[use], y[use], with_bounding_box=False)
    true = stars.iloc[i[use]]
    return np.column_stack([_wrapped_deg(ra - true["ra"].to_numpy()) * np.cos(np.radians(dec)) * 3.6e6,
                            (dec - true["dec"].to_numpy()) * 3.6e6])


def rms_mas(errors: np.ndarray) -> float:
    """Root-mean-square length (mas) of 2-D position errors (n, 2) in mas; NaN when there are none."""
    errors = np.asarray(errors, dtype=float)
    return float(np.sqrt(np.mean(np.sum(errors**2, axis=1)))) if len(errors) else float("nan")
