"""``romanflow asn`` (group L2 files per sky cell) and ``romanflow mosaic`` (build an L3)."""

from __future__ import annotations

from pathlib import Path

from romanflow.cli.options import add_command, add_output_dir


def register(subparsers) -> None:
    from romanflow.mosaic.resample import KERNELS

    p = add_command(subparsers, "asn", help="write one L3 association per sky cell touched by L2 files",
                    description="Group L2 files by the sky cells they touch and write one association "
                                "(JSON) per sky cell and filter.")
    p.add_argument("inputs", nargs="+", help="L2 files or folders of them")
    p.add_argument("--product-type", choices=("visit", "pass", "full"), default="full",
                   help="how exposures are grouped: per visit, per pass, or all together (default full)")
    p.add_argument("--data-release-id", default="p", help="data release tag in product names (default p)")
    p.add_argument("--skycell", action="append", metavar="NAME",
                   help="keep only this sky cell, e.g. 270p66x50y51 (repeatable)")
    add_output_dir(p, required=True, help="folder for the *_asn.json files")
    p.set_defaults(func=run_asn)

    m = add_command(subparsers, "mosaic", help="resample the members of an association onto its sky cell",
                    description="Resample an association's L2 members onto its sky cell (drizzle), with sky "
                                "matching and outlier rejection; writes the L3 and its outlier record.")
    m.add_argument("association", help="association JSON (from `romanflow asn`)")
    m.add_argument("-o", "--output", metavar="FILE",
                   help="L3 file (default: <product name>_coadd.asdf beside the association)")
    m.add_argument("--cutout", nargs=4, type=int, metavar=("X0", "Y0", "NX", "NY"),
                   help="resample onto this sub-grid of the sky cell only (pixels)")
    m.add_argument("--pixel-scale", type=float, default=0.055,
                   help="output pixel scale (arcsec): 0.055 mosaic or 0.11 visit grid (default 0.055)")
    m.add_argument("--kernel", default="square", choices=KERNELS, help="drizzle kernel (default square)")
    m.add_argument("--pixfrac", type=float, default=1.0, help="drop size as a fraction of an input pixel (default 1)")
    m.add_argument("--weight-type", choices=("ivm", "exptime"), default="ivm",
                   help="input weights: inverse variance or exposure time (default ivm)")
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
