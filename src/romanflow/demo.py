"""The main job: a small survey from raw ramps to a HATS catalog, checked against the truth.

``romanflow demo -o DIR`` runs offline on the embedded default reference store:

1. simulate dithered exposures of a few detectors in two filters, with pointing errors;
2. calibrate every detector L1 -> L2 (both cores);
3. register each exposure to the simulator's Gaia-like catalog (one fit per exposure);
4. mosaic each filter onto a cutout of the sky-cell grid (0.055"/pix), rejecting outliers;
5. measure a multi-band catalog on each mosaic, write Parquet and one HATS catalog;
6. draw a PNG and print a summary: products, and accuracy against the truth.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from romanflow.detector import N_BORDER

#: The survey the main job simulates (small detectors keep it to a few minutes on 2 cores).
DEMO_SURVEY = {
    "science_size": 504,
    "detectors": ("WFI01", "WFI10"),
    "filters": ("F158", "F106"),
    "dithers_arcsec": ((0.0, 0.0), (3.7, 5.3), (-4.9, 2.1)),
    "pointing": (270.0, 66.0, 60.0),
    "pointing_error": (0.8, -0.6, 0.01),
    "ma_table": 4,
    "n_sources": 40000,
    "seed": 7,
}


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the main job on the embedded default",
                              description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--workers", type=int, default=None, help="processes for calibration (default: one per core)")
    p.set_defaults(func=run)


def draw_png(data, catalog, path: Path, title: str, truth_xy=None) -> Path:
    """Save an asinh-stretched picture of an image with catalogued (and true) sources marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

    data = np.nan_to_num(data, nan=0.0)
    norm = ImageNormalize(data, interval=ZScaleInterval(), stretch=AsinhStretch())
    fig, ax = plt.subplots(figsize=(8, 8), dpi=110)
    ax.imshow(data, origin="lower", cmap="gray", norm=norm)
    if truth_xy is not None and len(truth_xy[0]):
        ax.scatter(*truth_xy, s=70, marker="+", color="tab:cyan", linewidths=0.6, label="true stars")
    if catalog is not None and len(catalog):
        ax.scatter(catalog["x_centroid"], catalog["y_centroid"], s=36, facecolors="none",
                   edgecolors="tab:orange", linewidths=0.7, label=f"catalog ({len(catalog)} sources)")
    ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def _register_exposures(l2_files, refcat_path, progress):
    """Detect sources and fit one WCS correction per exposure; rewrite the L2 files."""
    import warnings

    from romanflow.astrometry import source_catalog, tweakreg
    from romanflow.astrometry.refcat import read_refcat
    from romanflow.formats import read_l2, write_l2

    refcat = read_refcat(refcat_path)
    by_exposure: dict[str, list[Path]] = {}
    for path in l2_files:
        by_exposure.setdefault(Path(path).name.split("_wfi")[0], []).append(Path(path))
    results = []
    for paths in by_exposure.values():
        images = [read_l2(p) for p in paths]
        catalogs = [source_catalog(image) for image in images]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tweakreg(images, catalogs, refcat)
        for image, path in zip(images, paths):
            write_l2(image, path)
            results.append(image.meta.get("wcs_fit_results", {}))
        progress()
    return results


