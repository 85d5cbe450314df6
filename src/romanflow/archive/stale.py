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


def _matching(ctx: Context, reftype: str, meta: dict) -> dict:
    """exactness -> [(USEAFTER MJD, file name), ...] (by date) of the rules of ``reftype`` matching ``meta``."""
    by_exact = defaultdict(list)
    for rule in ctx.rules.get(reftype) or ():
        ok, exact = rule.matches(meta)
        if ok:
            for date, name in rule.useafter.items():
                by_exact[exact].append((_mjd(date), name))
    return {exact: sorted(cands, key=lambda c: c[0]) for exact, cands in by_exact.items()}


def _best_names(matching: dict, t_mjd: np.ndarray) -> np.ndarray:
    """Best file name (object array; None where nothing applies) at each time, from :func:`_matching`'s rules:
    the most exact rules first, then the latest USEAFTER on or before the time."""
    out = np.full(len(t_mjd), None, dtype=object)
    todo = np.ones(len(t_mjd), bool)
    for exact in sorted(matching, reverse=True):
        cands = matching[exact]
        dates = np.array([c[0] for c in cands])
        idx = np.searchsorted(dates, t_mjd, side="right") - 1
        take = todo & (idx >= 0)
        names = np.array([c[1] for c in cands], dtype=object)
        out[take] = names[idx[take]]
        todo &= ~take
    return out


def _stale_intervals(matching: dict, recorded: str, t_lo: float | None, t_hi: float | None, untimed: bool):
    """Start-time intervals ``(lo, hi, best)`` of a group where the best file is not ``recorded``.

    The best file is constant between consecutive USEAFTER dates, so it is evaluated once per piece of
    [t_lo, t_hi]; ``lo``/``hi`` None are open ends. With ``untimed`` (products without a start time, whose
    best is taken at -inf) an interval ``("untimed", None, best)`` is added when that best differs too.
    """
    from pathlib import Path

    def base(b):
        return None if b is None or is_not_applicable(b) else Path(str(b)).name

    out = []
    if untimed:
        best = base(_best_names(matching, np.array([-np.inf]))[0])
        if best != recorded:
            out.append(("untimed", None, best))
    if t_lo is None:
        return out
    dates = sorted({d for cands in matching.values() for d, _ in cands if t_lo < d <= t_hi})
    starts = [t_lo, *dates]
    bests = [base(b) for b in _best_names(matching, np.array(starts, float)).tolist()]
    for k, (start, best) in enumerate(zip(starts, bests)):
        if best != recorded:
            out.append((None if k == 0 else start, starts[k + 1] if k + 1 < len(starts) else None, best))
    return out


def reference_stale(arc, context=None) -> dict:
    """obs_id -> "reftype: recorded -> best" for products whose own references changed.

    The products are grouped in the database by what decides their references (detector, filter, exposure
    type, MA table, recorded references) with each group's span of start times; only the products in the
    time intervals where a best reference differs are then read. Reading every product's references was
    most of the time at 1e6 products.
    """
    from sqlalchemy import and_, func, select

    ctx = load_context(context)
    o = arc.t["obscore"]
    keys = (o.c.detector, o.c.optical_element, o.c.exposure_type, o.c.ma_table_number, o.c.ref_files)
    stale = {}
    with arc.engine.connect() as conn:
        groups = conn.execute(select(*keys, func.min(o.c.t_min), func.max(o.c.t_min), func.count(o.c.t_min),
                                     func.count()).where(o.c.ref_files.is_not(None)).group_by(*keys)).all()
        for det, elem, etype, ma, refs, t_lo, t_hi, n_timed, n in groups:
            recorded = json.loads(refs)
            meta = _group_meta(det, elem, etype, ma)
            same_group = [c.is_not_distinct_from(v) for c, v in zip(keys, (det, elem, etype, ma, refs))]
            for reftype, name in sorted(recorded.items()):
                if reftype not in ctx.rules:
                    continue
                matching = _matching(ctx, reftype, meta)
                for lo, hi, best in _stale_intervals(matching, name, t_lo, t_hi, n_timed < n):
                    if lo == "untimed":
                        when = [o.c.t_min.is_(None)]
                    else:
                        when = ([] if lo is None else [o.c.t_min >= lo]) + ([] if hi is None else [o.c.t_min < hi])
                        when.append(o.c.t_min.is_not(None))
                    for (obs_id,) in conn.execute(select(o.c.obs_id).where(and_(*same_group, *when))):
                        if obs_id not in stale:
                            stale[obs_id] = f"{reftype}: {name} -> {best or 'none'}"
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
            for clause in arc.in_clauses(lin.c.input_obs_id, frontier):
                stmt = (select(lin.c.input_obs_id, lin.c.output_obs_id).join(f, f.c.file_id == lin.c.output_file_id)
                        .where(f.c.status == "current", lin.c.role != "reference", clause))
                for src, dst in conn.execute(stmt):
                    if dst not in seen:
                        seen.add(dst)
                        nxt.append(dst)
                        rows.append({"obs_id": dst, "reason": "downstream", "detail": src})
            frontier = sorted(nxt)
        kinds = {}
        ids = [r["obs_id"] for r in rows]
        for clause in arc.in_clauses(o.c.obs_id, ids):
            for oid, kind, level in conn.execute(select(o.c.obs_id, o.c.product_kind, o.c.product_level)
                                                 .where(clause)):
                kinds[oid] = (kind, level)
    for r in rows:
        r["product_kind"], r["product_level"] = kinds.get(r["obs_id"], (None, None))
    return rows_to_table(rows, STALE_COLUMNS)
