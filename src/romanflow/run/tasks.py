"""The units of work of a survey run, as plain functions on file paths.

Every function takes paths and small settings, writes its products atomically
and returns ``{"products": [paths], "info": {...}}``. None of them ships
arrays to its caller, so they run the same in-process or on a Dask worker.
:func:`execute` wraps one :class:`~romanflow.run.graph.Task`: it skips work
already recorded in the ledger, caps numba threads, times the call and writes
the ledger record after the products.
"""

from __future__ import annotations

import math
import time
from pathlib import Path

import numpy as np

from romanflow.errors import RomanflowError

#: HEALPix depth of the sky tiles the simulated scene is generated in (~3.4 arcmin tiles).
SCENE_TILE_DEPTH = 10


# ------------------------------------------------------------------------------------------ scene
def _tile_scene(tile: int, *, density, star_fraction, faint_limit, seed):
    """Sources of one HEALPix tile, drawn with a seed of their own (the same in every run)."""
    import astropy.units as u
    import cdshealpix.nested as hp
    from astropy.coordinates import Latitude, Longitude

    from romanflow.simulate.scene import random_scene

    ipix = np.array([tile], dtype=np.uint64)
    lon, lat = hp.healpix_to_lonlat(ipix, SCENE_TILE_DEPTH)
    ra0, dec0 = float(lon.deg[0]), float(lat.deg[0])
    vlon, vlat = hp.vertices(ipix, SCENE_TILE_DEPTH)
    r0, d0, r1, d1 = map(np.radians, (ra0, dec0, vlon.deg[0], vlat.deg[0]))
    sep = np.degrees(np.arccos(np.clip(np.sin(d0) * np.sin(d1) + np.cos(d0) * np.cos(d1) * np.cos(r1 - r0), -1, 1)))
    radius = float(sep.max()) * 1.02
    kwargs = {"density_per_arcmin2": density} if density is not None else {}
    scene = random_scene(ra0, dec0, radius, star_fraction=star_fraction, faint_limit=faint_limit,
                         seed=int(seed) * 1_000_003 + int(tile), **kwargs)
    t = scene.table
    inside = hp.lonlat_to_healpix(Longitude(t["ra"].to_numpy() * u.deg), Latitude(t["dec"].to_numpy() * u.deg),
                                  SCENE_TILE_DEPTH) == tile
    t = t[inside].reset_index(drop=True)
    t["source_id"] = np.int64(tile) * 1_000_000 + np.arange(len(t), dtype=np.int64)
    return t


def scene_tiles(discs) -> list[int]:
    """HEALPix tiles (depth :data:`SCENE_TILE_DEPTH`) meeting any (ra, dec, radius) disc (deg)."""
    import astropy.units as u
    import cdshealpix.nested as hp
    from astropy.coordinates import Latitude, Longitude

    tiles: set[int] = set()
    for ra, dec, radius in discs:
        ipix, _, _ = hp.cone_search(Longitude(ra * u.deg), Latitude(dec * u.deg), radius * u.deg,
                                    SCENE_TILE_DEPTH, flat=True)
        tiles.update(int(i) for i in ipix)
    return sorted(tiles)


def make_scene(tiles, scene_path, gaia_path, *, density_per_arcmin2=None, star_fraction=0.1, faint_limit=27.0,
               seed=0, refcat_g_limit=21.0):
    """Write the simulated sky (sources of the HEALPix ``tiles``) and its Gaia-like reference catalog.

    The reference catalog holds the stars brighter than ``refcat_g_limit`` (G mag;
    21 is Gaia DR3's depth, small test patches need a deeper one to have enough stars).

    Each tile is drawn from its own seed, so a source's properties do not depend
    on which other tiles a plan touches.
    """
    import pandas as pd

    from romanflow.formats import atomic_path
    from romanflow.simulate import Scene, gaia_catalog

    parts = [_tile_scene(t, density=density_per_arcmin2, star_fraction=star_fraction, faint_limit=faint_limit,
                         seed=seed) for t in tiles]
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    with atomic_path(scene_path) as tmp:
        table.to_parquet(tmp, index=False)
    with atomic_path(gaia_path) as tmp:
        gaia_catalog(Scene(table), g_limit=refcat_g_limit, seed=seed).to_parquet(tmp, index=False)
    return {"products": [scene_path, gaia_path], "info": {"n_sources": len(table), "n_tiles": len(tiles)}}


