"""The split registration: detection per file, then one fit per exposure from the source tables only."""

import warnings

import numpy as np
import pytest

from romanflow.astrometry.pipeline import catalog_path, detect_file, fit_exposure, read_l2_header
from romanflow.astrometry.refcat import read_refcat
from romanflow.astrometry.tweakreg import TweakregWarning, tweakreg
from romanflow.errors import InputFileError
from romanflow.formats.asdf_io import read_l2

from astro_truth import POINTING_ERROR, rms_mas, sky_errors_mas


def test_header_read_matches_the_full_read(simulated):
    path = simulated["l2"][0]
    header = read_l2_header(path)
    image = read_l2(path)
    assert header.shape == image.data.shape and header.data.shape == image.data.shape
    assert header.data.strides == (0, 0)  # a stand-in, no memory
    assert header.meta["instrument"] == image.meta["instrument"]
    assert header.meta["wcsinfo"] == image.meta["wcsinfo"]
    x, y = np.array([10.0, 200.0]), np.array([30.0, 100.0])
    np.testing.assert_array_equal(np.array(header.wcs(x, y)), np.array(image.wcs(x, y)))


def test_fit_from_tables_equals_the_fit_from_images(simulated, tmp_path):
    """Detection then a fit that reads only tables + headers gives the in-memory fit, and the truth."""
    tables = [detect_file(p, tmp_path / "tables" / catalog_path(p).name)[0] for p in simulated["l2"]]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", TweakregWarning)
        results = fit_exposure(simulated["l2"], tables, simulated["gaia"], output_dir=tmp_path / "reg")
    fit = results[0][1]
    assert fit["status"] == "SUCCESS" and fit["refcat"] == simulated["gaia"].name
    shift_error_mas = (np.asarray(fit["shift_arcsec"]) - np.asarray(POINTING_ERROR[:2])) * 1e3
    assert np.all(np.abs(shift_error_mas) < 0.5), shift_error_mas

    from romanflow.astrometry.detect import source_catalog

    images = [read_l2(p) for p in simulated["l2"]]
    catalogs = [source_catalog(im) for im in images]
    tweakreg(images, catalogs, read_refcat(simulated["gaia"]), refcat_name=simulated["gaia"].name)
    reference = images[0].meta["wcs_fit_results"]
    for key in ("n_matches", "n_used"):
        assert fit[key] == reference[key]
    np.testing.assert_allclose(fit["shift_arcsec"], reference["shift_arcsec"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(fit["rotation_deg"], reference["rotation_deg"], rtol=0, atol=1e-12)
    # the written files carry the fit; their tables the aligned positions, within 1.5 mas of the truth
    errors = []
    for (out, _), truth in zip(results, simulated["truth"]):
        aligned = read_l2(out)
        assert aligned.meta["cal_step"]["tweakreg"] == "COMPLETE"
        from romanflow.astrometry.detect import read_source_catalog

        table = read_source_catalog(catalog_path(out))
        assert table.meta["l2_file"] == out.name
        errors.append(sky_errors_mas(aligned, table, truth))
    assert rms_mas(np.vstack(errors)) <= 1.5


def test_a_table_of_another_file_is_refused(simulated, tmp_path):
    a, b = simulated["l2"][:2]
    table_a, _ = detect_file(a, tmp_path / catalog_path(a).name)
    with pytest.raises(InputFileError, match="is the source table of"):
        fit_exposure([b], [table_a], simulated["gaia"], output_dir=tmp_path / "out")


def test_header_of_a_missing_file_is_an_input_error(tmp_path):
    with pytest.raises(InputFileError, match="no such file"):
        read_l2_header(tmp_path / "missing_cal.asdf")
