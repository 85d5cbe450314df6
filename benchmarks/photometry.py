"""Accuracy of the catalogs' point-source photometry on a simulated survey, pooled over its sky cells.

Run: ``.venv/bin/python -m benchmarks.photometry [--size 1016] [--detectors WFI01 WFI10]``. The
survey is the main job's (two filters, two dithers, pointing errors) at a larger detector size, so
that enough bright stars enter the statistics. Each true star is counted once, from the first sky
cell that catalogues it. Prints, per band, the flux bias and the normalised residuals of the PSF
fits on the exposures (``psf_exp``) and on the mosaic (``psf``), the colours and the positions.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


#: Two catalog entries of overlapping sky cells closer than this (arcsec) are one source.
DUPLICATE_RADIUS_ARCSEC = 0.05


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1016, help="science pixels per detector side")
    parser.add_argument("--detectors", nargs="+", default=["WFI01", "WFI10"])
    parser.add_argument("--density", type=float, default=800.0, help="sources per arcmin²")
    parser.add_argument("--output", help="keep the products in this folder")
    args = parser.parse_args(argv)

    from astropy.table import QTable, vstack

    from romanflow.catalog.products import read_band_image
    from romanflow.demo import DEMO_PLAN
    from romanflow.run import run_plan
    from romanflow.run.plan import plan_from_dict, tiled_plan
    from romanflow.validation import (catalog_accuracy, colour_accuracy, covered_by, match_sky,
                                      matched_colour_accuracy, survey_truth)

    d = DEMO_PLAN
    scene = dict(d["scene"], density_per_arcmin2=args.density)
    plan = tiled_plan(d["ra"], d["dec"], d["size_deg"], d["filters"], dither=d["dither"], detectors=args.detectors,
                      science_size=args.size, pointing_error_arcsec=d["pointing_error_arcsec"], seed=d["seed"],
                      name="photometry", scene=scene)
    data = plan.to_dict()
    data["registration"] = {"minobj": 5}
    filters = list(d["filters"])
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.output or tmp)
        t0 = time.perf_counter()
        report = run_plan(plan_from_dict(data, source="benchmark"), out)
        elapsed = time.perf_counter() - t0
        if report.failed:
            raise SystemExit(f"run failed: {report.failed}")
        truth = survey_truth(out)
        tables, covered = [], np.zeros(len(truth), bool)
        for path in sorted((out / "l4").glob("*_cat.parquet")):
            cell = path.name.replace("_cat.parquet", "")
            covered |= covered_by(read_band_image(out / "l3" / f"{cell}_{filters[0].lower()}_coadd.asdf"), truth)
            table = QTable.read(path)
            table.meta = {}
            if tables:
                # a source already catalogued by an earlier (overlapping) cell is counted once
                done = vstack(tables)
                i, _, _ = match_sky(np.asarray(table["ra"]), np.asarray(table["dec"]),
                                    np.asarray(done["ra"]), np.asarray(done["dec"]), DUPLICATE_RADIUS_ARCSEC)
                keep = np.ones(len(table), bool)
                keep[i] = False
                table = table[keep]
            tables.append(table)
        pooled = vstack(tables)
        truth = truth[covered]

    print(f"photometry benchmark: {len(args.detectors)} detectors of {args.size}², filters {', '.join(filters)}, "
          f"2 dithers; {report.n_tasks} tasks in {elapsed:.0f} s; {len(pooled)} sources in "
          f"{len(tables)} cells, {int((truth['type'] == 'star').sum())} true stars covered")
    header = (f"{'band':<6}{'flux':<10}{'n S/N>50':>9}{'bias':>9}{'scatter':>9}{'std(z)':>8}"
              f"{'n S/N>20':>9}{'std(z)':>8}{'astrometry':>12}{'complete':>10}{'blends':>8}")
    print(header)
    print("-" * len(header))
    nan = float("nan")
    for band in filters:
        for kind in ("psf_exp", "psf"):
            a = catalog_accuracy(pooled, truth, band, flux_column=f"{kind}_{band.lower()}_flux")
            print(f"{band:<6}{kind:<10}{a.get('n_bright', 0):>9}{a.get('photometric_bias', nan):>9.2%}"
                  f"{a.get('photometric_scatter', nan):>9.4f}{a.get('normalized_residual_std', nan):>8.2f}"
                  f"{a.get('n_snr20', 0):>9}{a.get('normalized_residual_std_snr20', nan):>8.2f}"
                  f"{a.get('astrometric_rms_mas', nan):>8.1f} mas{a.get('completeness_snr10', nan):>10.1%}"
                  f"{a.get('n_blended', 0):>8}")
    c = colour_accuracy(pooled, truth, filters[1], filters[0])
    print(f"{filters[1]}-{filters[0]} colour of {c['n_stars']} stars (S/N > 50 in both): bias "
          f"{c.get('colour_bias', nan):+.4f} mag, scatter {c.get('colour_scatter', nan):.4f} mag, "
          f"std(z) {c.get('colour_residual_std', nan):.2f}")
    for kind, plural, snr in (("star", "stars", 50.0), ("galaxy", "galaxies", 20.0)):
        m = matched_colour_accuracy(pooled, truth, filters[1], filters[0], kind=kind, min_snr=snr)
        print(f"{filters[1]}-{filters[0]} PSF-matched aperture colour of {m['n']} isolated {plural} (S/N > {snr:.0f}): "
              f"bias {m['colour_bias']:+.4f} mag, scatter {m['colour_scatter']:.4f} mag, "
              f"std(z) {m['colour_residual_std']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
