"""``romanflow simulate``: L1 exposures of WFI detectors with their truth."""

from __future__ import annotations

from romanflow.detector import DEFAULT_MA_TABLE, DETECTORS, N_PIX_SCIENCE, SMALL_SCIENCE_SIZE
from romanflow.errors import RomanflowError


def _size(text: str) -> int:
    named = {"full": N_PIX_SCIENCE, "small": SMALL_SCIENCE_SIZE}
    if text.lower() in named:
        return named[text.lower()]
    try:
        return int(text)
    except ValueError:
        raise RomanflowError(f"--size {text!r}: expected full, small or a number of pixels such as 504") from None


def register(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate L1 ramps (uncal ASDF) and their truth",
                              description="Simulate L1 exposures of WFI detectors from a random field or a "
                                          "catalog; writes *_uncal.asdf plus truth/ tables.")
    p.add_argument("--detectors", nargs="+", default=["WFI01"], metavar="WFInn",
                   help="detectors to simulate, or 'all' (default: WFI01)")
    p.add_argument("--filter", default="F158", help="imaging filter (default F158)")
    p.add_argument("--ma-table", type=int, default=DEFAULT_MA_TABLE, help="MA table number (default 4)")
    p.add_argument("--ra", type=float, default=270.0, help="RA of the WFI centre (deg)")
    p.add_argument("--dec", type=float, default=66.0, help="Dec of the WFI centre (deg)")
    p.add_argument("--pa", type=float, default=0.0, help="position angle of +V3 (deg)")
    p.add_argument("--n-sources", type=int, default=None,
                   help="random field: mean sources per detector (default ~8500)")
    p.add_argument("--catalog", default=None, help="source catalog (Parquet, CSV, ECSV) instead of a random field")
    p.add_argument("--size", type=_size, default=N_PIX_SCIENCE, help="full, small (248) or N science pixels")
    p.add_argument("--seed", type=int, default=0, help="random seed")
    p.add_argument("--pointing-error", type=float, nargs=3, default=(0.0, 0.0, 0.0),
                   metavar=("DRA_ARCSEC", "DDEC_ARCSEC", "DROLL_DEG"), help="true minus commanded pointing")
    p.add_argument("--start-time", default=None, help="exposure start, ISO UTC (default 2027-06-01T00:00:00)")
    p.add_argument("-o", "--output-dir", default=".", help="output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from tqdm import tqdm

    from romanflow.simulate.core import DEFAULT_START_TIME, simulate
    from romanflow.simulate.scene import read_scene

    from romanflow.detector import check_filter, detector_name, total_size

    total_size(args.size)
    check_filter(args.filter)
    detectors = list(DETECTORS) if [d.lower() for d in args.detectors] == ["all"] else args.detectors
    detectors = [detector_name(d) for d in detectors]
    scene = read_scene(args.catalog) if args.catalog else None
    with tqdm(total=len(detectors), unit="detector", desc="simulate") as bar:
        result = simulate(scene, detectors, args.filter, n_sources=args.n_sources, ma_table=args.ma_table,
                          pointing=(args.ra, args.dec, args.pa), pointing_error=tuple(args.pointing_error),
                          science_size=args.size, seed=args.seed, output_dir=args.output_dir,
                          start_time=args.start_time or DEFAULT_START_TIME,
                          progress=lambda det: (bar.set_postfix_str(det), bar.update(1)))
    for path in result["l1"]:
        print(path)
    return 0
