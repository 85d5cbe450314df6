"""Simple Cone Search and TAP through pyvo (and STILTS taplint) against a real server; answers checked
against the archive's Python API and brute force."""

from __future__ import annotations

import io
import subprocess
import warnings

import numpy as np
import pytest
import requests

from romanflow.archive.sphere import separation


def _validate_votable(content: bytes):
    from astropy.io.votable import parse

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse(io.BytesIO(content), verify="exception")


def test_scs_agrees_with_brute_force(server):
    import pyvo

    ra, dec = server.info["catalog_radec"]
    c_ra, c_dec, radius = float(ra[0]), float(dec[0]), 0.004
    svc = pyvo.dal.SCSService(f"{server.url}/scs/{server.info['catalog']}")
    res = svc.search(pos=(c_ra, c_dec), radius=radius)
    expected = set(np.flatnonzero(separation(ra, dec, c_ra, c_dec) <= radius))
    got = {int(r["row_index"]) for r in res}
    assert got == expected and len(got) > 5
    table = res.to_table()
    assert table["ra"].unit == "deg" and "psf_f158_flux" in table.colnames
    r = requests.get(f"{server.url}/scs/{server.info['catalog']}",
                     params={"RA": c_ra, "DEC": c_dec, "SR": radius, "MAXREC": 3, "VERB": 1}, timeout=30)
    _validate_votable(r.content)
    assert b'value="OVERFLOW"' in r.content
    from astropy.io.votable import parse_single_table

    t = parse_single_table(io.BytesIO(r.content)).to_table()
    assert t.colnames == ["source_id", "ra", "dec"] and len(t) == 3
    ucds = {f.name: f.ucd for f in parse_single_table(io.BytesIO(r.content)).fields}
    assert ucds["source_id"] == "meta.id;meta.main" and ucds["ra"] == "pos.eq.ra;meta.main"