def _mosaic_grid(l2_paths, margin_pix: int = 40):
    """A cutout of the sky-cell grid (0.055"/pix) covering the inputs' footprints."""
    from romanflow.formats import read_l2
    from romanflow.mosaic.skycells import cutout_wcs, skycell_containing, skycell_wcs

    ra, dec = [], []
    for path in l2_paths:
        image = read_l2(path)
        n = image.data.shape[0]
        x = np.array([0, n - 1, n - 1, 0, (n - 1) / 2])
        y = np.array([0, 0, n - 1, n - 1, (n - 1) / 2])
        r, d = image.wcs(x, y, with_bounding_box=False)
        ra.extend(r)
        dec.extend(d)
    name = skycell_containing(np.array([np.mean(ra)]), np.array([np.mean(dec)]))[0]
    grid = skycell_wcs(name)
    px, py = grid.world_to_pixel_values(np.array(ra), np.array(dec))
    x0, y0 = int(np.floor(px.min())) - margin_pix, int(np.floor(py.min())) - margin_pix
    nx, ny = int(np.ceil(px.max())) + margin_pix - x0, int(np.ceil(py.max())) + margin_pix - y0
    return name, cutout_wcs(grid, x0, y0, nx, ny)


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from romanflow.calibrate import CalibrationOptions, calibrate
    from romanflow.catalog.hats_io import write_hats
    from romanflow.catalog.parquet import write_catalog_parquet
    from romanflow.catalog.source_catalog import make_catalog
    from romanflow.catalog.products import read_band_image
    from romanflow.catalog.schema import catalog_columns
    from romanflow.detector_model import DetectorModel
    from romanflow.formats import read_l2
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.refdata import default_store
    from romanflow.simulate import simulate
    from romanflow.simulate.core import ObservationIds
    from romanflow.validation import catalog_accuracy, jump_completeness, rate_accuracy

    survey = DEMO_SURVEY
    out = Path(args.output)
    size = survey["science_size"]
    started = time.perf_counter()
    ra0, dec0, pa = survey["pointing"]
    exposures = [(f, d) for f in survey["filters"] for d in survey["dithers_arcsec"]]
    detectors = survey["detectors"]
    n_cal = len(exposures) * len(detectors)
    n_steps = 1 + 2 * n_cal + len(exposures) + 2 * len(detectors) + len(detectors) + 1
    bar = tqdm(total=n_steps, desc="romanflow demo", unit="step")

    # 1. reference files for the detectors and filters in use
    bar.set_postfix_str("reference store")
    default_store(size).build(detectors=detectors, filters=survey["filters"])
    bar.update(1)

    # 2. simulate: one scene, dithered exposures, each with its own pointing error
    bar.set_postfix_str("simulate")
    from romanflow import geometry
    from romanflow.simulate import random_scene

    centre = geometry.pointing_for(ra0, dec0, pa)
    radius = 0.55
    scene = random_scene(ra0, dec0, radius, density_per_arcmin2=survey["n_sources"] / (4088 * 0.11 / 60) ** 2,
                         seed=survey["seed"])
    sims = []
    for number, (optical_element, (dx, dy)) in enumerate(exposures, start=1):
        cosd = np.cos(np.radians(dec0))
        pointing = geometry.pointing_for(centre.ra_ref + dx / 3600.0 / cosd, centre.dec_ref + dy / 3600.0, pa)
        error = np.array(survey["pointing_error"]) * (1 if number % 2 else -1)
        result = simulate(scene, detectors=detectors, optical_element=optical_element, ma_table=survey["ma_table"],
                          pointing=pointing, pointing_error=tuple(error), science_size=size,
                          seed=survey["seed"] + number, output_dir=out / "l1", ids=ObservationIds(exposure=number),
                          progress=lambda _: bar.update(1))
        sims.append((optical_element, result))

    # 3. calibrate all detectors of all exposures
    bar.set_postfix_str("calibrate")
    l1_files = [p for _, r in sims for p in r["l1"]]
    l2_files = calibrate(l1_files, out / "l2", options=CalibrationOptions(), workers=args.workers,
                         progress=lambda _: bar.update(1))

    # 4. register each exposure to the astrometric catalog
    bar.set_postfix_str("tweakreg")
    fits = _register_exposures(l2_files, sims[0][1]["gaia"], lambda: bar.update(1))

    # 5. mosaic per detector field and filter, on a cutout of the sky-cell grid
    bar.set_postfix_str("mosaic")
    mosaics: dict[str, dict[str, Path]] = {}
    for detector in detectors:
        tag = detector.lower()
        field_l2 = [p for p in l2_files if f"_{tag}_" in Path(p).name]
        name, grid = _mosaic_grid(field_l2)
        for optical_element in survey["filters"]:
            inputs = [p for p in field_l2 if read_l2(p).meta["instrument"]["optical_element"] == optical_element]
            target = out / "l3" / f"r00001_{name}_{tag}_{optical_element.lower()}_coadd.asdf"
            make_mosaic(inputs, grid, target, skycell=name, optical_element=optical_element)
            mosaics.setdefault(detector, {})[optical_element] = target
            bar.update(1)

    # 6. multi-band catalogs through one detection image, Parquet + HATS
    bar.set_postfix_str("catalog")
    tables, rows_cat, first_png = [], [], None
    bands = [f.lower() for f in survey["filters"]]
    for detector, by_filter in mosaics.items():
        images = [read_band_image(by_filter[f]) for f in survey["filters"]]
        table = make_catalog(images)
        path = out / "l4" / f"{by_filter[survey['filters'][0]].stem.replace('_coadd', '')}_multiband_cat.parquet"
        path = path.with_name(path.name.replace(f"_{bands[0]}_", "_"))
        write_catalog_parquet(table, path, columns=catalog_columns("multiband", bands),
                              provenance={"inputs": [str(p.name) for p in by_filter.values()]})
        tables.append(table)
        truth = pd.read_parquet(sims[0][1]["scene"])
        wcs = images[0].wcs
        ny, nx = images[0].data.shape
        tx, ty = wcs.world_to_pixel_values(truth["ra"].to_numpy(), truth["dec"].to_numpy())
        inside = (tx > 20) & (ty > 20) & (tx < nx - 20) & (ty < ny - 20)
        for optical_element in survey["filters"]:
            acc = catalog_accuracy(table, truth[inside], optical_element)
            rows_cat.append({"field": detector, "filter": optical_element, "sources": len(table), **acc})
        if first_png is None:
            stars = inside & (truth["type"].to_numpy() == "star")
            first_png = draw_png(images[0].data, table, out / "demo_mosaic.png",
                                 f"{by_filter[survey['filters'][0]].name} with its multi-band catalog",
                                 truth_xy=(tx[stars], ty[stars]))
        bar.update(1)
    from astropy.table import vstack

    hats_path = write_hats(vstack(tables), out / "l4" / "romanflow_demo_hats", catalog_name="romanflow_demo",
                           provenance={"mosaics": [str(p.name) for m in mosaics.values() for p in m.values()]})
    bar.update(1)
    bar.close()

    # 7. accuracy of the L2 rates and jump flags against the truth
    rows_l2 = []
    for (optical_element, result), l2_batch in zip(sims, np.array_split(np.array(l2_files, dtype=object), len(sims))):
        for l2_path, rate_path, cr_path in zip(l2_batch, result["rate"], result["cosmic_rays"]):
            image = read_l2(l2_path)
            truth = np.load(rate_path)
            model = DetectorModel(image.meta["instrument"]["detector"], size)
            s = slice(N_BORDER, -N_BORDER)
            acc = rate_accuracy(image.data, image.err, image.dq, truth)
            jumps = jump_completeness(image.dq, pd.read_parquet(cr_path), truth + model.dark_rate[s, s],
                                      model.gain[s, s], model.read_noise[s, s], image_read_pattern(image))
            rows_l2.append({"file": Path(l2_path).name, "filter": optical_element, **acc, **jumps})

    summary = {"products": {"l1": len(l1_files), "l2": len(l2_files), "l3": sum(len(m) for m in mosaics.values()),
                            "catalogs": len(tables), "hats": str(hats_path)},
               "l2": rows_l2, "registration": fits, "catalogs": rows_cat,
               "elapsed_s": time.perf_counter() - started}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary, out, first_png)
    return 0


