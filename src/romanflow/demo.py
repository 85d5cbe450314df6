"""The main job: a small survey from raw ramps to a HATS catalog, checked against the truth.

``romanflow demo -o DIR`` runs offline on the embedded default reference store. It writes a
survey plan (two detectors, two filters, two dithers, with pointing errors) and runs it with the
in-process executor of :mod:`romanflow.run`: simulate -> calibrate -> register each exposure ->
mosaic each sky cell and filter -> multi-band catalog -> HATS. It then compares the products
with the simulator's truth, draws a PNG of a mosaic with its catalog and prints a summary.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np

from romanflow.detector import N_BORDER

#: The survey the main job runs (small detectors keep it to a few minutes on 2 cores).
DEMO_PLAN = {
    "ra": 270.0,
    "dec": 66.0,
    "size_deg": 0.05,
    "filters": ("F158", "F106"),
    "dither": "2",
    "detectors": ("WFI01", "WFI10"),
    "science_size": 504,
    "pointing_error_arcsec": 1.0,
    "seed": 7,
    "scene": {"seed": 7, "density_per_arcmin2": 500.0, "star_fraction": 0.5, "refcat_g_limit": 26.5},
}


#: Matching radius (arcsec) of the registration check: five times validation's match radius, so that a
#: registration that went wrong shows as a large RMS rather than as stars that silently fail to match.
REGISTRATION_CHECK_RADIUS_ARCSEC = 0.5


def demo_plan():
    """The survey plan of the main job."""
    from romanflow.run.plan import plan_from_dict, tiled_plan

    d = DEMO_PLAN
    plan = tiled_plan(d["ra"], d["dec"], d["size_deg"], d["filters"], dither=d["dither"], detectors=d["detectors"],
                      science_size=d["science_size"], pointing_error_arcsec=d["pointing_error_arcsec"],
                      seed=d["seed"], name="romanflow_demo", scene=dict(d["scene"]))
    data = plan.to_dict()
    data["registration"] = {"minobj": 5}
    data["mosaic"] = {"hips": True}  # the trees `romanflow serve` shows at /
    return plan_from_dict(data, source="romanflow demo")


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
        ax.scatter(*truth_xy, s=90, marker="+", color="tab:cyan", linewidths=0.6, label="true stars")
    if catalog is not None and len(catalog):
        ax.scatter(catalog["x_centroid"], catalog["y_centroid"], s=40, facecolors="none",
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


def l2_accuracy(out: Path) -> list[dict]:
    """Rates and jump flags of every L2 image against the noiseless truth."""
    import pandas as pd

    from romanflow.detector import ReadPattern
    from romanflow.detector_model import DetectorModel
    from romanflow.formats import read_l2
    from romanflow.validation import jump_completeness, rate_accuracy

    rows = []
    s = slice(N_BORDER, -N_BORDER)
    for path in sorted((out / "l2").glob("*_cal.asdf")):
        stem = path.name.replace("_cal.asdf", "")
        image = read_l2(path)
        truth = np.load(out / "truth" / f"{stem}_rate.npy")
        model = DetectorModel(image.meta["instrument"]["detector"], image.data.shape[0])
        jumps = jump_completeness(image.dq, pd.read_parquet(out / "truth" / f"{stem}_cosmic_rays.parquet"),
                                  truth + model.dark_rate[s, s], model.gain[s, s], model.read_noise[s, s],
                                  ReadPattern.from_meta(image.meta))
        rows.append({"file": path.name, "filter": image.meta["instrument"]["optical_element"],
                     **rate_accuracy(image.data, image.err, image.dq, truth), **jumps})
    return rows


def registration_accuracy(out: Path, min_snr: float = 100.0) -> list[dict]:
    """Positions of bright stars after registration against their true positions (mas)."""
    import pandas as pd

    from romanflow.formats import read_l2
    from romanflow.validation import match_sky

    rows = []
    for path in sorted((out / "registered").glob("*_cal.asdf")):
        stem = path.name.replace("_cal.asdf", "")
        catalog = pd.read_parquet(out / "registered" / f"{stem}_cat.parquet")
        truth = pd.read_parquet(out / "truth" / f"{stem}_sources.parquet")
        stars = truth[(truth["type"] == "star") & truth["on_detector"]]
        flux, err = catalog["flux"].to_numpy(float), catalog["flux_err"].to_numpy(float)
        bright = catalog[(flux / err > min_snr) & (catalog["flags"] == 0)] if "flags" in catalog else \
            catalog[flux / err > min_snr]
        _, _, sep = match_sky(bright["ra"].to_numpy(float), bright["dec"].to_numpy(float),
                              stars["ra"].to_numpy(float), stars["dec"].to_numpy(float),
                              REGISTRATION_CHECK_RADIUS_ARCSEC)
        fit = read_l2(path).meta.get("wcs_fit_results", {})
        rows.append({"file": path.name, "status": fit.get("status", "?"), "matches": fit.get("n_matches"),
                     "stars": int(len(sep)), "rms_mas": float(np.sqrt(np.mean(sep**2)) * 1e3) if len(sep) else
                     float("nan")})
    return rows


def catalog_accuracy_rows(out: Path, filters) -> tuple[list[dict], Path | None]:
    """Each sky cell's multi-band catalog against the true stars; draws the first one."""
    from astropy.table import QTable

    from romanflow.catalog.products import read_band_image
    from romanflow.validation import catalog_accuracy, colour_accuracy, covered_by, survey_truth

    scene = survey_truth(out)
    rows, png = [], None
    for cat_path in sorted((out / "l4").glob("*_cat.parquet")):
        cell = cat_path.name.replace("_cat.parquet", "")
        table = QTable.read(cat_path)
        image = read_band_image(out / "l3" / f"{cell}_{filters[0].lower()}_coadd.asdf")
        covered = covered_by(image, scene)
        for f in filters:
            mosaic_psf = catalog_accuracy(table, scene[covered], f, flux_column=f"psf_{f.lower()}_flux")
            rows.append({"cell": cell, "filter": f, "sources": len(table),
                         **catalog_accuracy(table, scene[covered], f),
                         "mosaic_psf_bias": mosaic_psf.get("photometric_bias", float("nan")),
                         "mosaic_psf_residual_std": mosaic_psf.get("normalized_residual_std", float("nan"))})
        if len(filters) > 1:
            rows[-1]["colour"] = {"bands": f"{filters[1]}-{filters[0]}",
                                  **colour_accuracy(table, scene[covered], filters[1], filters[0])}
        if png is None:
            stars = covered & (scene["type"].to_numpy() == "star")
            tx, ty = image.wcs.world_to_pixel_values(scene["ra"].to_numpy(), scene["dec"].to_numpy())
            png = draw_png(image.data, table, out / "demo_mosaic.png",
                           f"{cell} {filters[0]} mosaic (0.055\"/pix) with its multi-band catalog",
                           truth_xy=(tx[stars], ty[stars]))
    return rows, png


