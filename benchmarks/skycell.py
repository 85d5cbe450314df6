"""Benchmark: one full sky cell from full-size L2 files to its catalog (mosaic, catalog, Parquet, HATS).

Run: ``.venv/bin/python -m benchmarks.skycell [--n-inputs 5] [--stars 20000]``. The inputs are
synthetic 4088 x 4088 WFI07 L2 files (Gaussian stars, dithered by a few arcsec) written to a
temporary folder; the mosaic is the 5000 x 5000 cell at 0.055" with outlier rejection, and the
catalog is measured on it, with PSF fits on each input exposure. Targets: the catalog including
the exposure PSF fits in < 30 s, peak memory < 4 GiB.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-inputs", type=int, default=5)
    parser.add_argument("--size", type=int, default=4088, help="input side (pixels)")
    parser.add_argument("--stars", type=int, default=20_000, help="stars on each input detector")
    args = parser.parse_args(argv)

    from benchmarks.environment import header, verdict

    header("skycell")
    from romanflow.catalog.exposure_photometry import exposure_psf_photometry
    from romanflow.catalog.hats_io import write_hats
    from romanflow.catalog.parquet import write_catalog_parquet
    from romanflow.catalog.products import read_band_image
    from romanflow.catalog.schema import catalog_columns
    from romanflow.catalog.source_catalog import make_catalog
    from romanflow.formats import write_l2
    from romanflow.geometry import DetectorProjection, pointing_for
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.mosaic.skycells import skycell_containing, skycell_wcs
    from romanflow.mosaic.synthetic import make_rate_image

    n = args.size
    pointing = pointing_for(150.1, 2.2, 30.0)
    dp = DetectorProjection("WFI07", pointing, n)
    cell = skycell_containing(*dp.pixel_to_world((n - 1) / 2, (n - 1) / 2))[0]
    wcs = skycell_wcs(cell)
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(20, n - 20, args.stars), rng.uniform(20, n - 20, args.stars)
    stars = (*dp.pixel_to_world(xs, ys), 10 ** rng.uniform(0.3, 3.0, xs.size))  # DN/s, a power law
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        t = time.perf_counter()
        paths = []
        for k in range(args.n_inputs):
            image = make_rate_image("WFI07", pointing.with_offsets(3.1 * k, -2.3 * k, 0.0), n, stars, seed=k,
                                    exposure=k + 1)
            paths.append(write_l2(image, folder / f"r0000101001001001001_{k + 1:04d}_wfi07_cal.asdf"))
            del image
        print(f"(synthesized and wrote {args.n_inputs} inputs in {time.perf_counter() - t:.0f} s, not counted)")

        t = time.perf_counter()
        mosaic_path = folder / f"{cell}_f158_coadd.asdf"
        product, outliers = make_mosaic(paths, wcs, mosaic_path, skycell=cell, optical_element="F158")
        rows.append((f"mosaic: outliers + resample of {args.n_inputs} inputs, write L3", time.perf_counter() - t))
        covered = float(np.mean(product.weight > 0))
        del product

        t = time.perf_counter()
        image = read_band_image(mosaic_path)
        exposures, image.exposures = image.exposures, []
        rows.append(("read L3 + PSF model", time.perf_counter() - t))
        t = time.perf_counter()
        table = make_catalog(image)
        rows.append((f"catalog on the mosaic ({len(table)} sources)", time.perf_counter() - t))
        t = time.perf_counter()
        fits = exposure_psf_photometry(np.asarray(table["ra"]), np.asarray(table["dec"]), exposures,
                                       flux_guess=np.asarray(table["psf_f158_flux"]))
        rows.append((f"PSF fits on the {len(exposures)} exposures ({int((fits['n_exposures'] > 0).sum())} sources)",
                     time.perf_counter() - t))
        t = time.perf_counter()
        path = write_catalog_parquet(table, folder / "cat.parquet", columns=catalog_columns("skycell", ["f158"]),
                                     provenance={"inputs": [mosaic_path.name], "filters": ["F158"]})
        write_hats(table, folder / "hats", pixel_threshold=2000, provenance={"filters": ["F158"]})
        rows.append((f"write Parquet ({path.stat().st_size / 1e6:.1f} MB) + HATS", time.perf_counter() - t))

    print(f"sky cell {cell}: {wcs.array_shape[1]} x {wcs.array_shape[0]} px at 0.055\", covered {covered:.2f}; "
          f"{args.n_inputs} inputs of {n} x {n} px, {args.stars} stars each")
    print(f"{'step':<62} {'seconds':>9}")
    print("-" * 72)
    for label, value in rows:
        print(f"{label:<62} {value:9.2f}")
    print("-" * 72)
    print(f"{'total':<62} {sum(v for _, v in rows):9.2f}")
    print(f"peak RSS: {_rss_gib():.2f} GiB")
    catalog_s = sum(v for label, v in rows if label.startswith(("catalog on", "PSF fits")))
    print(f"catalog including the exposure PSF fits: {catalog_s:.1f} s (target < 30 s)")
    misses = []
    if catalog_s >= 30.0:
        misses.append(f"catalog including exposure PSF fits {catalog_s:.1f} s >= 30 s")
    if _rss_gib() >= 4.0:
        misses.append(f"peak memory {_rss_gib():.2f} GiB >= 4 GiB")
    return verdict(misses)


if __name__ == "__main__":
    raise SystemExit(main())
