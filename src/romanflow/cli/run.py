"""``romanflow plan`` (write a survey plan) and ``romanflow run`` (run one, in-process or on Dask)."""

from __future__ import annotations

import sys
from pathlib import Path

from romanflow.cli.options import (
    name_token,
    non_negative_int,
    add_command,
    add_detectors,
    add_ma_table,
    add_output_dir,
    add_size,
    filter_name,
    finite_float,
    latitude,
    memory_size,
    non_negative_float,
    output_file,
    positive_float,
    positive_int,
)

#: Exit status of ``romanflow run`` when a task failed or an exposure could not be registered.
EXIT_TASKS_FAILED = 2


def register(subparsers) -> None:
    from romanflow.detector import DEFAULT_MA_TABLE
    from romanflow.run.plan import DITHER_PATTERNS

    p = add_command(subparsers, "plan", help="write a survey plan (YAML) tiling a field with WFI pointings",
                              description="Tile a square field with WFI pointings, observed in each filter at "
                                          "each dither position, and write the plan as YAML.")
    p.add_argument("--ra", type=finite_float, required=True, help="field centre RA (deg)")
    p.add_argument("--dec", type=latitude, required=True, help="field centre Dec (deg, -90 to 90)")
    p.add_argument("--size-deg", type=positive_float, required=True, help="side of the square field (deg, > 0)")
    p.add_argument("--filters", nargs="+", type=filter_name, default=["F158"], metavar="Fnnn",
                   help="imaging filters (default F158)")
    p.add_argument("--dither", choices=tuple(DITHER_PATTERNS), default="none", help="dither pattern (default none)")
    add_detectors(p, default=["all"])
    add_size(p)
    add_ma_table(p, default=DEFAULT_MA_TABLE)
    p.add_argument("--pa", type=finite_float, default=0.0, help="position angle (deg, default 0)")
    p.add_argument("--pointing-error-rms", type=non_negative_float, default=0.0, metavar="ARCSEC",
                   help="r.m.s. per axis of the random pointing errors to simulate (arcsec, default 0)")
    p.add_argument("--density", type=positive_float, default=None, help="sources per arcmin² (> 0, default 150)")
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed of the scene and pointing errors (default 0)")
    p.add_argument("--name", type=name_token, default="survey", help="survey name, used in product names (default survey)")
    p.add_argument("-o", "--output", type=output_file, required=True, metavar="FILE", help="plan file to write (YAML)")
    p.set_defaults(func=run_plan_command)

    r = add_command(subparsers, "run", help="run a survey plan: simulate, calibrate, register, mosaic, catalog",
                              description="Run a survey plan (YAML, or a folder of L1/L2 files) as one task graph. "
                                          "Finished tasks are recorded in DIR/ledger; running again resumes. "
                                          "One run at a time may use DIR (a second is refused). The summary "
                                          "names every failed task and every exposure that could not be "
                                          f"registered; the exit status is then {EXIT_TASKS_FAILED} "
                                          "(0 when every task finished and every exposure registered).")
    r.add_argument("plan", help="plan YAML file, or a folder of *_uncal.asdf / *_cal.asdf files")
    add_output_dir(r, required=True, help="folder for the products and the ledger")
    where = r.add_mutually_exclusive_group()
    where.add_argument("--workers", type=positive_int, help="start a local Dask cluster with N worker processes")
    where.add_argument("--scheduler", help="use an existing Dask scheduler, e.g. tcp://host:8786")
    r.add_argument("--memory-limit", type=memory_size, default=None,
                   help="per-worker memory limit for --workers, e.g. 8GiB")
    r.add_argument("--refcat", default=None, help="astrometric reference catalog for a folder of files")
    r.add_argument("--dry-run", action="store_true", help="check the plan and list the tasks, run nothing")
    r.add_argument("--no-progress", action="store_true", help="no progress bar (also implied by -q)")
    r.add_argument("--archive", metavar="URL", help="register every product as it is written in this archive "
                   "(sqlite:///DIR/archive.db or postgresql://user@host:port/db)")
    r.add_argument("--archive-root", metavar="DIR", help="archive root folder (default: the SQLite database's "
                   "folder; the output folder for PostgreSQL)")
    r.add_argument("--reprocess", action="store_true", help="with --archive: redo exactly the tasks whose "
                   "products are stale under the reference context (and everything downstream of them)")
    r.add_argument("--context", metavar="CONTEXT.yaml", help="reference context for calibration (default: "
                   "the embedded store's)")
    r.set_defaults(func=run_command)


