"""``romanflow tweakreg``: products keep every array; bad input is one line, exit 2."""

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "astrometry"))

from romanflow import geometry  # noqa: E402
from romanflow.cli import main  # noqa: E402
from romanflow.formats.asdf_io import write_l2  # noqa: E402

TRUE = geometry.pointing_for(200.0, 30.0, 20.0)
ASSIGNED = TRUE.with_offsets(-1.0, 0.8, -0.03)


def _arrays(path):
    import roman_datamodels.datamodels as rdm

    with rdm.open(path) as model:
        return {k: np.array(model[k]) for k in model.keys() if k != "meta"}


@pytest.fixture(scope="module")
def l2_with_reference_arrays(tmp_path_factory):
    """An L2 file whose amp33 and border reference pixels hold values, and a matching reference catalog."""
    import roman_datamodels.datamodels as rdm
    from synthetic import star_field

    folder = tmp_path_factory.mktemp("tweakreg")
    images, truth = star_field(("WFI02",), TRUE, ASSIGNED, np.random.default_rng(21), n_per_detector=14)
    plain = write_l2(images[0], folder / "plain.asdf")
    rng = np.random.default_rng(3)
    with rdm.open(plain) as model:
        for name in model.keys():
            if name == "amp33" or "border_ref_pix" in name:
                array = np.asarray(model[name])
                model[name] = rng.integers(1, 1000, array.shape).astype(array.dtype)
        path = folder / "r0000101001001001001_0001_wfi02_cal.asdf"
        model.save(path)
    refcat = folder / "gaia.parquet"
    pd.DataFrame({"ra": truth[0]["ra"], "dec": truth[0]["dec"], "ref_epoch": 2027.0}).to_parquet(refcat)
    return path, refcat


def _one_error_line(capsys, *words):
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in err and lines[0].startswith("romanflow tweakreg: error:"), err
    for word in words:
        assert word in lines[0], err
    return lines[0]


@pytest.mark.parametrize("minobj,status", [("8", "SUCCESS"), ("50", "FAILED")])
def test_every_array_kept_in_place_and_in_output_dir(l2_with_reference_arrays, tmp_path, minobj, status, capsys):
    import roman_datamodels.datamodels as rdm

    source, refcat = l2_with_reference_arrays
    before = _arrays(source)
    assert np.any(before["amp33"]) and np.any(before["border_ref_pix_left"])
    in_place = tmp_path / source.name
    in_place.write_bytes(source.read_bytes())
    assert main(["tweakreg", str(in_place), "--refcat", str(refcat), "--minobj", minobj]) == 0
    assert main(["tweakreg", str(source), "--refcat", str(refcat), "--minobj", minobj,
                 "-o", str(tmp_path / "out")]) == 0
    for path in (in_place, tmp_path / "out" / source.name):
        after = _arrays(path)
        assert after.keys() == before.keys()
        for name in before:
            assert np.array_equal(after[name], before[name]), name
        with rdm.open(path) as model, rdm.open(source) as original:
            assert model.meta.wcs_fit_results["status"] == status
            moved = model.meta.wcsinfo.ra_ref != original.meta.wcsinfo.ra_ref
            assert moved == (status == "SUCCESS")


def test_bad_arguments_are_one_line(l2_with_reference_arrays, tmp_path, capsys):
    source, refcat = l2_with_reference_arrays
    original = source.read_bytes()
    assert main(["tweakreg", str(source), "--refcat", str(refcat), "--searchrad", "-1"]) == 2
    _one_error_line(capsys, "--searchrad")
    assert main(["tweakreg", str(source), "--refcat", str(refcat), "--snr-threshold", "0"]) == 2
    _one_error_line(capsys, "--snr-threshold")
    no_dec = tmp_path / "no_dec.parquet"
    pd.DataFrame({"ra": [200.0]}).to_parquet(no_dec)
    assert main(["tweakreg", str(source), "--refcat", str(no_dec)]) == 2
    _one_error_line(capsys, "no_dec.parquet", "dec")
    nan = tmp_path / "nan.parquet"
    table = pd.read_parquet(refcat)
    table.loc[1, "ra"] = np.nan
    table.to_parquet(nan)
    assert main(["tweakreg", str(source), "--refcat", str(nan)]) == 2
    _one_error_line(capsys, "nan.parquet", "NaN")
    assert source.read_bytes() == original


def test_3d_l2_is_one_line(l2_with_reference_arrays, tmp_path, capsys):
    source, refcat = l2_with_reference_arrays
    cube = _with_leading_axis(source, tmp_path / "cube_cal.asdf")
    original = cube.read_bytes()
    assert main(["tweakreg", str(cube), "--refcat", str(refcat)]) == 2
    _one_error_line(capsys, "cube_cal.asdf")
    assert cube.read_bytes() == original


def _with_leading_axis(source, path):
    """A copy of an L2 file whose data array is declared (1, ny, nx): the header edited, the bytes kept."""
    raw = source.read_bytes()
    head, sep, rest = raw.partition(b"\n...\n")
    rest = rest.split(b"#ASDF BLOCK INDEX")[0]  # its offsets would be stale
    text = head.decode()
    start = text.index("\n  data: !core/ndarray")
    shape = text.index("shape: [", start)
    text = text[:shape] + "shape: [1, " + text[shape + len("shape: ["):]
    path.write_bytes(text.encode() + sep + rest)
    return path