# ------------------------------------------------------------------------------------------ L1
def simulate_one(scene_path, exposure: dict, detector: str, science_size: int, l1_path, truth_dir):
    """Simulate one detector of one planned exposure: L1 file plus truth tables."""
    import pandas as pd

    from romanflow import geometry
    from romanflow.run.plan import ExposurePlan, observation_ids
    from romanflow.simulate import Scene, simulate_detector
    from romanflow.simulate.core import write_detector_products

    e = ExposurePlan(**exposure)
    commanded = geometry.pointing_for(e.ra, e.dec, e.pa).with_offsets(*e.dither, 0.0)
    scene = Scene(pd.read_parquet(scene_path))
    sim = simulate_detector(scene, detector, e.filter, ma_table_number=e.ma_table, pointing=commanded,
                            pointing_error=tuple(e.pointing_error), science_size=science_size, seed=e.seed,
                            start_time=e.start_time, ids=observation_ids(e))
    l1_path, truth = write_detector_products(sim, commanded, l1_path, truth_dir)
    n_on = int(sim.sources["on_detector"].sum())
    return {"products": [l1_path, *truth.values()], "info": {"sources_on_detector": n_on}}


# ------------------------------------------------------------------------------------------ L2
def calibrate_one(l1_path, l2_dir, context=None):
    """L1 -> L2 with the reference files the context selects (:func:`romanflow.calibrate.calibrate_file`);
    ``context`` is a context file, the embedded default store when None."""
    from romanflow.calibrate import CalibrationOptions, calibrate_file

    path, timings = calibrate_file(l1_path, l2_dir, CalibrationOptions(context=context))
    return {"products": [path], "info": {"timings_s": {k: round(v, 3) for k, v in timings.items()}}}


def register_exposure(l2_paths, refcat_path, out_paths, catalog_paths, *, minobj=10, snr_threshold=5.0,
                      searchrad=3.0, fitgeometry="rshift"):
    """Align one exposure's L2 files together to the reference catalog (one tweakreg fit).

    The aligned images go to ``out_paths`` (the calibrated inputs are never
    rewritten), their point-source tables to ``catalog_paths``.
    """
    import warnings

    from romanflow.astrometry.pipeline import align_files, catalog_path
    from romanflow.astrometry.tweakreg import TweakregWarning

    out_dir = Path(out_paths[0]).parent if out_paths else None
    expected = [(out_dir / Path(p).name, catalog_path(out_dir / Path(p).name)) for p in l2_paths]
    if [tuple(map(str, e)) for e in expected] != list(zip(map(str, out_paths), map(str, catalog_paths))):
        raise RomanflowError("registration outputs must be the inputs' names in one folder")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TweakregWarning)
        results = align_files(l2_paths, refcat_path, output_dir=out_dir, snr_threshold=snr_threshold,
                              fitgeometry=fitgeometry, searchrad=searchrad, minobj=minobj)
    fit = results[0][1] if results else {}
    info = {"status": fit.get("status"), "n_matches": fit.get("n_matches"), "reason": fit.get("reason"),
            "warnings": [str(w.message) for w in caught]}
    return {"products": [*out_paths, *catalog_paths], "info": info}


def copy_unregistered(l2_paths, out_paths):
    """Without a reference catalog the calibrated files go on unchanged (hard-linked or copied)."""
    import os
    import shutil

    from romanflow.formats import atomic_path

    for src, dst in zip(l2_paths, out_paths):
        with atomic_path(dst) as tmp:
            try:
                os.link(src, tmp)
            except OSError:
                shutil.copyfile(src, tmp)
    return {"products": list(out_paths), "info": {"status": "SKIPPED", "reason": "no reference catalog"}}


# ------------------------------------------------------------------------------------------ L3
def mosaic_cell(members, skycell: str, optical_element: str, out_path, cutout=None, *, outliers=True):
    """Resample (with outlier rejection) the L2 members onto a sky cell, or a cutout ``(x0, y0, nx, ny)`` of it."""
    from romanflow.mosaic.outliers import outlier_table_path
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_wcs

    wcs = skycell_wcs(skycell)
    if cutout is not None:
        wcs = cutout_wcs(wcs, *cutout)
    product, table = make_mosaic(list(members), wcs, out_path, skycell=skycell, optical_element=optical_element,
                                 outliers=outliers)
    products = [Path(out_path)]
    if table is not None:
        products.append(outlier_table_path(out_path))
    n_out = 0 if table is None else len(table)
    return {"products": products, "info": {"n_inputs": len(members), "n_outlier_pixels": n_out,
                                           "shape": list(product.data.shape)}}


