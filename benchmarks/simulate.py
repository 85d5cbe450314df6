"""Benchmark: simulate one full-size detector (4088² science pixels, MA table 4).

Run as ``.venv/bin/python -m benchmarks.simulate [--n-sources N] [--detector WFI07]``.
Prints wall time per stage, peak resident memory, and validates the L1 file
with roman_datamodels.

Side by side with romanisim (Roman I-Sim), installed in its own environment
(``python3 -m venv RIS && RIS/bin/pip install romanisim``)::

    .venv/bin/python -m benchmarks.simulate --romanisim-python RIS/bin/python

writes one scene in romanisim's own catalog format (ECSV: ``ra``, ``dec``, ``type``
PSF/SER, ``n``, ``half_light_radius``, ``pa``, ``ba`` and the flux in maggies in a
column named by the filter), then runs ``romanflow simulate --catalog`` and
``romanisim-make-image --catalog`` on it, each as its own process: same detector,
band, MA table and pointing (WFI centre at RA, Dec; romanflow's PA of +V3 is
romanisim's aperture roll + 60 deg), L1 output, romanisim offline (no CRDS: its
built-in parameters, galsim PSF, velocity-aberration scale 1). Wall time, CPU time
and peak resident memory of each process; the anchor is romanisim. Targets:
>= 10x faster, <= 1/2 the memory.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import tempfile
import time
from pathlib import Path


SPEED_TARGET = 10.0
MEMORY_TARGET = 0.5
RA, DEC, PA_V3 = 270.0, 66.0, 60.0  # WFI centre (deg) and PA of +V3 (deg); romanisim roll = PA_V3 - 60

#: What each simulator models (from the code of each; romanisim run offline, without reference files).
FEATURES = [
    ("PSF", "chromatic per source (stellar SED weighted over the band), varying across the detector",
     "galsim.roman PSF, achromatic by default (chromatic=False)"),
    ("galaxies", "Sersic and bulge+disk", "Sersic"),
    ("sky", "zodiacal + thermal, per filter", "zodiacal + thermal (galsim.roman)"),
    ("flat field, dark current", "yes, per pixel (channel gains in the flat)",
     "flat only with a reference file (off offline); dark a scalar offline"),
    ("read sampling", "read by read with Poisson charge, averaged into resultants",
     "photons apportioned to reads (binomial), averaged into resultants"),
    ("cosmic rays", "yes (truth table of hits)", "yes"),
    ("gain, read noise", "per channel / per pixel from one detector model", "scalars offline"),
    ("non-linearity, saturation", "yes, per pixel (inverse of the LINEARITY reference)",
     "with reference files only (off offline); saturation a scalar"),
    ("inter-pixel capacitance", "no", "with an IPC reference (off offline)"),
    ("persistence", "no", "yes (from a previous exposure)"),
    ("brighter-fatter", "no", "no"),
    ("correlated read noise (1/f, channels, amp33)", "yes", "no (white read noise)"),
    ("reference pixels / amp33", "4-pixel border and amp33 with their noise", "border written, no reference signal"),
    ("velocity aberration, proper motion", "yes, yes", "yes, no (catalog positions as given)"),
    ("truth products", "sources, noiseless rate, cosmic rays, true WCS, Gaia catalog", "simulation metadata"),
]


def _isim_catalog(path, n_per_detector: int, radius_deg: float, seed: int = 2):
    """A scene in romanisim's catalog convention: stars and Sersic galaxies, F158 fluxes in maggies."""
    import numpy as np
    from astropy.table import Table

    from romanflow.simulate.scene import random_scene

    full_area = (4088 * 0.11 / 60.0) ** 2
    scene = random_scene(RA, DEC, radius_deg, density_per_arcmin2=n_per_detector / full_area, seed=seed).table
    table = Table()
    table["ra"] = scene["ra"].to_numpy(float)
    table["dec"] = scene["dec"].to_numpy(float)
    star = scene["type"].to_numpy() == "star"
    table["type"] = np.where(star, "PSF", "SER")
    table["n"] = np.where(star, -1.0, scene["sersic_n"].where(scene["type"] == "sersic", 1.0)).astype("f4")
    table["half_light_radius"] = np.where(star, 0.0, scene["half_light_radius"]).astype("f4")
    table["pa"] = np.where(star, 0.0, scene["position_angle"]).astype("f4")
    table["ba"] = np.where(star, 1.0, scene["axis_ratio"]).astype("f4")
    table["F158"] = (10 ** (-0.4 * scene["mag_F158"].to_numpy(float))).astype("f4")
    table.write(path, format="ascii.ecsv", overwrite=True)
    return len(table), int(star.sum())


def _measure(command) -> dict:
    """Run a command as a child process: wall s, CPU s and peak resident memory (GiB) of that process."""
    import subprocess

    start = time.perf_counter()
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    output = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"wall_s": wall, "cpu_s": usage.ru_utime + usage.ru_stime, "peak_gib": usage.ru_maxrss / 2**20,
            "rc": proc.returncode, "output": output}


