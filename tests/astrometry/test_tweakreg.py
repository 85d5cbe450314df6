"""tweakreg recovers injected pointing errors from synthetic exposures with known star positions."""

import copy

import numpy as np
import pandas as pd
import pytest
from scipy.spatial import cKDTree

from romanflow import geometry
from romanflow.astrometry.detect import source_catalog
from romanflow.astrometry.refcat import decimal_year
from romanflow.astrometry.tweakreg import TweakregWarning, tweakreg

from synthetic import star_field

DETECTORS = ("WFI01", "WFI03", "WFI08", "WFI10", "WFI16", "WFI18")  # spread over the field
TRUE = geometry.pointing_for(40.0, -20.0, 100.0)
ASSIGNED = TRUE.with_offsets(1.5, -1.3, 0.05)  # ~2 arcsec and 0.05 deg roll off
EPOCH_MJD = 61500.0


@pytest.fixture(scope="module")
def exposure():
    rng = np.random.default_rng(11)
    images, truth = star_field(DETECTORS, TRUE, ASSIGNED, rng)
    catalogs = [source_catalog(im) for im in images]
    ra = np.concatenate([t["ra"] for t in truth])
    dec = np.concatenate([t["dec"] for t in truth])
    # reference catalog at epoch 2016 with proper motions that bring it to the truth at the exposure
    dt = decimal_year(EPOCH_MJD) - 2016.0
    pm = rng.normal(0.0, 30.0, (2, ra.size))  # mas/yr: tens of mas of motion over the interval
    refcat = pd.DataFrame({
        "ra": ra - pm[0] * dt / 3.6e6 / np.cos(np.radians(dec)), "dec": dec - pm[1] * dt / 3.6e6,
        "ra_error": 0.1, "dec_error": 0.1, "pmra": pm[0], "pmdec": pm[1], "parallax": 0.5, "ref_epoch": 2016.0,
        "phot_g_mean_mag": 17.0,
    })
    return images, catalogs, truth, refcat


def _errors_mas(images, catalogs, truth, snr_min=100.0):
    out = []
    for im, cat, t in zip(images, catalogs, truth):
        x, y = cat["x"].value, cat["y"].value
        d, i = cKDTree(np.column_stack([t["x"], t["y"]])).query(np.column_stack([x, y]))
        true_snr_ok = np.asarray(cat["snr"]) > snr_min
        m = (d < 1.0) & true_snr_ok
        ra, dec = im.wcs(x[m], y[m])
        out.append(np.column_stack([(ra - t["ra"][i[m]]) * np.cos(np.radians(dec)) * 3.6e6,
                                    (dec - t["dec"][i[m]]) * 3.6e6]))
    return np.vstack(out)


def _copy(exposure):
    images, catalogs, truth, refcat = exposure
    return copy.deepcopy(images), copy.deepcopy(catalogs), truth, refcat


def test_recovers_injected_pointing_error(exposure):
    images, catalogs, truth, refcat = _copy(exposure)
    before = _errors_mas(images, catalogs, truth)
    assert np.sqrt(np.mean(np.sum(before**2, axis=1))) > 1000.0  # > 1 arcsec off before
    tweakreg(images, catalogs, refcat, refcat_name="synthetic.parquet")
    after = _errors_mas(images, catalogs, truth)
    assert len(after) >= 60
    rms = np.sqrt(np.mean(np.sum(after**2, axis=1)))
    assert rms < 3.0, rms
    result = images[0].meta["wcs_fit_results"]
    assert result["status"] == "SUCCESS" and result["refcat"] == "synthetic.parquet"
    assert abs(result["rotation_deg"] - 0.05) < 0.002
    assert np.allclose(result["shift_arcsec"], [-1.5, 1.3], atol=0.02)
    for im in images:
        assert im.meta["cal_step"]["tweakreg"] == "COMPLETE"
        assert abs(im.meta["wcsinfo"]["roll_ref"] - TRUE.roll_ref) < 0.002
        assert im.meta["wcsinfo"]["s_region"] == geometry.s_region(
            im.meta["instrument"]["detector"], geometry.pointing_from_meta(im.meta), 248)
    # catalogs carry the corrected sky positions
    ra, dec = images[2].wcs(catalogs[2]["x"].value, catalogs[2]["y"].value)
    np.testing.assert_allclose(catalogs[2]["ra"].value, ra, atol=1e-12)


def test_rscale_fit(exposure):
    images, catalogs, truth, refcat = _copy(exposure)
    tweakreg(images, catalogs, refcat, fitgeometry="rscale")
    result = images[0].meta["wcs_fit_results"]
    assert result["status"] == "SUCCESS" and abs(result["scale"] - 1.0) < 2e-6
    assert np.sqrt(np.mean(np.sum(_errors_mas(images, catalogs, truth) ** 2, axis=1))) < 3.0


def test_per_detector_fit(exposure):
    images, catalogs, truth, refcat = _copy(exposure)
    tweakreg(images, catalogs, refcat, per_detector=True)
    assert all(im.meta["wcs_fit_results"]["detectors"] == [im.meta["instrument"]["detector"]] for im in images)
    assert np.sqrt(np.mean(np.sum(_errors_mas(images, catalogs, truth) ** 2, axis=1))) < 3.0


def test_single_detector(exposure):
    images, catalogs, truth, refcat = _copy(exposure)
    tweakreg(images[:1], catalogs[:1], refcat)
    assert images[0].meta["wcs_fit_results"]["status"] == "SUCCESS"
    err = _errors_mas(images[:1], catalogs[:1], truth[:1])
    assert np.sqrt(np.mean(np.sum(err**2, axis=1))) < 3.0


def _sky_of(images):
    return [im.wcs(np.array([0.0, 100.0]), np.array([0.0, 200.0])) for im in images]


def test_no_stars_keeps_wcs_and_flags(exposure):
    images, catalogs, truth, refcat = _copy(exposure)
    empty = [cat[:0] for cat in catalogs]
    before = _sky_of(images)
    with pytest.warns(TweakregWarning, match="usable sources"):
        tweakreg(images, empty, refcat)
    for im, sky in zip(images, before):
        np.testing.assert_array_equal(_sky_of([im])[0], sky)
        assert im.meta["wcs_fit_results"]["status"] == "FAILED"
        assert im.meta["cal_step"]["tweakreg"] == "SKIPPED"


def test_reference_catalog_elsewhere_keeps_wcs(exposure):
    images, catalogs, truth, refcat = _copy(exposure)
    far = refcat.assign(dec=refcat["dec"] + 1.0)
    before = _sky_of(images)
    with pytest.warns(TweakregWarning):
        tweakreg(images, catalogs, far)
    for im, sky in zip(images, before):
        np.testing.assert_array_equal(_sky_of([im])[0], sky)
        assert im.meta["wcs_fit_results"]["status"] == "FAILED"
    with pytest.warns(TweakregWarning, match="empty"):
        tweakreg(images, catalogs, refcat[:0])
