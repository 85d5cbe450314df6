"""The services over the PostgreSQL backend (a private PostgreSQL 15 cluster with pgSphere and q3c): TAP
with ADQL translated by queryparser to pgSphere, SIA and cone search, checked against the SQLite archive
holding the same files."""

from __future__ import annotations

import io
import warnings

import pytest
import requests


@pytest.fixture(scope="module")
def pg_server(archive_data, postgres_url):
    from conftest import RunningServer

    from romanflow.archive import Archive
    from romanflow.services import ServiceConfig, ServiceLimits, create_app

    _, info = archive_data
    arc = Archive.open(postgres_url, root=info["root"])
    arc.ingest([info["root"] / "l2", info["root"] / "l3", info["root"] / "cat"])
    app = create_app(arc, ServiceConfig(limits=ServiceLimits(query_timeout_s=5.0)))
    with RunningServer(app) as running:
        running.archive = arc
        running.info = info
        yield running
    arc.close()


def _ids(res, col="obs_id"):
    return sorted(str(r[col]) for r in res)


def test_tap_adql_on_pgsphere_agrees_with_sqlite(pg_server, server):
    import pyvo

    l3 = server.archive.product(server.info["l3"][0])
    queries = [
        f"SELECT obs_id FROM ivoa.obscore WHERE CONTAINS(POINT('ICRS', {l3['s_ra']}, {l3['s_dec']}), s_region) = 1",
        "SELECT TOP 3 obs_id FROM ivoa.obscore WHERE calib_level >= 2 ORDER BY obs_id",
        f"SELECT obs_id FROM ivoa.obscore WHERE 1 = CONTAINS(POINT('ICRS', s_ra, s_dec), "
        f"CIRCLE('ICRS', {l3['s_ra']}, {l3['s_dec']}, 0.05))",
        f"SELECT row_index FROM romanflow.catalog_sources WHERE 1 = CONTAINS(POINT('ICRS', ra, dec), "
        f"CIRCLE('ICRS', {server.info['catalog_radec'][0][0]}, {server.info['catalog_radec'][1][0]}, 0.004))",
    ]
    pg = pyvo.dal.TAPService(f"{pg_server.url}/tap")
    lite = pyvo.dal.TAPService(f"{server.url}/tap")
    for q in queries:
        col = "row_index" if "catalog_sources" in q else "obs_id"
        a, b = _ids(pg.run_sync(q), col), _ids(lite.run_sync(q), col)
        assert a == b and a, q
    tables = {t.name for t in pg.tables}
    assert "ivoa.obscore" in tables


def test_sia_and_cone_on_postgres(pg_server, server):
    import pyvo

    l3 = server.archive.product(server.info["l3"][0])
    pg = pyvo.dal.SIA2Service(f"{pg_server.url}/sia")
    lite = pyvo.dal.SIA2Service(f"{server.url}/sia")
    pos = (l3["s_ra"], l3["s_dec"], 0.01)
    assert _ids(pg.search(pos=pos)) == _ids(lite.search(pos=pos))
    ra, dec = server.info["catalog_radec"]
    pg_scs = pyvo.dal.SCSService(f"{pg_server.url}/scs/{server.info['catalog']}")
    lite_scs = pyvo.dal.SCSService(f"{server.url}/scs/{server.info['catalog']}")
    assert _ids(pg_scs.search(pos=(ra[0], dec[0]), radius=0.004), "source_id") == \
        _ids(lite_scs.search(pos=(ra[0], dec[0]), radius=0.004), "source_id")


@pytest.mark.parametrize("query", ["SELEC obs_id FROM ivoa.obscore", "SELECT nothing FROM ivoa.obscore",
                                   "SELECT obs_id FROM ivoa.obscore; DROP TABLE obscore",
                                   "SELECT * FROM public.files"])
def test_postgres_bad_adql_is_a_vo_error(pg_server, query):
    from astropy.io.votable import parse

    r = requests.post(f"{pg_server.url}/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL", "QUERY": query},
                      timeout=60)
    assert 400 <= r.status_code < 500 and b'value="ERROR"' in r.content
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse(io.BytesIO(r.content), verify="exception")
    assert pg_server.archive.search(maxrec=1) is not None  # the table is still there
