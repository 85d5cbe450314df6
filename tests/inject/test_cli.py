"""``romanflow inject`` end to end on a synthetic exposure and a mosaic; bad input exits 2 with one line."""

import pandas as pd
import pyarrow.parquet as pq

from romanflow.cli import main

from .conftest import FWHM_ARCSEC


def test_inject_generated_sources_into_a_mosaic_and_recover(field, tmp_path, capsys):
    out = tmp_path / "out"
    status = main(["inject", str(field.l3), "--n", "36", "--layout", "grid", "--mag-range", "20", "27",
                   "--star-fraction", "0.5", "--avoid-real", "1.0", "--psf-fwhm", str(FWHM_ARCSEC), "--seed", "3",
                   "-o", str(out), "--hats", str(tmp_path / "hats"), "--name", "cell"])
    assert status == 0
    text = capsys.readouterr().out
    assert "injected (L3, F158)" in text and "50% completeness at" in text
    output = pd.read_parquet(out / "cell_injection_output.parquet")
    inputs = pd.read_parquet(out / "cell_injection_input.parquet")
    assert len(output) == len(inputs) > 20
    assert output[output["mag_in"] < 22]["matched"].all()
    assert not output[output["mag_in"] > 26.5]["matched"].any()
    depth = pd.read_parquet(out / "cell_injection_depth.parquet")
    assert {"all", "star", "galaxy"} <= set(depth["kind"])
    curves = pq.read_table(out / "cell_injection_curves.parquet")
    assert curves.schema.field("completeness").metadata[b"description"]
    assert (out / "cell_injection.png").stat().st_size > 10_000
    assert (tmp_path / "hats" / "hats.properties").is_file() or any((tmp_path / "hats").rglob("*.parquet"))


def test_bad_catalog_exits_2_with_one_line_and_no_product(field, tmp_path, capsys):
    path = tmp_path / "sources.parquet"
    pd.DataFrame({"ra": [150.0], "dec": [2.2], "mag_F106": [22.0]}).to_parquet(path)
    out = tmp_path / "out"
    status = main(["inject", str(field.l2[0]), "--catalog", str(path), "-o", str(out), "--psf-fwhm", "0.3"])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2
    assert len(err) == 1 and "no mag_F158 column" in err[0] and str(path) in err[0]
    assert not out.exists() or not any(out.iterdir())
    status = main(["inject", str(field.l2[0]), "--n", "5", "--mag-range", "25", "20", "-o", str(out)])
    assert status == 2
    assert "--mag-range" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
