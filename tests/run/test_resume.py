"""A run killed part-way leaves no partial product, and the rerun finishes with the same products."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from small_plan import small_plan_dict
from products import assert_same_products

from romanflow.run import Ledger, build_graph, plan_from_dict, run_plan
from romanflow.run.plan import write_plan


def _visible_products(root: Path):
    return [p for p in root.rglob("*") if p.is_file() and not any(part.startswith(".") for part in
                                                                    p.relative_to(root).parts)
            and p.relative_to(root).parts[0] != "ledger"]


def _assert_readable(path: Path):
    """Read every byte of a product the way its consumers do."""
    import asdf

    if path.suffix == ".asdf":
        with asdf.open(path, lazy_load=False) as f:
            assert "roman" in f.tree or "wcs" in f.tree
    elif path.suffix == ".parquet":
        pd.read_parquet(path)
    elif path.suffix == ".npy":
        assert np.load(path).ndim == 2


def test_killed_run_resumes_to_the_same_products(tmp_path):
    plan = plan_from_dict(small_plan_dict(), source="small-plan")
    plan_file = write_plan(plan, tmp_path / "plan.yaml")
    reference = tmp_path / "reference"
    run_plan(plan, reference, progress=False)

    out = tmp_path / "killed"
    ledger = Ledger(out)
    proc = subprocess.Popen([sys.executable, "-m", "romanflow.cli", "run", str(plan_file), "-o", str(out),
                             "--no-progress"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        # kill it while it is working on the second exposure (after at least one detector is calibrated)
        while time.monotonic() < deadline and not any(k.startswith("calibrate-") for k in ledger.entries()):
            assert proc.poll() is None, "the run ended before it could be killed"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    graph = build_graph(plan, out)
    recorded = set(ledger.entries())
    assert recorded and "hats" not in recorded and recorded < set(graph.tasks)
    for path in _visible_products(out):  # nothing visible is half-written
        _assert_readable(path)
    assert all(ledger.verify(k) == [] for k in recorded)

    resumed = run_plan(plan, out, progress=False)
    assert set(resumed.skipped) == recorded
    assert {s["key"] for s in resumed.done} == set(graph.tasks) - recorded
    assert not list(out.rglob(".*.partial"))
    assert_same_products(reference, out)


def test_failed_task_keeps_the_rest_and_names_the_failure(tmp_path):
    from romanflow.errors import RomanflowError

    plan = plan_from_dict(small_plan_dict(), source="small-plan")
    out = tmp_path / "out"
    graph = build_graph(plan, out)
    # one detector's simulation recorded as done, but its L1 file is not ASDF: only that branch fails
    victim = next(t for t in graph if t.kind == "calibrate")
    Path(victim.params["l1_path"]).parent.mkdir(parents=True)
    (out / "ledger").mkdir()
    sim_key = victim.deps[0]
    Path(victim.params["l1_path"]).write_text("not asdf")
    (out / "ledger" / f"{sim_key}.json").write_text(
        '{"key": "%s", "seconds": 0, "products": [], "info": {}}' % sim_key)
    with pytest.raises(RomanflowError, match=victim.key) as err:
        run_plan(plan, out, progress=False)
    assert "run again to resume" in str(err.value)
    done = set(Ledger(out).entries())
    other = next(t for t in graph if t.kind == "calibrate" and t.key != victim.key)
    assert other.key in done and victim.key not in done and "hats" not in done
