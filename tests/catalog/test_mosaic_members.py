"""A mosaic's catalog finds the calibrated exposures its L3 file records, wherever they are, and says
what it could not do."""

import logging
import shutil

import numpy as np
import pytest

from romanflow.catalog.parquet import read_provenance, write_catalog_parquet
from romanflow.catalog.products import MemberGeometry, band_image_from_mosaic, read_band_image
from romanflow.catalog.schema import catalog_columns
from romanflow.catalog.source_catalog import make_catalog
from romanflow.formats import write_l2
from romanflow.geometry import DetectorProjection, pointing_for
from romanflow.mosaic.pipeline import make_mosaic
from romanflow.mosaic.skycells import cutout_wcs, skycell_containing, skycell_wcs
from romanflow.mosaic.synthetic import make_rate_image

SIZE = 160
DETECTOR = "WFI07"
DITHERS = [(0.0, 0.0), (0.143, 0.077)]  # arcsec


@pytest.fixture(scope="module")
def survey(tmp_path_factory):
    """Two dithered L2 files in one folder and their mosaic in an unrelated one.

    The L2 file names carry no detector, so the detector can only come from each file's metadata.
    """
    root = tmp_path_factory.mktemp("members")
    pointing = pointing_for(150.1, 2.2, 30.0)
    dp = DetectorProjection(DETECTOR, pointing, SIZE)
    ra_c, dec_c = dp.pixel_to_world((SIZE - 1) / 2, (SIZE - 1) / 2)
    cell = skycell_containing(ra_c, dec_c)[0]
    full = skycell_wcs(cell)
    x, y = full.world_to_pixel_values(ra_c, dec_c)
    wcs = cutout_wcs(full, int(x) - 200, int(y) - 200, 400, 400)
    # few stars, so that the 64-pixel background boxes of the exposures stay mostly free of sources
    g = np.arange(25, SIZE - 20, 45.0) + 0.3
    gx, gy = np.meshgrid(g, g)
    stars = (*dp.pixel_to_world(gx.ravel(), gy.ravel()), np.full(gx.size, 200.0))
    l2_dir = root / "archive" / "calibrated exposures"
    l2_dir.mkdir(parents=True)
    paths = []
    for k, offset in enumerate(DITHERS):
        image = make_rate_image(DETECTOR, pointing.with_offsets(*offset), SIZE, stars, seed=7 + k, exposure=k + 1,
                                sigma_pix=0.6)
        paths.append(write_l2(image, l2_dir / f"visit_a_exposure{k + 1}_cal.asdf"))
    mosaic = root / "products" / "cells" / f"{cell}_f158_coadd.asdf"
    mosaic.parent.mkdir(parents=True)
    make_mosaic(paths, wcs, mosaic, skycell=cell, optical_element="F158", outliers=False)
    return mosaic, paths


def test_mosaic_records_where_its_members_are(survey):
    import roman_datamodels as rdm

    mosaic, paths = survey
    with rdm.open(mosaic) as model:
        members = [str(m) for m in model.meta.resample.members]
    assert members == [f"../../archive/calibrated exposures/{p.name}" for p in paths]


def test_members_in_any_folder_give_exposure_psf_fluxes_from_their_own_detector(survey, caplog):
    mosaic, paths = survey
    with caplog.at_level(logging.WARNING, logger="romanflow"):
        image = read_band_image(mosaic)
    assert [p.resolve() for p in image.exposures] == [p.resolve() for p in paths]
    assert image.psf_model is not None  # a Roman PSF of WFI07, read from the members' metadata
    assert image.fallbacks == [] and not caplog.records
    table = make_catalog(image, background_box=32)
    assert table.meta["fallbacks"] == []
    nexp = np.asarray(table["psf_exp_f158_nexp"])
    assert len(table) >= 8 and (nexp == 2).mean() > 0.5
    assert np.isfinite(np.asarray(table["psf_exp_f158_flux"])[nexp > 0]).all()


def test_a_missing_member_is_named_in_the_log_and_the_catalog(survey, tmp_path, caplog):
    mosaic, paths = survey
    moved = tmp_path / paths[1].name
    shutil.move(paths[1], moved)
    try:
        with caplog.at_level(logging.WARNING, logger="romanflow"):
            image = read_band_image(mosaic)
            table = make_catalog(image, background_box=32)
    finally:
        shutil.move(moved, paths[1])
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(paths[1].name in message and "not found" in message for message in warned), warned
    assert len(image.exposures) == 1
    assert any(paths[1].name in note for note in table.meta["fallbacks"])
    assert set(np.unique(np.asarray(table["psf_exp_f158_nexp"]))) <= {0, 1}
    out = write_catalog_parquet(table, tmp_path / "cat.parquet", columns=catalog_columns("skycell", ["f158"]),
                                provenance={"inputs": [mosaic.name]})
    assert any(paths[1].name in note for note in read_provenance(out)["fallbacks"])


def test_unknown_orientation_and_gaussian_psf_are_recorded(survey, caplog):
    import roman_datamodels as rdm

    mosaic, paths = survey
    with rdm.open(mosaic) as model, caplog.at_level(logging.WARNING, logger="romanflow"):
        unknown = [MemberGeometry(p, DETECTOR, None, 0.11) for p in paths]
        image = band_image_from_mosaic(model, source="cell", members=unknown)
        assert image.psf_model is not None
        assert any("orientation" in note and "detector axes" in note for note in image.fallbacks)
        bare = band_image_from_mosaic(model, source="cell", members=[])
    assert bare.psf_model is None and any("no Roman PSF model" in note for note in bare.fallbacks)
    table = make_catalog(bare, background_box=32)
    notes = table.meta["fallbacks"]
    assert any("Gaussian" in note for note in notes) and any("psf_exp_f158 columns are empty" in n for n in notes)
    assert {r.getMessage() for r in caplog.records} >= set(image.fallbacks + bare.fallbacks)
