"""Products with injected sources are registered as what they are: linked to the product they copy
(from ``meta.injection``, not guessed from a name), and the injection catalogs found by sky cell."""

import shutil

import numpy as np

from romanflow.inject.core import inject_images
from romanflow.inject.pipeline import inject_cell
from romanflow.inject.sources import generate_sources

X1 = "r0000101001001001001_0001_wfi01"
CELL = "266p66x02y21"


def test_injected_products_are_linked_to_their_parents(run_folder, tmp_path, open_archive):
    from romanflow.formats import read_l2

    folder = tmp_path / "run"
    shutil.copytree(run_folder, folder, ignore=shutil.ignore_patterns("archive.db*"))
    parent = folder / "registered" / f"{X1}_cal.asdf"
    image = read_l2(parent)
    sources = generate_sources(image.wcs, image.data.shape, ["F158"], n=20, mag_range=(21.0, 23.0), seed=3)
    [injected] = inject_images([parent], sources, folder / "injected")
    cell = inject_cell([folder / "l3" / f"{CELL}_f158_coadd.asdf"], folder / "l4" / f"{CELL}_cat.parquet",
                       folder / "inject", cell=CELL, n=40, mag_range=(20.5, 23.5), star_fraction=0.8, seed=4)
    assert cell["products"]
    # stars drawn with the mosaic's own PSF come back at the flux asked by the fit on the mosaic
    import pandas as pd

    out = pd.read_parquet(folder / "inject" / f"{CELL}_injection_output.parquet")
    bright = out[(out["type"] == "star") & out["matched"] & (out["flux_out"] / out["flux_out_err"] > 50)
                 & ((out["recovery_flags"] & 3) == 0)]
    assert len(bright) >= 3 and abs(np.median(bright["flux_out"] / bright["flux_in"]) - 1) < 0.01, bright

    arc = open_archive(root=folder)
    report = arc.ingest([folder])
    assert not report.failed, report.failed

    # the injected exposure: made from its parent (which was made from the L1), not from an L1 of its own name
    up = arc.lineage(f"{X1}_inj_cal")
    direct = {r["obs_id"]: r for r in up if r["depth"] == 1}
    assert direct[f"{X1}_cal"]["role"] == "science" and direct[f"{X1}_cal"]["detail"] == "injection parent"
    assert direct[f"{X1}_cal"]["in_archive"]
    assert f"{X1}_uncal" in {r["obs_id"] for r in up if r["depth"] == 2}
    assert all(r["in_archive"] or r["role"] == "reference" for r in up), up
    assert "injected" in arc.product(f"{X1}_inj_cal")["dataproduct_subtype"]
    assert f"{X1}_inj_cal" in arc.downstream([f"{X1}_cal"])

    # the injected mosaic, its input and output catalogs
    up = arc.lineage(f"{CELL}_f158_inj_coadd")
    assert {r["obs_id"]: r["detail"] for r in up if r["depth"] == 1}[f"{CELL}_f158_coadd"] == "injection parent"
    output = arc.product(f"{CELL}_injection_output")
    assert output["dataproduct_subtype"].startswith("source-injection output")
    assert output["skycell"] == CELL
    assert arc.product(f"{CELL}_injection_input")["dataproduct_subtype"] == "source-injection input catalog"
    chain = {r["obs_id"] for r in arc.lineage(f"{CELL}_injection_output")}
    assert {f"{CELL}_f158_inj_coadd", f"{CELL}_injection_input", f"{CELL}_f158_coadd"} <= chain
    assert f"{CELL}_injection_output" in arc.downstream([f"{CELL}_f158_coadd"])
