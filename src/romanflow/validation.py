"""Comparisons of products with the simulator's truth.

Used by the main job, the benchmarks and the tests: rate accuracy of L2 images,
jump-detection completeness, and catalog completeness, photometry and astrometry.
"""

from __future__ import annotations

import numpy as np

from romanflow import dq as flags
from romanflow.detector import ReadPattern


def rate_accuracy(rate, err, dq, truth, decades=((0.1, 1.0), (1.0, 10.0), (10.0, 100.0), (100.0, 1e5)),
                  min_pixels: int = 500) -> dict:
    """Bias and error honesty of a rate image (DN/s) against the noiseless truth (DN/s).

    Returns the median relative bias over usable pixels above 1 DN/s and, per flux
    decade with at least ``min_pixels`` pixels, the pixel count, median relative
    bias and the 5-sigma-clipped standard deviation of (rate − truth)/err over
    pixels without jumps.
    """
    from astropy.stats import sigma_clipped_stats

    usable = ((dq & flags.DO_NOT_USE) == 0) & np.isfinite(rate) & (err > 0)
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

    ``dq`` and the per-pixel arrays are science-area images; ``cosmic_rays`` has
    columns x, y (science pixels), read (1-based) and amplitude_e.
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
        "false_rate": float(((dq[clean] & flags.JUMP_DET) != 0).mean()),
    }


def match_sky(ra1, dec1, ra2, dec2, radius_arcsec: float):
    """Nearest-neighbour match of list 1 to list 2 within a radius: (index1, index2, separation arcsec)."""
    from scipy.spatial import cKDTree

    def unit(ra, dec):
        ra, dec = np.radians(ra), np.radians(dec)
        return np.column_stack([np.cos(dec) * np.cos(ra), np.cos(dec) * np.sin(ra), np.sin(dec)])

    if len(ra1) == 0 or len(ra2) == 0:
        return np.zeros(0, int), np.zeros(0, int), np.zeros(0)
    tree = cKDTree(unit(ra2, dec2))
    chord = 2 * np.sin(np.radians(radius_arcsec / 3600.0) / 2)
    dist, idx = tree.query(unit(ra1, dec1), distance_upper_bound=chord)
    ok = np.isfinite(dist)
    sep = np.degrees(2 * np.arcsin(np.clip(dist[ok] / 2, 0, 1))) * 3600.0
    return np.flatnonzero(ok), idx[ok], sep


def point_source_flux_column(catalog, band: str) -> str:
    """The catalog's best point-source flux column for a band: the PSF fits on the exposures
    (``psf_exp_<band>_flux``) when the catalog has them, else the PSF fit on the image."""
    b = band.lower()
    name = f"psf_exp_{b}_flux"
    if name in catalog.colnames and np.isfinite(np.asarray(catalog[name], dtype=float)).any():
        return name
    return f"psf_{b}_flux"


