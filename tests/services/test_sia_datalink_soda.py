"""SIA v2, DataLink and SODA through pyvo against a real server; answers checked against the archive's
Python API and the files themselves."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import requests


def _validate_votable(content: bytes):
    """astropy's VOTable validator: no warnings or errors."""
    from astropy.io.votable import parse

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse(io.BytesIO(content), verify="exception")


def test_sia_circle_agrees_with_archive_search(server):
    import pyvo

    arc = server.archive
    l3 = arc.product(server.info["l3"][0])
    svc = pyvo.dal.SIA2Service(f"{server.url}/sia")
    res = svc.search(pos=(l3["s_ra"], l3["s_dec"], 0.01))
    expected = set(arc.search(ra=l3["s_ra"], dec=l3["s_dec"], radius=0.01)["obs_id"])
    got = {r["obs_id"] for r in res}
    assert got == expected and server.info["l3"][0] in got
    row = [r for r in res if r["obs_id"] == server.info["l3"][0]][0]
    assert row["access_url"] == f"{server.url}/files/{server.info['l3'][0]}"
    assert row["obs_publisher_did"] == "ivo://romanflow/" + server.info["l3"][0]
    # the access URL returns the file itself
    body = requests.get(row["access_url"], timeout=30).content
    assert body == l3["path"].read_bytes()


def test_sia_constraints(server):
    import pyvo

    arc = server.archive
    svc = pyvo.dal.SIA2Service(f"{server.url}/sia")
    l2 = arc.product(server.info["l2"][0])
    # BAND (metres): F062 only
    res = svc.search(pos=(l2["s_ra"], l2["s_dec"], 0.2), band=(0.5e-6, 0.7e-6))
    assert {r["obs_id"] for r in res} == {server.info["l2"][2]}
    # CALIB 3: the mosaics only
    res = svc.search(pos=(l2["s_ra"], l2["s_dec"], 0.5), calib_level=3)
    assert {r["obs_id"] for r in res} == set(server.info["l3"])
    # TIME covering the first exposure only
    from astropy.time import Time

    res = svc.search(pos=(l2["s_ra"], l2["s_dec"], 0.5), calib_level=2,
                     time=(Time(l2["t_min"], format="mjd"), Time(l2["t_min"] + 1e-6, format="mjd")))
    assert server.info["l2"][0] in {r["obs_id"] for r in res}
    # a polygon around the first L3 tile
    ra, dec = server.info["sub_a"].pixel_to_world_values([10, 20, 20, 10], [10, 10, 20, 20])
    res = svc.search(pos=(float(ra[0]), float(dec[0]), float(ra[1]), float(dec[1]), float(ra[2]), float(dec[2]),
                          float(ra[3]), float(dec[3])))
    assert server.info["l3"][0] in {r["obs_id"] for r in res}
    assert server.info["l3"][1] not in {r["obs_id"] for r in res}


def test_sia_maxrec_overflow_and_validity(server):
    l2 = server.archive.product(server.info["l2"][0])
    r = requests.get(f"{server.url}/sia/query", params={"POS": f"CIRCLE {l2['s_ra']} {l2['s_dec']} 1", "MAXREC": 2},
                     timeout=30)
    assert r.status_code == 200
    _validate_votable(r.content)
    assert b'value="OVERFLOW"' in r.content
    from astropy.io.votable import parse_single_table

    assert len(parse_single_table(io.BytesIO(r.content)).array) == 2


@pytest.mark.parametrize("params", [
    {"POS": "CIRCLE 10 20"}, {"POS": "ELLIPSE 1 2 3"}, {"POS": "CIRCLE a b c"}, {"POS": "CIRCLE 10 95 1"},
    {"BAND": "x"}, {"BAND": "2 1"}, {"MAXREC": "-1"}, {"MAXREC": "many"}, {"CALIB": "L2"},
    {"POS": "POLYGON 1 2 3 4"}, {"TIME": "nan nan"}, {"RESPONSEFORMAT": "text/csv"},
])
def test_sia_bad_parameters_are_vo_errors(server, params):
    r = requests.get(f"{server.url}/sia/query", params=params, timeout=30)
    assert 400 <= r.status_code < 500
    _validate_votable(r.content)
    assert b'name="QUERY_STATUS" value="ERROR"' in r.content


