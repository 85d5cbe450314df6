"""``romanflow tweakreg``: detect sources on L2 files and align them to a reference catalog."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "tweakreg",
        help="align L2 images to an astrometric reference catalog",
        description="Detect point sources on L2 (cal) files, fit each exposure's pointing to a reference "
                    "catalog (Parquet, Gaia DR3 columns) and rewrite the files with the corrected WCS. "
                    "A source catalog <name>_cat.parquet is written next to each output file.",
    )
    p.add_argument("files", nargs="+", type=Path, help="L2 ASDF files")
    p.add_argument("--refcat", required=True, type=Path, help="reference catalog (Parquet: ra, dec, pmra, ...)")
    p.add_argument("--fitgeometry", choices=("rshift", "rscale"), default="rshift")
    p.add_argument("--per-detector", action="store_true", help="fit every detector on its own")
    p.add_argument("--snr-threshold", type=float, default=5.0, help="detection threshold (matched-filter S/N)")
    p.add_argument("--minobj", type=int, default=10, help="fewest matches for a fit")
    p.add_argument("--searchrad", type=float, default=3.0, help="largest initial offset searched (arcsec)")
    p.add_argument("--output-dir", type=Path, default=None, help="write here instead of in place")
    p.set_defaults(func=run)


def run(args) -> int:
    import warnings

    from romanflow.astrometry.pipeline import align_files, describe
    from romanflow.astrometry.tweakreg import TweakregWarning

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TweakregWarning)
        results = align_files(args.files, args.refcat, output_dir=args.output_dir,
                              snr_threshold=args.snr_threshold, fitgeometry=args.fitgeometry,
                              per_detector=args.per_detector, searchrad=args.searchrad, minobj=args.minobj)
    for w in caught:
        print(f"romanflow tweakreg: warning: {w.message}")
    for out, result in results:
        print(describe(out, result))
    return 0
