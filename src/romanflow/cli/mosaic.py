"""``romanflow asn`` (group L2 files per sky cell) and ``romanflow mosaic`` (build an L3)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path

from romanflow.cli.options import add_command, add_output_dir, name_token, output_file
from romanflow.errors import InputFileError, ParameterError, RomanflowError


def register(subparsers) -> None:
    from romanflow.mosaic.resample import KERNELS

    p = add_command(subparsers, "asn", help="write one L3 association per sky cell touched by L2 files",
                    description="Group L2 files by the sky cells they touch and write one association "
                                "(JSON) per sky cell and filter.")
    p.add_argument("inputs", nargs="+", help="L2 files or folders of them")
    p.add_argument("--product-type", choices=("visit", "pass", "full"), default="full",
                   help="how exposures are grouped: per visit, per pass, or all together (default full)")
    p.add_argument("--data-release-id", type=name_token, default="p", help="data release tag in product names (default p)")
    p.add_argument("--skycell", action="append", metavar="NAME",
                   help="keep only this sky cell, e.g. 270p66x50y51 (repeatable)")
    add_output_dir(p, required=True, help="folder for the *_asn.json files")
    p.set_defaults(func=run_asn)

    m = add_command(subparsers, "mosaic", help="resample the members of an association onto its sky cell",
                    description="Resample an association's L2 members onto its sky cell (drizzle), with sky "
                                "matching and outlier rejection; writes the L3 and its outlier record. A member "
                                "without a usable pixel is left out with a warning; when no usable pixel reaches "
                                "the grid, nothing is written and the exit status is 2.")
    m.add_argument("association", help="association JSON (from `romanflow asn`)")
    m.add_argument("-o", "--output", type=output_file, metavar="FILE",
                   help="L3 file (default: <product name>_coadd.asdf beside the association)")
    m.add_argument("--cutout", nargs=4, type=int, metavar=("X0", "Y0", "NX", "NY"),
                   help="resample onto this sub-grid of the sky cell only (pixels; it must lie inside the cell)")
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
        check_skycell_names,
        find_l2_files,
        summarize_l2,
        write_association,
    )

    skycells = check_skycell_names(args.skycell, "--skycell") if args.skycell else None
    files = find_l2_files(args.inputs)
    summaries = [summarize_l2(f) for f in files]
    asns = build_associations(summaries, args.product_type, args.data_release_id, skycells=skycells,
                              parameter="--skycell")
    if not asns:
        raise RomanflowError(f"no sky cell is touched by the {len(files)} input file(s)")
    for asn in asns:
        print(write_association(asn, args.output_dir))
    return 0


def run_mosaic(args) -> int:
    from romanflow.mosaic.associations import association_members, load_association
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.mosaic.resample import NoUsablePixelsError
    from romanflow.mosaic.skycells import check_cutout, cutout_wcs, skycell_wcs

    if not (math.isfinite(args.pixel_scale) and args.pixel_scale > 0):
        raise ParameterError("--pixel-scale", args.pixel_scale, "must be a positive number of arcsec")
    if not (math.isfinite(args.pixfrac) and 0 < args.pixfrac <= 1):
        raise ParameterError("--pixfrac", args.pixfrac, "must be in (0, 1]")
    asn = load_association(args.association)
    cell = asn["target"]
    try:
        wcs = skycell_wcs(cell, args.pixel_scale)
    except ParameterError as exc:
        raise ParameterError("--pixel-scale", exc.value, exc.problem) from None
    if args.cutout:
        check_cutout(wcs, *args.cutout, inside=True, name="--cutout")
        wcs = cutout_wcs(wcs, *args.cutout)
    name = asn["products"][0]["name"]
    if args.output:
        out = Path(args.output)
    else:
        out = Path(args.association).parent / f"{name}_coadd.asdf"
        try:
            output_file(str(out))
        except argparse.ArgumentTypeError as exc:
            raise ParameterError("-o/--output", str(out), f"the default output cannot be written ({exc})") from None
    element = name.rsplit("_", 1)[-1].upper()
    try:
        make_mosaic(association_members(asn), wcs, out, skycell=cell, kernel=args.kernel, pixfrac=args.pixfrac,
                    weight_type=args.weight_type, sky_match=not args.no_skymatch, outliers=not args.no_outliers,
                    optical_element=element)
    except NoUsablePixelsError as exc:
        raise InputFileError(args.association, f"nothing to mosaic: {exc}") from None
    print(out)
    return 0
