"""Catalogs of sources to inject: read from a user's file or generated on an image.

An injection catalog is a pandas DataFrame in the simulator's scene schema
(:mod:`romanflow.simulate.scene`): ``injection_id``, ``ra``, ``dec`` (deg),
``type`` (``star``, ``sersic`` or ``bulge_disk``), the galaxy shape columns
(``half_light_radius`` arcsec, ``sersic_n``, ``axis_ratio``, ``position_angle``
deg east of north, ``bulge_fraction``, ``bulge_half_light_radius``) and one
``mag_<FILTER>`` AB magnitude per band.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from romanflow.errors import InputFileError, ParameterError

__all__ = ["read_injection_catalog", "generate_sources", "magnitude_columns", "INJECTION_TYPES"]

INJECTION_TYPES = ("star", "sersic", "bulge_disk")


def magnitude_columns(table: pd.DataFrame) -> dict[str, str]:
    """``{FILTER: column}`` of the catalog's magnitude columns (``mag_F158`` -> ``F158``)."""
    return {c[4:].upper(): c for c in table.columns if c.startswith("mag_")}


def read_injection_catalog(path) -> pd.DataFrame:
    """Read a user's injection catalog (Parquet, ECSV or CSV).

    Required: ``ra``, ``dec`` (deg), at least one ``mag_<FILTER>``; optional:
    ``type`` (star by default; ``galaxy`` means Sersic, or bulge+disk when
    ``bulge_fraction`` is given) and the shape columns. Rows with a non-finite
    position are refused.

    Raises
    ------
    InputFileError
        Unreadable file, missing or bad columns (one line naming the file).
    """
    from romanflow.simulate.scene import read_scene

    path = Path(path)
    table = read_scene(path).table
    ra, dec = table["ra"].to_numpy(float), table["dec"].to_numpy(float)
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
        raise InputFileError(path, "ra/dec contain NaN or infinite values")
    if len(table) == 0:
        raise InputFileError(path, "catalog has no rows")
    if "injection_id" not in table:
        table["injection_id"] = table["source_id"].astype(np.int64)
    if table["injection_id"].duplicated().any():
        raise InputFileError(path, "injection_id (or source_id) values repeat")
    return table.drop(columns=[c for c in ("epoch", "pmra", "pmdec", "parallax") if c in table])


def _check_generation(n, mag_range, star_fraction, layout):
    if int(n) != n or n < 1:
        raise ParameterError("--n", n, "must be a positive integer")
    lo, hi = (float(v) for v in mag_range)
    if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
        raise ParameterError("--mag-range", mag_range, "must be two finite AB magnitudes, LO <= HI")
    if not 0.0 <= star_fraction <= 1.0:
        raise ParameterError("--star-fraction", star_fraction, "must lie within [0, 1]")
    if layout not in ("random", "grid"):
        raise ParameterError("--layout", layout, "must be 'random' or 'grid'")
    return lo, hi


