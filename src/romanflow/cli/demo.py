"""``romanflow demo``: the main job on the embedded default, checked against the simulator's truth."""

from __future__ import annotations

from romanflow.cli.options import add_command, add_output_dir


def register(subparsers) -> None:
    from romanflow import demo

    p = add_command(subparsers, "demo", help="run the main job on the embedded default",
                    description=demo.__doc__.splitlines()[0])
    add_output_dir(p, help="folder for the products, the picture and summary.json (default demo_output)")
    p.set_defaults(func=run, output_dir="demo_output")


def run(args) -> int:
    from pathlib import Path

    from romanflow.demo import run_demo

    run_demo(Path(args.output_dir))
    return 0