def _matched_stars(catalog, truth, match_radius_arcsec):
    stars = truth[truth["type"] == "star"]
    ic, it, sep = match_sky(np.asarray(catalog["ra"], float), np.asarray(catalog["dec"], float),
                            stars["ra"].to_numpy(), stars["dec"].to_numpy(), match_radius_arcsec)
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
    ``margin_pix`` from its edges."""
    ny, nx = image.data.shape
    tx, ty = image.wcs.world_to_pixel_values(truth["ra"].to_numpy(), truth["dec"].to_numpy())
    tx, ty = np.nan_to_num(tx, nan=-1.0), np.nan_to_num(ty, nan=-1.0)
    inside = (tx > margin_pix) & (ty > margin_pix) & (tx < nx - margin_pix) & (ty < ny - margin_pix)
    ix = np.clip(tx.astype(int), 0, nx - 1)
    iy = np.clip(ty.astype(int), 0, ny - 1)
    return inside & np.isfinite(image.data[iy, ix]) & (image.err[iy, ix] > 0)


def blended_stars(truth, stars, band: str, *, radius_arcsec: float = 0.5, flux_fraction: float = 0.05) -> np.ndarray:
    """True for stars with another true source within ``radius_arcsec`` that is brighter than
    ``flux_fraction`` of the star in ``band``: their measured flux mixes two sources."""
    from scipy.spatial import cKDTree

    dec0 = np.deg2rad(float(np.median(truth["dec"]))) if len(truth) else 0.0
    def xy(t):
        return np.column_stack([t["ra"].to_numpy() * np.cos(dec0) * 3600.0, t["dec"].to_numpy() * 3600.0])
    mags = truth[f"mag_{band.upper()}"].to_numpy()
    out = np.zeros(len(stars), bool)
    if len(stars) == 0 or len(truth) < 2:
        return out
    tree = cKDTree(xy(truth))
    star_mags = stars[f"mag_{band.upper()}"].to_numpy()
    for i, (near, mag) in enumerate(zip(tree.query_ball_point(xy(stars), radius_arcsec), star_mags)):
        # the star itself is at distance 0 with the same magnitude; any other bright enough source blends
        bright = mags[near] < mag - 2.5 * np.log10(flux_fraction)
        out[i] = bright.sum() > 1
    return out


def catalog_accuracy(catalog, truth, band: str, *, flux_column: str | None = None,
                     match_radius_arcsec: float = 0.1) -> dict:
    """Completeness, photometry and astrometry of a catalog against true stars.

    Parameters
    ----------
    catalog : table
        Catalog with ``ra``, ``dec`` and a flux column with its ``_err`` (nJy).
    truth : pandas.DataFrame
        True sources with ``ra``, ``dec``, ``type`` and ``mag_<BAND>`` (AB), restricted
        to the catalogued area by the caller.
    band : str
        e.g. ``'F158'``.
    flux_column : str, optional
        Flux to test; :func:`point_source_flux_column` by default.

    Returns
    -------
    dict
        ``photometric_bias`` (median flux / true − 1), ``photometric_scatter`` and
        ``normalized_residual_std`` (std of (flux − true) / error) of stars with
        S/N > 50, the same std for S/N > 20 (``normalized_residual_std_snr20``),
        ``astrometric_rms_mas`` of stars with S/N > 50, all without the stars that
        another true source blends (:func:`blended_stars`, counted in
        ``n_blended``); ``completeness_snr10`` over all stars.
    """
    flux_column = flux_column or point_source_flux_column(catalog, band)
    flux = np.asarray(catalog[flux_column], dtype=float)
    flux_err = np.asarray(catalog[f"{flux_column}_err"], dtype=float)
    stars, ic, it, sep = _matched_stars(catalog, truth, match_radius_arcsec)
    true_flux = 10 ** (-0.4 * (stars[f"mag_{band.upper()}"].to_numpy()[it] - 31.4))  # nJy
    snr = flux[ic] / flux_err[ic]
    out = {"flux_column": flux_column, "stars_matched": int(len(ic))}
    z = (flux[ic] - true_flux) / flux_err[ic]
    isolated = ~blended_stars(truth, stars.iloc[it], band)
    out["n_blended"] = int((~isolated & np.isfinite(snr) & (snr > 20)).sum())
    bright = np.isfinite(snr) & (snr > 50) & isolated
    if bright.sum() >= 3:
        ratio = flux[ic][bright] / true_flux[bright]
        out.update(photometric_bias=float(np.median(ratio) - 1), photometric_scatter=float(np.std(ratio)),
                   normalized_residual_std=float(np.std(z[bright])),
                   astrometric_rms_mas=float(np.sqrt(np.mean(sep[bright] ** 2)) * 1e3),
                   n_bright=int(bright.sum()))
    medium = np.isfinite(snr) & (snr > 20) & isolated
    if medium.sum() >= 3:
        out.update(normalized_residual_std_snr20=float(np.std(z[medium])), n_snr20=int(medium.sum()))
    # Completeness at S/N 10: the true flux at which the catalog's S/N is 10, from its own errors.
    near10 = np.isfinite(snr) & (snr > 8) & (snr < 12)
    if near10.sum() >= 3:
        flux10 = float(np.median(true_flux[near10] * 10.0 / snr[near10]))
        true_all = 10 ** (-0.4 * (stars[f"mag_{band.upper()}"].to_numpy() - 31.4))
        above = true_all >= flux10
        found = np.zeros(len(stars), bool)
        found[it] = True
        out.update(completeness_snr10=float(found[above].mean()) if above.any() else float("nan"),
                   stars_above_snr10=int(above.sum()))
    return out


def colour_accuracy(catalog, truth, band1: str, band2: str, *, min_snr: float = 50.0,
                    match_radius_arcsec: float = 0.1) -> dict:
    """Measured ``band1 − band2`` colours (AB mag) of stars against the truth.

    Uses each band's :func:`point_source_flux_column`; stars with S/N > ``min_snr``
    in both bands. Returns ``colour_bias`` (median measured − true, mag),
    ``colour_scatter`` (std, mag), ``colour_residual_std`` (std of the difference
    over its error) and ``n_stars``.
    """
    stars, ic, it, _ = _matched_stars(catalog, truth, match_radius_arcsec)
    mags, errs = [], []
    for band in (band1, band2):
        col = point_source_flux_column(catalog, band)
        f = np.asarray(catalog[col], dtype=float)[ic]
        e = np.asarray(catalog[f"{col}_err"], dtype=float)[ic]
        with np.errstate(invalid="ignore", divide="ignore"):
            mags.append(-2.5 * np.log10(f) + 31.4)
            errs.append(np.where(f > 0, 2.5 / np.log(10) * e / f, np.nan))
    use = np.isfinite(mags[0]) & np.isfinite(mags[1]) & (errs[0] < 1.0857 / min_snr) & (errs[1] < 1.0857 / min_snr)
    true = (stars[f"mag_{band1.upper()}"].to_numpy() - stars[f"mag_{band2.upper()}"].to_numpy())[it]
    diff = (mags[0] - mags[1] - true)[use]
    if use.sum() < 3:
        return {"n_stars": int(use.sum())}
    err = np.hypot(errs[0], errs[1])[use]
    return {"colour_bias": float(np.median(diff)), "colour_scatter": float(np.std(diff)),
            "colour_residual_std": float(np.std(diff / err)), "n_stars": int(use.sum())}


def sky_errors_mas(image, catalog, truth, *, snr_min: float = 100.0) -> np.ndarray:
    """(Δα·cos δ, Δδ) in mas of catalogued bright stars against their true positions.

    ``catalog`` is an L2 point-source table (``x``, ``y``, ``snr``, ``flags``), ``truth``
    the simulator's sources of that detector (``x``, ``y``, ``ra``, ``dec``, ``type``).
    A source is a star when the nearest true star lies within 0.5 pixel; its
    PSF-fit pixel position is carried to the sky with the image's WCS.
    """
    from scipy.spatial import cKDTree

    stars = truth[truth["type"] == "star"]
    x = np.asarray(getattr(catalog["x"], "value", catalog["x"]), float)
    y = np.asarray(getattr(catalog["y"], "value", catalog["y"]), float)
    if len(x) == 0 or len(stars) == 0:
        return np.zeros((0, 2))
    d, i = cKDTree(np.column_stack([stars["x"], stars["y"]])).query(np.column_stack([x, y]))
    use = (d < 0.5) & (np.asarray(catalog["snr"]) > snr_min) & (np.asarray(catalog["flags"]) == 0)
    ra, dec = image.wcs(x[use], y[use], with_bounding_box=False)
    true = stars.iloc[i[use]]
    return np.column_stack([(ra - true["ra"].to_numpy()) * np.cos(np.radians(dec)) * 3.6e6,
                            (dec - true["dec"].to_numpy()) * 3.6e6])


def rms_mas(errors: np.ndarray) -> float:
    """Root-mean-square length of 2-D position errors (mas)."""
    return float(np.sqrt(np.mean(np.sum(errors**2, axis=1)))) if len(errors) else float("nan")
