"""``romanflow calibrate``: L1 files -> L2 files."""

from __future__ import annotations

import argparse

from romanflow.formats.reference_io import REFERENCE_TYPES

REFTYPES_OVERRIDABLE = tuple(t for t in REFERENCE_TYPES if t != "matable")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="calibrate L1 ramps into L2 rate images",
        description="Calibrate L1 (uncal) files into L2 (cal) rate images in DN/s. Several files use every core.",
    )
    p.add_argument("inputs", nargs="+", help="L1 ASDF files")
    p.add_argument("-o", "--output-dir", help="output folder (default: beside each input)")
    from romanflow.calibrate.pipeline import STEPS
    from romanflow.kernels.ramp import DEFAULT_METHOD, METHODS

    p.add_argument("--skip", nargs="+", default=[], choices=STEPS, metavar="STEP",
                   help=f"steps to skip: {', '.join(STEPS)}")
    p.add_argument("--ramp-method", default=DEFAULT_METHOD, choices=METHODS,
                   help=f"ramp-fitting algorithm (default {DEFAULT_METHOD})")
    p.add_argument("--no-jumps", action="store_true", help="do not look for cosmic-ray jumps")
    p.add_argument("--context", help="reference context file (default: the embedded store)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: one per core)")
    p.add_argument("--refcat", metavar="FILE",
                   help="astrometric reference catalog (Parquet, Gaia DR3 columns): after calibrating, detect "
                        "point sources and align every exposure's detectors together to it (tweakreg)")
    p.add_argument("--tweakreg", action="store_true",
                   help="run source detection and tweakreg after calibration (needs --refcat; implied by it)")
    p.add_argument("--no-tweakreg", action="store_true", help="do not align even when --refcat is given")
    for reftype in REFTYPES_OVERRIDABLE:
        p.add_argument(f"--override-{reftype}", metavar="FILE", help=f"use this {reftype} reference file")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from romanflow.calibrate.pipeline import CalibrationOptions, calibrate

    from romanflow.errors import RomanflowError

    if args.tweakreg and not args.refcat:
        raise RomanflowError("--tweakreg needs a reference catalog: add --refcat FILE")
    if args.refcat and not args.no_tweakreg:
        from pathlib import Path

        if not Path(args.refcat).exists():  # before any calibration work
            raise RomanflowError(f"{args.refcat}: reference catalog not found")
    overrides = {t: getattr(args, f"override_{t}") for t in REFTYPES_OVERRIDABLE if getattr(args, f"override_{t}")}
    options = CalibrationOptions(skip=tuple(args.skip), overrides=overrides, ramp_method=args.ramp_method,
                                 detect_jumps=not args.no_jumps, context=args.context)
    with tqdm(total=len(args.inputs), desc="calibrate", unit="detector") as bar:
        outputs = calibrate(args.inputs, args.output_dir, options=options, workers=args.workers,
                            progress=lambda _: bar.update(1))
    if args.refcat and not args.no_tweakreg:
        import warnings

        from romanflow.astrometry.pipeline import align_files, describe
        from romanflow.astrometry.tweakreg import TweakregWarning

        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", TweakregWarning)
            results = align_files(outputs, args.refcat)
        for w in caught:
            print(f"romanflow calibrate: warning: {w.message}")
        for out, result in results:
            print(describe(out, result))
        return 0
    for path in outputs:
        print(path)
    return 0