def test_datalink_links(server):
    import pyvo

    svc = pyvo.dal.SIA2Service(f"{server.url}/sia")
    l3_id = server.info["l3"][0]
    arc = server.archive
    res = svc.search(pos=(arc.product(l3_id)["s_ra"], arc.product(l3_id)["s_dec"], 0.001), calib_level=3)
    row = [r for r in res if r["obs_id"] == l3_id][0]
    links = row.getdatalink()
    sem = {lk["semantics"]: lk for lk in links}
    assert {"#this", "#preview", "#cutout", "#progenitor", "#derivation"} <= set(sem)
    assert sem["#this"]["access_url"] == f"{server.url}/files/{l3_id}"
    progenitors = {lk["access_url"].rsplit("/", 1)[-1] for lk in links if lk["semantics"] == "#progenitor"}
    expected = {r["obs_id"] for r in arc.lineage(l3_id, "up") if r["depth"] == 1}
    assert progenitors == expected and set(server.info["l2"][:2]) <= expected
    derived = {lk["access_url"].rsplit("/", 1)[-1] for lk in links if lk["semantics"] == "#derivation"}
    assert derived == {server.info["catalog"]}
    png = requests.get(sem["#preview"]["access_url"], timeout=30)
    assert png.status_code == 200 and png.content[:8] == b"\x89PNG\r\n\x1a\n"
    r = requests.get(f"{server.url}/datalink", params={"ID": f"ivo://romanflow/{l3_id}"}, timeout=30)
    _validate_votable(r.content)
    assert r.headers["content-type"].startswith("application/x-votable+xml;content=datalink")


def test_datalink_unknown_id_is_an_error_row(server):
    r = requests.get(f"{server.url}/datalink", params={"ID": "ivo://romanflow/nothing_here"}, timeout=30)
    assert r.status_code == 200
    _validate_votable(r.content)
    assert b"NotFoundFault" in r.content


def _soda_cutout(server, obs_id, **params):
    """The cutout bytes through pyvo's DataLink -> SODA processing."""
    import pyvo

    links = pyvo.dal.adhoc.DatalinkResults.from_result_url(
        f"{server.url}/datalink?ID=ivo://romanflow/{obs_id}")
    proc = links.get_first_proc()
    return proc.processed(**params).read()


def _asdf_tree(content):
    import asdf

    af = asdf.open(io.BytesIO(content), lazy_load=False, memmap=False)
    return af


def test_soda_l3_asdf_pixels_and_wcs(server):
    from romanflow.services.cutout import open_product

    l3_id = server.info["l3"][0]
    row = server.archive.product(l3_id)
    parent = open_product(row["path"], l3_id)
    ra, dec = parent.pixel_to_world(60.0, 70.0)
    content = _soda_cutout(server, l3_id, circle=(float(ra), float(dec), 10 * 0.055 / 3600))
    af = _asdf_tree(content)
    node = af.tree["roman"]
    x0, y0 = node["meta"]["cutout"]["x0"], node["meta"]["cutout"]["y0"]
    data = np.asarray(node["data"])
    ny, nx = data.shape
    assert 19 <= nx <= 23 and 19 <= ny <= 23
    for name in ("data", "err", "weight", "context"):
        np.testing.assert_array_equal(np.asarray(node[name]),
                                      np.asarray(parent.arrays[name])[..., y0:y0 + ny, x0:x0 + nx])
    assert "dq" not in node
    # WCS over the whole cutout: < 1 mas from the parent's
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra_c, dec_c = node["meta"]["wcs"](xx, yy)
    ra_p, dec_p = parent.pixel_to_world(xx + x0, yy + y0)
    from romanflow.archive.sphere import separation

    assert separation(ra_c, dec_c, ra_p, dec_p).max() * 3.6e6 < 1.0


def test_soda_l2_fits_sip_wcs(server):
    from astropy.io import fits
    from astropy.wcs import WCS

    from romanflow.archive.sphere import separation
    from romanflow.services.cutout import open_product

    l2_id = server.info["l2"][0]
    row = server.archive.product(l2_id)
    parent = open_product(row["path"], l2_id)
    ra, dec = parent.pixel_to_world(64.0, 64.0)
    r = requests.get(f"{server.url}/soda/sync", params={"ID": f"ivo://romanflow/{l2_id}",
                                                         "CIRCLE": f"{ra} {dec} {40 * 0.11 / 3600}",
                                                         "RESPONSEFORMAT": "application/fits"}, timeout=60)
    assert r.status_code == 200 and r.headers["content-type"] == "application/fits"
    hdul = fits.open(io.BytesIO(r.content))
    x0, y0 = hdul[0].header["CUTX0"], hdul[0].header["CUTY0"]
    sci = hdul["SCI"].data
    ny, nx = sci.shape
    np.testing.assert_array_equal(sci, parent.arrays["data"][y0:y0 + ny, x0:x0 + nx])
    np.testing.assert_array_equal(hdul["DQ"].data, parent.arrays["dq"][y0:y0 + ny, x0:x0 + nx])
    np.testing.assert_array_equal(hdul["ERR"].data, parent.arrays["err"][y0:y0 + ny, x0:x0 + nx])
    w = WCS(hdul["SCI"].header)
    assert w.wcs.ctype[0].startswith("RA---TAN")  # TAN-SIP (SIP terms when the distortion needs them)
    yy, xx = np.mgrid[0:ny, 0:nx]
    ra_f, dec_f = w.pixel_to_world_values(xx, yy)
    ra_p, dec_p = parent.pixel_to_world(xx + x0, yy + y0)
    assert separation(ra_f, dec_f, ra_p, dec_p).max() * 3.6e6 < 5.0


