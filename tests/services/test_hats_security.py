"""HATS over HTTP with lsdb; limits and security: path traversal, symbolic links, the write token, CORS,
the access log, request size, and a fuzz of the JSON endpoints (no 5xx)."""

from __future__ import annotations

import json
import os
import socket

import numpy as np
import pytest
import requests

from romanflow.archive.sphere import separation


@pytest.fixture(scope="module")
def hats_catalog(server):
    """A HATS catalog under ARCHIVE_ROOT/hats/, plus a symbolic link inside it pointing out of the root."""
    from astropy.table import Table

    from romanflow.catalog.hats_io import write_hats

    root = server.info["root"]
    ra, dec = server.info["catalog_radec"]
    t = Table({"source_id": np.arange(len(ra)), "ra": ra, "dec": dec, "flux": np.linspace(1, 2, len(ra))})
    path = write_hats(t, root / "hats" / "cat", pixel_threshold=100, highest_order=12)
    outside = root.parent / "outside_secret.txt"
    outside.write_text("secret")
    os.symlink(outside, path / "leak.txt")
    os.symlink(root.parent, path / "up")
    return path


def test_lsdb_reads_hats_over_http_and_cone_searches(server, hats_catalog):
    import lsdb

    ra, dec = server.info["catalog_radec"]
    cat = lsdb.read_hats(f"{server.url}/hats/cat")
    assert len(cat.get_healpix_pixels()) > 1  # several partitions, read by range requests
    c_ra, c_dec, r_arcsec = float(ra[3]), float(dec[3]), 12.0
    found = cat.cone_search(c_ra, c_dec, r_arcsec).compute()
    expected = set(np.flatnonzero(separation(ra, dec, c_ra, c_dec) * 3600 <= r_arcsec))
    assert set(found["source_id"].astype(int)) == expected and expected


def test_range_requests(server, hats_catalog):
    r = requests.get(f"{server.url}/hats/cat/partition_info.csv", headers={"Range": "bytes=0-9"}, timeout=30)
    assert r.status_code == 206 and len(r.content) == 10
    assert r.content == (hats_catalog / "partition_info.csv").read_bytes()[:10]
    l3 = server.info["l3"][0]
    r = requests.get(f"{server.url}/files/{l3}", headers={"Range": "bytes=100-199"}, timeout=30)
    assert r.status_code == 206 and r.content == server.archive.product(l3)["path"].read_bytes()[100:200]