def image_read_pattern(image):
    from romanflow.detector import ReadPattern

    return ReadPattern.from_meta(image.meta)


def print_summary(summary: dict, out: Path, png: Path) -> None:
    p = summary["products"]
    print(f"\nromanflow demo: {p['l1']} L1, {p['l2']} L2, {p['l3']} L3 mosaics, {p['catalogs']} multi-band catalogs "
          f"and a HATS catalog in {out}/ ({summary['elapsed_s']:.0f} s)")
    print("\nL2 rates against the truth")
    print(f"{'product':<46}{'filter':>7}{'bias >1 DN/s':>14}{'width(z)':>10}{'jumps found':>13}{'false jumps':>13}")
    for r in summary["l2"]:
        widths = [d["z_width"] for d in r["decades"]]
        width = f"{min(widths):.2f}-{max(widths):.2f}" if widths else "n/a"
        print(f"{r['file']:<46}{r['filter']:>7}{r['bias_above_1dns']:>14.3%}{width:>10}"
              f"{r['completeness']:>13.1%}{r['false_rate']:>13.1e}")
    print("\nRegistration (one fit per exposure)")
    for fit in summary["registration"][:: max(1, len(summary["registration"]) // 6) or 1]:
        if fit:
            print(f"  status={fit.get('status')} matches={fit.get('n_matches', fit.get('nmatches'))} "
                  f"rms={fit.get('rms_arcsec', fit.get('rms', float('nan')))}")
    print("\nCatalogs against the true stars")
    print(f"{'field':<8}{'filter':>7}{'sources':>9}{'complete S/N>10':>17}{'phot. bias S/N>50':>19}"
          f"{'scatter':>9}{'std(z)':>8}{'astrom. rms':>13}")
    for r in summary["catalogs"]:
        print(f"{r['field']:<8}{r['filter']:>7}{r['sources']:>9}{r.get('completeness_snr10', float('nan')):>17.1%}"
              f"{r.get('photometric_bias', float('nan')):>19.2%}{r.get('photometric_scatter', float('nan')):>9.3f}"
              f"{r.get('normalized_residual_std', float('nan')):>8.2f}"
              f"{r.get('astrometric_rms_mas', float('nan')):>10.1f} mas")
    print(f"\npicture: {png}\nsummary: {out / 'summary.json'}")
