"""``romanflow archive``: register products, search them, walk their lineage, list what is stale."""

from __future__ import annotations

import sys

from romanflow.cli.options import (add_command, detector, filter_name, finite_float, latitude, positive_float,
                                   positive_int)

#: Default database: the embedded archive in the current folder.
DEFAULT_DB = "sqlite:///archive.db"


def _add_db(p) -> None:
    p.add_argument("--db", default=DEFAULT_DB, metavar="URL",
                   help="archive database: sqlite:///DIR/archive.db (default sqlite:///archive.db) or "
                        "postgresql://user@host:port/db")
    p.add_argument("--root", metavar="DIR", help="archive root folder that file URIs are relative to "
                   "(default: the SQLite database's folder; required for PostgreSQL)")


def _add_format(p) -> None:
    p.add_argument("--format", choices=("table", "json", "votable"), default="table",
                   help="output format (default table)")


def register(subparsers) -> None:
    from romanflow.archive.products import KINDS

    arc = subparsers.add_parser("archive", help="the product archive: ingest, search, lineage, stale",
                                description="Register products in an archive database (IVOA ObsCore + Roman "
                                            "columns, files with versions, lineage) and query it.")
    sub = arc.add_subparsers(dest="archive_command", metavar="ACTION", required=True)

    ing = add_command(sub, "ingest", help="register product files (folders are searched)",
                      description="Register every product file given (and the product files under folders) "
                                  "from its metadata. Unchanged files change nothing; changed files become "
                                  "new versions. Exits 2 if a file could not be registered.")
    ing.add_argument("paths", nargs="+", metavar="PATH", help="product files, or folders to search for them")
    _add_db(ing)
    ing.add_argument("--batch", type=positive_int, default=500, help="files per transaction (default 500)")
    ing.set_defaults(func=run_ingest)

    s = add_command(sub, "search", help="find products by position, time, band, level, detector, kind",
                    description="Print the current products meeting every criterion given.")
    _add_db(s)
    s.add_argument("--ra", type=finite_float, help="cone centre RA (deg)")
    s.add_argument("--dec", type=latitude, help="cone centre Dec (deg)")
    s.add_argument("--radius", type=positive_float, help="cone radius (deg)")
    s.add_argument("--polygon", nargs="+", help="polygon: 'ra1 dec1 ra2 dec2 ra3 dec3 ...' (deg) or STC-S POLYGON")
    s.add_argument("--time-range", nargs=2, metavar=("START", "END"),
                   help="products overlapping [START, END] (ISO dates or MJD)")
    s.add_argument("--filter", dest="band", nargs="+", type=filter_name, metavar="Fnnn", help="filters")
    s.add_argument("--level", nargs="+", help="levels: 0-4, L1, L2, L3, L4 or ref")
    s.add_argument("--detector", nargs="+", type=detector, metavar="WFInn", help="detectors")
    s.add_argument("--kind", nargs="+", choices=tuple(KINDS), help="product kinds")
    s.add_argument("--maxrec", type=positive_int, help="at most this many rows")
    s.add_argument("--columns", nargs="+", help="columns to print (default: a short set; 'all' for every one)")
    _add_format(s)
    s.set_defaults(func=run_search)

    lin = add_command(sub, "lineage", help="walk a product's inputs (--up, default) or products (--down)",
                      description="Print every product upstream or downstream of ID, to the ends of the chain.")
    lin.add_argument("obs_id", metavar="ID", help="obs_id of the product")
    way = lin.add_mutually_exclusive_group()
    way.add_argument("--up", dest="direction", action="store_const", const="up", help="inputs (default)")
    way.add_argument("--down", dest="direction", action="store_const", const="down", help="products made from it")
    _add_db(lin)
    _add_format(lin)
    lin.set_defaults(func=run_lineage, direction="up")

    st = add_command(sub, "stale", help="products whose best references changed, and everything made from them",
                     description="List every product whose best reference files under the context differ "
                                 "from the ones it was made with, plus everything downstream of it.")
    _add_db(st)
    st.add_argument("--context", metavar="CONTEXT.yaml", help="reference context (default: the embedded store's)")
    _add_format(st)
    st.set_defaults(func=run_stale)

    cs = add_command(sub, "sources", help="catalog rows in a cone",
                     description="Print the catalog rows (all registered catalogs) within a cone.")
    _add_db(cs)
    cs.add_argument("--ra", type=finite_float, required=True, help="RA (deg)")
    cs.add_argument("--dec", type=latitude, required=True, help="Dec (deg)")
    cs.add_argument("--radius", type=positive_float, required=True, help="radius (deg)")
    cs.add_argument("--catalog", help="only this catalog (obs_id)")
    cs.add_argument("--maxrec", type=positive_int, help="at most this many rows")
    _add_format(cs)
    cs.set_defaults(func=run_sources)


