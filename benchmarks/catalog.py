"""Time to catalog a sky-cell-sized image and write Parquet + HATS.

Usage: ``.venv/bin/python -m benchmarks.catalog [--size 5000] [--sources 10000] [--no-psf]``
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000, help="image side (pixels, 0.055\")")
    parser.add_argument("--sources", type=int, default=10_000, help="number of injected sources")
    parser.add_argument("--no-psf", action="store_true", help="skip PSF photometry")
    args = parser.parse_args(argv)

    from romanflow.catalog.hats_io import write_hats
    from romanflow.catalog.parquet import write_catalog_parquet
    from romanflow.catalog.schema import catalog_columns
    from romanflow.catalog.source_catalog import BandImage, make_catalog
    from romanflow.catalog.synthetic import random_scene, render, tan_wcs

    shape = (args.size, args.size)
    scale, fwhm = 0.055, 0.15
    rows = []

    t0 = time.perf_counter()
    n_gal = args.sources // 5
    scene = random_scene(shape, args.sources - n_gal, n_gal, flux_range_njy=(20.0, 2e4), min_separation=8.0,
                         galaxy_hlr_arcsec=(0.15, 0.4), seed=1)
    image, err, _ = render(scene, shape, psf_fwhm_arcsec=fwhm, sky_sigma_njy=1.0, background_njy=3.0, seed=2)
    rows.append(("render synthetic image (GalSim)", time.perf_counter() - t0))

    njy = 1e15 * (scale / 206264.806) ** 2
    band_image = BandImage("F158", image / njy, err / njy, tan_wcs(shape, scale), njy, psf_fwhm_arcsec=fwhm)
    t0 = time.perf_counter()
    table = make_catalog(band_image, psf_photometry=not args.no_psf)
    rows.append((f"detect + measure ({len(table)} sources)", time.perf_counter() - t0))

    if not args.no_psf:
        rows.extend(_compare_psf_fitters(image, err, table, fwhm / scale))

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        path = write_catalog_parquet(table, Path(tmp) / "cat.parquet", columns=catalog_columns("skycell", ["f158"]),
                                     provenance={"inputs": ["synthetic"], "filters": ["F158"]})
        rows.append((f"write Parquet ({path.stat().st_size / 1e6:.1f} MB)", time.perf_counter() - t0))
        t0 = time.perf_counter()
        write_hats(table, Path(tmp) / "hats", pixel_threshold=2000, provenance={"filters": ["F158"]})
        n_leaves = len(list((Path(tmp) / "hats" / "dataset").glob("Norder=*/Dir=*/*.parquet")))
        rows.append((f"write HATS ({n_leaves} partitions)", time.perf_counter() - t0))

    width = max(len(r[0]) for r in rows)
    print(f"catalog benchmark: {args.size}x{args.size} image, {args.sources} injected sources, "
          f"PSF photometry {'off' if args.no_psf else 'on'}")
    print(f"{'stage':<{width}}  seconds")
    print(f"{'-' * width}  -------")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    total = sum(s for name, s in rows[1:] if not name.startswith("PSF fits of"))
    print(f"{'catalog + Parquet + HATS':<{width}}  {total:7.2f}")
    return 0


def _compare_psf_fitters(image, err, table, fwhm_pix, n_max: int = 2000):
    """Time our PSF-fit kernel and photutils' PSFPhotometry on the same sources, side by side."""
    import warnings

    import numpy as np
    from astropy.table import QTable
    from photutils.psf import PSFPhotometry

    from romanflow.catalog.photometry import gaussian_psf
    from romanflow.kernels.psf_fit import fit_psf_sources
    from romanflow.catalog.photometry import sampled_psf

    x = np.asarray(table["x_centroid"], float)[:n_max]
    y = np.asarray(table["y_centroid"], float)[:n_max]
    guess = np.nan_to_num(np.asarray(table["kron_f158_flux"], float)[:n_max], nan=1.0)
    model = gaussian_psf(fwhm_pix)
    samples, oversample = sampled_psf(model)
    fit_psf_sources(image[:64, :64], err[:64, :64], x[:1] * 0, y[:1] * 0, samples, oversample)  # compile
    t0 = time.perf_counter()
    ours = fit_psf_sources(image, err, x, y, samples, oversample, flux_guess=guess, half=2)
    t_ours = time.perf_counter() - t0
    init = QTable({"x": x, "y": y, "flux": np.where(guess > 0, guess, 1.0)})
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = PSFPhotometry(model, fit_shape=(5, 5), aperture_radius=2.5)(image, error=err, init_params=init)
    t_theirs = time.perf_counter() - t0
    both = (ours["flags"] == 0) & (np.asarray(theirs["flags"]) == 0)
    diff = np.median(np.abs(ours["flux"][both] / np.asarray(theirs["flux_fit"])[both] - 1))
    return [(f"PSF fits of {len(x)} sources: romanflow kernel", t_ours),
            (f"PSF fits of {len(x)} sources: photutils PSFPhotometry "
             f"({t_theirs / t_ours:.0f}x slower; median |flux difference| {diff:.1e})", t_theirs)]


if __name__ == "__main__":
    raise SystemExit(main())
