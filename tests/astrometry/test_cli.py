"""``romanflow tweakreg`` on L2 files."""

import numpy as np
import pandas as pd

from romanflow import geometry
from romanflow.cli import main
from romanflow.formats.asdf_io import read_l2, write_l2

from synthetic import star_field

TRUE = geometry.pointing_for(200.0, 30.0, 20.0)
ASSIGNED = TRUE.with_offsets(-1.0, 0.8, -0.03)


def test_cli_aligns_files(tmp_path, capsys):
    rng = np.random.default_rng(21)
    images, truth = star_field(("WFI02", "WFI17"), TRUE, ASSIGNED, rng, n_per_detector=12)
    paths = []
    for im in images:
        det = im.meta["instrument"]["detector"].lower()
        paths.append(write_l2(im, tmp_path / f"r0000101001001001001_0001_{det}_cal.asdf"))
    ra = np.concatenate([t["ra"] for t in truth])
    dec = np.concatenate([t["dec"] for t in truth])
    refcat = tmp_path / "gaia.parquet"
    pd.DataFrame({"ra": ra, "dec": dec, "ref_epoch": 2027.0}).to_parquet(refcat)

    assert main(["tweakreg", *map(str, paths), "--refcat", str(refcat), "--minobj", "8"]) == 0
    assert "aligned" in capsys.readouterr().out
    for path, t in zip(paths, truth):
        image = read_l2(path)
        assert image.meta["wcs_fit_results"]["status"] == "SUCCESS"
        assert image.meta["cal_step"]["tweakreg"] == "COMPLETE"
        ra_fit, dec_fit = image.wcs(t["x"], t["y"])
        err = np.hypot((ra_fit - t["ra"]) * np.cos(np.radians(t["dec"])), dec_fit - t["dec"]) * 3.6e6
        assert np.median(err) < 5.0  # mas (true positions, no centroid noise involved)
        assert (tmp_path / path.name.replace("_cal.asdf", "_cat.parquet")).exists()


def test_cli_missing_refcat(tmp_path, capsys):
    assert main(["tweakreg", str(tmp_path / "x_cal.asdf"), "--refcat", str(tmp_path / "none.parquet")]) == 2
    assert "none.parquet" in capsys.readouterr().err


def test_calibrate_with_refcat_aligns_each_exposure(simulated, tmp_path, capsys):
    from astro_truth import rms_mas, sky_errors_mas
    from romanflow.astrometry.detect import read_source_catalog

    l1 = [str(p) for p in simulated["l1"][:3]]
    assert main(["calibrate", *l1, "-o", str(tmp_path), "--tweakreg", "--refcat", str(simulated["gaia"]),
                 "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert out.count("aligned") == 3
    errors = []
    for path, truth in zip(sorted(tmp_path.glob("*_cal.asdf")), simulated["truth"][:3]):
        image = read_l2(path)
        result = image.meta["wcs_fit_results"]
        assert result["status"] == "SUCCESS" and len(result["detectors"]) == 3  # one fit for the exposure
        catalog = read_source_catalog(path.with_name(path.name.replace("_cal.asdf", "_cat.parquet")))
        errors.append(sky_errors_mas(image, catalog, truth))
    assert rms_mas(np.vstack(errors)) <= 3.0


def test_calibrate_tweakreg_needs_refcat(simulated, tmp_path, capsys):
    assert main(["calibrate", str(simulated["l1"][0]), "-o", str(tmp_path), "--tweakreg"]) == 2
    assert "--refcat" in capsys.readouterr().err
    assert main(["calibrate", str(simulated["l1"][0]), "-o", str(tmp_path),
                 "--refcat", str(tmp_path / "none.parquet")]) == 2
    assert "none.parquet" in capsys.readouterr().err
    assert not list(tmp_path.glob("*_cal.asdf"))  # nothing calibrated
