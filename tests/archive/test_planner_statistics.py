"""After a bulk ingest the PostgreSQL planner knows the tables' sizes, so lineage and search use the indexes."""

import sys

from sqlalchemy import text

from romanflow.archive import Archive
from romanflow.archive.synthetic import survey_records


def _reltuples(arc, name):
    with arc.engine.connect() as conn:
        return float(conn.execute(text("SELECT reltuples FROM pg_class WHERE relname = :n"), {"n": name}).scalar())


def test_bulk_ingest_refreshes_statistics_and_lineage_uses_indexes(postgres_url, tmp_path):
    arc = Archive.open(sys.modules["romanflow_tests_postgres"].new_database(), root=tmp_path)
    try:
        records = survey_records(3000, seed=3)
        arc.ingest_records(records[:1500])
        arc.ingest_records(records[1500:])
        n = len(records)
        # never-sampled tables report -1 and the planner assumes a near-empty table (autovacuum samples
        # them only after its naptime): the planner must see the rows now
        assert _reltuples(arc, "obscore") > 0.8 * n
        assert _reltuples(arc, "files") > 0.8 * n
        assert _reltuples(arc, "lineage") > 0.5 * n
        cal = next(r.obs_id for r, _ in records if r.kind == "cal")
        with arc.engine.connect() as conn:
            plan = "\n".join(r[0] for r in conn.execute(text(
                "EXPLAIN SELECT l.output_obs_id FROM lineage l JOIN files f ON f.file_id = l.output_file_id "
                "WHERE f.status = 'current' AND l.input_obs_id = :i"), {"i": cal}))
        assert "Seq Scan on files" not in plan, plan
        down = arc.lineage(cal, "down")
        assert len(down) == 2  # its mosaic and the mosaic's catalog
        # a small ingest afterwards does not re-sample (under a fifth of the table)
        before = _reltuples(arc, "obscore")
        extra = survey_records(30, seed=4, region=(200.0, 10.0, 1.0), with_mosaics=False)
        arc.ingest_records(extra)
        assert _reltuples(arc, "obscore") == before
    finally:
        arc.close()
