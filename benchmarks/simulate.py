"""Benchmark: simulate one full-size detector (4088² science pixels, MA table 4).

Run as ``.venv/bin/python -m benchmarks.simulate [--n-sources N] [--detector WFI07]``.
Prints wall time per stage, peak resident memory, and validates the L1 file
with roman_datamodels.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sources", type=int, default=10000)
    parser.add_argument("--detector", default="WFI07")
    parser.add_argument("--size", type=int, default=4088)
    parser.add_argument("--keep", default=None, help="directory to keep the outputs in")
    args = parser.parse_args(argv)

    import numpy as np
    import roman_datamodels.datamodels as rdm

    from romanflow import geometry
    from romanflow.formats.asdf_io import write_l1
    from romanflow.simulate import simulate_detector
    from romanflow.simulate.core import _field_radius
    from romanflow.simulate.scene import random_scene

    # warm-up: numba compilation (cached on disk after the first run) and PSF builds at small size
    t0 = time.perf_counter()
    pointing = geometry.pointing_for(270.0, 66.0, 0.0)
    small = random_scene(270.0, 66.0, 0.05, n_sources=100, seed=1)
    simulate_detector(small, args.detector, "F158", pointing=pointing, science_size=248, seed=1)
    warm = time.perf_counter() - t0

    radius = _field_radius(pointing, [args.detector], args.size)
    full_area = (4088 * 0.11 / 60.0) ** 2
    t0 = time.perf_counter()
    scene = random_scene(270.0, 66.0, radius, density_per_arcmin2=args.n_sources / full_area, seed=2)
    t_scene = time.perf_counter() - t0
    timings: dict = {}
    t0 = time.perf_counter()
    sim = simulate_detector(scene, args.detector, "F158", pointing=pointing, science_size=args.size, seed=3,
                            timings=timings)
    t_sim = time.perf_counter() - t0
    n_on = int(sim.sources["on_detector"].sum())
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(args.keep or tmp)
        t0 = time.perf_counter()
        path = write_l1(sim.exposure, out / f"r0000101001001001001_0001_{args.detector.lower()}_uncal.asdf")
        t_write = time.perf_counter() - t0
        size_mb = path.stat().st_size / 1e6
        t0 = time.perf_counter()
        with rdm.open(path) as model:
            model.validate()
            shape = model.data.shape
        t_validate = time.perf_counter() - t0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2

    rows = [
        ("warm-up (small detector)", f"{warm:.1f} s"),
        ("scene generation", f"{t_scene:.2f} s ({len(scene)} sources in field)"),
        ("sources on detector", f"{n_on}"),
        ("render (cores + wings)", f"{timings.get('render', np.nan):.1f} s"),
        ("ramp (numba, per read)", f"{timings.get('ramp', np.nan):.1f} s"),
        ("correlated noise + quantise", f"{timings.get('noise', np.nan):.1f} s"),
        ("simulate_detector total", f"{t_sim:.1f} s"),
        ("write L1 ASDF", f"{t_write:.1f} s ({size_mb:.0f} MB, shape {shape})"),
        ("rdm.open + validate", f"{t_validate:.2f} s: valid"),
        ("end-to-end (sim + write)", f"{t_sim + t_write:.1f} s"),
        ("process CPU time (all stages)", f"{cpu:.1f} s (load average {os.getloadavg()[0]:.1f})"),
        ("peak resident memory", f"{peak_gib:.2f} GiB"),
    ]
    width = max(len(r[0]) for r in rows)
    print(f"simulate benchmark: {args.detector}, F158, MA table 4, science size {args.size}")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
