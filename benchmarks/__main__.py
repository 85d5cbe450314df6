"""Run benchmarks by name, or all of them: ``python -m benchmarks [NAME ...]`` (``make bench``).

Each benchmark also runs alone (``python -m benchmarks.NAME --help``) and prints its own table.
"""

from __future__ import annotations

import subprocess
import sys
import time

#: Benchmarks in the order ``make bench`` runs them, with what each measures.
BENCHMARKS = {
    "geometry_projection": "fast detector projection against gwcs, speed and agreement",
    "simulate": "one full-size detector, ~1e4 sources, MA table 4",
    "calibrate": "L1 -> L2, full size, typical and crowded fields",
    "ramp_methods": "Casertano vs likelihood ramp fits, accuracy and speed",
    "refpix": "correlated-noise injection and correction",
    "astrometry": "detection + one tweakreg fit for 18 detectors",
    "mosaic": "one full sky cell from full-size inputs",
    "catalog": "catalog of a 5000x5000 sky cell, Parquet + HATS",
    "skycell": "full-size L2 files -> mosaic -> catalog of one sky cell",
    "photometry": "catalog photometry against the truth, pooled over a survey",
    "scaling": "a survey plan on 1 and 2 Dask workers",
}


def main(argv=None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== benchmarks.{name}: {BENCHMARKS[name]}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        print(f"=== benchmarks.{name}: exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc != 0:
            failed.append(name)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