def generate_sources(wcs, shape, bands, *, n: int, mag_range=(20.0, 28.0), star_fraction: float = 0.5,
                     layout: str = "random", avoid=None, avoid_radius_arcsec: float = 1.0, margin_pix: float = 25.0,
                     min_separation_arcsec: float = 0.0, pixel_scale_arcsec: float = 0.11, seed: int = 0,
                     first_id: int = 0) -> pd.DataFrame:
    """Sources on an image: random or grid positions, magnitudes uniform in ``mag_range``.

    Parameters
    ----------
    wcs : object
        The image's pixel-to-sky transform (``pixel_to_world_values``).
    shape : (ny, nx)
        The image's shape; positions keep ``margin_pix`` from its edges.
    bands : sequence of str
        Filters; every source gets the same AB magnitude in each (a flat spectrum).
    n : int
        Number of sources (a grid takes the nearest square number it fits).
    mag_range : (lo, hi)
        AB magnitudes, drawn uniformly (the best sampling for completeness curves).
    star_fraction : float
        Fraction of stars; the rest are Sersic galaxies with half-light radii
        0.1–0.6″ (log-uniform), n 0.8–4, axis ratio 0.3–1 and any position angle.
    layout : 'random' or 'grid'
    avoid : (ra, dec) arrays, optional
        Real sources to stay ``avoid_radius_arcsec`` away from.
    min_separation_arcsec : float
        Random positions keep this far from each other (0: independent).
    pixel_scale_arcsec : float
        The image's pixel scale (for the separations).
    seed : int
    first_id : int
        ``injection_id`` of the first source.
    """
    lo, hi = _check_generation(n, mag_range, star_fraction, layout)
    rng = np.random.default_rng([int(seed), 0x1A7EC7])
    ny, nx = shape
    if nx <= 2 * margin_pix or ny <= 2 * margin_pix:
        raise ParameterError("margin_pix", margin_pix, f"leaves no room on an image of {nx}x{ny} pixels")
    avoid_xy = None
    if avoid is not None and len(avoid[0]):
        ax, ay = wcs.world_to_pixel_values(np.asarray(avoid[0], float), np.asarray(avoid[1], float))
        avoid_xy = np.column_stack([np.asarray(ax, float), np.asarray(ay, float)])
        avoid_xy = avoid_xy[np.isfinite(avoid_xy).all(axis=1)]
    r_avoid = avoid_radius_arcsec / pixel_scale_arcsec
    r_min = min_separation_arcsec / pixel_scale_arcsec
    if layout == "grid":
        side = max(int(round(np.sqrt(n))), 1)
        gx = np.linspace(margin_pix, nx - 1 - margin_pix, side)
        gy = np.linspace(margin_pix, ny - 1 - margin_pix, side)
        xx, yy = np.meshgrid(gx, gy)
        # sub-pixel phases vary across the grid, so no phase is favoured
        x = xx.ravel() + rng.uniform(-0.5, 0.5, xx.size)
        y = yy.ravel() + rng.uniform(-0.5, 0.5, yy.size)
        if avoid_xy is not None and avoid_xy.size:
            from scipy.spatial import cKDTree

            d, _ = cKDTree(avoid_xy).query(np.column_stack([x, y]))
            keep = d > r_avoid
            x, y = x[keep], y[keep]
    else:
        x, y = _random_positions(rng, n, nx, ny, margin_pix, avoid_xy, r_avoid, r_min)
    m = x.size
    ra, dec = wcs.pixel_to_world_values(x, y)
    is_star = rng.random(m) < star_fraction
    mags = rng.uniform(lo, hi, m)
    hlr = 10.0 ** rng.uniform(np.log10(0.1), np.log10(0.6), m)
    table = pd.DataFrame({
        "injection_id": np.arange(first_id, first_id + m, dtype=np.int64),
        "ra": np.asarray(ra, float) % 360.0,
        "dec": np.asarray(dec, float),
        "type": np.where(is_star, "star", "sersic"),
        "half_light_radius": np.where(is_star, 0.0, hlr),
        "sersic_n": np.where(is_star, 1.0, rng.uniform(0.8, 4.0, m)),
        "axis_ratio": np.where(is_star, 1.0, rng.uniform(0.3, 1.0, m)),
        "position_angle": rng.uniform(0.0, 180.0, m),
        "bulge_fraction": np.zeros(m),
        "bulge_half_light_radius": np.zeros(m),
    })
    for band in bands:
        table[f"mag_{band.upper()}"] = mags
    return table


def _random_positions(rng, n, nx, ny, margin, avoid_xy, r_avoid, r_min):
    """Uniform positions, dropping those near real sources or (sequentially) near each other."""
    from scipy.spatial import cKDTree

    want = int(n)
    xs, ys = np.zeros(0), np.zeros(0)
    tree = cKDTree(avoid_xy) if avoid_xy is not None and avoid_xy.size else None
    for _ in range(50):
        k = max(2 * (want - xs.size), 16)
        x = rng.uniform(margin, nx - 1 - margin, k)
        y = rng.uniform(margin, ny - 1 - margin, k)
        if tree is not None:
            d, _ = tree.query(np.column_stack([x, y]))
            x, y = x[d > r_avoid], y[d > r_avoid]
        if r_min > 0:
            keep_x, keep_y = list(xs), list(ys)
            for xi, yi in zip(x, y):
                if len(keep_x) >= want:
                    break
                if not keep_x or np.min(np.hypot(np.asarray(keep_x) - xi, np.asarray(keep_y) - yi)) > r_min:
                    keep_x.append(xi)
                    keep_y.append(yi)
            xs, ys = np.asarray(keep_x), np.asarray(keep_y)
        else:
            xs, ys = np.concatenate([xs, x]), np.concatenate([ys, y])
        if xs.size >= want:
            break
    return xs[:want], ys[:want]
