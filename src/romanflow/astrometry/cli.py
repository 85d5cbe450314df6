"""``romanflow tweakreg``: detect sources on L2 files and align them to a reference catalog."""

from __future__ import annotations

import warnings
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


def _catalog_path(path: Path) -> Path:
    stem = path.name[: -len(".asdf")] if path.name.endswith(".asdf") else path.stem
    for suffix in ("_cal", "_l2"):
        if stem.endswith(suffix):
            stem = stem[: -len(suffix)]
    return path.with_name(f"{stem}_cat.parquet")


def run(args) -> int:
    from romanflow.astrometry.detect import source_catalog, write_source_catalog
    from romanflow.astrometry.refcat import read_refcat
    from romanflow.astrometry.tweakreg import TweakregWarning, tweakreg
    from romanflow.calibrate.assign_wcs import assign_wcs
    from romanflow.formats.asdf_io import read_l2, write_l2

    refcat = read_refcat(args.refcat)
    images, catalogs = [], []
    for path in args.files:
        image = read_l2(path)
        if image.wcs is None:
            assign_wcs(image, None)
        images.append(image)
        catalogs.append(source_catalog(image, snr_threshold=args.snr_threshold))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", TweakregWarning)
        tweakreg(images, catalogs, refcat, fitgeometry=args.fitgeometry, per_detector=args.per_detector,
                 searchrad=args.searchrad, minobj=args.minobj, refcat_name=args.refcat.name)
    for w in caught:
        print(f"romanflow tweakreg: warning: {w.message}")
    if args.output_dir is not None:
        args.output_dir.mkdir(parents=True, exist_ok=True)
    for path, image, catalog in zip(args.files, images, catalogs):
        out = (args.output_dir / path.name) if args.output_dir is not None else path
        write_l2(image, out)
        write_source_catalog(catalog, _catalog_path(out))
        result = image.meta.get("wcs_fit_results", {})
        if result.get("status") == "SUCCESS":
            rms = result["rms_arcsec"]
            print(f"{out}: aligned, {result['n_matches']} matches, shift {result['shift_arcsec'][0]:+.3f} "
                  f"{result['shift_arcsec'][1]:+.3f} arcsec, rotation {result['rotation_deg']:+.5f} deg, "
                  f"rms {1000 * rms[0]:.1f} {1000 * rms[1]:.1f} mas")
        else:
            print(f"{out}: WCS unchanged ({result.get('reason', 'not aligned')})")
    return 0
