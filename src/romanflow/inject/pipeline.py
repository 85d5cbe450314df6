"""Injection per sky cell and the survey's depth map: the functions the run graph calls.

:func:`inject_cell` generates sources on a sky cell's mosaics (one set of sky
positions for every band), injects them at L3, catalogues the injected
mosaics together as the cell's own catalog was made (one multi-band detection),
matches, and writes the cell's input/output catalogs, curves, depth and plot.
:func:`survey_depth_map` gathers every cell's output into a HEALPix map of the
50% completeness magnitude.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

_log = logging.getLogger(__name__)


def inject_cell(mosaic_paths, catalog_path, out_dir, *, cell: str, n: int = 2000, mag_range=(20.0, 28.0),
                star_fraction: float = 0.5, seed: int = 0, avoid_real_arcsec: float | None = None,
                noise: bool = True, snr_threshold: float = 5.0, n_pixels: int = 5, deblend: bool = True,
                psf_fwhm_arcsec: float | None = None) -> dict:
    """Inject ``n`` sources into one sky cell's mosaics, recover them, write the cell's injection products.

    Parameters
    ----------
    mosaic_paths : sequence of path
        The cell's L3 mosaics (one per band, one pixel grid).
    catalog_path : path
        The cell's own catalog (the parents' detections: new detections and blend flags).
    out_dir : path
        Folder for the injected mosaics and the products (:mod:`romanflow.inject.products`, stem ``cell``).
    n, mag_range, star_fraction, seed
        Generated sources (:func:`romanflow.inject.sources.generate_sources`).
    avoid_real_arcsec : float, optional
        Keep the sources this far from the cell's catalogued sources (default: anywhere, as real sources are).
    noise : bool
        Poisson noise for the added flux.
    snr_threshold, n_pixels, deblend
        Catalog settings, as for the cell's own catalog.
    psf_fwhm_arcsec : float, optional
        A Gaussian PSF of this FWHM instead of the mosaics' PSF model (as ``romanflow catalog --psf-fwhm``).

    Returns
    -------
    dict
        ``products`` (paths) and ``info`` (50% and 90% completeness magnitudes per band).
    """
    from romanflow.catalog.parquet import read_catalog_parquet
    from romanflow.catalog.products import read_band_image
    from romanflow.geometry import local_pixel_scale
    from romanflow.inject.core import inject_images
    from romanflow.inject.products import write_products
    from romanflow.inject.recover import recover
    from romanflow.inject.sources import generate_sources

    out_dir = Path(out_dir)
    mosaic_paths = [Path(p) for p in mosaic_paths]
    parent = read_catalog_parquet(catalog_path)
    images = [read_band_image(p, psf_fwhm_arcsec=0.15) for p in mosaic_paths]  # geometry and bands only
    first = images[0]
    ny, nx = first.data.shape
    scale = float(local_pixel_scale(first.wcs, [nx / 2], [ny / 2])[0])
    avoid = None
    if avoid_real_arcsec:
        avoid = (np.asarray(getattr(parent["ra"], "value", parent["ra"])),
                 np.asarray(getattr(parent["dec"], "value", parent["dec"])))
    # stay off the cell's empty border (a cutout's margin): sources only where the first band has data
    sources = generate_sources(first.wcs, (ny, nx), [im.band.upper() for im in images], n=n, mag_range=mag_range,
                               star_fraction=star_fraction, avoid=avoid, avoid_radius_arcsec=avoid_real_arcsec or 0.0,
                               pixel_scale_arcsec=scale, seed=seed)
    x, y = (np.asarray(v) for v in first.wcs.world_to_pixel_values(sources["ra"].to_numpy(), sources["dec"].to_numpy()))
    ix, iy = np.clip(np.round(x).astype(int), 0, nx - 1), np.clip(np.round(y).astype(int), 0, ny - 1)
    covered = ~np.asarray(first.mask)[iy, ix] if first.mask is not None else np.ones(len(x), bool)
    sources = sources[covered].reset_index(drop=True)
    results = inject_images(mosaic_paths, sources, out_dir, catalog_name=f"generated on {cell} (seed {seed})",
                            noise=noise, seed=seed, overwrite=True, psf_fwhm_arcsec=psf_fwhm_arcsec)
    by_path = {r.parent: r for r in results}
    group = [by_path[p] for p in mosaic_paths if p in by_path]
    rec = recover([r.path for r in group], [r.sources for r in group], parent_catalog=parent,
                  psf_fwhm_arcsec=psf_fwhm_arcsec, snr_threshold=snr_threshold, n_pixels=n_pixels, deblend=deblend)
    provenance = {"cell": cell, "parents": [str(p) for p in mosaic_paths], "catalog": str(catalog_path),
                  "injected": [str(r.path) for r in group], "seed": seed, "n": int(len(sources)),
                  "mag_range": list(mag_range), "noise": noise}
    paths = write_products(sources, rec.output, rec.detections, out_dir, cell, provenance=provenance,
                           title=f"source injection, sky cell {cell}")
    depth = pd.read_parquet(paths["depth"])
    info = {f"{r.band}_{r.kind}": {"mag50": r.mag50, "mag90": r.mag90} for r in depth.itertuples()}
    products = [*map(str, paths.values()), *(str(r.path) for r in group), *(str(r.sources_path) for r in group)]
    return {"products": products, "info": info}


def choose_order(ra, dec, *, min_sources: int = 100, orders=range(6, 14)) -> int:
    """Deepest HEALPix order whose occupied pixels hold at least ``min_sources`` sources (median)."""
    import astropy.units as u
    from astropy_healpix import HEALPix

    best = min(orders)
    for order in orders:
        pix = HEALPix(nside=2**order, order="nested").lonlat_to_healpix(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg)
        _, counts = np.unique(pix, return_counts=True)
        if np.median(counts) >= min_sources:
            best = order
    return best


def survey_depth_map(output_paths, out_dir, *, name: str = "survey", min_sources: int = 100) -> dict:
    """HEALPix map of the 50% completeness magnitude from every cell's injection output (Parquet + PNG)."""
    from romanflow.inject.metrics import healpix_depth, plot_depth_map
    from romanflow.inject.tables import write_documented_parquet

    outputs = pd.concat([pd.read_parquet(p) for p in output_paths], ignore_index=True)
    out_dir = Path(out_dir)
    first_band = outputs[outputs["band"] == sorted(outputs["band"].unique())[0]]
    order = choose_order(first_band["ra"], first_band["dec"], min_sources=min_sources)
    depth = healpix_depth(outputs, order=order, min_sources=min(min_sources, 30))
    columns = {"band": ("", "filter"), "order": ("", "HEALPix order (nested)"), "pixel": ("", "HEALPix pixel"),
               "n": ("", "injected sources in the pixel"), "mag50": ("mag(AB)", "50% completeness magnitude")}
    table = write_documented_parquet(depth, out_dir / f"{name}_depth_map.parquet", columns,
                                     {"outputs": [str(p) for p in output_paths]})
    png = plot_depth_map(depth, out_dir / f"{name}_depth_map.png")
    return {"products": [str(table), str(png)], "info": {"order": order, "pixels": int(len(depth))}}