def hats_check(out: Path) -> dict:
    """A cone search of the HATS catalog through LSDB against a brute-force search of the same rows."""
    import lsdb
    import pandas as pd

    from romanflow.validation import match_sky

    path = next((out / "hats").iterdir())
    rows = pd.concat([pd.read_parquet(p, columns=["ra", "dec"]) for p in sorted((path / "dataset").rglob("*.parquet"))
                      if p.name.startswith("Npix=")])
    ra0, dec0, radius = float(rows["ra"].median()), float(rows["dec"].median()), 20.0
    found = lsdb.open_catalog(path).cone_search(ra0, dec0, radius_arcsec=radius).compute()
    i, _, _ = match_sky(rows["ra"].to_numpy(), rows["dec"].to_numpy(), np.array([ra0]), np.array([dec0]),
                        radius)
    return {"path": str(path), "cone_rows": int(len(found)), "brute_force_rows": int(len(i))}


def run_demo(out: Path, archive: str | None = None) -> dict:
    """Run the main job into folder ``out``, registering every product as it is written in the archive
    ``archive`` (default: the embedded one, ``out/archive.db``); print its summary and return it."""
    from romanflow.archive import default_url
    from romanflow.archive.runs import run_with_archive

    out = Path(out)
    started = time.perf_counter()
    plan = demo_plan()
    archive = archive or default_url(out)
    report, _, archived = run_with_archive(plan, out, archive)
    if report.failed or report.hook_failures:
        from romanflow.errors import RomanflowError

        first = next(iter({**report.failed, **report.hook_failures}.values()))
        raise RomanflowError(f"the demo run failed: {first}")
    filters = DEMO_PLAN["filters"]
    l2_rows = l2_accuracy(out)
    reg_rows = registration_accuracy(out)
    cat_rows, png = catalog_accuracy_rows(out, filters)
    hats = hats_check(out)
    summary = {"elapsed_s": time.perf_counter() - started, "tasks": report.n_tasks, "l2": l2_rows,
               "registration": reg_rows, "catalogs": cat_rows, "hats": hats, "picture": str(png),
               "archive": archive_summary(archive)}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print_summary(summary, out)
    return summary


