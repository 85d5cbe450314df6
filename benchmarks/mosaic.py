"""Benchmark: one full sky cell (5000 x 5000 at 0.055") from 8, 16 and 32 full-size L2 files.

Run: ``.venv/bin/python -m benchmarks.mosaic [--inputs 8 16 32] [--pixmap]``.

The inputs are synthetic 4088 x 4088 WFI07 L2 files (Gaussian stars, dithered by a few
arcsec, all covering the cell) written once to ``--workdir`` and reused by later runs. Each input count runs
in a fresh process: outlier detection (each input drizzled alone to its own file, the
median formed in blocks of rows, blotted back and compared) and then the final resample,
so that the process's peak resident memory is that of one mosaic. The anchor is the
smallest input count of the same run: memory must stay flat (the largest count within
1.25x of it) and under 4 GiB. ``--pixmap`` also times the fast pixel map against
``drizzle.utils.calc_pixmap`` on one input.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks.environment import header, peak_rss_gib, verdict

DETECTOR = "WFI07"
MEMORY_LIMIT_GIB = 4.0
FLATNESS = 1.25


def _scene(n: int, n_stars: int):
    from romanflow.geometry import DetectorProjection, pointing_for
    from romanflow.mosaic.skycells import skycell_containing, skycell_wcs

    pointing = pointing_for(150.1, 2.2, 30.0)
    dp = DetectorProjection(DETECTOR, pointing, n)
    cell = skycell_containing(*dp.pixel_to_world((n - 1) / 2, (n - 1) / 2))[0]
    rng = np.random.default_rng(0)
    xs, ys = rng.uniform(20, n - 20, n_stars), rng.uniform(20, n - 20, n_stars)
    stars = (*dp.pixel_to_world(xs, ys), rng.uniform(5, 500, xs.size))
    return pointing, cell, skycell_wcs(cell), stars


def _offsets(k: int) -> tuple[float, float]:
    """Dither k (arcsec): a 4 x 8 pattern within +-10", so every input covers the cell alike."""
    return (-9.0 + 2.6 * (k % 8) + 0.37 * (k // 8), -6.0 + 3.9 * (k // 8) + 0.21 * (k % 8))


def _one(folder: Path, n_inputs: int, size: int, n_stars: int) -> dict:
    """Child process: outliers + resample of the first ``n_inputs`` files; times and peak memory."""
    from romanflow.mosaic.outliers import detect_outliers
    from romanflow.mosaic.resample import resample

    _, _, wcs, _ = _scene(size, n_stars)
    paths = sorted(folder.glob("*_cal.asdf"))[:n_inputs]
    base = peak_rss_gib()
    t0 = time.perf_counter()
    work = folder / f"work{n_inputs}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    found = detect_outliers(paths, wcs, workdir=work)
    t1 = time.perf_counter()
    product = resample(iter(paths), wcs, units="rate", extra_flags=found.flags, sky_levels=found.sky_levels)
    t2 = time.perf_counter()
    shutil.rmtree(work, ignore_errors=True)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return {"cpu_s": usage.ru_utime + usage.ru_stime, "n": n_inputs, "outliers_s": t1 - t0, "resample_s": t2 - t1, "flagged": len(found.table),
            "covered": float(np.mean(product.weight > 0)), "base_gib": base, "peak_gib": peak_rss_gib()}


def _pixmap_rows(pointing, wcs, size):
    from drizzle.utils import calc_pixmap

    from romanflow.geometry import detector_gwcs
    from romanflow.mosaic.pixmap import fast_pixmap

    gw = detector_gwcs(DETECTOR, pointing, size)
    t = time.perf_counter()
    fast = fast_pixmap(gw, (size, size), wcs, step=32)
    t_fast = time.perf_counter() - t
    t = time.perf_counter()
    reference = calc_pixmap(gw, wcs)
    t_ref = time.perf_counter() - t
    ok = np.isfinite(reference[..., 0])
    diff = float(np.max(np.abs(fast.pixmap[ok] - reference[ok])))
    return t_fast, t_ref, diff


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--inputs", type=int, nargs="+", default=[8, 16, 32], help="input counts to run")
    parser.add_argument("--size", type=int, default=4088, help="input side (pixels)")
    parser.add_argument("--stars", type=int, default=2000, help="stars on each input")
    parser.add_argument("--pixmap", action="store_true", help="also time the pixel map against calc_pixmap")
    parser.add_argument("--workdir", default="/tmp/romanflow_bench_mosaic",
                        help="folder for the inputs (kept and reused) and the outlier work files")
    parser.add_argument("--parallel", action="store_true",
                        help="run the input counts at the same time (for a loaded machine; compare CPU times)")
    parser.add_argument("--one", nargs=2, metavar=("FOLDER", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(_one(Path(args.one[0]), int(args.one[1]), args.size, args.stars)))
        return 0

    header("mosaic")
    from romanflow.formats import write_l2
    from romanflow.mosaic.synthetic import make_rate_image

    counts = sorted(set(args.inputs))
    pointing, cell, wcs, stars = _scene(args.size, args.stars)
    print(f"sky cell {cell}: {wcs.array_shape[1]} x {wcs.array_shape[0]} px at 0.055\"; inputs "
          f"{args.size} x {args.size} px ({DETECTOR}, {args.stars} stars, dithers within 10\")", flush=True)
    results = []
    folder = Path(args.workdir) / "inputs"
    folder.mkdir(parents=True, exist_ok=True)
    stamp = folder / "inputs.json"
    setup = {"size": args.size, "stars": args.stars}
    have = json.loads(stamp.read_text()) if stamp.is_file() else {}
    t = time.perf_counter()
    made = 0
    for k in range(max(counts)):
        path = folder / f"r0000101001001001001_{k + 1:04d}_wfi07_cal.asdf"
        if have == setup and path.is_file():
            continue
        stamp.unlink(missing_ok=True)
        image = make_rate_image(DETECTOR, pointing.with_offsets(*_offsets(k)), args.size, stars, seed=k,
                                exposure=k + 1)
        write_l2(image, path)
        made += 1
        del image
    stamp.write_text(json.dumps(setup))
    print(f"{max(counts)} L2 inputs in {folder} ({made} synthesized now, {time.perf_counter() - t:.0f} s; "
          f"{sum(p.stat().st_size for p in folder.glob('*.asdf')) / 2**30:.1f} GiB)", flush=True)
    commands = {n: [sys.executable, "-m", "benchmarks.mosaic", "--size", str(args.size), "--stars", str(args.stars),
                    "--one", str(folder), str(n)] for n in counts}
    if args.parallel:  # all counts at once, each in its own process (memory adds up; CPU times stay fair)
        procs = {n: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n, cmd in commands.items()}
        outputs = {n: (*p.communicate(), p.returncode) for n, p in procs.items()}
    else:
        outputs = {}
        for n, cmd in commands.items():
            done = subprocess.run(cmd, capture_output=True, text=True)
            outputs[n] = (done.stdout, done.stderr, done.returncode)
    for n in counts:
        stdout, stderr, rc = outputs[n]
        if rc != 0:
            print(stderr[-3000:], file=sys.stderr)
            return 1
        results.append(json.loads(stdout.strip().splitlines()[-1]))
        r = results[-1]
        print(f"  {n} inputs: {r['outliers_s'] + r['resample_s']:.0f} s wall, {r['cpu_s']:.0f} s CPU, "
              f"peak {r['peak_gib']:.2f} GiB (load average {os.getloadavg()[0]:.1f})", flush=True)

    anchor = results[0]
    per_input = lambda r: (r["outliers_s"] + r["resample_s"]) / r["n"]  # noqa: E731
    cpu_per_input = lambda r: r["cpu_s"] / r["n"]  # noqa: E731
    print()
    print(f"{'inputs':>6} {'outliers s':>10} {'resample s':>10} {'s/input':>8} {'CPU s/input':>11} {'vs anchor':>9} "
          f"{'peak GiB':>9} {'vs anchor':>9} {'flagged px':>10} {'covered':>8}")
    print("-" * 100)
    for r in results:
        print(f"{r['n']:>6} {r['outliers_s']:>10.1f} {r['resample_s']:>10.1f} {per_input(r):>8.2f} "
              f"{cpu_per_input(r):>11.2f} {cpu_per_input(r) / cpu_per_input(anchor):>9.2f} {r['peak_gib']:>9.2f} "
              f"{r['peak_gib'] / anchor['peak_gib']:>9.2f} {r['flagged']:>10d} {r['covered']:>8.2f}")
    print("-" * 100)
    print("CPU s/input: process CPU time (imports included) per input; wall times depend on the machine's load"
          + ("; the counts ran at the same time (--parallel)" if args.parallel else ""))
    print(f"anchor: the {anchor['n']}-input run of this invocation; memory after imports "
          f"{anchor['base_gib']:.2f} GiB; an in-memory stack of single images would need "
          f"{max(counts) * wcs.array_shape[0] * wcs.array_shape[1] * 4 / 2**30:.1f} GiB for {max(counts)} inputs")
    if args.pixmap:
        t_fast, t_ref, diff = _pixmap_rows(pointing, wcs, args.size)
        print(f"pixel map of one input: fast {t_fast:.2f} s, calc_pixmap (gwcs) {t_ref:.2f} s, "
              f"{t_ref / t_fast:.1f}x; max difference {diff:.2e} px")
    largest = results[-1]
    misses = []
    if largest["peak_gib"] >= MEMORY_LIMIT_GIB:
        misses.append(f"peak memory at {largest['n']} inputs {largest['peak_gib']:.2f} GiB >= {MEMORY_LIMIT_GIB} GiB")
    if largest["peak_gib"] > FLATNESS * anchor["peak_gib"]:
        misses.append(f"memory not flat: {largest['peak_gib'] / anchor['peak_gib']:.2f}x the {anchor['n']}-input "
                      f"peak at {largest['n']} inputs (limit {FLATNESS}x)")
    return verdict(misses)


if __name__ == "__main__":
    raise SystemExit(main())
