"""``romanflow catalog``: source catalogs from L2/L3 ASDF files, and the column reference."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from romanflow.cli.options import add_command, name_token, output_dir, positive_float, positive_int


def _hats_location(text: str) -> Path:
    """``--hats``: an existing path (checked later against what it holds) or one that can be created."""
    return Path(text) if os.path.lexists(text) else Path(output_dir(text))


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "catalog",
        help="detect and measure sources; write Parquet (and HATS) catalogs",
        description=(
            "Build a source catalog from L2 ImageModel or L3 MosaicModel ASDF files. One image gives a "
            "single-band catalog; several images on one pixel grid give a multi-band catalog detected on "
            "their inverse-variance weighted sum. With --forced, every image is instead measured at the "
            "positions of a catalog (one forced catalog per image, e.g. per L2 exposure for light curves). "
            "`romanflow catalog columns` prints the column reference (Markdown)."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="ASDF files, or the word 'columns'")
    parser.add_argument("-o", "--output-dir", type=Path, metavar="DIR", help="folder for the Parquet catalog(s)")
    parser.add_argument("--bands", help="comma-separated filters expected, in order (checked against the files)")
    parser.add_argument("--hats", type=_hats_location, metavar="DIR",
                        help="also write a HATS catalog to DIR (a new or empty folder; an existing HATS catalog "
                             "only with --overwrite)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace existing catalog files and an existing HATS catalog (nothing else is replaced)")
    parser.add_argument("--name", type=name_token, help="catalog file stem (default: from the first image)")
    parser.add_argument("--snr-threshold", type=positive_float, default=5.0,
                        help="detection threshold in sigma, > 0 (default 5)")
    parser.add_argument("--n-pixels", type=positive_int, default=5, help="minimum connected pixels (default 5)")
    parser.add_argument("--no-deblend", action="store_true", help="do not deblend")
    parser.add_argument("--no-psf", action="store_true", help="skip PSF photometry")
    parser.add_argument("--forced", type=Path, metavar="CATALOG",
                        help="Parquet catalog with ra, dec (and id or label): forced photometry of each image there")
    parser.add_argument(
        "--psf-fwhm", type=positive_float, metavar="ARCSEC",
        help="PSF FWHM for every band, > 0 (estimated from the image otherwise)"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from romanflow.errors import RomanflowError

    if args.images == ["columns"]:
        from romanflow.catalog.schema import columns_markdown

        sys.stdout.write(columns_markdown() + "\n")
        return 0
    if args.output_dir is None:
        raise RomanflowError("an output directory is required: -o DIR")
    from romanflow.catalog.hats_io import check_hats_destination, write_hats
    from romanflow.catalog.parquet import check_catalog_destination, write_catalog_parquet
    from romanflow.catalog.products import read_band_image
    from romanflow.catalog.schema import band_token, catalog_columns

    args.output_dir = Path(args.output_dir)
    if args.forced is not None:
        if args.hats is not None or args.bands:
            raise RomanflowError("--forced writes one catalog per image: --hats and --bands do not apply")
        return _run_forced(args)
    stem = args.name or Path(args.images[0]).name.split(".")[0] + "_cat"
    out = args.output_dir / f"{stem}.parquet"
    # every destination is checked before any work, so nothing is measured only to be refused
    check_catalog_destination(out, overwrite=args.overwrite)
    if args.hats is not None:
        check_hats_destination(args.hats, overwrite=args.overwrite)
    images = [read_band_image(p, psf_fwhm_arcsec=args.psf_fwhm) for p in args.images]
    bands = [band_token(im.band) for im in images]
    if args.bands:
        wanted = [band_token(b) for b in args.bands.split(",") if b.strip()]
        if wanted != bands:
            raise RomanflowError(f"--bands {','.join(wanted)} does not match the files' filters {','.join(bands)}")
    table = _measure(images, args.images, snr_threshold=args.snr_threshold, n_pixels=args.n_pixels,
                     deblend=not args.no_deblend, psf_photometry=not args.no_psf)
    provenance = {
        "catalog_kind": table.meta["catalog_kind"],
        "filters": [im.band for im in images],
        "inputs": [str(p) for p in args.images],
        "exposures": {im.band: [str(p) for p in im.exposures] for im in images},
        "reference_files": {im.band: im.provenance.get("reference_files", {}) for im in images},
        "psf_fwhm_arcsec": table.meta["psf_fwhm_arcsec"],
    }
    columns = catalog_columns(table.meta["catalog_kind"], bands)
    write_catalog_parquet(table, out, columns=columns, provenance=provenance)
    exposures = sum(len(im.exposures) for im in images)
    fitted = f"; PSF also fitted on {exposures} member exposures" if exposures and not args.no_psf else ""
    print(f"{out}: {len(table)} sources in {', '.join(bands)}{fitted}")
    if args.hats is not None:
        if len(table) == 0:
            raise RomanflowError(f"no sources detected: no HATS catalog written to {args.hats}")
        write_hats(table, args.hats, catalog_name=stem, provenance=provenance, overwrite=args.overwrite)
        print(f"{args.hats}: HATS catalog")
    return 0


def _measure(images, paths, **options):
    """:func:`~romanflow.catalog.source_catalog.make_catalog`, a problem with one image naming its file."""
    from romanflow.catalog.source_catalog import make_catalog
    from romanflow.errors import InputFileError, ParameterError, RomanflowError

    try:
        return make_catalog(images, **options)
    except (InputFileError, ParameterError):
        raise
    except RomanflowError as exc:
        if len(paths) == 1:
            raise InputFileError(paths[0], str(exc)) from None
        raise


def _forced_positions(path: Path):
    """(ra, dec, ids) from a Parquet catalog; ``id``, else ``label``, else the row number."""
    import numpy as np
    import pyarrow.parquet as pq

    from romanflow.errors import InputFileError

    if not path.is_file():
        raise InputFileError(path, "no such file")
    try:
        table = pq.read_table(path, page_checksum_verification=True)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises many kinds for a file that is not Parquet
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0]
        raise InputFileError(path, f"not a readable Parquet catalog: {first_line}") from None
    missing = [c for c in ("ra", "dec") if c not in table.column_names]
    if missing:
        raise InputFileError(path, f"no {' and '.join(missing)} column")
    ra = np.asarray(table["ra"], np.float64)
    dec = np.asarray(table["dec"], np.float64)
    if not (np.isfinite(ra).all() and np.isfinite(dec).all()):
        raise InputFileError(path, "ra/dec contain NaN or infinite values")
    name = next((c for c in ("id", "label") if c in table.column_names), None)
    ids = np.asarray(table[name], np.int64) if name else np.arange(len(ra))
    return ra, dec, ids


def _exposure_start(path) -> float | None:
    """MJD of an L2 exposure's start (``meta.exposure.start_time``); None for a mosaic."""
    import roman_datamodels as rdm

    with rdm.open(path) as model:
        try:
            return float(model.meta.exposure.start_time.mjd)
        except AttributeError:
            return None


