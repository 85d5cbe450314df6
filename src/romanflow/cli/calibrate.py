"""``romanflow calibrate``: L1 files -> L2 files, optionally registered to an astrometric catalog."""

from __future__ import annotations

import argparse

from romanflow.cli.options import add_command, add_output_dir, positive_int


def overridable_reftypes() -> tuple[str, ...]:
    """Reference types a calibration step reads, in step order: the ones ``--override-TYPE`` is offered for."""
    from romanflow.calibrate.pipeline import STEP_REFTYPES, STEPS

    return tuple(dict.fromkeys(t for step in STEPS for t in STEP_REFTYPES.get(step, ())))


def register(subparsers) -> None:
    from romanflow.calibrate.pipeline import STEPS
    from romanflow.kernels.ramp import DEFAULT_METHOD, METHODS

    p = add_command(
        subparsers, "calibrate",
        help="calibrate L1 ramps into L2 rate images",
        description="Calibrate L1 (uncal) files into L2 (cal) rate images in DN/s. Several files use every core. "
                    "Every input, output and override is checked before any work: two inputs giving the same "
                    "output name, or an existing output (without --overwrite), stop the command; every input is "
                    "read and validated first, so a damaged input (bad checksum, schema-invalid) stops it before "
                    "any output is written. If an input fails later, while calibrating, the other inputs are "
                    "still calibrated: their outputs are kept and listed on standard output, the failed input "
                    "is named on standard error and the exit status is 2.",
    )
    p.add_argument("inputs", nargs="+", help="L1 ASDF files")
    add_output_dir(p, help="folder for the L2 files (default: beside each input)")
    p.add_argument("--overwrite", action="store_true", help="replace existing L2 files (default: refuse them)")
    p.add_argument("--skip", nargs="+", default=[], choices=STEPS, metavar="STEP",
                   help=f"steps to skip: {', '.join(STEPS)}")
    p.add_argument("--ramp-method", default=DEFAULT_METHOD, choices=METHODS,
                   help=f"ramp-fitting algorithm (default {DEFAULT_METHOD})")
    p.add_argument("--no-jumps", action="store_true", help="do not look for cosmic-ray jumps")
    p.add_argument("--context", help="reference context file (default: the embedded store)")
    p.add_argument("--workers", type=positive_int, default=None, help="processes (default: one per core)")
    p.add_argument("--refcat", metavar="FILE",
                   help="astrometric reference catalog (Parquet, Gaia DR3 columns): after calibrating, detect "
                        "point sources and align every exposure's detectors together to it (tweakreg)")
    p.add_argument("--tweakreg", action="store_true",
                   help="run source detection and tweakreg after calibration (needs --refcat; implied by it)")
    p.add_argument("--no-tweakreg", action="store_true", help="do not align even when --refcat is given")
    for reftype in overridable_reftypes():
        p.add_argument(f"--override-{reftype}", metavar="FILE",
                       help=f"use this {reftype} reference file (N/A: none) instead of the context's choice")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import logging

    from romanflow.astrometry.pipeline import describe
    from romanflow.calibrate.pipeline import CalibrationOptions
    from romanflow.cli.options import progress_bar
    from romanflow.errors import RomanflowError
    from romanflow.run import calibrate_and_register

    if args.tweakreg and not args.refcat:
        raise RomanflowError("--tweakreg needs a reference catalog: add --refcat FILE")
    refcat = args.refcat if args.refcat and not args.no_tweakreg else None
    overrides = {t: getattr(args, f"override_{t}") for t in overridable_reftypes() if getattr(args, f"override_{t}")}
    options = CalibrationOptions(skip=tuple(args.skip), overrides=overrides, ramp_method=args.ramp_method,
                                 detect_jumps=not args.no_jumps, context=args.context)
    written = []

    def finished(path):
        written.append(path)
        bar.update(1)

    with progress_bar(args, total=len(args.inputs), desc="calibrate", unit="detector") as bar:
        try:
            result = calibrate_and_register(args.inputs, args.output_dir, refcat, options=options,
                                            workers=args.workers, progress=finished, overwrite=args.overwrite)
        except RomanflowError:
            for path in written:  # the inputs that were calibrated before another failed are kept
                print(path)
            raise
    if refcat is None:
        for path in result.l2_paths:
            print(path)
        return 0
    log = logging.getLogger("romanflow.tweakreg")
    for message in result.warnings:
        log.warning(message)
    for out, fit in result.alignments:
        print(describe(out, fit))
    return 0
