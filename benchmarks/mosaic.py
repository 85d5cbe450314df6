"""Benchmark: resample full-size L2 images onto one full sky cell (5000 x 5000 at 0.055").

Run: ``.venv/bin/python -m benchmarks.mosaic [--n-inputs 5] [--outliers]``. Inputs are
synthesized 4088 x 4088 WFI07 images (dithered by a few arcsec) generated one at a
time, so memory holds one input plus the output accumulators.
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np


def _rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-inputs", type=int, default=5)
    parser.add_argument("--size", type=int, default=4088)
    parser.add_argument("--outliers", action="store_true", help="also time outlier detection")
    args = parser.parse_args(argv)

    from drizzle.utils import calc_pixmap

    from romanflow.geometry import DetectorProjection, detector_gwcs, pointing_for
    from romanflow.mosaic.outliers import detect_outliers
    from romanflow.mosaic.pixmap import fast_pixmap
    from romanflow.mosaic.resample import resample
    from romanflow.mosaic.skycells import skycell_containing, skycell_wcs
    from romanflow.mosaic.synthetic import make_rate_image

    n = args.size
    pointing = pointing_for(150.1, 2.2, 30.0)
    dp = DetectorProjection("WFI07", pointing, n)
    ra_c, dec_c = dp.pixel_to_world((n - 1) / 2, (n - 1) / 2)
    cell = skycell_containing(ra_c, dec_c)[0]
    wcs = skycell_wcs(cell)
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(20, n - 20, 2000), rng.uniform(20, n - 20, 2000)
    stars = (*dp.pixel_to_world(xs, ys), rng.uniform(5, 500, xs.size))
    offsets = [(3.1 * k, -2.3 * k) for k in range(args.n_inputs)]

    rows = []
    t = time.perf_counter()
    first = make_rate_image("WFI07", pointing, n, stars, seed=0)
    rows.append(("synthesize one 4088^2 L2", time.perf_counter() - t))

    t = time.perf_counter()
    fast = fast_pixmap(first.wcs, first.data.shape, wcs, step=32)
    t_fast = time.perf_counter() - t
    rows.append((f"pixmap, spline nodes every {fast.step} px (+area map)", t_fast))
    t = time.perf_counter()
    gwcs_in = detector_gwcs("WFI07", pointing, n)
    reference = calc_pixmap(gwcs_in, wcs)
    t_ref = time.perf_counter() - t
    rows.append(("pixmap, drizzle.utils.calc_pixmap (gwcs)", t_ref))
    ok = np.isfinite(reference[..., 0])
    max_diff = float(np.max(np.abs(fast.pixmap[ok] - reference[ok])))
    del reference, fast, first

    def inputs():
        for k, off in enumerate(offsets):
            yield make_rate_image("WFI07", pointing.with_offsets(*off), n, stars, seed=k, exposure=k + 1)

    t = time.perf_counter()
    synth = 0.0
    product = resample(inputs(), wcs)
    total = time.perf_counter() - t
    # the synthesis happens inside the loop: measure it alone to separate it out
    t = time.perf_counter()
    for _ in inputs():
        pass
    synth = time.perf_counter() - t
    rows.append((f"resample {args.n_inputs} inputs onto {wcs.array_shape[0]}^2 cell (excl. synthesis)",
                 total - synth))
    rows.append(("  per input", (total - synth) / args.n_inputs))
    covered = float(np.mean(product.weight > 0))

    if args.outliers:
        import tempfile

        from romanflow.formats import write_l2

        with tempfile.TemporaryDirectory() as folder:
            paths = [write_l2(im, f"{folder}/in{k}_cal.asdf") for k, im in enumerate(inputs())]
            t = time.perf_counter()
            found = detect_outliers(paths, wcs, workdir=folder)
            rows.append((f"outlier detection, {args.n_inputs} files (2 reads each)", time.perf_counter() - t))
            rows.append(("  pixels flagged", float(len(found.table))))

    print(f"sky cell {cell}: {wcs.array_shape[1]} x {wcs.array_shape[0]} px at 0.055\", "
          f"{args.n_inputs} inputs of {n} x {n} px; covered fraction {covered:.2f}")
    print(f"{'step':<62} {'seconds':>9}")
    print("-" * 72)
    for label, value in rows:
        print(f"{label:<62} {value:9.2f}")
    print("-" * 72)
    print(f"pixmap speed-up vs calc_pixmap: {t_ref / t_fast:.1f}x; max |fast - calc_pixmap| = {max_diff:.2e} px")
    print(f"peak RSS: {_rss_gib():.2f} GiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