def _run_forced(args) -> int:
    """One forced catalog per image at the positions of ``args.forced``."""
    from romanflow.catalog.parquet import check_catalog_destination, write_catalog_parquet
    from romanflow.catalog.products import read_band_image
    from romanflow.catalog.schema import band_token, catalog_columns
    from romanflow.catalog.source_catalog import forced_photometry
    from romanflow.errors import InputFileError, ParameterError, RomanflowError

    outs = [args.output_dir / f"{Path(path).name.split('.')[0]}_forced.parquet" for path in args.images]
    if len(set(outs)) != len(outs):
        raise RomanflowError("two images would write the same forced catalog: give images with different names")
    ra, dec, ids = _forced_positions(args.forced)
    for out in outs:
        check_catalog_destination(out, overwrite=args.overwrite)
    from romanflow.formats import open_model

    for path in args.images:  # every image is checked (schema, checksums) before any catalog is written
        with open_model(path, ("ImageModel", "MosaicModel")):
            pass
    for path, out in zip(args.images, outs):
        image = read_band_image(path, psf_fwhm_arcsec=args.psf_fwhm)
        try:
            table = forced_photometry(image, ra, dec, ids)
        except (InputFileError, ParameterError):
            raise
        except RomanflowError as exc:
            raise InputFileError(path, str(exc)) from None
        provenance = {"catalog_kind": "forced", "filters": [image.band], "inputs": [str(path)],
                      "positions": str(args.forced), "psf_fwhm_arcsec": table.meta["psf_fwhm_arcsec"]}
        start = _exposure_start(path)
        if start is not None:
            provenance["exposure_start_mjd"] = start
        write_catalog_parquet(table, out, columns=catalog_columns("forced", [band_token(image.band)]),
                              provenance=provenance)
        inside = int((table["warning_flags"] == 0).sum())
        print(f"{out}: {len(table)} positions, {inside} fully on the image, {image.band}")
    return 0
