"""Small archives for the service tests: L2 images, two L3 sky-cell tiles on one projection, a catalog."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

RA0, DEC0 = 150.1, 2.2
L2_SIZE = 128
L3_SIZE = 160


def _neighbour(cell: str) -> str:
    """The cell one step further in x on the same projection region (name ``...xNNyMM``)."""
    head, tail = cell.rsplit("x", 1)
    x, y = tail.split("y")
    return f"{head}x{int(x) + 1:02d}y{y}"


def write_l3(path: Path, wcs, cell: str, seed: int, optical_element: str = "F158", members=()):
    from romanflow.mosaic.resample import MosaicProduct, write_mosaic

    ny, nx = wcs.array_shape
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:ny, 0:nx]
    data = (rng.normal(0.0, 0.01, (ny, nx)) + 0.001 * xx + 0.0001 * yy).astype(np.float32)
    arrays = {"data": data, "err": np.full((ny, nx), 0.01, np.float32),
              "var_rnoise": np.full((ny, nx), 1e-4, np.float32), "var_poisson": np.full((ny, nx), 1e-5, np.float32),
              "var_flat": np.zeros((ny, nx), np.float32), "exposure_time": np.full((ny, nx), 100.0, np.float32),
              "weight": rng.uniform(0.5, 1.0, (ny, nx)).astype(np.float32),
              "context": np.full((1, ny, nx), seed, np.uint32)}
    write_mosaic(MosaicProduct(arrays, wcs, []), path, skycell=cell, optical_element=optical_element,
                 members=list(members))
    return path


def build_archive(root: Path, url: str | None = None):
    """Products under ``root`` ingested into an archive (SQLite in ``root`` unless ``url``); returns
    (archive, info dict)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from romanflow.archive import Archive
    from romanflow.formats.asdf_io import write_l2
    from romanflow.geometry import DetectorProjection, pointing_for
    from romanflow.mosaic.skycells import cutout_wcs, skycell_containing, skycell_wcs
    from romanflow.mosaic.synthetic import make_rate_image

    root = Path(root)
    (root / "l2").mkdir(parents=True, exist_ok=True)
    (root / "l3").mkdir(exist_ok=True)
    (root / "cat").mkdir(exist_ok=True)
    pointing = pointing_for(RA0, DEC0, 30.0)
    dp = DetectorProjection("WFI07", pointing, L2_SIZE)
    g = np.arange(20, L2_SIZE - 20, 22.0) + 0.3
    gx, gy = np.meshgrid(g, g)
    sra, sdec = dp.pixel_to_world(gx.ravel(), gy.ravel())
    stars = (sra, sdec, np.linspace(200.0, 2000.0, sra.size))
    l2_paths = []
    for k, band in enumerate(("F158", "F158", "F062")):
        im = make_rate_image("WFI07", pointing.with_offsets(2.0 * k, 1.0 * k), L2_SIZE, stars, seed=10 + k,
                             exposure=k + 1, optical_element=band)
        name = f"r0000101001001001001_{k + 1:04d}_wfi07_cal.asdf"
        im.meta["filename"] = name
        l2_paths.append(write_l2(im, root / "l2" / name))
    # two L3 tiles: the right edge of one sky cell and the left edge of its neighbour (same projection)
    ra_c, dec_c = dp.pixel_to_world((L2_SIZE - 1) / 2, (L2_SIZE - 1) / 2)
    cell_a = skycell_containing(ra_c, dec_c)[0]
    cell_b = _neighbour(cell_a)
    wa, wb = skycell_wcs(cell_a), skycell_wcs(cell_b)
    n = wa.array_shape[1]
    sub_a = cutout_wcs(wa, n - L3_SIZE, 2000, L3_SIZE, L3_SIZE)
    # the same rows of cell b, starting where cell a's tile ends
    ra_e, dec_e = sub_a.pixel_to_world_values(L3_SIZE - 0.5 + 0.5, 0)
    bx, by = wb.world_to_pixel_values(ra_e, dec_e)
    sub_b = cutout_wcs(wb, int(round(float(bx))), int(round(float(by))), L3_SIZE, L3_SIZE)
    l3_a = write_l3(root / "l3" / f"{cell_a}_f158_coadd.asdf", sub_a, cell_a, 1,
                    members=[f"../l2/{p.name}" for p in l2_paths[:2]])
    l3_b = write_l3(root / "l3" / f"{cell_b}_f158_coadd.asdf", sub_b, cell_b, 2)
    # a catalog with sources on a grid around the L3 tiles
    rng = np.random.default_rng(5)
    cra, cdec = sub_a.pixel_to_world_values(L3_SIZE - 1, L3_SIZE / 2)
    ra = float(cra) + rng.uniform(-0.01, 0.01, 400)
    dec = float(cdec) + rng.uniform(-0.01, 0.01, 400)
    table = pa.table({"label": np.arange(400, dtype=np.int64), "ra": ra, "dec": dec,
                      "psf_f158_flux": rng.uniform(100, 1000, 400)})
    table = table.replace_schema_metadata({"romanflow.catalog_kind": "multiband",
                                           "romanflow.filters": json.dumps(["F158"]),
                                           "romanflow.inputs": json.dumps([l3_a.name]),
                                           "romanflow.version": json.dumps("test")})
    cat = root / "cat" / f"{cell_a}_cat.parquet"
    pq.write_table(table, cat)
    arc = Archive.open(url or f"sqlite:///{root / 'archive.db'}", root=root)
    arc.ingest([root / "l2", root / "l3", root / "cat"])
    info = {"l2": [p.stem for p in l2_paths], "l3": [l3_a.stem, l3_b.stem], "catalog": cat.stem,
            "cells": (cell_a, cell_b), "sub_a": sub_a, "sub_b": sub_b, "catalog_radec": (ra, dec)}
    return arc, info
