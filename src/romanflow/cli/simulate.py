"""``romanflow simulate``: L1 exposures of WFI detectors with their truth."""

from __future__ import annotations

from romanflow.cli.options import (
    add_command,
    add_detectors,
    add_ma_table,
    add_output_dir,
    add_size,
    filter_name,
    finite_float,
    iso_time,
    latitude,
    non_negative_int,
    right_ascension,
)
from romanflow.detector import DEFAULT_MA_TABLE


def register(subparsers) -> None:
    p = add_command(subparsers, "simulate", help="simulate L1 ramps (uncal ASDF) and their truth",
                    description="Simulate L1 exposures of WFI detectors from a random field or a catalog; "
                                "writes *_uncal.asdf plus truth/ tables. Every output is checked before any "
                                "work: a simulation already in the folder is refused unless --overwrite, and a "
                                "failed run leaves none of the files it created.")
    add_detectors(p, default=["WFI01"], help="detectors to simulate, or all")
    p.add_argument("--filter", type=filter_name, default="F158", help="imaging filter (default F158)")
    add_ma_table(p, default=DEFAULT_MA_TABLE)
    p.add_argument("--ra", type=right_ascension, default=270.0,
                   help="RA of the WFI centre (deg, [0, 360), default 270)")
    p.add_argument("--dec", type=latitude, default=66.0, help="Dec of the WFI centre (deg, [-90, 90], default 66)")
    p.add_argument("--pa", type=finite_float, default=0.0, help="position angle of +V3 (deg, default 0)")
    p.add_argument("--n-sources", type=non_negative_int, default=None,
                   help="random field: mean sources per detector (default ~8500)")
    p.add_argument("--catalog", default=None,
                   help="source catalog (Parquet, CSV, ECSV) instead of a random field; romanisim's ECSV catalogs "
                        "(type PSF/SER, fluxes in maggies per filter column) are read as well")
    add_size(p)
    p.add_argument("--seed", type=non_negative_int, default=0, help="random seed, an integer >= 0 (default 0)")
    p.add_argument("--pointing-error", type=finite_float, nargs=3, default=(0.0, 0.0, 0.0),
                   metavar=("DRA_ARCSEC", "DDEC_ARCSEC", "DROLL_DEG"),
                   help="true minus commanded pointing: RA and Dec offsets (arcsec) and roll (deg)")
    p.add_argument("--start-time", type=lambda text: iso_time(text).isot, default=None,
                   help="exposure start, ISO UTC (default 2027-06-01T00:00:00)")
    add_output_dir(p, help="folder for the L1 files and truth/ (default: current folder)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a simulation already in the output folder (default: refuse it)")
    p.set_defaults(func=run)


def run(args) -> int:
    from romanflow.cli.options import detector_list, progress_bar
    from romanflow.simulate.core import DEFAULT_START_TIME, check_simulation_outputs, simulate, simulation_outputs
    from romanflow.simulate.scene import read_scene

    detectors = detector_list(args.detectors)
    output_dir = args.output_dir or "."
    check_simulation_outputs(simulation_outputs(detectors, output_dir), overwrite=args.overwrite)
    scene = read_scene(args.catalog) if args.catalog else None
    with progress_bar(args, total=len(detectors), unit="detector", desc="simulate") as bar:
        result = simulate(scene, detectors, args.filter, n_sources=args.n_sources, ma_table=args.ma_table,
                          pointing=(args.ra, args.dec, args.pa), pointing_error=tuple(args.pointing_error),
                          science_size=args.size, seed=args.seed, output_dir=output_dir,
                          start_time=args.start_time or DEFAULT_START_TIME, overwrite=args.overwrite,
                          progress=lambda det: (bar.set_postfix_str(det), bar.update(1)))
    for path in result["l1"]:
        print(path)
    return 0
