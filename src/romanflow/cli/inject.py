"""``romanflow inject``: synthetic sources into L2/L3 images, their recovery, completeness and depth."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from romanflow.cli.options import add_command, finite_float, name_token, non_negative_float, output_dir, \
    non_negative_int, positive_float, positive_int


def _fraction(text: str) -> float:
    from romanflow.errors import ParameterError

    value = finite_float(text)
    if not 0.0 <= value <= 1.0:
        raise ParameterError("--star-fraction", text, "must lie within [0, 1]")
    return value


def _hats_location(text: str) -> Path:
    return Path(text) if os.path.lexists(text) else Path(output_dir(text))


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "inject",
        help="inject synthetic sources into L2/L3 images, recover them, measure completeness",
        description=(
            "Add sources to L2 ImageModel or L3 MosaicModel files, from a catalog (Parquet/ECSV/CSV: ra, dec, "
            "type, shape columns, mag_<FILTER> per band) or generated on the first image (--n, --mag-range). "
            "The injected images are new files (*_inj_cal.asdf, *_inj_coadd.asdf) beside a table of their "
            "sources and footprints; the originals are never modified. Unless --no-recover, the injected "
            "images are catalogued with the catalog code (L3 mosaics of one grid together, as one multi-band "
            "catalog), the sources matched, and the input/output catalogs, completeness/purity/bias curves "
            "(Parquet, PNG) and 50%/90% completeness magnitudes written."
        ),
    )
    parser.add_argument("images", nargs="+", metavar="IMAGE", help="L2 or L3 ASDF files")
    parser.add_argument("-o", "--output-dir", type=output_dir, required=True, metavar="DIR",
                        help="folder for the injected images and catalogs")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--catalog", type=Path, metavar="FILE", help="sources to inject (Parquet, ECSV or CSV)")
    source.add_argument("--n", type=positive_int, metavar="N", help="generate N sources on the first image")
    parser.add_argument("--mag-range", nargs=2, type=finite_float, metavar=("LO", "HI"), default=None,
                        help="AB magnitudes of generated sources, drawn uniformly (default 20 28)")
    parser.add_argument("--star-fraction", type=_fraction, default=0.5,
                        help="fraction of generated sources that are stars (the rest Sersic galaxies; default 0.5)")
    parser.add_argument("--layout", choices=("random", "grid"), default="random",
                        help="positions of generated sources (default random)")
    parser.add_argument("--avoid-real", type=non_negative_float, metavar="ARCSEC", default=None,
                        help="keep generated sources this far from the sources detected on the first image")
    parser.add_argument("--min-separation", type=non_negative_float, metavar="ARCSEC", default=0.0,
                        help="keep generated sources this far from each other (default 0)")
    parser.add_argument("--seed", type=non_negative_int, default=0, help="seed of the positions, shapes and noise (default 0)")
    parser.add_argument("--no-noise", action="store_true", help="add no Poisson noise for the injected flux")
    parser.add_argument("--no-recover", action="store_true", help="only inject: no catalogs, no curves")
    parser.add_argument("--psf-fwhm", type=positive_float, metavar="ARCSEC",
                        help="render and measure with a Gaussian PSF of this FWHM instead of the images' PSF")
    parser.add_argument("--name", type=name_token, help="stem of the catalog files (default: from the first image)")
    parser.add_argument("--hats", type=_hats_location, metavar="DIR", help="also write the output catalog as HATS")
    parser.add_argument("--overwrite", action="store_true", help="replace existing products")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np
    import pandas as pd

    from romanflow.errors import ParameterError, RomanflowError
    from romanflow.inject import inject_images, read_injection_catalog
    from romanflow.inject.products import product_paths, write_output_hats, write_products

    if args.catalog is not None and (args.mag_range is not None or args.avoid_real is not None):
        raise RomanflowError("--mag-range and --avoid-real apply to generated sources (--n), not to --catalog")
    out = Path(args.output_dir)
    stem = args.name or Path(args.images[0]).name.split(".")[0]
    if not args.no_recover:
        from romanflow.catalog.parquet import check_catalog_destination

        for path in product_paths(out, stem).values():
            check_catalog_destination(path, overwrite=args.overwrite)
        if args.hats is not None:
            from romanflow.catalog.hats_io import check_hats_destination

            check_hats_destination(args.hats, overwrite=args.overwrite)
    parent_catalogs = {}
    if args.catalog is not None:
        sources = read_injection_catalog(args.catalog)
        catalog_name = str(args.catalog)
    else:
        mag_range = tuple(args.mag_range) if args.mag_range is not None else (20.0, 28.0)
        if mag_range[0] > mag_range[1]:
            raise ParameterError("--mag-range", " ".join(map(str, mag_range)), "LO must not exceed HI")
        sources, catalog_name = _generate(args, mag_range, parent_catalogs)
    results = inject_images(args.images, sources, out, catalog_name=catalog_name, noise=not args.no_noise,
                            seed=args.seed, overwrite=args.overwrite, psf_fwhm_arcsec=args.psf_fwhm)
    for r in results:
        print(f"{r.path}: {len(r.sources)} sources injected ({r.level}, {r.band})")
    if args.no_recover:
        return 0
    from romanflow.inject.recover import recover

    outputs, detections = [], []
    for group in _groups(results):
        parents = [r.parent for r in group]
        key = tuple(str(p) for p in parents)
        rec = recover([r.path for r in group], [r.sources for r in group], parents,
                      parent_catalog=parent_catalogs.get(key), psf_fwhm_arcsec=args.psf_fwhm)
        outputs.append(rec.output)
        detections.append(rec.detections)
    output = pd.concat(outputs, ignore_index=True)
    provenance = {"images": [str(p) for p in args.images], "injected": [str(r.path) for r in results],
                  "parents": [str(r.parent) for r in results], "catalog": catalog_name, "seed": args.seed,
                  "noise": not args.no_noise}
    paths = write_products(sources, output, pd.concat(detections, ignore_index=True), out, stem,
                           provenance=provenance)
    depth = pd.read_parquet(paths["depth"])
    n_matched = int(output["matched"].sum())
    print(f"{paths['output']}: {n_matched} of {len(output)} injected sources recovered")
    for row in depth[depth["kind"] == "all"].itertuples():
        print(f"{row.band}: 50% completeness at {row.mag50:.2f}, 90% at {row.mag90:.2f} AB"
              if np.isfinite(row.mag50) else f"{row.band}: completeness curve not constrained ({row.n} sources)")
    if args.hats is not None:
        write_output_hats(output, args.hats, catalog_name=f"{stem}_injection", provenance=provenance,
                          overwrite=args.overwrite)
        print(f"{args.hats}: HATS catalog")
    return 0


def _generate(args, mag_range, parent_catalogs):
    """Sources generated on the first image; its parent catalog kept for recovery when computed here."""
    from romanflow.catalog.products import read_band_image
    from romanflow.inject import generate_sources
    from romanflow.inject.recover import catalog_images

    first = Path(args.images[0])
    bands = []
    for path in args.images:
        band = read_band_image(path, psf_fwhm_arcsec=args.psf_fwhm or 0.15).band.upper()
        if band not in bands:
            bands.append(band)
    image = read_band_image(first, psf_fwhm_arcsec=args.psf_fwhm or 0.15)
    ny, nx = image.data.shape
    from romanflow.geometry import local_pixel_scale

    scale = float(local_pixel_scale(image.wcs, [nx / 2], [ny / 2])[0])
    avoid = None
    if args.avoid_real is not None:
        table, _ = catalog_images([first], psf_fwhm_arcsec=args.psf_fwhm, exposures=False)
        parent_catalogs[(str(first),)] = table
        avoid = (table["ra"].value if hasattr(table["ra"], "value") else table["ra"],
                 table["dec"].value if hasattr(table["dec"], "value") else table["dec"])
    sources = generate_sources(image.wcs, (ny, nx), bands, n=args.n, mag_range=mag_range,
                               star_fraction=args.star_fraction, layout=args.layout, avoid=avoid,
                               avoid_radius_arcsec=args.avoid_real or 0.0,
                               min_separation_arcsec=args.min_separation, pixel_scale_arcsec=scale, seed=args.seed)
    return sources, f"generated on {first.name} (seed {args.seed})"


def _groups(results):
    """Injected products catalogued together: L3 mosaics of one shape and grid in one group, others alone."""
    groups, mosaics = [], {}
    for r in results:
        if r.level == "L3":
            from romanflow.formats import open_model

            with open_model(r.path, "MosaicModel") as m:
                key = (tuple(m.data.shape), str(m.meta.wcsinfo.skycell_name), float(m.meta.wcsinfo.ra),
                       float(m.meta.wcsinfo.dec))
            if key in mosaics:
                mosaics[key].append(r)
                continue
            mosaics[key] = [r]
            groups.append(mosaics[key])
        else:
            groups.append([r])
    return groups
