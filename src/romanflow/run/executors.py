"""Run a task graph in-process, on a local Dask cluster, or on an existing Dask scheduler.

The executor only orders and dispatches tasks; the work is in
:mod:`romanflow.run.tasks`. Every executor

* skips tasks the ledger records as done (so a rerun resumes a killed run),
* clears the hidden ``.*.partial`` folders a killed run (or a killed Dask worker) left behind,
  before and after running,
* keeps going past a failed task with the tasks that do not depend on it, then
  raises one error naming the first failure (or, on request, only reports it),
* collects the exposures whose registration failed (the task finished, its products
  keep the unregistered WCS), from this run and from the ledger,
* holds an exclusive lock on the output folder for the whole run, so that a second
  run into the same folder is refused instead of repeating the work,
* reports progress over tasks (tqdm).

On Dask each worker runs one task at a time (one thread), with numba capped to
one thread and a memory limit per worker, so a task's memory is bounded by
the worker's limit.
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

from romanflow.errors import RomanflowError
from romanflow.run.graph import TaskGraph
from romanflow.run.ledger import Ledger, output_lock, remove_partials
from romanflow.run.tasks import execute

#: What makes one task fail while the others go on: bad input (named by the error), a full disk or lost
#: file, too little memory. Any other exception is a programming error and stops the run with its traceback.
TASK_FAILURES = (RomanflowError, OSError, MemoryError)

#: Seconds to wait for an existing scheduler before giving up.
CONNECT_TIMEOUT_S = 5.0


@dataclass
class RunReport:
    """What a run did."""

    executor: str
    n_tasks: int
    done: list = field(default_factory=list)  #: task summaries run now
    skipped: list = field(default_factory=list)  #: keys found complete in the ledger
    failed: dict = field(default_factory=dict)  #: key -> error text
    registration_failures: dict = field(default_factory=dict)  #: register task key -> reason
    wall_s: float = 0.0
    detectors: int = 0  #: detector exposures calibrated in this run
    forced: list = field(default_factory=list)  #: keys run again although the ledger had them (reprocessing)
    on_done: object = None  #: called with each finished task's summary (e.g. registering its products)
    hook_failures: dict = field(default_factory=dict)  #: key -> error of ``on_done`` for that task

    def add_done(self, summary: dict) -> None:
        """Record a finished task and hand it to ``on_done`` (whose errors are kept, not raised)."""
        self.done.append(summary)
        if self.on_done is not None and not summary.get("skipped"):
            try:
                self.on_done(summary)
            except TASK_FAILURES as exc:
                self.hook_failures[summary["key"]] = f"{type(exc).__name__}: {exc}"

    def seconds_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for s in self.done:
            out[s["kind"]] = out.get(s["kind"], 0.0) + s["seconds"]
        return out


def _bar(total: int, enabled: bool, desc: str):
    from tqdm import tqdm

    return tqdm(total=total, unit="task", desc=desc, disable=not enabled, file=sys.stderr)


class InProcessExecutor:
    """Run tasks one after another in this process (the default)."""

    name = "in-process"

    def __init__(self, numba_threads: int | None = None):
        self.numba_threads = numba_threads

    def run(self, graph: TaskGraph, todo: list, report: RunReport, progress: bool) -> None:
        root = str(graph.root)
        broken: set[str] = set()
        with _bar(len(todo), progress, "romanflow run") as bar:
            for task in todo:
                if any(d in broken for d in task.deps):
                    broken.add(task.key)
                    report.failed.setdefault(task.key, "a task it needs failed")
                    bar.update(1)
                    continue
                try:
                    summary = execute(task, root, self.numba_threads, force=task.key in report.forced)
                except TASK_FAILURES as exc:
                    broken.add(task.key)
                    report.failed[task.key] = f"{type(exc).__name__}: {exc}"
                else:
                    report.add_done(summary)
                bar.set_postfix_str(task.key[:40])
                bar.update(1)

    def close(self) -> None:
        pass


class DaskExecutor:
    """Submit tasks to a Dask distributed cluster: a new local one, or an existing scheduler."""

    def __init__(self, *, workers: int | None = None, scheduler: str | None = None, memory_limit=None,
                 numba_threads: int = 1, quiet: bool = False):
        from distributed import Client, LocalCluster

        self.cluster = None
        self.numba_threads = numba_threads
        if scheduler:
            self.name = f"dask scheduler {scheduler}"
            try:
                self.client = Client(scheduler, timeout=CONNECT_TIMEOUT_S)
            except (OSError, TimeoutError) as exc:
                raise RomanflowError(f"cannot reach the Dask scheduler at {scheduler} within "
                                     f"{CONNECT_TIMEOUT_S:.0f} s ({type(exc).__name__}): is it running?") from None
            except ValueError as exc:
                raise RomanflowError(f"bad scheduler address {scheduler!r}: {exc}") from None
        else:
            import logging

            n = int(workers or 1)
            if n < 1:
                raise RomanflowError(f"--workers must be at least 1, got {n}")
            if memory_limit is None:
                memory_limit = _default_memory_limit(n)
            self.name = f"dask local cluster ({n} workers)"
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=":0",
                                        memory_limit=memory_limit, silence_logs=logging.ERROR,
                                        env={"NUMBA_NUM_THREADS": str(numba_threads),
                                             "OMP_NUM_THREADS": "1"})
            self.client = Client(self.cluster)
        if not quiet:
            print(f"romanflow run: {self.name}; dashboard {self.client.dashboard_link}", file=sys.stderr)

    def run(self, graph: TaskGraph, todo: list, report: RunReport, progress: bool) -> None:
        import uuid
        from concurrent.futures import CancelledError

        from distributed import KilledWorker, as_completed

        root = str(graph.root)
        tag = uuid.uuid4().hex[:8]
        futures, keys = {}, {}
        for task in todo:
            deps = [futures[d] for d in task.deps if d in futures]
            fut = self.client.submit(execute, task, root, self.numba_threads, *deps, key=f"{task.key}-{tag}",
                                     pure=False, force=task.key in report.forced)
            futures[task.key] = fut
            keys[fut.key] = task.key
        with _bar(len(todo), progress, "romanflow run") as bar:
            for fut in as_completed(list(futures.values())):
                key = keys[fut.key]
                try:
                    summary = fut.result()
                except (*TASK_FAILURES, KilledWorker, CancelledError) as exc:  # a worker lost is a failed task
                    report.failed[key] = f"{type(exc).__name__}: {exc}"
                else:
                    report.add_done(summary)
                bar.set_postfix_str(key[:40])
                bar.update(1)

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()


def _default_memory_limit(n_workers: int) -> int:
    """Bytes per worker: the machine's memory shared evenly, at most 16 GiB (a full detector needs ~4-8)."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        total = 16 * 2**30
    return int(min(total / n_workers, 16 * 2**30))


