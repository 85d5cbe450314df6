"""Completeness, purity and biases from injection output catalogs; depth per sky cell; a HEALPix depth map.

Curves are per band and per kind (``star``: injected stars, ``galaxy``: every
other type), in bins of injected magnitude (completeness, flux and position
bias) or of measured magnitude (purity of new detections). The 50% and 90%
completeness magnitudes come from a fit of

    C(m) = c_max / (1 + exp((m − m_c) / w))

to the detected/not-detected outcome of every source (binomial likelihood),
solved for C = 0.5 and C = 0.9 (NaN where the plateau ``c_max`` stays below
the level).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

#: Columns of the curves table: unit and description.
CURVE_COLUMNS = {
    "band": ("", "filter"),
    "kind": ("", "star or galaxy"),
    "mag_lo": ("mag(AB)", "bin's bright edge (injected magnitude)"),
    "mag_hi": ("mag(AB)", "bin's faint edge"),
    "n_injected": ("", "sources injected in the bin"),
    "n_recovered": ("", "of which paired with a detection"),
    "completeness": ("", "n_recovered / n_injected"),
    "completeness_err": ("", "binomial 1-sigma error"),
    "flux_bias": ("", "median of flux_out / flux_in - 1 of the recovered sources"),
    "flux_scatter": ("", "robust std (1.4826 MAD) of flux_out / flux_in"),
    "z_std": ("", "std of (flux_out - flux_in) / flux_out_err"),
    "dra_median": ("arcsec", "median position offset in right ascension (times cos dec)"),
    "ddec_median": ("arcsec", "median position offset in declination"),
    "position_rms": ("arcsec", "rms of the position offsets"),
    "n_new": ("", "new detections (absent from the parent) with a measured magnitude in the bin"),
    "purity": ("", "fraction of the new detections paired with an injected source"),
}


def completeness_model(mag, c_max, m_c, width):
    """C(m) of the module docstring."""
    return c_max / (1.0 + np.exp(np.clip((np.asarray(mag, float) - m_c) / width, -50, 50)))


def fit_completeness(mag, detected) -> dict:
    """Fit :func:`completeness_model` to per-source outcomes.

    Returns
    -------
    dict
        ``c_max``, ``m_c``, ``width``, ``mag50``, ``mag90`` (AB mag; NaN where not reached
        or with fewer than 10 sources).
    """
    from scipy.optimize import minimize

    mag = np.asarray(mag, float)
    det = np.asarray(detected, bool)
    ok = np.isfinite(mag)
    mag, det = mag[ok], det[ok]
    nan = {"c_max": np.nan, "m_c": np.nan, "width": np.nan, "mag50": np.nan, "mag90": np.nan, "n": int(mag.size)}
    if mag.size < 10 or det.all() or not det.any():
        return nan

    def nll(p):
        c = completeness_model(mag, 1.0 / (1.0 + np.exp(-p[0])), p[1], np.exp(p[2]))
        c = np.clip(c, 1e-9, 1 - 1e-9)
        return -np.sum(np.where(det, np.log(c), np.log1p(-c)))

    m0 = float(np.median(mag))
    best = None
    for start in ([3.0, m0, np.log(0.3)], [3.0, m0 + 1.0, np.log(0.15)], [1.0, m0 - 1.0, np.log(0.5)]):
        res = minimize(nll, start, method="Nelder-Mead", options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 4000})
        if best is None or res.fun < best.fun:
            best = res
    c_max = 1.0 / (1.0 + np.exp(-best.x[0]))
    m_c, width = float(best.x[1]), float(np.exp(best.x[2]))

    def level(f):
        return m_c + width * np.log(c_max / f - 1.0) if c_max > f else np.nan

    return {"c_max": float(c_max), "m_c": m_c, "width": width, "mag50": float(level(0.5)),
            "mag90": float(level(0.9)), "n": int(mag.size)}


def _kind(types) -> np.ndarray:
    return np.where(np.asarray(types, str) == "star", "star", "galaxy")


def _robust_std(v):
    v = v[np.isfinite(v)]
    return float(1.4826 * np.median(np.abs(v - np.median(v)))) if v.size else np.nan


def completeness_curves(output: pd.DataFrame, detections: pd.DataFrame | None = None, *, bin_width: float = 0.25,
                        isolated_only: bool = False, snr_min_bias: float = 0.0) -> pd.DataFrame:
    """Curves per band and kind, one row per magnitude bin (:data:`CURVE_COLUMNS`).

    ``isolated_only``: leave out sources with another injected or real source within the
    blend radius (``recovery_flags`` 1 or 2). ``snr_min_bias``: only sources measured at
    at least this S/N enter the flux bias, scatter and z columns.
    """
    out = output.copy()
    out["kind"] = _kind(out["type"])
    if isolated_only:
        out = out[(out["recovery_flags"].to_numpy() & 3) == 0]
    rows = []
    for (band, kind), g in out.groupby(["band", "kind"], sort=True):
        mag = g["mag_in"].to_numpy(float)
        lo = np.floor(np.nanmin(mag) / bin_width) * bin_width
        hi = np.ceil(np.nanmax(mag) / bin_width) * bin_width + 1e-9
        edges = np.arange(lo, hi + bin_width, bin_width)
        det_band = None
        if detections is not None and len(detections):
            det_band = detections[(detections["band"] == band) & detections["is_new"]]
        for a, b in zip(edges[:-1], edges[1:]):
            s = g[(mag >= a) & (mag < b)]
            n = len(s)
            if n == 0:
                continue
            rec = s[s["matched"]]
            k = len(rec)
            c = k / n
            ratio = (rec["flux_out"] / rec["flux_in"]).to_numpy(float)
            snr = (rec["flux_out"] / rec["flux_out_err"]).to_numpy(float)
            sel = np.isfinite(ratio) & (snr >= snr_min_bias)
            z = ((rec["flux_out"] - rec["flux_in"]) / rec["flux_out_err"]).to_numpy(float)[sel]
            dra, ddec = rec["dra"].to_numpy(float), rec["ddec"].to_numpy(float)
            row = {"band": band, "kind": kind, "mag_lo": a, "mag_hi": b, "n_injected": n, "n_recovered": k,
                   "completeness": c, "completeness_err": float(np.sqrt(max(c * (1 - c), 1.0 / n) / n)),
                   "flux_bias": float(np.median(ratio[sel]) - 1) if sel.any() else np.nan,
                   "flux_scatter": _robust_std(ratio[sel]),
                   "z_std": float(np.std(z)) if z.size > 2 else np.nan,
                   "dra_median": float(np.nanmedian(dra)) if k else np.nan,
                   "ddec_median": float(np.nanmedian(ddec)) if k else np.nan,
                   "position_rms": float(np.sqrt(np.nanmean(dra**2 + ddec**2))) if k else np.nan,
                   "n_new": 0, "purity": np.nan}
            if det_band is not None and kind == "star":  # purity is of detections, whatever their kind: once per band
                d = det_band[(det_band["mag"] >= a) & (det_band["mag"] < b)]
                row["n_new"] = len(d)
                row["purity"] = float((d["injection_id"] >= 0).mean()) if len(d) else np.nan
            rows.append(row)
    return pd.DataFrame(rows, columns=list(CURVE_COLUMNS))


def depth_summary(output: pd.DataFrame, cell: str = "") -> pd.DataFrame:
    """50% and 90% completeness magnitudes per band and kind (and for all sources), one row each."""
    out = output.copy()
    out["kind"] = _kind(out["type"])
    rows = []
    for band, g in out.groupby("band", sort=True):
        for kind, s in [("all", g)] + list(g.groupby("kind", sort=True)):
            fit = fit_completeness(s["mag_in"], s["matched"])
            rows.append({"cell": cell, "band": band, "kind": kind, "n": fit["n"], "mag50": fit["mag50"],
                         "mag90": fit["mag90"], "c_max": fit["c_max"], "width": fit["width"],
                         "ra": float(np.mean(s["ra"])), "dec": float(np.mean(s["dec"]))})
    return pd.DataFrame(rows)


def plot_curves(curves: pd.DataFrame, path, *, title: str = "", depth: pd.DataFrame | None = None) -> Path:
    """PNG of completeness, purity, flux bias and position offsets vs magnitude, per band and kind."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from romanflow.formats import atomic_path

    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    (ax_c, ax_p), (ax_f, ax_x) = axes
    for (band, kind), g in curves.groupby(["band", "kind"], sort=True):
        m = 0.5 * (g["mag_lo"] + g["mag_hi"])
        style = "-" if kind == "star" else "--"
        label = f"{band} {kind}"
        ax_c.errorbar(m, g["completeness"], g["completeness_err"], fmt="o" + style, ms=3, label=label)
        if kind == "star":
            ax_p.plot(m, g["purity"], "o-", ms=3, label=band)
        ax_f.plot(m, 100 * g["flux_bias"], "o" + style, ms=3, label=label)
        ax_x.plot(m, 1000 * g["position_rms"], "o" + style, ms=3, label=label)
    if depth is not None:
        for _, r in depth[depth["kind"] == "all"].iterrows():
            if np.isfinite(r["mag50"]):
                ax_c.axvline(r["mag50"], color="0.6", lw=0.8)
    ax_c.axhline(0.5, color="0.8", lw=0.8)
    ax_c.axhline(0.9, color="0.8", lw=0.8)
    ax_c.set_ylabel("completeness")
    ax_c.set_ylim(-0.05, 1.05)
    ax_p.set_ylim(-0.05, 1.05)
    ax_p.set_ylabel("purity of new detections")
    ax_f.set_ylabel("flux bias (%)")
    ax_f.axhline(0.0, color="0.8", lw=0.8)
    ax_x.set_ylabel("position rms (mas)")
    for ax in (ax_f, ax_x):
        ax.set_xlabel("injected AB magnitude")
    for ax in axes.ravel():
        ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path


