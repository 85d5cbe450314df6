"""The archive and survey runs: register products as a run writes them, and redo exactly what is stale.

``romanflow run PLAN -o DIR --archive URL`` registers every product of each task as the task finishes
(and, at the end, every product of the plan already on disk, so a resumed run's archive is complete).
``romanflow run PLAN -o DIR --archive URL --reprocess [--context FILE]`` asks the archive which
products are stale under the context (:mod:`romanflow.archive.stale`), redoes the calibration tasks of
the products whose own references changed and every task downstream of them in the plan's graph, and
registers the new versions; every other product is left as it is.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from pathlib import Path

from romanflow.archive.core import PRODUCT_PATTERNS, Archive, ArchiveError


def is_product_file(path) -> bool:
    """Whether a file written by a run is a product the archive registers (not truth, scene, ledger)."""
    p = Path(path)
    return p.is_file() and "truth" not in p.parts and any(fnmatch.fnmatch(p.name, pat) for pat in PRODUCT_PATTERNS)


def registering(arc: Archive):
    """An ``on_done`` callback for :func:`romanflow.run.run_graph` registering each task's products."""

    def on_done(summary: dict) -> None:
        files = [p for p in summary.get("products", []) if is_product_file(p)]
        if not files:
            return
        report = arc.ingest(files)
        if report.failed:
            path, problem = next(iter(report.failed.items()))
            raise ArchiveError(f"could not register {path}: {problem}")

    return on_done


def _task_products(graph, key) -> set:
    """Files a task writes: those the graph names and those its ledger record lists (side products)."""
    from romanflow.run.ledger import Ledger

    out = {str(p) for p in graph.tasks[key].products}
    entry = Ledger(graph.root).done(key)
    out.update(str(graph.root / item["path"]) for item in (entry or {}).get("products", []))
    return out


def register_graph(arc: Archive, graph):
    """Register every product of ``graph`` present on disk (idempotent); returns the IngestReport."""
    candidates = {p for key in graph.tasks for p in _task_products(graph, key)}
    return arc.ingest(sorted(p for p in candidates if is_product_file(p)))


@dataclass
class ReprocessPlan:
    """What a reprocessing run will redo."""

    stale: object  #: the stale table (obs_id, reason, detail, ...)
    seeds: set = field(default_factory=set)  #: tasks whose products' own references changed
    redo: set = field(default_factory=set)  #: seeds and every task downstream of them
    not_in_plan: list = field(default_factory=list)  #: stale products no task of this plan writes


def plan_reprocessing(arc: Archive, graph, context=None) -> ReprocessPlan:
    """The tasks of ``graph`` to redo so that no product registered in ``arc`` is stale under ``context``."""
    from romanflow.archive.stale import stale_products
    from romanflow.run.graph import downstream_tasks, product_stem, tasks_producing

    table = stale_products(arc, context)
    own = {r["obs_id"] for r in table if r["reason"] == "reference"}
    seeds = tasks_producing(graph, own, kinds=("calibrate",))
    redo = downstream_tasks(graph, seeds)
    written = {product_stem(p) for key in redo for p in _task_products(graph, key)}
    missing = sorted(set(table["obs_id"]) - written)
    return ReprocessPlan(table, seeds, redo, missing)


def run_with_archive(plan, output_dir, archive_url, *, root=None, reprocess: bool = False, context=None,
                     workers=None, scheduler=None, memory_limit=None, progress=True, quiet=False):
    """Run ``plan`` into ``output_dir`` registering products in the archive; with ``reprocess`` redo only
    what is stale under ``context``. Returns ``(RunReport, ReprocessPlan or None, final IngestReport)``."""
    from romanflow.run.executors import make_executor, run_graph
    from romanflow.run.graph import build_graph
    from romanflow.run.ledger import output_lock

    graph = build_graph(plan, output_dir, context=context)
    if root is None and not str(archive_url).startswith("sqlite"):
        root = graph.root
    arc = Archive.open(archive_url, root=root)  # an unreachable server stops the run before any work
    try:
        todo = None
        if reprocess:
            todo = plan_reprocessing(arc, graph, context)
            if todo.not_in_plan:
                raise ArchiveError(f"{len(todo.not_in_plan)} stale product(s) are not written by this plan "
                                   f"(first: {todo.not_in_plan[0]}): reprocess them with the plan that made them")
        with output_lock(graph.root):
            executor = make_executor(workers=workers, scheduler=scheduler, memory_limit=memory_limit, quiet=quiet)
            try:
                report = run_graph(graph, executor, progress=progress, raise_on_failure=False,
                                   on_done=registering(arc), redo=todo.redo if todo else ())
            finally:
                executor.close()
        final = register_graph(arc, graph)
        for path, problem in final.failed.items():
            report.hook_failures.setdefault(f"register {Path(path).name}", problem)
        return report, todo, final
    finally:
        arc.close()