def test_soda_png(server):
    l3_id = server.info["l3"][0]
    row = server.archive.product(l3_id)
    r = requests.get(f"{server.url}/soda/sync", params={"ID": l3_id, "POS": f"CIRCLE {row['s_ra']} {row['s_dec']} 0.0005",
                                                         "RESPONSEFORMAT": "image/png"}, timeout=30)
    assert r.status_code == 200 and r.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_soda_region_across_two_sky_cells_is_one_grid(server):
    """A circle on the seam of two sky-cell tiles: one array on the first tile's grid, each pixel
    taken from the tile that holds it."""
    from romanflow.services.cutout import open_product

    a_id, b_id = server.info["l3"]
    pa = open_product(server.archive.product(a_id)["path"], a_id)
    pb = open_product(server.archive.product(b_id)["path"], b_id)
    nx_a = pa.shape[1]
    ra, dec = pa.pixel_to_world(nx_a - 0.5, 80.0)  # on the seam
    r = requests.get(f"{server.url}/soda/sync", params={"ID": a_id, "CIRCLE": f"{ra} {dec} {15 * 0.055 / 3600}"},
                     timeout=60)
    assert r.status_code == 200, r.content[:300]
    node = _asdf_tree(r.content).tree["roman"]
    x0, y0 = node["meta"]["cutout"]["x0"], node["meta"]["cutout"]["y0"]
    data = np.asarray(node["data"])
    ny, nx = data.shape
    assert x0 + nx > nx_a  # it runs past tile a's edge
    assert set(node["meta"]["cutout"]["sources"]) == {a_id, b_id}
    inside = nx_a - x0
    np.testing.assert_array_equal(data[:, :inside], pa.arrays["data"][y0:y0 + ny, x0:nx_a])
    # tile b's grid is tile a's shifted by a whole number of pixels
    from romanflow.services.cutout import _aligned_offset

    dx, dy = _aligned_offset(pa, pb)
    assert dx == nx_a and dy == 0
    np.testing.assert_array_equal(data[:, inside:], pb.arrays["data"][y0 - dy:y0 - dy + ny, 0:nx - inside])
    np.testing.assert_array_equal(np.asarray(node["context"])[0, :, inside:], 2)
    # one WCS: tile b's pixel centres land on the cutout's grid to < 1 mas
    from romanflow.archive.sphere import separation

    ra_b, dec_b = pb.pixel_to_world(np.arange(0, nx - inside, dtype=float), np.full(nx - inside, y0 + 3.0))
    ra_c, dec_c = node["meta"]["wcs"](np.arange(inside, nx, dtype=float), np.full(nx - inside, 3.0))
    assert separation(ra_b, dec_b, ra_c, dec_c).max() * 3.6e6 < 1.0


@pytest.mark.parametrize("params,status", [
    ({"CIRCLE": "1 2 0.1"}, 400),                               # no ID
    ({"ID": "X", "CIRCLE": "1 2 0.1"}, 404),                    # unknown product
    ({"ID": "__L2__", "CIRCLE": "1 2"}, 400),                   # bad circle
    ({"ID": "__L2__", "CIRCLE": "0 -80 0.001"}, 400),           # no overlap
    ({"ID": "__L3__", "CIRCLE": "__FAR__"}, 400),               # too large
    ({"ID": "__L2__", "POS": "BOX 1 2 3 4"}, 400),
    ({"ID": "__L2__", "CIRCLE": "__OK__", "RESPONSEFORMAT": "text/html"}, 400),
    ({"ID": "__CAT__", "CIRCLE": "__OK__"}, 400),                # not an image
    ({"ID": "../../etc/passwd", "CIRCLE": "1 2 0.1"}, 404),
])
def test_soda_errors(server, params, status):
    l2 = server.archive.product(server.info["l2"][0])
    subst = {"__L2__": l2["obs_id"], "__L3__": server.info["l3"][0], "__CAT__": server.info["catalog"],
             "__FAR__": f"{l2['s_ra']} {l2['s_dec']} 0.5", "__OK__": f"{l2['s_ra']} {l2['s_dec']} 0.001"}
    params = {k: subst.get(v, v) for k, v in params.items()}
    r = requests.get(f"{server.url}/soda/sync", params=params, timeout=30)
    assert r.status_code == status, r.content[:300]
    _validate_votable(r.content)
    assert b'value="ERROR"' in r.content
