"""Run benchmarks by name, or all of them: ``python -m benchmarks [NAME ...]`` (``make bench``).

Each benchmark also runs alone (``python -m benchmarks.NAME --help``) and prints its own table,
with the date, the machine (:mod:`benchmarks.environment`) and its ratio to the anchor
measured in the same run; one that misses its own target says so and exits non-zero. This
runner prints a summary of every benchmark's exit status and exits non-zero if any failed.
``docs/performance.md`` collects the figures.
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
    "l2_accuracy": "L2 rates, errors, jumps and saturation against truth, both ramp fits, five scenarios",
    "astrometry": "detection + one tweakreg fit for 18 detectors",
    "exposure": "a whole 18-detector exposure, L1 -> L2 + detection + one registration fit, in-process and Dask",
    "mosaic": "one sky cell from 8, 16 and 32 full-size inputs: memory flat in the number of inputs",
    "catalog": "catalog of a 5000x5000 sky cell, Parquet + HATS",
    "skycell": "full-size L2 files -> mosaic -> catalog of one sky cell",
    "psf": "PSF library vs direct galsim: accuracy, stamps/s, build time",
    "photometry": "catalog photometry against the truth, pooled over a survey",
    "inject": "2,000 sources injected into and recovered from a 5000x5000 sky cell vs its catalog time; ramp- vs rate-level noise",
    "scaling": "a survey plan on 1 and 2 Dask workers",
    "hips": "HiPS tiles from a mosaic, against reproject's reproject_to_hips",
    "services": "SODA cutouts against astrocut, SIA and cone p99, server memory, on loopback",
    "archive": "1e6 synthetic WFI products on SQLite and PostgreSQL: ingest, cone, lineage, stale",
}


def main(argv=None) -> int:
    names = list(sys.argv[1:] if argv is None else argv) or list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark(s) {', '.join(unknown)}; choose from: {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    from benchmarks.environment import header

    header("run " + " ".join(names))
    failed, summary = [], []
    for name in names:
        print(f"\n=== benchmarks.{name}: {BENCHMARKS[name]}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call([sys.executable, "-m", f"benchmarks.{name}"])
        seconds = time.perf_counter() - start
        print(f"=== benchmarks.{name}: exit {rc} after {seconds:.0f} s", flush=True)
        summary.append((name, rc, seconds))
        if rc != 0:
            failed.append(name)
    print(f"\n{'benchmark':<22} {'exit':>4} {'seconds':>8}")
    for name, rc, seconds in summary:
        print(f"{name:<22} {rc:>4} {seconds:>8.0f}{'  target missed or failed' if rc else ''}")
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