def _open(args, create=False):
    from romanflow.archive import Archive

    return Archive.open(args.db, root=args.root, create=create)


def _print(table, fmt) -> None:
    from romanflow.archive.tables import format_table

    sys.stdout.write(format_table(table, fmt))
    if fmt != "table" and not format_table(table, fmt).endswith("\n"):
        sys.stdout.write("\n")


SHORT_COLUMNS = ("obs_id", "product_kind", "optical_element", "detector", "s_ra", "s_dec", "t_min", "version")


def _sqlite_file(url: str):
    """The database file of an ``sqlite:///`` URL (None for other URLs or in-memory databases)."""
    from pathlib import Path

    if url.startswith("sqlite:///") and len(url) > len("sqlite:///"):
        return Path(url[len("sqlite:///"):])
    return None


def run_ingest(args) -> int:
    from romanflow.archive import ArchiveError, expand_paths
    from romanflow.cli.options import progress_bar

    files = expand_paths(args.paths)
    if not files:
        raise ArchiveError(f"{', '.join(args.paths)}: no product files found")
    missing = [str(f) for f in files if not f.exists()]
    if missing:
        raise ArchiveError(f"{missing[0]}: No such file or directory")
    database = _sqlite_file(args.db)
    new_database = database is not None and not database.exists()
    try:
        with _open(args, create=True) as arc:
            with progress_bar(args, total=len(files), unit="file", desc="ingest") as bar:
                report = arc.ingest(files, batch=args.batch, progress=bar.update)
    except BaseException:
        if new_database and database.exists():  # nothing of a database this command only began
            database.unlink()
        raise
    if new_database and len(report.failed) == len(files):  # nothing registered: leave no empty database
        database.unlink(missing_ok=True)
        print(f"{args.command_name}: error: {next(iter(report.failed))}: {next(iter(report.failed.values()))}",
              file=sys.stderr)
        return 2
    print(f"{arc.url}: {report.summary()}")
    for obs_id, flags in report.flagged.items():
        print(f"  flagged: {obs_id}: {flags}")
    for path, problem in report.failed.items():
        print(f"{args.command_name}: error: {path}: {problem}", file=sys.stderr)
    return 2 if report.failed else 0


def run_search(args) -> int:
    with _open(args) as arc:
        polygon = " ".join(args.polygon) if args.polygon else None
        table = arc.search(ra=args.ra, dec=args.dec, radius=args.radius, polygon=polygon,
                           time_range=tuple(args.time_range) if args.time_range else None, band=args.band,
                           level=args.level, detector=args.detector, kind=args.kind, maxrec=args.maxrec)
    cols = args.columns or (None if args.format != "table" else list(SHORT_COLUMNS))
    if cols and cols != ["all"]:
        from romanflow.archive import ArchiveError

        unknown = [c for c in cols if c not in table.colnames]
        if unknown:
            raise ArchiveError(f"--columns: unknown column(s) {', '.join(unknown)}")
        table = table[cols]
    _print(table, args.format)
    return 0


def run_lineage(args) -> int:
    with _open(args) as arc:
        table = arc.lineage(args.obs_id, args.direction)
    _print(table, args.format)
    return 0


def run_stale(args) -> int:
    from romanflow.archive.stale import stale_products

    with _open(args) as arc:
        table = stale_products(arc, context=args.context)
    _print(table, args.format)
    return 0


def run_sources(args) -> int:
    with _open(args) as arc:
        table = arc.cone_sources(args.ra, args.dec, args.radius, catalog=args.catalog, maxrec=args.maxrec)
    _print(table, args.format)
    return 0
