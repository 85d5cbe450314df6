"""The run graph's injection step per sky cell, and the survey depth map."""

import numpy as np
import pandas as pd
import pytest

from romanflow.errors import RomanflowError

from .conftest import FWHM_ARCSEC


def _plan(catalog):
    from romanflow.run.plan import plan_from_dict, tiled_plan

    plan = tiled_plan(270.0, 66.0, 0.05, ["F158", "F106"], dither="2", detectors=["WFI01"], science_size=248,
                      seed=5, name="small")
    data = plan.to_dict()
    data["catalog"] = catalog
    return plan_from_dict(data, source="plan.yaml")


def test_run_graph_adds_one_injection_per_sky_cell_and_a_depth_map(tmp_path):
    from romanflow.run.graph import build_graph

    graph = build_graph(_plan({"injection_n": 300, "injection_mag_min": 21.0, "injection_mag_max": 27.0}), tmp_path)
    injects = [t for t in graph if t.kind == "inject"]
    catalogs = {t.key: t for t in graph if t.kind == "catalog"}
    assert injects and len(injects) == len(catalogs)
    for task in injects:
        (dep,) = task.deps
        assert dep in catalogs and task.params["catalog_path"] == catalogs[dep].products[0]
        assert task.params["n"] == 300 and tuple(task.params["mag_range"]) == (21.0, 27.0)
        assert len(task.params["mosaic_paths"]) == 2  # both bands of the cell, one set of sources
    (depth,) = [t for t in graph if t.kind == "depth_map"]
    assert set(depth.deps) == {t.key for t in injects}
    plain = build_graph(_plan({}), tmp_path / "plain")
    assert not [t for t in plain if t.kind in ("inject", "depth_map")]
    with pytest.raises(RomanflowError, match="injection_star_fraction"):
        _plan({"injection_n": 10, "injection_star_fraction": 2.0})


def test_inject_cell_writes_the_cell_products_and_the_depth_map(field, tmp_path):
    from romanflow.catalog.parquet import write_catalog_parquet
    from romanflow.catalog.schema import catalog_columns
    from romanflow.inject.recover import catalog_images
    from romanflow.run.tasks import depth_map, inject_cell

    table, _ = catalog_images([field.l3], psf_fwhm_arcsec=FWHM_ARCSEC)
    write_catalog_parquet(table, tmp_path / "l4" / "cell_cat.parquet",
                          columns=catalog_columns(table.meta["catalog_kind"], table.meta["bands"]))
    result = inject_cell([str(field.l3)], str(tmp_path / "l4" / "cell_cat.parquet"), str(tmp_path / "inject"),
                         cell="cellA", n=60, mag_range=(20.0, 28.0), star_fraction=0.5, seed=2,
                         psf_fwhm_arcsec=FWHM_ARCSEC)
    products = result["products"]
    assert all(pd.io.common.file_exists(p) for p in products)
    output = pd.read_parquet(tmp_path / "inject" / "cellA_injection_output.parquet")
    assert len(output) > 40 and output["matched"].any() and not output["matched"].all()
    assert 22.0 < result["info"]["F158_all"]["mag50"] < 27.0
    # the original mosaic is untouched; the depth map gathers the cells
    summary = depth_map([str(tmp_path / "inject" / "cellA_injection_output.parquet")], str(tmp_path / "inject"),
                        name="survey")
    depth = pd.read_parquet(tmp_path / "inject" / "survey_depth_map.parquet")
    assert len(depth) >= 1 and np.isfinite(depth["mag50"]).all()
    assert summary["info"]["pixels"] == len(depth)
    assert (tmp_path / "inject" / "survey_depth_map.png").stat().st_size > 5000