def healpix_depth(outputs: pd.DataFrame, *, order: int = 10, band: str | None = None, kind: str = "all",
                  min_sources: int = 30) -> pd.DataFrame:
    """50% completeness magnitude per HEALPix pixel (nested, ``order``) from the injected sources in it.

    Pixels with fewer than ``min_sources`` sources (per band) are left out.
    """
    from astropy_healpix import HEALPix
    import astropy.units as u

    hp = HEALPix(nside=2**order, order="nested")
    out = outputs if band is None else outputs[outputs["band"] == band]
    if kind != "all":
        out = out[_kind(out["type"]) == kind]
    pix = hp.lonlat_to_healpix(out["ra"].to_numpy(float) * u.deg, out["dec"].to_numpy(float) * u.deg)
    rows = []
    for (b, p), g in out.assign(pixel=pix).groupby(["band", "pixel"], sort=True):
        if len(g) < min_sources:
            continue
        fit = fit_completeness(g["mag_in"], g["matched"])
        rows.append({"band": b, "order": order, "pixel": int(p), "n": len(g), "mag50": fit["mag50"]})
    return pd.DataFrame(rows, columns=["band", "order", "pixel", "n", "mag50"])


def plot_depth_map(depth: pd.DataFrame, path, *, title: str = "50% completeness depth") -> Path:
    """PNG of a HEALPix depth map (:func:`healpix_depth`): each pixel drawn as its polygon, one panel per band."""
    import matplotlib

    matplotlib.use("Agg")
    import astropy.units as u
    import matplotlib.pyplot as plt
    from astropy_healpix import HEALPix
    from matplotlib.collections import PolyCollection

    from romanflow.formats import atomic_path

    bands = sorted(depth["band"].unique()) or [""]
    fig, axes = plt.subplots(1, len(bands), figsize=(5.5 * len(bands), 4.8), squeeze=False)
    for ax, band in zip(axes[0], bands):
        d = depth[depth["band"] == band]
        polys, values = [], []
        for _, r in d.iterrows():
            hp = HEALPix(nside=2 ** int(r["order"]), order="nested")
            lon, lat = hp.boundaries_lonlat([int(r["pixel"])], step=2)
            lon = lon.to_value(u.deg)[0]
            lon = (lon - lon[0] + 180.0) % 360.0 - 180.0 + lon[0]
            polys.append(np.column_stack([lon, lat.to_value(u.deg)[0]]))
            values.append(r["mag50"])
        if polys:
            coll = PolyCollection(polys, array=np.asarray(values, float), cmap="viridis", edgecolors="face")
            ax.add_collection(coll)
            allp = np.vstack(polys)
            ax.set_xlim(allp[:, 0].max(), allp[:, 0].min())  # east to the left
            ax.set_ylim(allp[:, 1].min(), allp[:, 1].max())
            fig.colorbar(coll, ax=ax, label="50% completeness (AB mag)")
        ax.set_xlabel("RA (deg)")
        ax.set_ylabel("Dec (deg)")
        ax.set_title(f"{title} {band}")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)
    return path
