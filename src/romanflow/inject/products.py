"""The files of one injection run: input and output catalogs, curves, depth, plots, HATS.

``<stem>_injection_input.parquet``   the sources asked for (:data:`INPUT_COLUMNS`)
``<stem>_injection_output.parquet``  one row per injected source and band
                                     (:data:`~romanflow.inject.recover.OUTPUT_COLUMNS`)
``<stem>_injection_curves.parquet``  completeness, purity, biases per magnitude bin
                                     (:data:`~romanflow.inject.metrics.CURVE_COLUMNS`)
``<stem>_injection_depth.parquet``   50% and 90% completeness magnitudes per band and kind
``<stem>_injection.png``             the curves
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from romanflow.inject.metrics import CURVE_COLUMNS, completeness_curves, depth_summary, plot_curves
from romanflow.inject.recover import OUTPUT_COLUMNS
from romanflow.inject.tables import write_documented_parquet

#: Columns of an injection input catalog.
INPUT_COLUMNS = {
    "injection_id": ("", "identifier of the source"),
    "ra": ("deg", "right ascension (ICRS)"),
    "dec": ("deg", "declination (ICRS)"),
    "type": ("", "star, sersic or bulge_disk"),
    "half_light_radius": ("arcsec", "half-light radius (the disk's for bulge_disk; 0 for stars)"),
    "sersic_n": ("", "Sersic index"),
    "axis_ratio": ("", "minor / major axis"),
    "position_angle": ("deg", "major axis, east of north"),
    "bulge_fraction": ("", "bulge flux / total (bulge_disk)"),
    "bulge_half_light_radius": ("arcsec", "bulge half-light radius (bulge_disk)"),
    "source_id": ("", "identifier in the user's catalog"),
}

DEPTH_COLUMNS = {
    "cell": ("", "sky cell (or image) the depth is of"),
    "band": ("", "filter"),
    "kind": ("", "star, galaxy, or all"),
    "n": ("", "injected sources"),
    "mag50": ("mag(AB)", "50% completeness magnitude"),
    "mag90": ("mag(AB)", "90% completeness magnitude"),
    "c_max": ("", "completeness plateau of the fit"),
    "width": ("mag", "width of the fitted completeness fall-off"),
    "ra": ("deg", "mean right ascension of the injected sources"),
    "dec": ("deg", "mean declination of the injected sources"),
}


def product_paths(output_dir, stem: str) -> dict[str, Path]:
    """Where :func:`write_products` puts each file."""
    d = Path(output_dir)
    return {"input": d / f"{stem}_injection_input.parquet", "output": d / f"{stem}_injection_output.parquet",
            "curves": d / f"{stem}_injection_curves.parquet", "depth": d / f"{stem}_injection_depth.parquet",
            "plot": d / f"{stem}_injection.png"}


def input_columns(sources: pd.DataFrame) -> dict:
    """:data:`INPUT_COLUMNS` plus the catalog's magnitude columns."""
    columns = dict(INPUT_COLUMNS)
    for c in sources.columns:
        if c.startswith("mag_"):
            columns[c] = ("mag(AB)", f"AB magnitude in {c[4:]}")
    return columns


def write_products(sources: pd.DataFrame, output: pd.DataFrame, detections: pd.DataFrame | None, output_dir,
                   stem: str, *, provenance: dict | None = None, title: str = "") -> dict[str, Path]:
    """Write the input and output catalogs, curves, depth and plot of one run (or one sky cell)."""
    paths = product_paths(output_dir, stem)
    provenance = dict(provenance or {})
    bands = sorted(output["band"].unique()) if len(output) else []
    parents = list(provenance.get("parents", []))
    write_documented_parquet(sources, paths["input"], input_columns(sources), provenance,
                             catalog_kind="injection_input", inputs=parents, filters=bands)
    write_documented_parquet(output, paths["output"], OUTPUT_COLUMNS, provenance, catalog_kind="injection_output",
                             inputs=[*provenance.get("injected", []), paths["input"]], filters=bands)
    curves = completeness_curves(output, detections)
    write_documented_parquet(curves, paths["curves"], CURVE_COLUMNS, provenance)
    depth = depth_summary(output, cell=stem)
    write_documented_parquet(depth, paths["depth"], DEPTH_COLUMNS, provenance)
    plot_curves(curves, paths["plot"], title=title or stem, depth=depth)
    return paths


def write_output_hats(output: pd.DataFrame, path, *, catalog_name: str, provenance: dict | None = None,
                      overwrite: bool = False) -> Path:
    """The output catalog as a HATS catalog (one row per source and band; the injected position)."""
    from astropy.table import Table

    from romanflow.catalog.hats_io import write_hats

    table = Table.from_pandas(output)
    for name, (unit, description) in OUTPUT_COLUMNS.items():
        if name in table.colnames:
            table[name].description = description
    return write_hats(table, path, catalog_name=catalog_name, provenance=provenance, overwrite=overwrite)
