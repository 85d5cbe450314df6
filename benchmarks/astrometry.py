"""Registration accuracy and timing of detection + tweakreg for a full exposure (18 detectors).

Simulates one exposure with an injected pointing error, calibrates it, then
detects point sources on every detector and aligns the exposure to the
simulated Gaia catalog with one global fit. Prints, per detector, the detection
time, the sources and matches, and the RMS sky-position error of bright stars
(S/N > 100) against the simulator's truth before and after the fit.

    .venv/bin/python -m benchmarks.astrometry [--size 1016] [--detectors 18] [--full-size-detection]

Full-size detectors (4088) take about a minute each to simulate, so the
exposure uses central patches of ``--size`` pixels; ``--full-size-detection``
adds the detection time on one full 4088² detector.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from romanflow import geometry
from romanflow.detector import DETECTORS, PIXEL_SCALE
from romanflow.validation import rms_mas, sky_errors_mas


def star_field(pointing, detectors, size, *, per_arcmin2=150.0, star_fraction=0.5, seed=0):
    from romanflow.simulate import random_scene
    from romanflow.simulate.scene import Scene

    tables, offset = [], 0
    centre = np.array([(size - 1) / 2.0])
    radius = 0.75 * size * PIXEL_SCALE / 3600.0
    area = np.pi * (radius * 60) ** 2
    for k, det in enumerate(detectors):
        ra, dec = geometry.DetectorProjection(det, pointing, size).pixel_to_world(centre, centre)
        t = random_scene(float(ra[0]), float(dec[0]), radius, n_sources=int(per_arcmin2 * area),
                         star_fraction=star_fraction, faint_limit=24.0, seed=seed + k).table
        t["source_id"] += offset
        offset += len(t)
        tables.append(t)
    return Scene(pd.concat(tables, ignore_index=True))


def main(argv=None) -> int:
    from romanflow.astrometry.detect import source_catalog
    from romanflow.astrometry.refcat import read_refcat
    from romanflow.astrometry.tweakreg import tweakreg
    from romanflow.calibrate import calibrate
    from romanflow.formats.asdf_io import read_l2
    from romanflow.simulate import simulate

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1016, help="science pixels per detector side")
    parser.add_argument("--detectors", type=int, default=18)
    parser.add_argument("--full-size-detection", action="store_true")
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args(argv)
    detectors = DETECTORS[: args.detectors]
    commanded = geometry.pointing_for(270.0, 66.0, 0.0)
    error = (1.4, -1.4, 0.05)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="astrometry_bench_"))
    t0 = time.perf_counter()
    sim = simulate(star_field(commanded, detectors, args.size), detectors, "F158", pointing=commanded,
                   pointing_error=error, science_size=args.size, seed=1, output_dir=work, overwrite=True)
    t_sim = time.perf_counter() - t0
    t0 = time.perf_counter()
    l2 = calibrate(sim["l1"], work / "l2", overwrite=True)
    t_cal = time.perf_counter() - t0
    images = [read_l2(p) for p in l2]
    truth = [pd.read_parquet(p) for p in sim["sources"]]
    source_catalog(images[0])  # compile and build the PSF once, outside the timings
    catalogs, t_det = [], []
    for im in images:
        t0 = time.perf_counter()
        catalogs.append(source_catalog(im))
        t_det.append(time.perf_counter() - t0)
    before = [sky_errors_mas(im, c, t) for im, c, t in zip(images, catalogs, truth)]
    t0 = time.perf_counter()
    tweakreg(images, catalogs, read_refcat(sim["gaia"]))
    t_tweak = time.perf_counter() - t0
    after = [sky_errors_mas(im, c, t) for im, c, t in zip(images, catalogs, truth)]
    result = images[0].meta["wcs_fit_results"]
    print(f"\nexposure: {len(detectors)} detectors of {args.size}x{args.size} pixels; injected error "
          f"{error[0]:+.2f}\" {error[1]:+.2f}\" {error[2]:+.3f} deg; simulate {t_sim:.0f} s, calibrate {t_cal:.0f} s")
    print(f"{'detector':8s} {'detect s':>8s} {'sources':>8s} {'S/N>100':>8s} {'before mas':>11s} {'after mas':>10s}")
    for k, det in enumerate(detectors):
        print(f"{det:8s} {t_det[k]:8.2f} {len(catalogs[k]):8d} {len(after[k]):8d} {rms_mas(before[k]):11.1f} "
              f"{rms_mas(after[k]):10.2f}")
    print(f"{'all':8s} {sum(t_det):8.2f} {sum(len(c) for c in catalogs):8d} {sum(len(a) for a in after):8d} "
          f"{rms_mas(np.vstack(before)):11.1f} {rms_mas(np.vstack(after)):10.2f}")
    print(f"tweakreg (one global fit): {t_tweak:.2f} s, {result['status']}, {result.get('n_matches')} matches, "
          f"shift {result.get('shift_arcsec')} arcsec, rotation {result.get('rotation_deg')} deg "
          f"(expected {list(error[:2])}, {-error[2]})")
    if args.full_size_detection:
        from romanflow.simulate import simulate_detector

        from romanflow.calibrate import calibrate_exposure

        sim1 = simulate_detector(star_field(commanded, ["WFI01"], 4088), "WFI01", "F158", pointing=commanded,
                                 science_size=4088, seed=2)
        image, _ = calibrate_exposure(sim1.exposure)
        t0 = time.perf_counter()
        cat = source_catalog(image)
        print(f"full-size detector WFI01 (4088x4088): detection {time.perf_counter() - t0:.1f} s, "
              f"{len(cat)} sources")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
