"""``romanflow hips``: HiPS trees (per band and a colour composite) from L3 mosaics."""

from __future__ import annotations

from romanflow.cli.options import add_command, add_output_dir


def register(subparsers) -> None:
    p = add_command(subparsers, "hips", help="HiPS tiles (FITS values, PNG display, colour) from L3 mosaics",
                    description="Resample L3 mosaics onto HiPS tiles: one tree per band (FITS tiles in MJy/sr and "
                                "PNG tiles for display, with properties and Moc.fits) and a colour composite of "
                                "three bands (or two and their mean). An existing output folder is updated: "
                                "each mosaic replaces its sky cell's earlier contribution, and only the tiles "
                                "the given mosaics touch are rewritten.")
    p.add_argument("mosaics", nargs="+", metavar="MOSAIC", help="L3 MosaicModel ASDF files")
    add_output_dir(p, required=True, help="folder of the HiPS trees (created, or updated when it holds them)")
    p.add_argument("--no-colour", action="store_true", help="do not write the colour composite")
    p.set_defaults(func=run_hips)


def run_hips(args) -> int:
    from romanflow.formats import open_model
    from romanflow.hips import build_hips

    for path in args.mosaics:  # every input checked (schema, block checksums) before any tile is written
        open_model(path, "MosaicModel").close()
    report = build_hips(args.mosaics, args.output_dir, colour=not args.no_colour)
    print(report.summary())
    return 0
