"""Benchmark: one survey plan run on a local Dask cluster with 1 and with 2 workers.

Run as ``.venv/bin/python -m benchmarks.scaling [--size 248] [--detectors WFI01 WFI02] [--dither 2]``.
Each configuration runs the whole plan (scene, simulate, calibrate, register,
mosaic, catalog, HATS) into a fresh folder. Prints, per configuration, the
wall time of the task graph (cluster start-up shown apart), detector exposures
per minute and the speed-up over one worker, then the mean seconds per task
kind (measured inside the workers).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections import defaultdict
from pathlib import Path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=248, help="science pixels per detector side")
    parser.add_argument("--detectors", nargs="+", default=["WFI01", "WFI02"])
    parser.add_argument("--dither", default="2", choices=("none", "2", "4"))
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--density", type=float, default=300.0, help="sources per arcmin²")
    args = parser.parse_args(argv)

    from romanflow.run import build_graph, run_graph, tiled_plan
    from romanflow.run.executors import DaskExecutor

    plan = tiled_plan(270.0, 66.0, 0.05, ["F158"], dither=args.dither, detectors=args.detectors,
                      science_size=args.size, pointing_error_arcsec=0.3, seed=11, name="bench",
                      scene={"seed": 11, "density_per_arcmin2": args.density, "refcat_g_limit": 26.5})
    print(f"plan: {len(plan.exposures)} exposures x {len(args.detectors)} detectors "
          f"({plan.n_detectors} detector exposures), {args.size}² science pixels")
    rows, per_kind = [], {}
    with tempfile.TemporaryDirectory(prefix="romanflow-scaling-") as tmp:
        for n in args.workers:
            graph = build_graph(plan, Path(tmp) / f"w{n}")
            start = time.perf_counter()
            executor = DaskExecutor(workers=n, quiet=True)
            startup = time.perf_counter() - start
            try:
                report = run_graph(graph, executor, progress=False)
            finally:
                executor.close()
            rate = 60.0 * report.detectors / report.wall_s
            rows.append((n, startup, report.wall_s, rate, len(report.done)))
            kinds = defaultdict(list)
            for s in report.done:
                kinds[s["kind"]].append(s["seconds"])
            per_kind[n] = {k: sum(v) / len(v) for k, v in kinds.items()}
    base = rows[0][2]
    print(f"\n{'workers':>7} {'start-up s':>10} {'graph s':>8} {'detectors/min':>13} {'speed-up':>8} {'tasks':>5}")
    for n, startup, wall, rate, ntask in rows:
        print(f"{n:>7} {startup:>10.1f} {wall:>8.1f} {rate:>13.2f} {base / wall:>8.2f} {ntask:>5}")
    kinds = list(per_kind[rows[0][0]])
    print(f"\n{'task kind':<12}" + "".join(f" {'mean s, ' + str(n) + 'w':>12}" for n in per_kind))
    for k in kinds:
        print(f"{k:<12}" + "".join(f" {per_kind[n].get(k, float('nan')):>12.2f}" for n in per_kind))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
