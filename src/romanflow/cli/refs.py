"""``romanflow refs``: build the embedded reference store, show best references, prune old stores."""

from __future__ import annotations

from pathlib import Path

from romanflow.cli.options import add_command, add_size, filter_name
from romanflow.detector import N_PIX_SCIENCE
from romanflow.errors import InputFileError

#: Metadata a product needs for reference selection.
SELECTION_META = ("instrument.detector", "instrument.optical_element", "exposure.type", "exposure.start_time")
_PRODUCTS = {"ScienceRawModel": True, "RampModel": True, "ImageModel": False}  # name -> border included


def register(subparsers) -> None:
    from romanflow.cli.options import add_detectors
    from romanflow.refdata.context import PARKEYS

    refs = subparsers.add_parser("refs", help="reference files: build the embedded store, show best references",
                                 description="Reference files (the CRDS role): synthesize the embedded store, "
                                             "print the best reference of every type for a product, or delete "
                                             "stores built by other versions of the parameter model.")
    sub = refs.add_subparsers(dest="refs_command", metavar="ACTION", required=True)

    init = add_command(sub, "init", help="synthesize the embedded reference store (all of it, or a subset)",
                       description="Write the reference files of the embedded store for some or all detectors "
                                   "and filters (files already there are kept).")
    add_size(init)
    add_detectors(init, default=["all"], help="detectors")
    init.add_argument("--filters", nargs="+", type=filter_name, metavar="Fnnn",
                      help="imaging filters (default: all)")
    init.add_argument("--store", metavar="DIR", help="folder holding the stores (default $ROMANFLOW_REFDATA "
                      "or ~/.cache/romanflow/refdata)")
    init.set_defaults(func=run_init)

    best = add_command(sub, "best", help="print the best reference of every type for an L1/L2 file",
                       description="Print, one line per reference type, the file the context selects for a "
                                   "product (explicit overrides win).")
    best.add_argument("file", metavar="FILE.asdf", help="L1 (uncal), ramp or L2 (cal) product")
    best.add_argument("--context", metavar="CONTEXT.yaml", help="use this context file instead of the store")
    best.add_argument("--store", metavar="DIR", help="folder holding the stores")
    for reftype in PARKEYS:
        best.add_argument(f"--override-{reftype}", metavar="PATH", dest=f"override_{reftype}",
                          help=f"use this {reftype} file (or N/A)")
    best.set_defaults(func=run_best)

    prune = add_command(sub, "prune", help="delete stores built by other versions of the detector parameter model",
                        description="Delete the stores whose fingerprint differs from this version's.")
    prune.add_argument("--store", metavar="DIR", help="folder holding the stores")
    prune.add_argument("--dry-run", action="store_true", help="only list what would be deleted")
    prune.set_defaults(func=run_prune)


def run_prune(args) -> int:
    import shutil

    from romanflow.refdata.store import stale_stores

    stale = stale_stores(args.store)
    for path, size in stale:
        print(f"{'would delete' if args.dry_run else 'deleted'} {path} ({size / 1e6:.1f} MB)")
        if not args.dry_run:
            shutil.rmtree(path)
    if not stale:
        print("no stale stores")
    return 0


def run_init(args) -> int:
    from romanflow.cli.options import detector_list
    from romanflow.refdata.store import ReferenceStore

    detectors = None if "all" in args.detectors else detector_list(args.detectors)
    store = ReferenceStore(args.store, science_size=args.size or N_PIX_SCIENCE)
    figures = store.build(detectors=detectors, filters=args.filters, progress=not args.quiet)
    print(
        f"{store.directory}: {figures['files']} files ({figures['built']} new), "
        f"{figures['bytes'] / 1e6:.1f} MB, {figures['seconds']:.1f} s"
    )
    return 0


def product_selection_meta(path) -> tuple[dict, int]:
    """Metadata and science size of a product, with clear errors for unusable files."""
    from romanflow.exposure import get_meta
    from romanflow.formats.asdf_io import to_plain
    from romanflow.formats.reference_io import open_quietly

    path = Path(path)
    model = open_quietly(path, tuple(_PRODUCTS))
    with model:
        border = _PRODUCTS[type(model).__name__]
        try:
            meta = to_plain({k: model.meta[k] for k in model.meta.keys() if k != "wcs"})
            width = int(model.data.shape[-1])
        except Exception as exc:  # noqa: BLE001 - asdf raises many kinds on a truncated block
            raise InputFileError(path, f"cannot be read (truncated file?): {str(exc).splitlines()[0]}") from None
    missing = [k for k in SELECTION_META if get_meta(meta, k) in (None, "", "?")]
    if missing:
        raise InputFileError(path, f"missing metadata: {', '.join('meta.' + k for k in missing)}")
    return meta, width - 8 if border else width


def run_best(args) -> int:
    from romanflow.refdata import PARKEYS, Context, best_references
    from romanflow.refdata.store import default_store

    meta, science_size = product_selection_meta(args.file)
    overrides = {r: getattr(args, f"override_{r}") for r in PARKEYS if getattr(args, f"override_{r}")}
    context = Context.load(args.context) if args.context else default_store(science_size, root=args.store)
    choices = best_references(meta, context, overrides)
    width = max(len(r) for r in choices)
    lines = [f"{reftype:<{width}}  {path if path is not None else 'N/A'}" for reftype, path in choices.items()]
    print("\n".join(lines))
    return 0
