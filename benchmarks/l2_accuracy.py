"""L2 accuracy against the simulator's truth, both ramp-fitting methods, several scenarios.

Run: ``.venv/bin/python -m benchmarks.l2_accuracy [--size 504] [--seeds 3 13] [--scenarios ...]``

Every accuracy figure of the README's L2 rows comes from this one command. Each scenario simulates
one detector (WFI01, F158, ``--size`` science pixels per side) and calibrates the same L1 with
the whole L1 -> L2 chain (refpix, linearity, dark, flat ...) twice, once per ramp-fitting method.

Scenarios:

``white``    sparse field, white read noise only (no correlated noise), MA table 4;
``sparse``   sparse field (most pixels at the sky level), full noise model, MA table 4;
``crowded``  crowded field (1-5000 DN/s, saturating stars), MA table 4;
``table11``  the crowded field with MA table 11 (15 resultants over 309 reads);
``cr4x``     the sparse field with four times the cosmic-ray rate.

Figures per scenario and method:

- bias: clipped mean of (rate - truth) in DN/s, per flux bin, with its standard error; the target
  is |bias| < max(1e-4 DN/s, 0.1 % of the bin's mean truth), judged at 3 standard errors;
- width: 5-sigma-clipped std of (rate - truth)/err per flux decade (target 1.00 +- 0.05);
- jumps: fraction of cosmic-ray hits above 10 sigma flagged (target >= 99.5 %), and the fraction
  of hit-free pixels flagged (target < 1e-4);
- saturating pixels: median z of pixels that saturate part-way, by the resultant they saturate in,
  and the fraction of them carrying SATURATED (target: every one).

A missed target is listed and the command exits 1.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time

import numpy as np

from romanflow import dq, geometry
from romanflow.calibrate import CalibrationOptions, calibrate_exposure, resolve_references
from romanflow.detector import N_BORDER
from romanflow.detector_model import DetectorModel
from romanflow.refdata import ReferenceStore
from romanflow.simulate import random_scene, simulate_detector
from romanflow.simulate.ramp import COSMIC_RAY_RATE
from romanflow.validation import jump_completeness

METHODS = ("casertano", "likely")
#: name -> (sources per 248² of detector, faint limit AB, MA table, correlated noise, cosmic-ray factor)
SCENARIOS = {
    "white": (1500, 21.0, 4, False, 1.0),
    "sparse": (1500, 21.0, 4, True, 1.0),
    "crowded": (3000, 20.0, 4, True, 1.0),
    "table11": (3000, 20.0, 11, True, 1.0),
    "cr4x": (1500, 21.0, 4, True, 4.0),
}
#: Flux bins (DN/s) for the bias.
BIAS_BINS = ((0.1, 0.25), (0.25, 0.5), (0.5, 1.0), (1.0, 10.0), (10.0, 100.0), (100.0, 1e4))
#: Flux decades (DN/s) for the error width.
DECADES = ((0.1, 1.0), (1.0, 10.0), (10.0, 100.0), (100.0, 1e4))
DETECTOR, FILTER = "WFI01", "F158"
MIN_PIXELS = 500


def simulate(scenario: str, size: int, seed: int):
    """The scenario's simulation (a DetectorSimulation) on a ``size``² detector."""
    n_per_248, faint, table, correlated, cr_factor = SCENARIOS[scenario]
    pointing = geometry.pointing_for(270.0, 66.0, 0.0)
    centre = (size - 1) / 2.0
    ra, dec = geometry.DetectorProjection(DETECTOR, pointing, size).pixel_to_world(np.array([centre]),
                                                                                   np.array([centre]))
    scale = size / 248.0
    scene = random_scene(float(ra[0]), float(dec[0]), 0.006 * scale, n_sources=int(n_per_248 * scale**2),
                         faint_limit=faint, star_fraction=0.8, seed=seed)
    return simulate_detector(scene, DETECTOR, FILTER, ma_table_number=table, pointing=pointing, science_size=size,
                             seed=seed, correlated_noise=correlated, cosmic_ray_rate=COSMIC_RAY_RATE * cr_factor)