def test_scs_astroquery(server):
    from astroquery.vo_conesearch import conesearch

    ra, dec = server.info["catalog_radec"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = conesearch.conesearch((float(ra[1]), float(dec[1])), 0.003, catalog_db=f"{server.url}/scs/"
                                       f"{server.info['catalog']}?", verbose=False, return_astropy_table=True)
    expected = set(np.flatnonzero(separation(ra, dec, float(ra[1]), float(dec[1])) <= 0.003))
    assert {int(str(s).rsplit(":", 1)[1]) for s in result["source_id"]} == expected  # VERB=1: id, ra, dec


@pytest.mark.parametrize("params,status", [
    ({"RA": "1", "DEC": "2"}, 400), ({"RA": "x", "DEC": "2", "SR": "0.1"}, 400),
    ({"RA": "1", "DEC": "100", "SR": "0.1"}, 400), ({"RA": "1", "DEC": "2", "SR": "50"}, 400),
    ({"RA": "nan", "DEC": "2", "SR": "0.1"}, 400),
])
def test_scs_errors(server, params, status):
    r = requests.get(f"{server.url}/scs/{server.info['catalog']}", params=params, timeout=30)
    assert r.status_code == status
    _validate_votable(r.content)
    assert b'value="ERROR"' in r.content
    r = requests.get(f"{server.url}/scs/{server.info['l2'][0]}", params={"RA": 1, "DEC": 2, "SR": 0.1}, timeout=30)
    assert r.status_code == 404


def test_tap_sync_geometry_agrees_with_archive(server):
    import pyvo

    arc = server.archive
    l3 = arc.product(server.info["l3"][0])
    tap = pyvo.dal.TAPService(f"{server.url}/tap")
    q = (f"SELECT obs_id, s_ra, s_dec, calib_level FROM ivoa.obscore WHERE "
         f"CONTAINS(POINT('ICRS', s_ra, s_dec), CIRCLE('ICRS', {l3['s_ra']}, {l3['s_dec']}, 0.05)) = 1 ORDER BY obs_id")
    res = tap.run_sync(q)
    all_rows = arc.search(maxrec=1000)
    d = separation(np.asarray(all_rows["s_ra"], float), np.asarray(all_rows["s_dec"], float), l3["s_ra"], l3["s_dec"])
    expected = sorted(str(o) for o, x in zip(all_rows["obs_id"], d) if x <= 0.05)
    assert [r["obs_id"] for r in res] == expected and expected
    # footprints meeting a point: the same as the archive's cone search of radius ~0
    q = (f"SELECT obs_id FROM ivoa.obscore WHERE CONTAINS(POINT('ICRS', {l3['s_ra']}, {l3['s_dec']}), s_region) = 1")
    got = {r["obs_id"] for r in tap.run_sync(q)}
    assert got == set(arc.search(ra=l3["s_ra"], dec=l3["s_dec"], radius=1e-7)["obs_id"])
    # INTERSECTS with a polygon, TOP, DISTANCE
    q = (f"SELECT TOP 2 obs_id, DISTANCE(POINT('ICRS', s_ra, s_dec), POINT('ICRS', {l3['s_ra']}, {l3['s_dec']})) AS d "
         "FROM ivoa.obscore WHERE s_ra IS NOT NULL ORDER BY d")
    res = tap.run_sync(q).to_table()
    assert len(res) == 2 and res["obs_id"][0] == l3["obs_id"] and res["d"][0] < 1e-9
    q = (f"SELECT COUNT(*) AS n FROM romanflow.catalog_sources WHERE "
         f"1 = CONTAINS(POINT('ICRS', ra, dec), CIRCLE('ICRS', {server.info['catalog_radec'][0][0]}, "
         f"{server.info['catalog_radec'][1][0]}, 0.004))")
    ra, dec = server.info["catalog_radec"]
    assert int(tap.run_sync(q)[0]["n"]) == int((separation(ra, dec, ra[0], dec[0]) <= 0.004).sum())


def test_tap_maxrec_overflow_and_async(server):
    import pyvo

    tap = pyvo.dal.TAPService(f"{server.url}/tap")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        res = tap.run_sync("SELECT obs_id FROM ivoa.obscore", maxrec=2)
    assert len(res) == 2 and res.query_status == "OVERFLOW"
    res = tap.run_async("SELECT obs_id, calib_level FROM ivoa.obscore WHERE calib_level = 3 ORDER BY obs_id")
    assert [r["obs_id"] for r in res] == sorted(server.info["l3"])
    job = tap.submit_job("SELECT nonsense FROM ivoa.obscore")
    job.run()
    job.wait(phases=["COMPLETED", "ERROR", "ABORTED"], timeout=30)
    assert job.phase == "ERROR"
    job.delete()


def test_tap_schema_describes_tables(server):
    import pyvo

    tap = pyvo.dal.TAPService(f"{server.url}/tap")
    tables = {t.name: t for t in tap.tables}
    assert {"ivoa.obscore", "romanflow.catalog_sources", "TAP_SCHEMA.columns"} <= set(tables)
    cols = {c.name: c for c in tables["ivoa.obscore"].columns}
    assert cols["s_ra"].unit == "deg" and cols["s_ra"].ucd == "pos.eq.ra"
    res = tap.run_sync("SELECT column_name, unit, ucd FROM TAP_SCHEMA.columns WHERE table_name = 'ivoa.obscore' "
                       "AND column_name = 'em_min'")
    assert res[0]["unit"] == "m" and res[0]["ucd"] == "em.wl;stat.min"


@pytest.mark.parametrize("query", [
    "SELEC obs_id FROM ivoa.obscore", "SELECT FROM", "SELECT obs_id FROM ivoa.obscore; DROP TABLE obscore",
    "DELETE FROM ivoa.obscore", "SELECT obs_id FROM ivoa.obscore WHERE (", "SELECT * FROM nothing.here",
    "SELECT 'unclosed FROM ivoa.obscore", "SELECT obs_id FROM ivoa.obscore LIMIT 3",
    "SELECT CONTAINS(POINT('ICRS', 1), CIRCLE('ICRS', 1, 2, 3)) FROM ivoa.obscore",
    "SELECT * FROM arc.files", "ATTACH DATABASE '/tmp/x' AS y", "",
])
def test_malformed_adql_is_a_vo_error(server, query):
    r = requests.post(f"{server.url}/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query},
                      timeout=30)
    assert 400 <= r.status_code < 500, r.content[:300]
    _validate_votable(r.content)
    assert b'value="ERROR"' in r.content


def test_tap_query_time_is_bounded(server):
    q = ("SELECT COUNT(*) FROM romanflow.catalog_sources AS a, romanflow.catalog_sources AS b, "
         "romanflow.catalog_sources AS c, romanflow.catalog_sources AS d")
    r = requests.get(f"{server.url}/tap/sync", params={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": q}, timeout=60)
    assert r.status_code == 400 and b"longer than the limit" in r.content


def test_taplint_reports_no_errors(server):
    out = subprocess.run(["stilts", "taplint", f"tapurl={server.url}/tap", "report=EF", "maxrepeat=3"],
                         capture_output=True, text=True, timeout=600)
    errors = [line for line in out.stdout.splitlines() if line.startswith("E-")]
    assert not errors, "\n".join(errors[:40])
