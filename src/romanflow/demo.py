"""The main job: simulate a small survey, calibrate it and check it against the truth.

``romanflow demo -o DIR`` runs on the embedded default reference store with no
network: it simulates dithered exposures of a few detectors in two filters,
calibrates every detector (both cores), compares the L2 rate images with the
simulator's noiseless truth, draws a PNG and prints a summary.
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
    "detectors": ("WFI01", "WFI02"),
    "filters": ("F158", "F106"),
    "dithers_arcsec": ((0.0, 0.0), (1.7, 2.3)),
    "pointing": (270.0, 66.0, 0.0),
    "ma_table": 4,
    "n_sources": 12000,
    "seed": 7,
}


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="run the main job on the embedded default",
                              description=__doc__.splitlines()[0])
    p.add_argument("-o", "--output", default="demo_output", help="output folder (default demo_output)")
    p.add_argument("--workers", type=int, default=None, help="processes for calibration (default: one per core)")
    p.set_defaults(func=run)


def rate_accuracy(rate: np.ndarray, err: np.ndarray, dq: np.ndarray, truth: np.ndarray) -> dict:
    """Rate bias and error honesty of an L2 image against the noiseless truth (DN/s)."""
    good = ((dq & 1) == 0) & np.isfinite(rate) & (err > 0)
    bright = good & (truth > 1.0)
    z = (rate - truth) / err
    return {
        "pixels": int(good.sum()),
        "bias_above_1dns": float(np.median(((rate - truth) / truth)[bright])) if bright.any() else float("nan"),
        "z_std": float(np.std(z[good])),
        "z_median": float(np.median(z[good])),
    }


def jump_completeness(dq: np.ndarray, cosmic_rays, gain: np.ndarray, read_noise: np.ndarray) -> dict:
    """Fraction of injected hits above 10 sigma of a resultant difference flagged JUMP_DET."""
    from romanflow import dq as flags

    if len(cosmic_rays) == 0:
        return {"hits": 0, "completeness": float("nan")}
    x = cosmic_rays["x"].to_numpy(int)
    y = cosmic_rays["y"].to_numpy(int)
    amplitude_dn = cosmic_rays["amplitude_e"].to_numpy() / gain[y, x]
    strong = amplitude_dn > 10 * np.sqrt(2) * read_noise[y, x]
    flagged = (dq[y, x] & flags.JUMP_DET) != 0
    return {"hits": int(strong.sum()), "completeness": float(flagged[strong].mean()) if strong.any() else float("nan")}


def draw_png(image, sources, path: Path, title: str) -> Path:
    """Save an asinh-stretched picture of a rate image with the true sources marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from astropy.visualization import AsinhStretch, ImageNormalize, ZScaleInterval

    data = np.nan_to_num(image, nan=0.0)
    norm = ImageNormalize(data, interval=ZScaleInterval(), stretch=AsinhStretch())
    fig, ax = plt.subplots(figsize=(7, 7), dpi=110)
    ax.imshow(data, origin="lower", cmap="gray", norm=norm)
    if sources is not None and len(sources):
        on = sources[sources["on_detector"]] if "on_detector" in sources else sources
        bright = on[on["flux_dn"] > 5.0]
        ax.scatter(bright["x"], bright["y"], s=40, facecolors="none", edgecolors="tab:orange", linewidths=0.7,
                   label="true sources > 5 DN/s")
        ax.legend(loc="upper right", fontsize=8)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("x (pixel)")
    ax.set_ylabel("y (pixel)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def run(args: argparse.Namespace) -> int:
    import pandas as pd
    from tqdm import tqdm

    from romanflow.calibrate import CalibrationOptions, calibrate
    from romanflow.detector_model import DetectorModel
    from romanflow.formats import read_l2
    from romanflow.refdata import default_store
    from romanflow.simulate import simulate
    from romanflow.simulate.core import ObservationIds

    survey = DEMO_SURVEY
    out = Path(args.output)
    size = survey["science_size"]
    started = time.perf_counter()
    ra0, dec0, pa = survey["pointing"]
    exposures = [(f, d) for f in survey["filters"] for d in survey["dithers_arcsec"]]
    n_det = len(survey["detectors"])
    bar = tqdm(total=1 + 2 * len(exposures) * n_det, desc="romanflow demo", unit="step")

    store = default_store(size)
    store.build(detectors=survey["detectors"], filters=survey["filters"])
    bar.update(1)

    sims = []
    for number, (optical_element, (dx, dy)) in enumerate(exposures, start=1):
        cosd = np.cos(np.radians(dec0))
        pointing = (ra0 + dx / 3600.0 / cosd, dec0 + dy / 3600.0, pa)
        result = simulate(detectors=survey["detectors"], optical_element=optical_element, n_sources=survey["n_sources"],
                          ma_table=survey["ma_table"], pointing=pointing, science_size=size,
                          seed=survey["seed"] + number, output_dir=out / "l1",
                          ids=ObservationIds(exposure=number), progress=lambda _: bar.update(1))
        sims.append((optical_element, result))

    l1_files = [p for _, r in sims for p in r["l1"]]
    l2_files = calibrate(l1_files, out / "l2", options=CalibrationOptions(), workers=args.workers,
                         progress=lambda _: bar.update(1))
    bar.close()

    rows = []
    first_png = None
    for (optical_element, result), l2_batch in zip(sims, np.array_split(np.array(l2_files, dtype=object), len(sims))):
        for l2_path, rate_path, cr_path, src_path in zip(l2_batch, result["rate"], result["cosmic_rays"],
                                                         result["sources"]):
            image = read_l2(l2_path)
            truth = np.load(rate_path)
            detector = image.meta["instrument"]["detector"]
            model = DetectorModel(detector, size)
            s = slice(N_BORDER, -N_BORDER)
            acc = rate_accuracy(image.data, image.err, image.dq, truth)
            jumps = jump_completeness(image.dq, pd.read_parquet(cr_path), model.gain[s, s], model.read_noise[s, s])
            rows.append({"file": Path(l2_path).name, "filter": optical_element, **acc,
                         "cr_hits_10sigma": jumps["hits"], "jump_completeness": jumps["completeness"]})
            if first_png is None:
                first_png = draw_png(image.data, pd.read_parquet(src_path), out / "demo_l2.png",
                                     f"{Path(l2_path).name} ({optical_element}, DN/s)")

    summary = {"products": {"l1": len(l1_files), "l2": len(l2_files)}, "detectors": rows,
               "elapsed_s": time.perf_counter() - started}
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str))
    print(f"\nromanflow demo: {len(l1_files)} L1 and {len(l2_files)} L2 products in {out}/ "
          f"({summary['elapsed_s']:.0f} s)")
    print(f"{'L2 product':<48}{'filter':>7}{'bias >1DN/s':>13}{'std(z)':>8}{'jumps':>8}")
    for r in rows:
        print(f"{r['file']:<48}{r['filter']:>7}{r['bias_above_1dns']:>13.4%}{r['z_std']:>8.3f}"
              f"{r['jump_completeness']:>8.1%}")
    print(f"picture: {first_png}")
    return 0
