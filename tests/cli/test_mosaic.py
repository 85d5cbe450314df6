"""``romanflow asn`` and ``romanflow mosaic``: bad requests stop with one line and write nothing."""


import numpy as np
import pytest

from romanflow.cli import main
from romanflow.formats import write_l2
from romanflow.geometry import DetectorProjection, pointing_for
from romanflow.mosaic.skycells import skycell_containing, skycell_wcs
from romanflow.mosaic.synthetic import make_rate_image

SIZE = 120
DETECTOR = "WFI07"


@pytest.fixture(scope="module")
def field(tmp_path_factory):
    """Two L2 files, one all-NaN L2 file, their sky cell and a 300-pixel cutout of it around the data."""
    root = tmp_path_factory.mktemp("mosaic_cli")
    pointing = pointing_for(150.1, 2.2, 30.0)
    good = []
    for k in range(2):
        image = make_rate_image(DETECTOR, pointing.with_offsets(0.1 * k, 0.05 * k), SIZE, seed=k, exposure=k + 1)
        good.append(write_l2(image, root / "l2" / f"e{k}_cal.asdf"))
    empty = make_rate_image(DETECTOR, pointing, SIZE, seed=9, exposure=3)
    empty.data[:] = np.nan
    nan_path = write_l2(empty, root / "nan" / "empty_cal.asdf")
    ra, dec = DetectorProjection(DETECTOR, pointing, SIZE).pixel_to_world((SIZE - 1) / 2, (SIZE - 1) / 2)
    cell = skycell_containing(ra, dec)[0]
    x, y = skycell_wcs(cell).world_to_pixel_values(ra, dec)
    cutout = [int(x) - 150, int(y) - 150, 300, 300]
    return {"root": root, "good": good, "nan": nan_path, "cell": cell, "cutout": cutout, "radec": (ra, dec)}


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def _one_line_error(argv, capsys, folder, expected):
    before = _files(folder)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert out == ""
    assert err.count("\n") == 1 and ": error: " in err, err
    assert expected in err, err
    assert _files(folder) == before  # nothing written, nothing partial
    return err


def _association(folder, members, cell):
    """An association of ``members`` (paths) on ``cell``, written with ``romanflow asn``'s layout."""
    from romanflow.mosaic.associations import write_association
    from romanflow.mosaic.skycells import skycell_wcs_info

    asn = {"asn_type": "image", "asn_rule": "DMS_ELPP_Base", "asn_id": "a0001", "program": "00001",
           "data_release_id": "p", "target": cell, "skycell_wcs_info": skycell_wcs_info(cell),
           "products": [{"name": f"r00001_p_full_{cell}_f158",
                         "members": [{"expname": str(m), "exptype": "science"} for m in members]}]}
    return write_association(asn, folder)


def test_asn_refuses_an_unknown_sky_cell(field, tmp_path, capsys):
    _one_line_error(["asn", str(field["root"] / "l2"), "-o", str(tmp_path / "asn"), "--skycell", "nonsense"],
                    capsys, tmp_path, "--skycell='nonsense': ")


def test_asn_refuses_a_sky_cell_no_input_touches(field, tmp_path, capsys):
    ra, dec = field["radec"]
    elsewhere = skycell_containing(ra + 1.0, dec)[0]
    assert elsewhere != field["cell"]
    _one_line_error(["asn", str(field["root"] / "l2"), "-o", str(tmp_path / "asn"), "--skycell", elsewhere],
                    capsys, tmp_path, f"--skycell='{elsewhere}': no input touches this sky cell")
    assert main(["asn", str(field["root"] / "l2"), "-o", str(tmp_path / "asn"), "--skycell", field["cell"]]) == 0
    assert capsys.readouterr().out.strip().endswith(f"{field['cell']}_f158_asn.json")


def test_mosaic_of_only_empty_members_is_an_error_naming_the_association(field, tmp_path, capsys):
    asn = _association(tmp_path, [field["nan"]], field["cell"])
    _one_line_error(["mosaic", str(asn), "-o", str(tmp_path / "m.asdf"), "--cutout", *map(str, field["cutout"])],
                    capsys, tmp_path, f"{asn}: nothing to mosaic: none of the 1 input(s) has a usable pixel")


