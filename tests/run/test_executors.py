"""The same plan in-process and on a real two-worker Dask LocalCluster gives identical products,
also when a worker process dies part-way."""

import json
import os
import signal
import threading
import time

import pytest
from products import assert_same_products

from romanflow.run import Ledger, build_graph, run_plan


@pytest.fixture(scope="module")
def in_process(tmp_path_factory):
    from small_plan import small_plan_dict

    from romanflow.run.plan import plan_from_dict

    plan = plan_from_dict(small_plan_dict(), source="small-plan")
    out = tmp_path_factory.mktemp("inproc")
    report = run_plan(plan, out, progress=False)
    assert report.executor == "in-process" and not report.skipped and not report.failed
    return plan, out, report


def test_local_cluster_matches_in_process(in_process, tmp_path):
    small_plan, inproc, first = in_process
    dask = tmp_path / "dask"
    graph = build_graph(small_plan, inproc)
    assert {s["key"] for s in first.done} == set(graph.tasks)
    assert first.detectors == 2

    second = run_plan(small_plan, dask, workers=2, progress=False, quiet=True)
    assert second.executor.startswith("dask local cluster (2 workers)")
    assert len(second.done) == len(graph) and second.detectors == 2
    assert_same_products(inproc, dask)

    # the per-exposure join aligned each exposure to the reference catalog
    for key in (k for k in graph.tasks if k.startswith("register-")):
        info = json.loads((dask / "ledger" / f"{key}.json").read_text())["info"]
        assert info["status"] == "SUCCESS" and info["n_matches"] >= 5
    # the ledger's digests describe the files as they are
    ledger = Ledger(dask)
    assert all(ledger.verify(k) == [] for k in graph.tasks)

    # a second run finds everything done and does nothing
    again = run_plan(small_plan, dask, progress=False)
    assert again.done == [] and sorted(again.skipped) == sorted(graph.tasks)


def test_a_killed_worker_is_replaced_and_the_run_completes(in_process, tmp_path, monkeypatch):
    """SIGKILL one worker process while tasks run: its tasks go to the other worker or its
    replacement (the nanny restarts it), and the products are those of the in-process run."""
    from romanflow.run import executors

    small_plan, inproc, _ = in_process
    out = tmp_path / "dask"
    killed = []
    original_run = executors.DaskExecutor.run

    def run_and_kill(self, graph, todo, report, progress):
        pids = self.client.run(os.getpid)  # worker address -> process id

        def kill_a_busy_worker():
            # after the first finished task, kill a worker that is running one
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and not list((out / "ledger").glob("*.json")):
                time.sleep(0.05)
            while time.monotonic() < deadline:
                busy = [address for address, tasks in self.client.processing().items() if tasks]
                if busy:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.append(busy[0])
                    return
                time.sleep(0.05)

        threading.Thread(target=kill_a_busy_worker, daemon=True).start()
        return original_run(self, graph, todo, report, progress)

    monkeypatch.setattr(executors.DaskExecutor, "run", run_and_kill)
    report = run_plan(small_plan, out, workers=2, progress=False, quiet=True)
    assert killed
    assert not report.failed, report.failed
    assert len(report.done) == len(build_graph(small_plan, out))
    assert_same_products(inproc, out)
    assert not list(out.rglob(".*.partial"))  # nothing the killed worker was writing is left