def side_by_side(args) -> int:
    from benchmarks.environment import header, verdict
    from romanflow.detector import detector_number
    from romanflow.simulate.core import _field_radius
    from romanflow import geometry

    header("simulate")
    risim_script = Path(args.romanisim_python).parent / "romanisim-make-image"
    work = Path(args.keep or tempfile.mkdtemp(prefix="bench_simulate_"))
    work.mkdir(parents=True, exist_ok=True)
    pointing = geometry.pointing_for(RA, DEC, PA_V3)
    radius = _field_radius(pointing, [args.detector], args.size)
    catalog = work / "scene_isim.ecsv"
    n_all, n_stars = _isim_catalog(catalog, args.n_sources, radius)
    print(f"scene: {n_all} sources ({n_stars} stars) within {radius * 60:.1f}' of {args.detector} in romanisim's "
          f"ECSV format ({catalog}); {args.detector}, F158, MA table 4, WFI centre ({RA}, {DEC}), PA(V3) {PA_V3} deg",
          flush=True)
    romanflow_cli = str(Path(sys.executable).parent / "romanflow")
    (work / "romanisim").mkdir(exist_ok=True)
    ours = _measure([romanflow_cli, "simulate", "--detectors", args.detector, "--filter", "F158", "--ma-table", "4",
                     "--ra", str(RA), "--dec", str(DEC), "--pa", str(PA_V3), "--catalog", str(catalog),
                     "--size", str(args.size), "--seed", "1", "-o", str(work / "romanflow"), "--overwrite", "-q"])
    print(f"  romanflow: {ours['wall_s']:.0f} s, {ours['peak_gib']:.2f} GiB", flush=True)
    theirs = _measure([args.romanisim_python, str(risim_script), str(work / "romanisim" / "l1_{}_{bandpass}.asdf"),
                       "--catalog", str(catalog), "--bandpass", "F158", "--sca", str(detector_number(args.detector)),
                       "--ma_table_number", "4", "--radec", str(RA), str(DEC), "--roll", str(PA_V3 - 60.0),
                       "--level", "1", "--rng_seed", "1", "--scale-factor", "1.0", "--psftype", "galsim"])
    print(f"  romanisim: {theirs['wall_s']:.0f} s, {theirs['peak_gib']:.2f} GiB", flush=True)
    for name, r in (("romanflow", ours), ("romanisim", theirs)):
        if r["rc"] != 0:
            print(f"{name} failed (exit {r['rc']}):\n{r['output'][-3000:]}", file=sys.stderr)
            return 1
    print()
    print(f"{'simulator':<22} {'wall s':>8} {'CPU s':>8} {'peak GiB':>9} {'speed vs romanisim':>19} "
          f"{'memory vs romanisim':>20}")
    print("-" * 90)
    for name, r in (("romanflow simulate", ours), ("romanisim (anchor)", theirs)):
        print(f"{name:<22} {r['wall_s']:>8.1f} {r['cpu_s']:>8.1f} {r['peak_gib']:>9.2f} "
              f"{theirs['wall_s'] / r['wall_s']:>18.1f}x {r['peak_gib'] / theirs['peak_gib']:>20.2f}")
    print("-" * 90)
    print("each a fresh process from start to written L1 file (imports and PSF set-up included)")
    print()
    print(f"{'':<44} {'romanflow':<58} romanisim")
    for what, a, b in FEATURES:
        print(f"{what:<44} {a:<58} {b}")
    misses = []
    speed = theirs["wall_s"] / ours["wall_s"]
    memory = ours["peak_gib"] / theirs["peak_gib"]
    if speed < SPEED_TARGET:
        misses.append(f"romanflow is {speed:.1f}x romanisim's speed (target >= {SPEED_TARGET:.0f}x)")
    if memory > MEMORY_TARGET:
        misses.append(f"romanflow uses {memory:.2f} of romanisim's memory (target <= {MEMORY_TARGET})")
    return verdict(misses)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-sources", type=int, default=10000)
    parser.add_argument("--detector", default="WFI07")
    parser.add_argument("--size", type=int, default=4088)
    parser.add_argument("--keep", default=None, help="directory to keep the outputs in")
    parser.add_argument("--romanisim-python", default=os.environ.get("ROMANISIM_PYTHON"),
                        help="python of an environment with romanisim: run it side by side on the same scene "
                             "(default: $ROMANISIM_PYTHON)")
    args = parser.parse_args(argv)
    if args.romanisim_python:
        return side_by_side(args)
    from benchmarks.environment import header

    header("simulate")
    print("no romanisim environment given (--romanisim-python or $ROMANISIM_PYTHON): romanflow alone, no anchor")

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