def make_executor(*, workers: int | None = None, scheduler: str | None = None, memory_limit=None,
                  quiet: bool = False):
    """In-process without ``workers``/``scheduler``; a Dask executor otherwise."""
    if workers and scheduler:
        raise RomanflowError("give --workers (start a local cluster) or --scheduler (use one), not both")
    if scheduler or workers:
        return DaskExecutor(workers=workers, scheduler=scheduler, memory_limit=memory_limit, quiet=quiet)
    return InProcessExecutor()


def run_graph(graph: TaskGraph, executor=None, *, progress: bool = True,
              raise_on_failure: bool = True, on_done=None, redo=()) -> RunReport:
    """Run every task of ``graph`` not yet recorded as done, and the tasks in ``redo`` again.

    ``on_done(summary)`` is called in this process after each task that ran (its ``products`` are
    the files written); its errors are collected in the report's ``hook_failures``.
    Raises a RomanflowError naming the first failed task if any failed (unless not
    ``raise_on_failure``: the report's ``failed`` then says it), and one naming the
    folder if another run holds it (:func:`~romanflow.run.ledger.output_lock`).
    """
    executor = executor or InProcessExecutor()
    unknown = sorted(set(redo) - set(graph.tasks))
    if unknown:
        raise RomanflowError(f"cannot redo unknown task(s) {', '.join(unknown[:5])}")
    with output_lock(graph.root):
        report = _run_locked(graph, executor, progress, on_done=on_done, redo=set(redo))
    if report.failed and raise_on_failure:
        first = next(iter(report.failed.items()))
        raise RomanflowError(f"{len(report.failed)} of {report.n_tasks - len(report.skipped)} task(s) failed; "
                             f"first: {first[0]}: {first[1]} (finished tasks are kept: run again to resume)")
    return report


def _run_locked(graph: TaskGraph, executor, progress: bool, *, on_done=None, redo=frozenset()) -> RunReport:
    remove_partials(graph.root)
    ledger = Ledger(graph.root)
    report = RunReport(executor=executor.name, n_tasks=len(graph), on_done=on_done)
    report.forced = sorted(k for k in redo if ledger.done(k) is not None)
    todo, infos = [], {}
    for task in graph:
        entry = None if task.key in redo else ledger.done(task.key)
        if entry is not None:
            report.skipped.append(task.key)
            infos[task.key] = entry.get("info") or {}
        else:
            todo.append(task)
    start = time.perf_counter()
    executor.run(graph, todo, report, progress)
    report.wall_s = time.perf_counter() - start
    # a worker that died while writing left its hidden partial folder; no task runs now
    remove_partials(graph.root)
    detector_tasks = {t.key for t in graph if t.detectors}
    report.detectors = sum(1 for s in report.done if s["key"] in detector_tasks and not s["skipped"])
    infos.update({s["key"]: s.get("info") or {} for s in report.done})
    for task in graph:
        info = infos.get(task.key)
        if task.kind == "register" and info is not None and info.get("status") not in ("SUCCESS", None):
            report.registration_failures[task.key] = str(info.get("reason") or info.get("status"))
    return report


def run_plan(plan, output_dir, *, workers: int | None = None, scheduler: str | None = None, memory_limit=None,
             progress: bool = True, quiet: bool = False, on_done=None, context=None, redo=()) -> RunReport:
    """Check the plan, build its graph, connect the executor, then run; nothing is written before all that works.

    ``on_done``, ``redo``: see :func:`run_graph`; ``context``: reference context file for calibration.
    """
    from romanflow.run.graph import build_graph

    graph = build_graph(plan, output_dir, context=context)
    executor = make_executor(workers=workers, scheduler=scheduler, memory_limit=memory_limit, quiet=quiet)
    try:
        return run_graph(graph, executor, progress=progress, on_done=on_done, redo=redo)
    finally:
        executor.close()
