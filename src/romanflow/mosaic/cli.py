"""Sub-commands ``romanflow asn`` (group L2 files per sky cell) and ``romanflow mosaic`` (build an L3)."""

from __future__ import annotations

from pathlib import Path


def register(subparsers) -> None:
    p = subparsers.add_parser("asn", help="write one L3 association per sky cell touched by L2 files")
    p.add_argument("inputs", nargs="+", help="L2 files or folders of them")
    p.add_argument("--product-type", choices=("visit", "pass", "full"), default="full")
    p.add_argument("--data-release-id", default="p")
    p.add_argument("--skycell", action="append", help="keep only this sky cell (repeatable)")
    p.add_argument("-o", "--output-dir", required=True, help="folder for the *_asn.json files")
    p.set_defaults(func=run_asn)

    m = subparsers.add_parser("mosaic", help="resample the members of an association onto its sky cell")
    m.add_argument("association", help="association JSON (from `romanflow asn`)")
    m.add_argument("-o", "--output", help="L3 file (default: <product name>_coadd.asdf beside the association)")
    m.add_argument("--cutout", nargs=4, type=int, metavar=("X0", "Y0", "NX", "NY"),
                   help="resample onto this sub-grid of the sky cell only")
    m.add_argument("--pixel-scale", type=float, default=0.055, help="0.055 (mosaic) or 0.11 (visit grid)")
    m.add_argument("--kernel", default="square")
    m.add_argument("--pixfrac", type=float, default=1.0)
    m.add_argument("--weight-type", choices=("ivm", "exptime"), default="ivm")
    m.add_argument("--no-outliers", action="store_true", help="skip outlier rejection")
    m.add_argument("--no-skymatch", action="store_true", help="skip sky matching")
    m.set_defaults(func=run_mosaic)


def run_asn(args) -> int:
    from romanflow.mosaic.associations import (
        build_associations,
        find_l2_files,
        summarize_l2,
        write_association,
    )

    files = find_l2_files(args.inputs)
    summaries = [summarize_l2(f) for f in files]
    asns = build_associations(summaries, args.product_type, args.data_release_id,
                              skycells=set(args.skycell) if args.skycell else None)
    for asn in asns:
        print(write_association(asn, args.output_dir))
    return 0


def run_mosaic(args) -> int:
    from romanflow.mosaic.associations import association_members, load_association
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_wcs

    asn = load_association(args.association)
    cell = asn["target"]
    wcs = skycell_wcs(cell, args.pixel_scale)
    if args.cutout:
        wcs = cutout_wcs(wcs, *args.cutout)
    name = asn["products"][0]["name"]
    out = Path(args.output) if args.output else Path(args.association).parent / f"{name}_coadd.asdf"
    element = name.rsplit("_", 1)[-1].upper()
    make_mosaic(association_members(asn), wcs, out, skycell=cell, kernel=args.kernel, pixfrac=args.pixfrac,
                weight_type=args.weight_type, sky_match=not args.no_skymatch, outliers=not args.no_outliers,
                optical_element=element)
    print(out)
    return 0
