import json

import pytest

from romanflow.cli import main
from romanflow.errors import InputFileError
from romanflow.formats import write_l2
from romanflow.mosaic.associations import (
    build_associations,
    load_association,
    summarize_l2,
)


@pytest.fixture(scope="module")
def l2_dir(scene, tmp_path_factory):
    folder = tmp_path_factory.mktemp("asn_l2")
    for k, (visit, element) in enumerate([(1, "F158"), (1, "F158"), (2, "F158"), (2, "F087")]):
        image = scene.image(k, (0.1 * k, 0.0), optical_element=element)
        image.meta["observation"]["visit"] = visit
        write_l2(image, folder / f"v{visit}_{k}_{element.lower()}_cal.asdf")
    return folder


def test_groups_per_cell_element_and_visit(l2_dir, scene):
    summaries = [summarize_l2(p) for p in sorted(l2_dir.glob("*.asdf"))]
    assert all(scene.cell in s.skycells for s in summaries)
    visit = [a for a in build_associations(summaries, "visit") if a["target"] == scene.cell]
    full = [a for a in build_associations(summaries, "full") if a["target"] == scene.cell]
    assert len(visit) == 3  # (visit 1, F158), (visit 2, F158), (visit 2, F087)
    assert len(full) == 2  # one per optical element
    f158 = next(a for a in full if a["products"][0]["name"].endswith("_f158"))
    assert len(f158["products"][0]["members"]) == 3
    for key in ("asn_type", "asn_rule", "asn_id", "program", "target", "skycell_wcs_info", "products"):
        assert key in f158
    assert f158["products"][0]["name"] == f"r00001_p_full_{scene.cell}_f158"
    assert f158["skycell_wcs_info"]["nx"] == 5000 and f158["skycell_wcs_info"]["name"] == scene.cell
    assert {m["exptype"] for m in f158["products"][0]["members"]} == {"science"}
    names = {a["products"][0]["name"] for a in visit}
    assert f"r00001_p_v01001001001001_{scene.cell}_f158" in names


def test_cli_asn_then_mosaic(l2_dir, scene, tmp_path, capsys):
    out = tmp_path / "asn"
    assert main(["asn", str(l2_dir), "--product-type", "pass", "-o", str(out), "--skycell", scene.cell]) == 0
    files = sorted(out.glob("*_asn.json"))
    assert len(files) == 2
    raw = json.loads(files[-1].read_text())
    assert not raw["products"][0]["members"][0]["expname"].startswith("/")  # relative to the association
    asn = load_association(files[-1])
    assert raw["products"][0]["name"].endswith("_f158")
    crpix = scene.wcs.wcs.crpix
    full_crpix = raw["skycell_wcs_info"]["x0_projection"] + 1
    x0 = int(round(full_crpix - crpix[0]))
    y0 = int(round(raw["skycell_wcs_info"]["y0_projection"] + 1 - crpix[1]))
    coadd = tmp_path / "coadd.asdf"
    rc = main(["mosaic", str(files[-1]), "-o", str(coadd), "--cutout", str(x0), str(y0), "640", "640"])
    assert rc == 0 and coadd.exists()
    assert (tmp_path / "coadd_outliers.parquet").exists()
    assert len(asn["products"][0]["members"]) == 3


def test_bad_association_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad_asn.json"
    bad.write_text('{"asn_type": "image"}')
    with pytest.raises(InputFileError, match="lacks"):
        load_association(bad)
    assert main(["mosaic", str(bad)]) == 2


def test_requested_sky_cells_must_exist_and_be_touched(l2_dir, scene):
    from romanflow.errors import ParameterError
    from romanflow.mosaic.skycells import skycell_containing, skycell_wcs

    summaries = [summarize_l2(p) for p in sorted(l2_dir.glob("*.asdf"))]
    with pytest.raises(ParameterError, match="skycells='nonsense'"):
        build_associations(summaries, skycells={"nonsense"})
    ra, dec = skycell_wcs(scene.cell).wcs.crval
    elsewhere = skycell_containing(ra + 2.0, dec)[0]
    with pytest.raises(ParameterError, match=f"--skycell='{elsewhere}': no input touches this sky cell"):
        build_associations(summaries, skycells=[elsewhere], parameter="--skycell")
    assert {a["target"] for a in build_associations(summaries, skycells=[scene.cell])} == {scene.cell}


@pytest.mark.parametrize("content", ["5", "[1, 2]", '"text"', "{", '{"products": []}'])
def test_load_association_names_the_file(tmp_path, content):
    path = tmp_path / "x_asn.json"
    path.write_text(content)
    with pytest.raises(InputFileError, match="x_asn.json: "):
        load_association(path)
    with pytest.raises(InputFileError, match="is a folder"):
        load_association(tmp_path)
