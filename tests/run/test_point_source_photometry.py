"""Point-source photometry of a small simulated survey against the simulator's truth.

Two dithered exposures per filter, drizzled onto a sky cell, catalogued through
one detection image: fluxes, errors, colours and positions of the true stars.
"""

import numpy as np
import pytest
from astropy.table import QTable

from romanflow.run import run_plan
from romanflow.run.plan import plan_from_dict, tiled_plan
from romanflow.validation import (catalog_accuracy, colour_accuracy, covered_by, matched_colour_accuracy,
                                  survey_truth)

FILTERS = ["F158", "F106"]


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    out = tmp_path_factory.mktemp("photometry")
    # 376² pixels hold 30-50 isolated stars above S/N 20 per band: enough for a std(z) known to ±0.12
    plan = tiled_plan(270.0, 66.0, 0.05, FILTERS, dither="2", detectors=["WFI01"], science_size=376,
                      pointing_error_arcsec=0.3, seed=8, name="photometry",
                      scene={"seed": 8, "density_per_arcmin2": 1000.0, "star_fraction": 0.9, "refcat_g_limit": 26.5})
    data = plan.to_dict()
    data["registration"] = {"minobj": 5}
    report = run_plan(plan_from_dict(data, source="photometry"), out, progress=False)
    assert not report.failed
    return out


def _truth_and_catalogs(out):
    from romanflow.catalog.products import read_band_image

    scene = survey_truth(out)
    for path in sorted((out / "l4").glob("*_cat.parquet")):
        cell = path.name.replace("_cat.parquet", "")
        image = read_band_image(out / "l3" / f"{cell}_{FILTERS[0].lower()}_coadd.asdf")
        yield QTable.read(path), scene[covered_by(image, scene)]


def test_point_source_fluxes_colours_and_positions_match_the_truth(survey):
    results = list(_truth_and_catalogs(survey))
    assert results
    n_bright = 0
    for table, truth in results:
        for band in FILTERS:
            acc = catalog_accuracy(table, truth, band)
            assert acc["flux_column"] == f"psf_exp_{band.lower()}_flux"
            n_bright += acc["n_bright"]
            assert abs(acc["photometric_bias"]) < 0.01, (band, acc)
            assert 0.75 < acc["normalized_residual_std_snr20"] < 1.3, (band, acc)
            # registration to a Gaia-like catalog (~13 mas per star at the epoch, a few dozen stars
            # per 248² detector) leaves each detector a few mas off: the floor of this number
            assert acc["astrometric_rms_mas"] < 8.0, (band, acc)
            assert acc["completeness_snr10"] > 0.9, (band, acc)
            # the fit on the mosaic with the mosaic's own PSF (the members' PSFs drizzled as the data)
            mosaic = catalog_accuracy(table, truth, band, flux_column=f"psf_{band.lower()}_flux")
            assert abs(mosaic["photometric_bias"]) < 0.01, (band, mosaic)
            assert 0.75 < mosaic["normalized_residual_std_snr20"] < 1.3, (band, mosaic)
        colour = colour_accuracy(table, truth, "F106", "F158")
        assert colour["n_stars"] >= 5 and abs(colour["colour_bias"]) < 0.01, colour
        # PSF-matched aperture colours (F106 convolved to F158's drizzled PSF)
        matched = matched_colour_accuracy(table, truth, "F106", "F158", kind="star", min_snr=50.0)
        assert matched["n"] >= 5 and abs(matched["colour_bias"]) < 0.02, matched
    assert n_bright >= 20


def test_exposure_columns_describe_the_fits(survey):
    from romanflow.catalog.parquet import read_provenance

    table, _ = next(_truth_and_catalogs(survey))
    provenance = read_provenance(next((survey / "l4").glob("*_cat.parquet")))
    assert {band: len(names) for band, names in provenance["exposures"].items()} == {"F158": 2, "F106": 2}
    assert provenance["fallbacks"] == [] and table.meta["fallbacks"] == []  # Roman PSFs, every exposure found
    for band in ("f158", "f106"):
        n = np.asarray(table[f"psf_exp_{band}_nexp"])
        assert set(np.unique(n)) <= {0, 1, 2} and (n == 2).mean() > 0.5
        fitted = n > 0
        assert np.isfinite(np.asarray(table[f"psf_exp_{band}_flux"])[fitted]).all()
        assert np.isnan(np.asarray(table[f"psf_exp_{band}_flux"])[~fitted]).all()
        # two exposures of constant stars: the reduced chi-square has one degree of freedom
        gof = np.asarray(table[f"psf_exp_gof_{band}"])[n == 2]
        assert 0.3 < np.nanmedian(gof) < 0.7