# ------------------------------------------------------------------------------------------ L4
def catalog_cell(mosaic_paths, out_path, *, snr_threshold=5.0, n_pixels=5, deblend=True, psf_photometry=True):
    """Source catalog of one sky cell from its mosaics (multi-band when several filters)."""
    from romanflow.catalog.parquet import write_catalog_parquet
    from romanflow.catalog.products import read_band_image
    from romanflow.catalog.schema import band_token, catalog_columns
    from romanflow.catalog.source_catalog import make_catalog

    images = [read_band_image(p) for p in mosaic_paths]
    bands = [band_token(im.band) for im in images]
    table = make_catalog(images, snr_threshold=snr_threshold, n_pixels=n_pixels, deblend=deblend,
                         psf_photometry=psf_photometry)
    provenance = {
        "catalog_kind": table.meta["catalog_kind"],
        "filters": [im.band for im in images],
        "inputs": [Path(p).name for p in mosaic_paths],
        "exposures": {im.band: [Path(p).name for p in im.exposures] for im in images},
        "reference_files": {im.band: im.provenance.get("reference_files", {}) for im in images},
        "psf_fwhm_arcsec": table.meta["psf_fwhm_arcsec"],
    }
    write_catalog_parquet(table, out_path, columns=catalog_columns(table.meta["catalog_kind"], bands),
                          provenance=provenance)
    return {"products": [out_path], "info": {"n_sources": len(table), "bands": bands}}


def hats_catalog(catalog_paths, skycells, out_dir, *, name="survey"):
    """One HATS catalog of every sky cell's sources: each source once, the merge rule recorded."""
    from romanflow.catalog.hats_io import hats_from_cell_catalogs

    path, record = hats_from_cell_catalogs(catalog_paths, skycells, out_dir, catalog_name=name, overwrite=True)
    if path is None:
        return {"products": [], "info": {"n_sources": 0, "note": "no sources: no HATS catalog written"}}
    return {"products": [out_dir], "info": {"n_sources": record["rows_kept"], "merge": record}}


def hips_trees(mosaic_paths, out_dir):
    """HiPS tiles of the mosaics, merged into the trees of ``out_dir`` (:func:`romanflow.hips.build_hips`)."""
    from romanflow.hips import build_hips

    report = build_hips(mosaic_paths, out_dir)
    return {"products": [out_dir], "info": {"bands": report.bands, "order": report.order,
                                            "tiles_written": report.tiles_written,
                                            "colour_tiles_written": report.colour_tiles_written}}


def inject_cell(mosaic_paths, catalog_path, out_dir, **options):
    """Source injection into one sky cell's mosaics (:func:`romanflow.inject.pipeline.inject_cell`)."""
    from romanflow.inject.pipeline import inject_cell as run

    return run(mosaic_paths, catalog_path, out_dir, **options)


def depth_map(output_paths, out_dir, *, name="survey"):
    """HEALPix depth map of the survey (:func:`romanflow.inject.pipeline.survey_depth_map`)."""
    from romanflow.inject.pipeline import survey_depth_map

    return survey_depth_map(output_paths, out_dir, name=name)


#: Task kinds and the functions that do them.
TASK_FUNCTIONS = {
    "scene": make_scene,
    "simulate": simulate_one,
    "calibrate": calibrate_one,
    "register": register_exposure,
    "passthrough": copy_unregistered,
    "mosaic": mosaic_cell,
    "catalog": catalog_cell,
    "hats": hats_catalog,
    "hips": hips_trees,
    "inject": inject_cell,
    "depth_map": depth_map,
}


def _cap_threads(n: int | None) -> None:
    if not n:
        return
    import numba

    numba.set_num_threads(max(1, min(int(n), numba.config.NUMBA_NUM_THREADS)))


def execute(task, root, numba_threads=None, *dependencies, force: bool = False) -> dict:
    """Run one task unless the ledger says it is done (or ``force``); returns a small summary.

    ``dependencies`` are the summaries of the tasks this one needs (only their
    presence matters: they order the work on a Dask cluster).
    """
    from romanflow.run.ledger import Ledger

    ledger = Ledger(root)
    entry = None if force else ledger.done(task.key)
    if entry is not None:
        return {"key": task.key, "kind": task.kind, "skipped": True, "seconds": entry["seconds"],
                "info": entry.get("info", {})}
    _cap_threads(numba_threads)
    start = time.perf_counter()
    result = TASK_FUNCTIONS[task.kind](**task.params)
    seconds = time.perf_counter() - start
    ledger.record(task.key, result["products"], seconds=seconds, info=result.get("info"))
    return {"key": task.key, "kind": task.kind, "skipped": False, "seconds": seconds,
            "info": result.get("info", {}), "products": [str(p) for p in result["products"]]}


def detector_disc(detector, pointing, science_size: int, margin_arcsec: float):
    """(ra, dec, radius) deg of a disc holding a detector's footprint plus a margin."""
    from romanflow import geometry

    proj = geometry.DetectorProjection(detector, pointing, science_size)
    c = (science_size - 1) / 2.0
    ra0, dec0 = proj.pixel_to_world(np.array([c]), np.array([c]))
    half_diag = science_size / 2.0 * math.sqrt(2.0) * 0.11 * 1.1 / 3600.0
    return float(ra0[0]), float(dec0[0]), half_diag + margin_arcsec / 3600.0
