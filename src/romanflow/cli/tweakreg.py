"""``romanflow tweakreg``: detect sources on L2 files and align them to a reference catalog."""

from __future__ import annotations

from pathlib import Path

from romanflow.cli.options import add_command, add_output_dir, positive_float, positive_int


def register(subparsers) -> None:
    p = add_command(
        subparsers, "tweakreg",
        help="align L2 images to an astrometric reference catalog",
        description="Detect point sources on L2 (cal) files, fit each exposure's pointing to a reference "
                    "catalog (Parquet, Gaia DR3 columns) and rewrite the files with the corrected WCS. "
                    "A source catalog <name>_cat.parquet is written next to each output file.",
    )
    p.add_argument("files", nargs="+", type=Path, help="L2 ASDF files")
    p.add_argument("--refcat", required=True, type=Path, help="reference catalog (Parquet: ra, dec, pmra, ...)")
    p.add_argument("--fitgeometry", choices=("rshift", "rscale"), default="rshift",
                   help="rshift: shift and rotation; rscale: shift, rotation and scale (default rshift)")
    p.add_argument("--per-detector", action="store_true", help="fit every detector on its own")
    p.add_argument("--snr-threshold", type=positive_float, default=5.0,
                   help="detection threshold (matched-filter S/N, > 0, default 5)")
    p.add_argument("--minobj", type=positive_int, default=10, help="fewest matches for a fit (default 10)")
    p.add_argument("--searchrad", type=positive_float, default=3.0,
                   help="largest initial offset searched (arcsec, > 0, default 3)")
    add_output_dir(p, help="write the aligned files here instead of in place")
    p.set_defaults(func=run)


def align_and_report(files, refcat, **options) -> int:
    """Align ``files`` to ``refcat``; one result line per file on stdout, fit warnings in the log."""
    import logging
    import warnings

    from romanflow.astrometry.pipeline import align_files, describe
    from romanflow.astrometry.tweakreg import TweakregWarning

    log = logging.getLogger("romanflow.tweakreg")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TweakregWarning)
        results = align_files(files, refcat, **options)
    for w in caught:
        log.warning(str(w.message))
    for out, result in results:
        print(describe(out, result))
    return 0


def run(args) -> int:
    return align_and_report(args.files, args.refcat, output_dir=args.output_dir, snr_threshold=args.snr_threshold,
                            fitgeometry=args.fitgeometry, per_detector=args.per_detector,
                            searchrad=args.searchrad, minobj=args.minobj)