def measure(image, sim, model: DetectorModel) -> dict:
    """Accuracy figures of one calibrated image against its simulation's truth."""
    from astropy.stats import sigma_clipped_stats

    s = slice(N_BORDER, -N_BORDER)
    truth = sim.rate_dn
    rate, err, flags = image.data, image.err.astype(np.float64), image.dq
    usable = ((flags & dq.DO_NOT_USE) == 0) & np.isfinite(rate) & (err > 0)
    clean = usable & ((flags & dq.JUMP_DET) == 0)
    out = {"bias": [], "width": []}
    for lo, hi in BIAS_BINS:
        sel = clean & (truth > lo) & (truth <= hi)
        if sel.sum() < MIN_PIXELS:
            continue
        z = (rate[sel] - truth[sel]) / err[sel]
        keep = np.abs(z) < 5.0  # a rare missed hit does not decide
        diff = (rate[sel] - truth[sel])[keep].astype(np.float64)
        out["bias"].append(((lo, hi), float(diff.mean()), float(diff.std() / np.sqrt(diff.size)),
                            float(truth[sel].mean()), int(keep.sum())))
    for lo, hi in DECADES:
        sel = clean & (truth > lo) & (truth <= hi)
        if sel.sum() < MIN_PIXELS:
            continue
        z = (rate[sel] - truth[sel]) / err[sel]
        out["width"].append(((lo, hi), float(sigma_clipped_stats(z, sigma=5.0)[2])))
    found = jump_completeness(flags, sim.cosmic_rays, truth + model.dark_rate[s, s], model.gain[s, s],
                              model.read_noise[s, s], sim.exposure.read_pattern)
    out["jumps"] = (found["hits"], found["completeness"], found["false_rate"])
    # pixels that saturate part-way: linear headroom reached between the first and the last resultant
    raw_rate = truth * model.flat_dn(FILTER)[s, s]
    headroom = 0.97 * model.full_well[s, s] - model.bias[s, s]
    pattern = sim.exposure.read_pattern
    last_read_time = np.array([r[-1] for r in pattern.read_pattern]) * pattern.frame_time
    crossing_time = headroom / np.maximum(raw_rate, 1e-12)                   # s, when the linear level hits it
    crossing = np.searchsorted(last_read_time, crossing_time)                  # 0-based resultant
    # clearly saturated part-way: not in the first resultant, 2 % of the exposure before its end
    partway = (crossing >= 1) & (crossing_time < 0.98 * last_read_time[-1])
    out["saturating"] = (int(partway.sum()), float(np.mean((flags[partway] & dq.SATURATED) != 0))
                         if partway.any() else float("nan"))
    z = (rate - truth) / err
    groups = []
    for first, last in ((2, 5), (6, pattern.n_resultants)):
        sel = usable & (crossing + 1 >= first) & (crossing + 1 <= last) & ((flags & dq.JUMP_DET) == 0)
        if sel.sum() >= 20:
            groups.append(((first, last), int(sel.sum()), float(np.median(z[sel]))))
    out["saturating_z"] = groups
    return out


