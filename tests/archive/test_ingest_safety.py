"""Ingest is idempotent, versioned, atomic per batch and safe under concurrency; bad input is refused clearly."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from romanflow.archive import Archive, ArchiveError
from romanflow.archive.synthetic import survey_records
from romanflow.cli import main

X1 = "r0000101001001001001_0001_wfi01"


def _consistent(arc):
    """Every registered product has exactly one current file, its footprint index and its lineage rows."""
    from sqlalchemy import text

    with arc.engine.connect() as conn:
        q = lambda sql: conn.execute(text(sql)).scalar()  # noqa: E731
        n = q("SELECT count(*) FROM obscore")
        assert q("SELECT count(*) FROM files WHERE status = 'current'") == n
        assert q("SELECT count(*) FROM obscore o JOIN files f ON f.file_id = o.file_id AND f.status = 'current'") == n
        assert q("SELECT count(*) FROM (SELECT obs_id FROM files WHERE status = 'current' "
                 "GROUP BY obs_id HAVING count(*) > 1) d") == 0
        assert q("SELECT count(*) FROM lineage l LEFT JOIN files f ON f.file_id = l.output_file_id "
                 "WHERE f.file_id IS NULL") == 0
        if arc.backend == "sqlite":
            assert q("SELECT count(*) FROM obscore o WHERE vertices IS NOT NULL AND NOT EXISTS "
                     "(SELECT 1 FROM footprint_cells c WHERE c.obs_pk = o.obs_pk)") == 0
        return n


def test_versions_and_idempotence(run_folder, open_archive, tmp_path):
    import shutil

    root = tmp_path / "root"
    (root / "l2").mkdir(parents=True)
    target = root / "l2" / f"{X1}_cal.asdf"
    shutil.copyfile(run_folder / "l2" / f"{X1}_cal.asdf", target)
    arc = open_archive(root=root)
    assert arc.ingest([root]).registered == [f"{X1}_cal"]
    assert not arc.ingest([root]).registered and arc.ingest([target]).unchanged == [f"{X1}_cal"]
    first = arc.product(f"{X1}_cal")
    shutil.copyfile(run_folder / "registered" / f"{X1}_cal.asdf", target)  # the file changed in place
    report = arc.ingest([target])
    assert report.updated == [f"{X1}_cal"]
    now = arc.product(f"{X1}_cal")
    assert now["version"] == 2 and now["sha256"] != first["sha256"]
    versions = arc.versions(f"{X1}_cal")
    assert list(versions["status"]) == ["superseded", "current"] and list(versions["sha256"])[0] == first["sha256"]
    assert _consistent(arc) == 1


def test_bad_files_are_reported_and_skipped(run_folder, open_archive, tmp_path):
    import asdf

    root = tmp_path / "root"
    root.mkdir()
    (root / "broken_cal.asdf").write_bytes(b"#ASDF 1.0.0\n%YAML 1.1\n--- !garbage [\n")
    (root / "random_cal.asdf").write_bytes(os.urandom(2048))
    (root / "empty_cat.parquet").write_bytes(b"")
    with asdf.open(run_folder / "registered" / f"{X1}_cal.asdf", lazy_load=False, memmap=False) as af:
        af.tree["roman"]["meta"]["wcs"] = None
        af.write_to(root / "nowcs_cal.asdf")
    arc = open_archive(root=root)
    report = arc.ingest([root])
    assert set(Path(p).name for p in report.failed) == {"broken_cal.asdf", "random_cal.asdf", "empty_cat.parquet"}
    assert all(p and "\n" not in p for p in report.failed.values())
    assert report.registered == ["nowcs_cal"] and report.flagged == {"nowcs_cal": "no_wcs"}
    row = arc.product("nowcs_cal")
    assert row["s_region"] is None and row["flags"] == "no_wcs"
    assert len(arc.search(ra=269.84, dec=65.96, radius=1.0)) == 0  # no footprint: never found by position
    assert list(arc.search(kind="cal")["obs_id"]) == ["nowcs_cal"]
    assert _consistent(arc) == 1


def test_cli_ingest_reports_failures_with_status_2(run_folder, tmp_path, capsys):
    root = tmp_path / "root"
    root.mkdir()
    (root / "broken_cal.asdf").write_bytes(b"not asdf at all")
    db = f"sqlite:///{root / 'archive.db'}"
    assert main(["archive", "ingest", str(root), str(run_folder / "l1"), "--db", db, "-q"]) == 2
    captured = capsys.readouterr()
    assert "broken_cal.asdf" in captured.err and len(captured.err.strip().splitlines()) == 1
    assert "2 new" in captured.out
    assert main(["archive", "search", "--db", db, "--kind", "uncal", "--format", "json"]) == 0
    import json

    rows = json.loads(capsys.readouterr().out)
    assert sorted(r["obs_id"] for r in rows) == [f"{X1}_uncal", "r0000101001001001001_0002_wfi01_uncal"]
    assert main(["archive", "search", "--db", db, "--format", "votable", "--ra", "269.84", "--dec", "65.96",
                 "--radius", "0.05"]) == 0
    from astropy.io.votable import parse_single_table
    import io

    table = parse_single_table(io.BytesIO(capsys.readouterr().out.encode())).to_table()
    assert len(table) == 2 and "s_region" in table.colnames
    assert main(["archive", "lineage", f"{X1}_uncal", "--down", "--db", db]) == 0
    assert main(["archive", "lineage", "nope", "--db", db]) == 2
    assert "nope: no such product" in capsys.readouterr().err


@pytest.mark.parametrize("url", [
    "postgresql://u@127.0.0.1:99999/x", "postgresql://u@127.0.0.1:notaport/x", "mysql://u@localhost/x",
    "sqlite://", "no scheme at all", "postgresql:///", "://", "sqlite:///" + "x" * 5000 + "/a.db",
])
def test_malformed_urls_are_one_line_errors(url, tmp_path):
    with pytest.raises(ArchiveError) as err:
        Archive.open(url, root=tmp_path)
    assert "\n" not in str(err.value)


def test_unreachable_server_fails_within_5_s(tmp_path, capsys):
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for url in (f"postgresql://u@127.0.0.1:{port}/x", "postgresql://u@10.255.255.1:5432/x"):
        start = time.perf_counter()
        assert main(["archive", "search", "--db", url, "--root", str(tmp_path), "--kind", "cal"]) == 2
        assert time.perf_counter() - start < 6.0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cannot open the archive" in err


INJECTIONS = ["F158'; DROP TABLE obscore; --", "1 OR 1=1", "x\"; DELETE FROM files; --", "' UNION SELECT * FROM files --"]


@pytest.mark.parametrize("value", INJECTIONS)
def test_injection_shaped_values_change_nothing(open_archive, value):
    arc = open_archive()
    arc.ingest_records(survey_records(40, seed=3, with_mosaics=False))
    before = arc.counts()
    for kwargs in ({"band": value}, {"detector": value}, {"kind": value}, {"level": value},
                   {"polygon": value}, {"time_range": (value, value)}, {"ra": value, "dec": 0, "radius": 1},
                   {"maxrec": value}):
        with pytest.raises(ArchiveError):
            arc.search(**kwargs)
    with pytest.raises(ArchiveError, match="no such product"):
        arc.product(value)
    with pytest.raises(ArchiveError, match="no such product"):
        arc.lineage(value)
    assert arc.cone_sources(0, 0, 1, catalog=value).colnames[:4] == ["catalog_obs_id", "row_index", "ra", "dec"]
    assert arc.counts() == before
    assert _consistent(arc) == before["obscore"]


def test_cli_refuses_an_injection_shaped_filter(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'archive.db'}"
    assert main(["archive", "search", "--db", db, "--filter", "F158'; DROP TABLE x; --"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--filter" in err
    assert not (tmp_path / "archive.db").exists()


_CHILD = textwrap.dedent("""
    import sys, time, pathlib
    import numpy as np
    from romanflow.archive import Archive, sphere
    from romanflow.archive.synthetic import cal_record
    url, root, marker, mode = sys.argv[1:5]

    def records(n):
        rng = np.random.default_rng(1)
        out = []
        for i in range(n):
            ra, dec = rng.uniform(0, 360), rng.uniform(-80, 80)
            h = 0.06
            v = sphere.xyz(ra + np.array([-h, h, h, -h]) / np.cos(np.radians(dec)), dec + np.array([-h, -h, h, h]))
            rec = cal_record(f"q{i:06d}_cal", v, detector="WFI01", band="F158", t_min=61557.0 + i)
            out.append((rec, {"uri": f"q/{i}.asdf", "sha256": f"{i:064d}", "size": 1, "mtime_ns": 0}))
        return out

    arc = Archive.open(url, root=root)
    recs = records(600)
    if mode == "kill":
        arc.ingest_records(recs[:90])                          # one committed batch
        insert = Archive._executemany

        def stall(self, conn, table, columns, rows):           # stop inside the second batch's transaction,
            if table == "obscore":                             # after its file rows are written
                pathlib.Path(marker).write_text("inside")
                time.sleep(600)
            return insert(self, conn, table, columns, rows)

        Archive._executemany = stall
        arc.ingest_records(recs[90:])
    else:
        for i in range(0, 600, 50):
            arc.ingest_records(recs[i:i + 50])
    print("finished")
