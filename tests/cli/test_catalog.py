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


# ----------------------------------------------------------------------------- outputs and bad input
def _main_error_line(capsys, argv, *words):
    """Run ``romanflow catalog ARGV``: exit 2 and one error line naming ``words``, no traceback."""
    from romanflow.cli import main

    assert main(["catalog", *argv]) == 2
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("romanflow catalog: error:"), err
    for word in words:
        assert word in lines[0], err


def _tree(folder):
    return {str(p.relative_to(folder)): (p.read_bytes() if p.is_file() else None) for p in sorted(folder.rglob("*"))}


@pytest.fixture(scope="module")
def mosaic(tmp_path_factory):
    folder = tmp_path_factory.mktemp("mosaic")
    _write_mosaic(folder / "cell_f158_i2d.asdf", "F158", seed=5)
    return folder / "cell_f158_i2d.asdf"


def test_hats_never_replaces_what_is_not_a_hats_catalog(mosaic, tmp_path, capsys):
    from romanflow.cli import main

    regular = tmp_path / "notes.txt"
    regular.write_text("my notes")
    _main_error_line(capsys, [str(mosaic), "-o", str(tmp_path / "a"), "--hats", str(regular), "--psf-fwhm", "0.15"],
                     "notes.txt", "not a HATS catalog")
    assert regular.read_text() == "my notes"
    folder = tmp_path / "work"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "data.txt").write_text("keep me")
    before = _tree(folder)
    for extra in ([], ["--overwrite"]):
        _main_error_line(capsys, [str(mosaic), "-o", str(tmp_path / "b"), "--hats", str(folder), "--psf-fwhm",
                                  "0.15", *extra], "work", "not a HATS catalog")
        assert _tree(folder) == before
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()  # refused before any work

    hats = tmp_path / "hats"
    assert main(["catalog", str(mosaic), "-o", str(tmp_path / "c"), "--hats", str(hats), "--psf-fwhm", "0.15"]) == 0
    capsys.readouterr()
    first = _tree(hats)
    _main_error_line(capsys, [str(mosaic), "-o", str(tmp_path / "d"), "--hats", str(hats), "--psf-fwhm", "0.15"],
                     "hats", "--overwrite")
    assert _tree(hats) == first
    _main_error_line(capsys, [str(mosaic), "-o", str(tmp_path / "c"), "--psf-fwhm", "0.15"],
                     "cell_f158_i2d_cat.parquet", "--overwrite")
    assert main(["catalog", str(mosaic), "-o", str(tmp_path / "c"), "--hats", str(hats), "--psf-fwhm", "0.15",
                 "--overwrite"]) == 0
    assert (hats / "hats.properties").is_file() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_bad_numbers_and_locations_are_one_line(mosaic, tmp_path, capsys):
    base = [str(mosaic), "-o", str(tmp_path / "out")]
    _main_error_line(capsys, [*base, "--psf-fwhm", "-1"], "--psf-fwhm")
    _main_error_line(capsys, [*base, "--snr-threshold", "-3"], "--snr-threshold")
    _main_error_line(capsys, [*base, "--n-pixels", "0"], "--n-pixels")
    regular = tmp_path / "file"
    regular.write_text("x")
    _main_error_line(capsys, [str(mosaic), "-o", str(regular / "out"), "--psf-fwhm", "0.15"], "file")
    _main_error_line(capsys, [*base, "--hats", str(regular / "hats"), "--psf-fwhm", "0.15"], "file")
    assert regular.read_text() == "x" and not (tmp_path / "out").exists()


def test_truncated_mosaic_is_one_line(mosaic, tmp_path, capsys):
    cut = tmp_path / "cut_i2d.asdf"
    raw = mosaic.read_bytes()
    cut.write_bytes(raw[: len(raw) // 2])
    _main_error_line(capsys, [str(cut), "-o", str(tmp_path / "out")], "cut_i2d.asdf")


def _l2_for_catalog(path, *, nan_rows=None, leading_axis=False):
    """A small L2 of stars with photometric calibration; rows set to NaN; or its data declared (1, ny, nx)."""
    import sys
    from pathlib import Path

    import roman_datamodels.datamodels as rdm

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "astrometry"))
    from synthetic import star_field

    from romanflow import geometry
    from romanflow.formats.asdf_io import write_l2

    pointing = geometry.pointing_for(200.0, 30.0, 20.0)
    images, _ = star_field(("WFI02",), pointing, pointing, np.random.default_rng(4), science_size=248,
                           n_per_detector=14)
    image = images[0]
    image.meta["photometry"] = {"conversion_megajanskys": 0.3, "pixel_area": 2.8e-13}
    write_l2(image, path)
    if nan_rows is not None:
        with rdm.open(path) as model:
            data = np.array(model.data)
            data[nan_rows] = np.nan
            model.data = data
            model.save(path.with_name("tmp_" + path.name))
        path.with_name("tmp_" + path.name).replace(path)
    if leading_axis:
        raw = path.read_bytes()
        head, sep, rest = raw.partition(b"\n...\n")
        rest = rest.split(b"#ASDF BLOCK INDEX")[0]  # its offsets would be stale
        text = head.decode()
        shape = text.index("shape: [", text.index("\n  data: !core/ndarray"))
        path.write_bytes((text[:shape] + "shape: [1, " + text[shape + len("shape: ["):]).encode() + sep + rest)
    return path


def test_l2_with_nan_rows_and_3d_l2(tmp_path, capsys):
    from romanflow.cli import main

    striped = _l2_for_catalog(tmp_path / "striped_cal.asdf", nan_rows=slice(0, None, 7))  # 14% of the rows
    assert main(["catalog", str(striped), "-o", str(tmp_path / "out")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert (tmp_path / "out" / "striped_cal_cat.parquet").is_file()
    band = _l2_for_catalog(tmp_path / "band_cal.asdf", nan_rows=slice(100, 135))  # 14% of the rows, together
    assert main(["catalog", str(band), "-o", str(tmp_path / "out")]) == 0
    assert "Traceback" not in capsys.readouterr().err
    assert len(read_catalog_parquet(tmp_path / "out" / "band_cal_cat.parquet")) >= 5
    cube = _l2_for_catalog(tmp_path / "cube_cal.asdf", leading_axis=True)
    _main_error_line(capsys, [str(cube), "-o", str(tmp_path / "out")], "cube_cal.asdf")
