"""The reprocessing loop's question: which products must be redone under a new reference context?

A product is *stale* when, for a reference type it recorded (``meta.ref_file``), the best reference
under the context (same rules as :mod:`romanflow.refdata`: parkeys, fewest ``N/A``, latest USEAFTER
on or before the exposure start) is not the file it was made with; everything made from a stale
product (through lineage, references excluded) is stale too.

Selection runs once per group of products sharing detector, filter, exposure type, MA table and
recorded references, and is vectorised over their start times, so a million products take seconds.
"""

from __future__ import annotations

import json
from collections import defaultdict

import numpy as np

from romanflow.archive.tables import rows_to_table
from romanflow.refdata.context import Context, _mjd, is_not_applicable

STALE_COLUMNS = (
    ("obs_id", "str", "", "stale product"),
    ("reason", "str", "", "reference (its own references changed) or downstream (made from a stale product)"),
    ("detail", "str", "", "reftype: recorded -> best now; or the stale product it was made from"),
    ("product_kind", "str", "", ""),
    ("product_level", "str", "", ""),
)


def load_context(context=None) -> Context:
    """A Context from a context file, a Context, a store, or None (the embedded default store's)."""
    from romanflow.refdata.selection import as_context

    return as_context(context)


def _group_meta(detector, element, exp_type, ma_table) -> dict:
    return {"instrument": {"detector": detector, "optical_element": element},
            "exposure": {"type": exp_type, "ma_table_number": ma_table}}


def _best_names(ctx: Context, reftype: str, meta: dict, t_mjd: np.ndarray) -> np.ndarray:
    """Best file name (object array; None where nothing applies) of ``reftype`` at each time."""
    rules = ctx.rules.get(reftype)
    out = np.full(len(t_mjd), None, dtype=object)
    if not rules:
        return out
    by_exact = defaultdict(list)
    for rule in rules:
        ok, exact = rule.matches(meta)
        if ok:
            for date, name in rule.useafter.items():
                by_exact[exact].append((_mjd(date), name))
    todo = np.ones(len(t_mjd), bool)
    for exact in sorted(by_exact, reverse=True):
        cands = sorted(by_exact[exact], key=lambda c: c[0])
        dates = np.array([c[0] for c in cands])
        idx = np.searchsorted(dates, t_mjd, side="right") - 1
        take = todo & (idx >= 0)
        names = np.array([c[1] for c in cands], dtype=object)
        out[take] = names[idx[take]]
        todo &= ~take
    return out


def reference_stale(arc, context=None) -> dict:
    """obs_id -> "reftype: recorded -> best" for products whose own references changed."""
    from pathlib import Path

    ctx = load_context(context)
    groups = defaultdict(lambda: ([], []))
    with arc.engine.connect() as conn:
        cur = conn.exec_driver_sql(
            "SELECT obs_id, detector, optical_element, exposure_type, ma_table_number, t_min, ref_files "
            "FROM obscore WHERE ref_files IS NOT NULL")
        for obs_id, det, elem, etype, ma, t_min, refs in cur:
            ids, times = groups[(det, elem, etype, ma, refs)]
            ids.append(obs_id)
            times.append(np.nan if t_min is None else t_min)
    stale = {}
    for (det, elem, etype, ma, refs), (ids, times) in groups.items():
        recorded = json.loads(refs)
        meta = _group_meta(det, elem, etype, ma)
        t = np.asarray(times, float)
        for reftype, name in sorted(recorded.items()):
            if reftype not in ctx.rules:
                continue
            best = _best_names(ctx, reftype, meta, np.where(np.isfinite(t), t, -np.inf))
            base = {b: (None if b is None or is_not_applicable(b) else Path(str(b)).name) for b in set(best.tolist())}
            names = np.array([base[b] for b in best.tolist()], dtype=object)
            for i in np.flatnonzero(names != name):
                if ids[i] not in stale:
                    stale[ids[i]] = f"{reftype}: {name} -> {names[i] or 'none'}"
    return stale


def stale_products(arc, context=None):
    """Table of every stale product (its own references changed, or made from one), by depth."""
    from sqlalchemy import select

    own = reference_stale(arc, context)
    rows = [{"obs_id": k, "reason": "reference", "detail": v} for k, v in sorted(own.items())]
    # downstream, remembering which stale product each was reached from
    lin, f, o = arc.t["lineage"], arc.t["files"], arc.t["obscore"]
    seen = set(own)
    frontier = sorted(own)
    with arc.engine.connect() as conn:
        while frontier:
            nxt = []
            for k in range(0, len(frontier), 500):
                stmt = (select(lin.c.input_obs_id, lin.c.output_obs_id).join(f, f.c.file_id == lin.c.output_file_id)
                        .where(f.c.status == "current", lin.c.role != "reference",
                               lin.c.input_obs_id.in_(frontier[k:k + 500])))
                for src, dst in conn.execute(stmt):
                    if dst not in seen:
                        seen.add(dst)
                        nxt.append(dst)
                        rows.append({"obs_id": dst, "reason": "downstream", "detail": src})
            frontier = sorted(nxt)
        kinds = {}
        ids = [r["obs_id"] for r in rows]
        for k in range(0, len(ids), 500):
            for oid, kind, level in conn.execute(select(o.c.obs_id, o.c.product_kind, o.c.product_level)
                                                 .where(o.c.obs_id.in_(ids[k:k + 500]))):
                kinds[oid] = (kind, level)
    for r in rows:
        r["product_kind"], r["product_level"] = kinds.get(r["obs_id"], (None, None))
    return rows_to_table(rows, STALE_COLUMNS)
