"""Every command, given bad input, fails cleanly: exit 2, one line naming the file or parameter, no
traceback, nothing written, nothing of the user's changed.

Most cases run through :func:`romanflow.cli.main`; those marked ``subprocess`` run as a real
``python -m romanflow.cli`` process. See :mod:`bad_inputs` for the cases and the contract.
"""

from __future__ import annotations

import subprocess
import sys

import pytest

from bad_inputs import (
    all_cases,
    contract_violations,
    prepare,
    regular_file,
    run_in_process,
    run_subprocess,
    snapshot,
)

CASES = all_cases()


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_fails_cleanly(case, valid_inputs, tmp_path):
    folder = tmp_path / "case"
    argv = prepare(case, folder, valid_inputs)
    before = snapshot(folder)
    if case.subprocess:
        outcome = run_subprocess(argv, folder)
    else:
        outcome = run_in_process(argv, folder)
    problems = contract_violations(case, outcome, before, snapshot(folder))
    assert not problems, (f"romanflow {' '.join(argv)}\n  " + "\n  ".join(problems)
                          + f"\n  stderr: {outcome.stderr.strip()[-1500:]!r}")


def test_every_command_has_cases():
    commands = {c.command for c in CASES}
    assert commands == {"refs init", "refs best", "refs prune", "simulate", "calibrate", "tweakreg", "asn",
                        "mosaic", "catalog", "plan", "run", "demo", "archive ingest", "archive search",
                        "archive lineage", "archive stale", "archive sources", "serve", "psf", "hips", "inject"}
    assert sum(c.subprocess for c in CASES) >= 10


def test_prune_keeps_folders_that_are_not_stores(tmp_path):
    """`refs prune --store DIR` deletes only reference stores, never the user's folders that happen to be
    named like one."""
    folder = tmp_path / "photos"
    for name in ("2024", "4088", "248_0123456789"):
        (folder / name).mkdir(parents=True)
        regular_file(folder / name / "holiday.jpg", None)
    before = snapshot(folder)
    outcome = run_in_process(["refs", "prune", "--store", str(folder)], tmp_path)
    assert outcome.status in (0, 2) and "Traceback" not in outcome.stderr, outcome.stderr
    assert snapshot(folder) == before, outcome.stdout


def test_closed_stdout_ends_quietly_with_141(valid_inputs, tmp_path):
    """`romanflow run --dry-run PLAN | head -1`: the reader goes away; no traceback, status 141."""
    plan = tmp_path / valid_inputs.plan.name
    plan.write_bytes(valid_inputs.plan.read_bytes())
    process = subprocess.Popen([sys.executable, "-m", "romanflow.cli", "run", str(plan), "-o", str(tmp_path / "out"),
                                "--dry-run"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the command has written anything
    stderr = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141
    assert stderr == ""
    assert not (tmp_path / "out").exists()
