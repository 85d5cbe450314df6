import argparse

import numpy as np
import pyarrow.parquet as pq
import pytest

from romanflow.cli import catalog as cli
from romanflow.catalog.parquet import read_catalog_parquet, read_provenance
from romanflow.catalog.synthetic import random_scene, render
from romanflow.errors import InputFileError, RomanflowError

SCALE = 0.055


def _gwcs(shape, ra=150.0, dec=2.0):
    from astropy import coordinates as coord
    from astropy import units as u
    from astropy.modeling import models
    from gwcs import coordinate_frames as cf
    from gwcs import wcs as gw

    ny, nx = shape
    transform = (
        (models.Shift(-(nx - 1) / 2) & models.Shift(-(ny - 1) / 2))
        | (models.Scale(-SCALE / 3600) & models.Scale(SCALE / 3600))
        | models.Pix2Sky_TAN()
        | models.RotateNative2Celestial(ra, dec, 180.0)
    )
    detector = cf.Frame2D(name="detector", axes_order=(0, 1), unit=(u.pix, u.pix))
    sky = cf.CelestialFrame(reference_frame=coord.ICRS(), name="world", unit=(u.deg, u.deg))
    return gw.WCS([(detector, transform), (sky, None)])


def _write_mosaic(path, band, seed):
    import roman_datamodels.datamodels as rdm

    shape = (384, 384)
    scene = random_scene(shape, 50, 3, flux_range_njy=(100.0, 3000.0), min_separation=18.0, seed=seed)
    image, err, _ = render(scene, shape, psf_fwhm_arcsec=0.15, sky_sigma_njy=1.0, seed=seed + 1)
    njy_per_pixel = 1e15 * (SCALE / 206264.806) ** 2
    model = rdm.MosaicModel.create_fake_data(shape=shape)
    model.data = (image / njy_per_pixel).astype(np.float32)
    model.err = (err / njy_per_pixel).astype(np.float32)
    model.weight = np.ones(shape, np.float32)
    model.meta.instrument.optical_element = band
    model.meta.wcs = _gwcs(shape)
    model.meta.filename = path.name
    model.save(path)
    return scene


def _run(argv):
    parser = argparse.ArgumentParser(prog="romanflow")
    cli.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["catalog", *argv])
    return args.func(args)


def test_catalog_command_writes_parquet_and_hats(tmp_path, capsys):
    from romanflow.catalog.hats_io import open_hats

    scene = _write_mosaic(tmp_path / "cell_f158_i2d.asdf", "F158", seed=5)
    rc = _run([str(tmp_path / "cell_f158_i2d.asdf"), "-o", str(tmp_path / "out"), "--hats", str(tmp_path / "hats"),
               "--psf-fwhm", "0.15"])
    assert rc == 0
    table = read_catalog_parquet(tmp_path / "out" / "cell_f158_i2d_cat.parquet")
    assert abs(len(table) - len(scene.x)) <= 3
    assert table["psf_f158_flux"].unit == "nJy"
    # fluxes came through the MJy/sr -> nJy conversion: compare with truth for bright stars
    from scipy.spatial import cKDTree

    dist, idx = cKDTree(np.column_stack([table["x_centroid"].value, table["y_centroid"].value])).query(
        np.column_stack([scene.x, scene.y]))
    bright = (dist < 2) & ~scene.is_galaxy & (scene.flux > 1000)
    ratio = np.asarray(table["psf_f158_flux"].value)[idx[bright]] / scene.flux[bright]
    assert abs(np.median(ratio) - 1) < 0.02
    prov = read_provenance(tmp_path / "out" / "cell_f158_i2d_cat.parquet")
    assert prov["filters"] == ["F158"] and prov["catalog_kind"] == "skycell"
    hats = open_hats(tmp_path / "hats").compute()
    assert len(hats) == len(table)
    assert pq.read_schema(tmp_path / "hats" / "dataset" / "_common_metadata").field("ra").metadata[b"unit"] == b"deg"


def test_catalog_command_errors(tmp_path, capsys):
    with pytest.raises(RomanflowError, match="-o DIR"):
        _run([str(tmp_path / "x.asdf")])
    with pytest.raises(InputFileError, match="no such file"):
        _run([str(tmp_path / "x.asdf"), "-o", str(tmp_path)])
    _write_mosaic(tmp_path / "a.asdf", "F158", seed=7)
    with pytest.raises(RomanflowError, match="does not match"):
        _run([str(tmp_path / "a.asdf"), "--bands", "F184", "-o", str(tmp_path)])
    assert _run(["columns"]) == 0
    assert "# romanflow catalog columns" in capsys.readouterr().out


def test_forced_photometry_command_measures_each_image_at_given_positions(tmp_path, capsys):
    import pyarrow as pa

    scene = _write_mosaic(tmp_path / "cell_f158_i2d.asdf", "F158", seed=5)
    _write_mosaic(tmp_path / "other_f158_i2d.asdf", "F158", seed=5)
    wcs = _gwcs((384, 384))
    stars = ~scene.is_galaxy & (scene.flux > 1000)
    ra, dec = wcs(np.asarray(scene.x)[stars], np.asarray(scene.y)[stars])
    positions = tmp_path / "positions.parquet"
    pq.write_table(pa.table({"id": np.arange(100, 100 + stars.sum()), "ra": ra, "dec": dec}), positions)
    rc = _run([str(tmp_path / "cell_f158_i2d.asdf"), str(tmp_path / "other_f158_i2d.asdf"), "-o",
               str(tmp_path / "out"), "--forced", str(positions), "--psf-fwhm", "0.15"])
    assert rc == 0
    for stem in ("cell_f158_i2d", "other_f158_i2d"):
        table = read_catalog_parquet(tmp_path / "out" / f"{stem}_forced.parquet")
        assert list(table["id"]) == list(range(100, 100 + stars.sum()))
        ratio = np.asarray(table["psf_f158_flux"].value) / np.asarray(scene.flux)[stars]
        assert abs(np.median(ratio) - 1) < 0.02
        assert read_provenance(tmp_path / "out" / f"{stem}_forced.parquet")["positions"] == str(positions)
    with pytest.raises(RomanflowError, match="do not apply"):
        _run([str(tmp_path / "cell_f158_i2d.asdf"), "-o", str(tmp_path / "out"), "--forced", str(positions),
              "--hats", str(tmp_path / "hats")])
    bad = tmp_path / "bad.parquet"
    pq.write_table(pa.table({"ra": [1.0]}), bad)
    with pytest.raises(InputFileError, match="no dec column"):
        _run([str(tmp_path / "cell_f158_i2d.asdf"), "-o", str(tmp_path / "out"), "--forced", str(bad)])