def test_an_empty_member_is_left_out_with_a_warning(field, tmp_path, capsys):
    import roman_datamodels as rdm

    asn = _association(tmp_path, [field["nan"], *field["good"]], field["cell"])
    out = tmp_path / "m.asdf"
    assert main(["mosaic", str(asn), "-o", str(out), "--no-outliers", "--cutout", *map(str, field["cutout"])]) == 0
    stdout, err = capsys.readouterr()
    assert stdout.strip() == str(out)
    assert "warning: " in err and "empty_cal.asdf: no usable pixel" in err and "left out of the mosaic" in err
    with rdm.open(out) as model:
        members = list(model.meta.resample.members)
        assert len(members) == 2 and not any("empty_cal" in m for m in members)
        assert np.isfinite(model.data).any()


def test_a_cutout_off_the_data_is_an_error(field, tmp_path, capsys):
    asn = _association(tmp_path, field["good"], field["cell"])
    x0, y0, _, _ = field["cutout"]
    far = [str((x0 + 2500) % 4500), str((y0 + 2500) % 4500), "100", "100"]
    _one_line_error(["mosaic", str(asn), "-o", str(tmp_path / "m.asdf"), "--no-outliers", "--cutout", *far],
                    capsys, tmp_path, "falls on the output grid")


@pytest.mark.parametrize("cutout, problem", [
    (["0", "0", "-5", "10"], "--cutout=[0, 0, -5, 10]: the cutout size NX NY must be positive"),
    (["0", "0", "0", "10"], "must be positive"),
    (["4990", "0", "50", "10"], "must lie inside the sky cell's 5000x5000 pixel grid"),
    (["-10", "-10", "5", "5"], "must lie inside the sky cell"),
])
def test_bad_cutouts_are_parameter_errors(field, tmp_path, capsys, cutout, problem):
    asn = _association(tmp_path, field["good"], field["cell"])
    _one_line_error(["mosaic", str(asn), "-o", str(tmp_path / "m.asdf"), "--cutout", *cutout], capsys, tmp_path,
                    problem)


@pytest.mark.parametrize("content, problem", [
    ("5\n", "not an association: the JSON holds a int"),
    ("{\n", "not a JSON association"),
    ("[]\n", "not an association"),
    ('{"asn_type": "image", "asn_rule": "x", "asn_id": "a", "program": "1", "target": "nonsense", '
     '"skycell_wcs_info": {}, "products": [{"name": "p", "members": [{"expname": "x_cal.asdf"}]}]}',
     "association target: 'nonsense' is not a sky cell name"),
    ('{"asn_type": "image", "asn_rule": "x", "asn_id": "a", "program": "1", "target": "x", '
     '"skycell_wcs_info": {}, "products": 3}', "'products' must be a list of objects"),
    ('{"asn_type": "image", "asn_rule": "x", "asn_id": "a", "program": "1", "target": "x", '
     '"skycell_wcs_info": {}, "products": [{"name": "p", "members": [5]}]}', "members[0] needs an 'expname'"),
])
def test_files_that_are_not_associations(tmp_path, capsys, content, problem):
    path = tmp_path / "a_asn.json"
    path.write_text(content)
    err = _one_line_error(["mosaic", str(path), "-o", str(tmp_path / "m.asdf")], capsys, tmp_path, problem)
    assert f"error: {path}: " in err


def test_a_folder_is_not_an_association(tmp_path, capsys):
    _one_line_error(["mosaic", str(tmp_path)], capsys, tmp_path, f"{tmp_path}: is a folder, not an association")


def test_unusable_output_locations(field, tmp_path, capsys):
    asn = _association(tmp_path, field["good"], field["cell"])
    (tmp_path / "plain").write_text("mine\n")
    _one_line_error(["mosaic", str(asn), "-o", str(tmp_path / "plain" / "m.asdf")], capsys, tmp_path, "plain")
    _one_line_error(["asn", str(field["root"] / "l2"), "-o", str(tmp_path / "plain" / "asn")], capsys, tmp_path,
                    "plain")
    assert (tmp_path / "plain").read_text() == "mine\n"