def check(scenario, method, figures, misses: list) -> None:
    """Append each missed target of one run to ``misses``."""
    for (lo, hi), bias, stderr, mean_truth, _ in figures["bias"]:
        target = max(1e-4, 1e-3 * mean_truth)
        if abs(bias) - 3 * stderr > target:
            misses.append(f"{scenario}/{method}: bias {bias:+.1e} DN/s in {lo}-{hi} DN/s (target {target:.1e})")
    for (lo, hi), width in figures["width"]:
        if abs(width - 1.0) > 0.05:
            misses.append(f"{scenario}/{method}: width {width:.3f} in {lo}-{hi} DN/s")
    hits, completeness, false_rate = figures["jumps"]
    if hits >= 20 and completeness < 0.995:
        misses.append(f"{scenario}/{method}: {completeness:.1%} of {hits} hits above 10 sigma flagged")
    if false_rate >= 1e-4:
        misses.append(f"{scenario}/{method}: false jump rate {false_rate:.1e}")
    n_sat, flagged = figures["saturating"]
    if n_sat and flagged < 1.0:
        misses.append(f"{scenario}/{method}: {1 - flagged:.1%} of {n_sat} part-way saturated pixels not flagged")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=504, help="science pixels per detector side")
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 13], help="noise and scene seeds")
    parser.add_argument("--scenarios", nargs="+", default=list(SCENARIOS), choices=list(SCENARIOS))
    args = parser.parse_args(argv)
    import tempfile

    model = DetectorModel(DETECTOR, args.size)
    misses: list[str] = []
    rows = []
    with tempfile.TemporaryDirectory(prefix="l2_accuracy_") as tmp:
        store = ReferenceStore(tmp, science_size=args.size)
        for scenario in args.scenarios:
            for seed in args.seeds:
                start = time.perf_counter()
                sim = simulate(scenario, args.size, seed)
                for method in METHODS:
                    exposure = copy.deepcopy(sim.exposure)
                    options = CalibrationOptions(ramp_method=method, context=store)
                    image, _ = calibrate_exposure(exposure, options,
                                                  resolve_references(exposure.meta, args.size, options))
                    figures = measure(image, sim, model)
                    check(scenario, method, figures, misses)
                    rows.append((scenario, seed, method, figures))
                print(f"  {scenario} seed {seed}: {time.perf_counter() - start:.0f} s", file=sys.stderr, flush=True)

    print(f"L2 accuracy, {DETECTOR} {FILTER}, {args.size}x{args.size} science pixels, seeds {args.seeds}")
    print("\nbias (DN/s; clipped mean of rate - truth, +- standard error) per flux bin (DN/s)")
    header = f"{'scenario':9s} {'seed':>4s} {'method':10s} " + " ".join(f"{f'{lo:g}-{hi:g}':>17s}"
                                                                       for lo, hi in BIAS_BINS)
    print(header)
    for scenario, seed, method, figures in rows:
        cells = {b[0]: f"{b[1]:+.1e}+-{b[2]:.0e}" for b in figures["bias"]}
        print(f"{scenario:9s} {seed:4d} {method:10s} " + " ".join(f"{cells.get(b, '-'):>17s}" for b in BIAS_BINS))
    print("\nwidth of (rate - truth)/err per decade; jumps: hits > 10 sigma, flagged, false rate; "
          "part-way saturated pixels: number, flagged SATURATED, median z by resultant of saturation")
    header = (f"{'scenario':9s} {'seed':>4s} {'method':10s} " + " ".join(f"{f'{lo:g}-{hi:g}':>9s}" for lo, hi in DECADES)
              + f" {'hits':>5s} {'found':>7s} {'false':>8s} {'sat':>5s} {'flag':>5s}  z(saturating in)")
    print(header)
    for scenario, seed, method, figures in rows:
        widths = {w[0]: f"{w[1]:.3f}" for w in figures["width"]}
        hits, completeness, false_rate = figures["jumps"]
        n_sat, flagged = figures["saturating"]
        zs = ", ".join(f"{a}-{b}: {z:+.2f} ({n})" for (a, b), n, z in figures["saturating_z"])
        print(f"{scenario:9s} {seed:4d} {method:10s} " + " ".join(f"{widths.get(d, '-'):>9s}" for d in DECADES)
              + f" {hits:5d} {completeness:7.1%} {false_rate:8.1e} {n_sat:5d} {flagged:5.0%}  {zs}")
    if misses:
        print(f"\n{len(misses)} target(s) missed:")
        for miss in misses:
            print(f"  {miss}")
        return 1
    print("\nall targets met")
    return 0


if __name__ == "__main__":
    sys.exit(main())