def archive_summary(url: str) -> dict:
    """Products registered in the archive by kind, and lineage links."""
    from collections import Counter

    from romanflow.archive import Archive

    with Archive.open(url) as arc:
        table = arc.search()
        counts = arc.counts()
    kinds = Counter(str(k) for k in table["product_kind"])
    return {"url": url, "products": len(table), "kinds": ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())),
            "lineage": counts["lineage"]}


def print_summary(summary: dict, out: Path) -> None:
    counts = {level: len(list((out / level).glob(pattern))) for level, pattern in
              (("l1", "*_uncal.asdf"), ("l2", "*_cal.asdf"), ("l3", "*_coadd.asdf"), ("l4", "*_cat.parquet"))}
    print(f"\nromanflow demo: {summary['tasks']} tasks in {summary['elapsed_s']:.0f} s -> {counts['l1']} L1, "
          f"{counts['l2']} L2, {counts['l3']} L3 mosaics, {counts['l4']} catalogs, HATS at {summary['hats']['path']}")
    print("\nL2 rates against the noiseless truth")
    print(f"{'product':<44}{'filter':>7}{'bias >1 DN/s (pixels)':>24}{'std(z) per decade':>19}{'jumps found':>13}")
    for r in summary["l2"]:
        widths = [d["z_width"] for d in r["decades"]]
        spread = f"{min(widths):.2f}-{max(widths):.2f}" if widths else "n/a"
        bias = f"{r['bias_above_1dns']:.3%} ({r['pixels_above_1dns']})"
        print(f"{r['file']:<44}{r['filter']:>7}{bias:>24}{spread:>19}{r['completeness']:>13.1%}")
    print("\nRegistration: one fit per exposure; stars with S/N > 100 against their true positions")
    for r in summary["registration"]:
        print(f"{r['file']:<44} {r['status']:<9} matches {r['matches']!s:>4}  stars {r['stars']:>3}  "
              f"rms {r['rms_mas']:.1f} mas")
    print("\nCatalogs against the true stars: point-source fluxes from PSF fits on the exposures;"
          "\nthe last two columns fit the PSF on the mosaic itself, for comparison")
    print(f"{'sky cell':<15}{'filter':>7}{'sources':>9}{'complete S/N>10':>17}{'bias S/N>50':>13}"
          f"{'scatter':>9}{'std(z)':>8}{'std(z)>20':>10}{'astrometry':>12}{'mosaic bias':>13}{'std(z)':>8}")
    nan = float("nan")
    for r in summary["catalogs"]:
        print(f"{r['cell']:<15}{r['filter']:>7}{r['sources']:>9}{r.get('completeness_snr10', nan):>17.1%}"
              f"{r.get('photometric_bias', nan):>13.2%}{r.get('photometric_scatter', nan):>9.3f}"
              f"{r.get('normalized_residual_std', nan):>8.2f}{r.get('normalized_residual_std_snr20', nan):>10.2f}"
              f"{r.get('astrometric_rms_mas', nan):>8.1f} mas{r.get('mosaic_psf_bias', nan):>13.2%}"
              f"{r.get('mosaic_psf_residual_std', nan):>8.2f}")
        c = r.get("colour")
        if c:
            print(f"{'':<15}{c['bands']:>13} colour of {c['n_stars']} stars (S/N > 50): "
                  f"bias {c.get('colour_bias', nan):+.4f} mag, scatter {c.get('colour_scatter', nan):.4f} mag, "
                  f"std(z) {c.get('colour_residual_std', nan):.2f}")
    h = summary["hats"]
    print(f"\nHATS cone search (20\"): {h['cone_rows']} rows through LSDB, {h['brute_force_rows']} by brute force")
    a = summary.get("archive")
    if a:
        print(f"\narchive {a['url']}: {a['products']} products registered ({a['kinds']}), "
              f"{a['lineage']} lineage links; try: romanflow archive search --db {a['url']} --filter F158")
    print(f"picture: {summary['picture']}\nsummary: {out / 'summary.json'}")
