"""``romanflow demo``: the main job on the embedded default, checked against the simulator's truth."""

from __future__ import annotations

from romanflow.cli.options import add_command, add_output_dir

#: Folder of the products when ``-o`` is not given.
DEFAULT_OUTPUT_DIR = "demo_output"


def register(subparsers) -> None:
    from romanflow import demo

    p = add_command(subparsers, "demo", help="run the main job on the embedded default",
                    description=demo.__doc__.splitlines()[0])
    add_output_dir(p, help=f"folder for the products, the picture and summary.json (default {DEFAULT_OUTPUT_DIR})")
    p.set_defaults(func=run)


def run(args) -> int:
    import argparse
    from pathlib import Path

    from romanflow.cli.options import output_dir
    from romanflow.demo import run_demo
    from romanflow.errors import ParameterError

    folder = args.output_dir or DEFAULT_OUTPUT_DIR
    try:
        output_dir(folder)
    except argparse.ArgumentTypeError as exc:
        raise ParameterError("--output-dir", folder, str(exc).split(": ", 1)[-1]) from None
    run_demo(Path(folder))
    return 0
