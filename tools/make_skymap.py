#!/usr/bin/env python3
"""Regenerate the sky map's table of projection regions, ``src/romanflow/data/skymap_regions.parquet``.

The table is data shipped with romanflow and read by :mod:`romanflow.mosaic.skycells`; this script is
run by hand when the tessellation changes (see that module for the tessellation itself).

Usage::

    python tools/make_skymap.py [OUTPUT]     # default: the shipped table
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
from astropy.table import Table

from romanflow.formats import atomic_path
from romanflow.kernels.sky_projection import tan_project
from romanflow.mosaic.skycells import BORDER_PIXELS, NXY_SKYCELL, PIXEL_SCALE, SKYMAP_PATH, region_outline

#: HEALPix resolution whose ring latitudes place the projection regions.
NSIDE = 12


def ring_latitudes(nside: int = NSIDE) -> np.ndarray:
    """Latitudes (deg) of the HEALPix iso-latitude rings 1 … 4·nside−1, north to south."""
    i = np.arange(1, 4 * nside, dtype=float)
    z = np.where(i < nside, 1 - i**2 / (3.0 * nside**2), 4.0 / 3 - 2 * i / (3.0 * nside))
    z = np.where(i > 3 * nside, -(1 - (4 * nside - i) ** 2 / (3.0 * nside**2)), z)
    return np.degrees(np.arcsin(z))


def generate_projection_regions(
    nside: int = NSIDE,
    pixel_scale: float = PIXEL_SCALE,
    nxy: int = NXY_SKYCELL,
    border: int = BORDER_PIXELS,
):
    """Build the table of projection regions.

    Parameters
    ----------
    nside : int
        HEALPix resolution whose ring latitudes place the bands.
    pixel_scale : float
        Pixel scale at the tangent point (arcsec).
    nxy, border : int
        Cell side and overlap between neighbouring cells (pixels).

    Returns
    -------
    astropy.table.Table
        One row per region: ``index, ra_tangent, dec_tangent, ra_min, ra_max,
        dec_min, dec_max, orientat, x_tangent, y_tangent, nx, ny, ncell_x,
        ncell_y, skycell_start, skycell_end``; tessellation parameters in ``meta``.
    """
    lat = ring_latitudes(nside)
    edges = 0.5 * (lat[:-1] + lat[1:])  # between ring k and k+1 (north to south)
    step = nxy - border
    scale_deg = pixel_scale / 3600.0
    rows = []

    def add(ra_t, dec_t, ra_min, ra_max, dec_min, dec_max):
        ra_o, dec_o = region_outline(ra_min, ra_max, dec_min, dec_max)
        xi, eta = tan_project(ra_o, dec_o, ra_t, dec_t)
        half_x = np.nanmax(np.abs(xi)) / scale_deg + 2.0
        half_y = np.nanmax(np.abs(eta)) / scale_deg + 2.0
        ncx = int(math.ceil(2 * half_x / step))
        ncy = int(math.ceil(2 * half_y / step))
        rows.append((ra_t, dec_t, ra_min, ra_max, dec_min, dec_max, ncx, ncy))

    add(0.0, 90.0, 0.0, 360.0, float(edges[0]), 90.0)
    for ring in range(2, 4 * nside - 1):  # rings 2 … 4N-2
        n_seg = 8 * min(ring, 4 * nside - ring, nside)
        width = 360.0 / n_seg
        dec_max, dec_min = float(edges[ring - 2]), float(edges[ring - 1])
        for k in range(n_seg):
            add((k + 0.5) * width, float(lat[ring - 1]), k * width, (k + 1) * width, dec_min, dec_max)
    add(0.0, -90.0, 0.0, 360.0, -90.0, float(edges[-1]))

    arr = np.array(rows, dtype=float)
    ncx = arr[:, 6].astype(np.int64)
    ncy = arr[:, 7].astype(np.int64)
    ncell = ncx * ncy
    end = np.cumsum(ncell)
    table = Table(
        {
            "index": np.arange(len(rows), dtype=np.int32),
            "ra_tangent": arr[:, 0],
            "dec_tangent": arr[:, 1],
            "ra_min": arr[:, 2],
            "ra_max": arr[:, 3],
            "dec_min": arr[:, 4],
            "dec_max": arr[:, 5],
            "orientat": np.zeros(len(rows), np.float32),
            "x_tangent": ncx * step / 2.0 + border / 2.0 - 0.5,
            "y_tangent": ncy * step / 2.0 + border / 2.0 - 0.5,
            "nx": ((ncx - 1) * step + nxy).astype(np.int32),
            "ny": ((ncy - 1) * step + nxy).astype(np.int32),
            "ncell_x": ncx.astype(np.int32),
            "ncell_y": ncy.astype(np.int32),
            "skycell_start": (end - ncell).astype(np.int64),
            "skycell_end": end.astype(np.int64),
        }
    )
    table.meta.update(
        nside=int(nside), pixel_scale=float(pixel_scale), nxy_skycell=int(nxy), skycell_border_pixels=int(border),
        description="romanflow sky tessellation: TAN projection regions on HEALPix ring latitudes",
    )
    descriptions = {
        "ra_tangent": "tangent point RA (deg)", "dec_tangent": "tangent point Dec (deg)",
        "x_tangent": "tangent point x in region pixels (0-based)",
        "y_tangent": "tangent point y in region pixels (0-based)",
        "orientat": "angle of region +y east of north at the tangent point (deg)",
    }
    for name, text in descriptions.items():
        table[name].info.description = text
    return table


def write_skymap(path=SKYMAP_PATH, **kwargs) -> Path:
    """Generate the region table and write it as Parquet (atomically); ``kwargs`` go to the generator."""
    table = generate_projection_regions(**kwargs)
    with atomic_path(path) as tmp:
        table.write(tmp, format="parquet")
    return Path(path)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default=SKYMAP_PATH, help=f"Parquet file (default {SKYMAP_PATH})")
    args = parser.parse_args(argv)
    path = write_skymap(args.output)
    print(f"{path}: {len(Table.read(path))} projection regions")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