def _raw_get(port: int, target: str) -> int:
    """Status of a GET sent byte for byte (no client-side path normalisation)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
    assert b"secret" not in data and b"root:x:0:0" not in data
    return int(data.split(b" ", 2)[1])


@pytest.mark.parametrize("target", [
    "/hats/cat/../../../../etc/passwd", "/hats/cat/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
    "/hats/cat/..%2f..%2f..%2fetc%2fpasswd", "/hats/cat/%2fetc%2fpasswd", "/hats/cat//etc/passwd",
    "/hats/cat/leak.txt", "/hats/cat/up/outside_secret.txt", "/hats/..%2f..%2fetc/passwd",
    "/files/..%2f..%2fetc%2fpasswd", "/files/%2e%2e", "/files/../../etc/passwd", "/preview/..%2fx.png",
    "/hats/cat/dataset/%00", "/files/%2fetc%2fpasswd", "/soda/sync?ID=../../etc/passwd&CIRCLE=1+2+0.1",
    "/datalink/../../etc/passwd", "/hats/%2e%2e/%2e%2e/etc/passwd",
])
def test_path_traversal_is_4xx(server, hats_catalog, target):
    status = _raw_get(server.port, target)
    assert 400 <= status < 500


def test_symlink_to_outside_product_is_refused(server, hats_catalog, tmp_path):
    """A product file replaced by a link leading out of the root: 4xx, nothing read."""
    root = server.info["root"]
    l2 = server.archive.product(server.info["l2"][2])
    backup = l2["path"].with_suffix(".bak")
    os.rename(l2["path"], backup)
    try:
        os.symlink(root.parent / "outside_secret.txt", l2["path"])
        r = requests.get(f"{server.url}/files/{l2['obs_id']}", timeout=30)
        assert r.status_code == 403 and b"secret" not in r.content
    finally:
        os.remove(l2["path"])
        os.rename(backup, l2["path"])


def test_ingest_needs_the_token(server):
    r = requests.post(f"{server.url}/api/ingest", json={"paths": ["l2"]}, timeout=30)
    assert r.status_code == 401
    r = requests.post(f"{server.url}/api/ingest", json={"paths": ["l2"]},
                      headers={"Authorization": "Bearer wrong"}, timeout=30)
    assert r.status_code == 401
    r = requests.post(f"{server.url}/api/ingest", json={"paths": ["/etc"]},
                      headers={"Authorization": "Bearer s3cret-token"}, timeout=30)
    assert r.status_code == 400
    r = requests.post(f"{server.url}/api/ingest", json={"paths": ["../"]},
                      headers={"Authorization": "Bearer s3cret-token"}, timeout=30)
    assert r.status_code == 400
    before = len(server.archive.search())
    r = requests.post(f"{server.url}/api/ingest", json={"paths": ["l2"]},
                      headers={"Authorization": "Bearer s3cret-token"}, timeout=120)
    assert r.status_code == 200 and len(server.archive.search()) == before  # idempotent


def test_cors_and_access_log(server, access_log):
    r = requests.get(f"{server.url}/api/health", headers={"Origin": "http://example.org"}, timeout=30)
    assert r.status_code == 200 and r.headers["access-control-allow-origin"] == "*"
    r = requests.options(f"{server.url}/sia/query", headers={"Origin": "http://example.org",
                                                              "Access-Control-Request-Method": "GET"}, timeout=30)
    assert r.status_code == 200 and "GET" in r.headers["access-control-allow-methods"]
    requests.get(f"{server.url}/api/products/no_such_thing_xyz", timeout=30)
    lines = access_log.read_text().splitlines()
    assert any('"GET /api/products/no_such_thing_xyz" 404' in line for line in lines)
    assert all(line.startswith("127.0.0.1 ") for line in lines)


def test_request_body_limit(server):
    r = requests.post(f"{server.url}/tap/sync", data={"REQUEST": "doQuery", "LANG": "ADQL",
                                                      "QUERY": "SELECT 1 FROM ivoa.obscore " + " " * (2 << 20)},
                      timeout=30)
    assert r.status_code == 413 and b'value="ERROR"' in r.content


def test_root_page(server):
    r = requests.get(f"{server.url}/", timeout=30)
    assert r.status_code == 200


def test_json_api_agrees_with_archive(server):
    l3 = server.archive.product(server.info["l3"][0])
    r = requests.get(f"{server.url}/api/products", params={"ra": l3["s_ra"], "dec": l3["s_dec"], "radius": 0.01},
                     timeout=30)
    rows = r.json()["rows"]
    assert {x["obs_id"] for x in rows} == set(server.archive.search(ra=l3["s_ra"], dec=l3["s_dec"],
                                                                      radius=0.01)["obs_id"])
    r = requests.get(f"{server.url}/api/lineage/{l3['obs_id']}", timeout=30)
    assert {x["obs_id"] for x in r.json()["rows"]} == set(server.archive.lineage(l3["obs_id"])["obs_id"])


def test_fuzz_json_endpoints_no_5xx(server):
    """Every operation of the OpenAPI description, with hostile values in every parameter: never a 5xx."""
    spec = requests.get(f"{server.url}/api/openapi.json", timeout=30).json()
    hostile = ["", "-1", "0", "1e309", "nan", "inf", "-inf", "abc", "../../etc/passwd", "%00", "'; DROP TABLE x;--",
               "9" * 400, "\u00e9\u4e2d", "1,2", "true", "L9", "WFI99", "null", " " * 50]
    rng = np.random.default_rng(0)
    statuses = []
    for path, ops in spec["paths"].items():
        for method, op in ops.items():
            if method not in ("get", "post"):
                continue
            names = [p["name"] for p in op.get("parameters", []) if p["in"] == "query"]
            path_params = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
            for k in range(12):
                url = path
                for p in path_params:
                    url = url.replace("{" + p + "}", requests.utils.quote(hostile[k % len(hostile)], safe="") or "x")
                query = {n: hostile[int(rng.integers(len(hostile)))] for n in names}
                body = None if method == "get" else json.dumps({"paths": [hostile[k]]} if k % 2 else hostile[k])
                r = requests.request(method, f"{server.url}{url}", params=query, data=body, timeout=60)
                statuses.append(r.status_code)
                assert r.status_code < 500, (method, url, query, r.status_code)
    assert len(statuses) > 50