def run_plan_command(args) -> int:
    from romanflow.cli.options import detector_list
    from romanflow.run.plan import tiled_plan, write_plan

    detectors = detector_list(args.detectors)
    scene = {"seed": args.seed}
    if args.density is not None:
        scene["density_per_arcmin2"] = args.density
    plan = tiled_plan(args.ra, args.dec, args.size_deg, args.filters, dither=args.dither, detectors=detectors,
                      science_size=args.size, ma_table=args.ma_table, pa=args.pa,
                      pointing_error_arcsec=args.pointing_error_rms, seed=args.seed, name=args.name, scene=scene)
    path = write_plan(plan, args.output)
    print(f"{path}: {len(plan.exposures)} exposures, {plan.n_detectors} detector exposures, "
          f"filters {' '.join(plan.filters)}")
    return 0


def run_command(args) -> int:
    from collections import Counter

    from romanflow.run.executors import make_executor, run_graph
    from romanflow.run.graph import build_graph
    from romanflow.run.ledger import output_lock
    from romanflow.run.plan import load_plan

    plan = load_plan(args.plan)
    if args.refcat:
        plan.refcat = str(Path(args.refcat))
    if args.reprocess and not args.archive:
        from romanflow.errors import ParameterError

        raise ParameterError("--reprocess", True, "needs --archive URL (the archive says what is stale)")
    if args.context and not Path(args.context).is_file():
        from romanflow.errors import InputFileError

        raise InputFileError(args.context, "no such context file")
    if args.archive and not args.dry_run:
        return _run_with_archive(args, plan)
    graph = build_graph(plan, args.output_dir, context=args.context)
    kinds = Counter(t.kind for t in graph)
    print(f"{plan.source}: {len(graph)} tasks (" + ", ".join(f"{n} {k}" for k, n in kinds.items()) + ")")
    if args.dry_run:
        for t in graph:
            print(f"  {t.key}  <- {', '.join(t.deps) or '-'}")
        return 0
    with output_lock(graph.root):  # before a cluster starts: a second run into the folder stops at once
        executor = make_executor(workers=args.workers, scheduler=args.scheduler, memory_limit=args.memory_limit,
                                 quiet=args.quiet)
        try:
            report = run_graph(graph, executor, progress=not (args.no_progress or args.quiet),
                               raise_on_failure=False)
        finally:
            executor.close()
    return _summarise(args, graph, report)


def _run_with_archive(args, plan) -> int:
    from romanflow.archive.runs import run_with_archive
    from romanflow.run.graph import build_graph

    report, todo, final = run_with_archive(plan, args.output_dir, args.archive, root=args.archive_root,
                                           reprocess=args.reprocess, context=args.context, workers=args.workers,
                                           scheduler=args.scheduler, memory_limit=args.memory_limit,
                                           progress=not (args.no_progress or args.quiet), quiet=args.quiet)
    graph = build_graph(plan, args.output_dir, context=args.context)
    if todo is not None:
        print(f"reprocess: {len(todo.stale)} stale product(s); redoing {len(todo.redo)} task(s): "
              + (", ".join(sorted(todo.redo)) or "none"))
    print(f"archive {args.archive}: {final.summary()} at the end of the run")
    return _summarise(args, graph, report)


def _summarise(args, graph, report) -> int:
    rate = 60.0 * report.detectors / report.wall_s if report.wall_s > 0 and report.detectors else 0.0
    print(f"{graph.root}: {len(report.done)} task(s) run, {len(report.skipped)} already done, "
          f"{len(report.failed)} failed, {report.wall_s:.1f} s on {report.executor}"
          + (f", {rate:.2f} detectors/minute" if rate else ""))
    for key, problem in report.failed.items():
        print(f"  failed: {key}: {problem}")
    for key, reason in report.registration_failures.items():
        print(f"  not registered: {key}: {reason}")
    for key, problem in report.hook_failures.items():
        print(f"  not archived: {key}: {problem}")
    problems = []
    if report.failed:
        problems.append(f"{len(report.failed)} of {len(graph)} task(s) failed (first: {next(iter(report.failed))})")
    if report.registration_failures:
        problems.append(f"{len(report.registration_failures)} exposure(s) not registered "
                        f"(first: {next(iter(report.registration_failures))})")
    if report.hook_failures:
        problems.append(f"{len(report.hook_failures)} task(s) not archived (first: {next(iter(report.hook_failures))})")
    if problems:
        print(f"{args.command_name}: error: {graph.root}: " + "; ".join(problems)
              + "; see the summary on standard output (finished tasks are kept: run again to resume)",
              file=sys.stderr)
        return EXIT_TASKS_FAILED
    return 0