""")


def _child(url, root, marker, mode):
    return subprocess.Popen([sys.executable, "-c", _CHILD, url, str(root), str(marker), mode],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _url(arc):
    return arc.engine.url.render_as_string(hide_password=False).replace("+psycopg", "")


def test_ingest_killed_mid_batch_leaves_nothing_half_registered(open_archive, tmp_path):
    arc = open_archive()
    marker = tmp_path / "marker"
    child = _child(_url(arc), arc.root, marker, "kill")
    deadline = time.time() + 120
    while not marker.exists() and time.time() < deadline and child.poll() is None:
        time.sleep(0.05)
    assert marker.exists(), child.stderr.read() if child.poll() is not None else "child never started"
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL  # it was killed before finishing its second batch
    assert _consistent(arc) == 90  # the first batch, all of it; nothing of the second
    child = _child(_url(arc), arc.root, marker, "race")  # the interrupted ingest simply runs again
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err[-2000:]
    assert _consistent(arc) == 600


def test_concurrent_ingests_register_each_product_once(open_archive, tmp_path):
    arc = open_archive()
    url = _url(arc)
    children = [_child(url, arc.root, tmp_path / f"m{i}", "race") for i in range(2)]
    for c in children:
        out, err = c.communicate(timeout=300)
        assert c.returncode == 0, err[-2000:]
    assert _consistent(arc) == 600
    from sqlalchemy import text

    with arc.engine.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM files")).scalar() == 600
        assert conn.execute(text("SELECT count(*) FROM lineage")).scalar() == 600 * 4
