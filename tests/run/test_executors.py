"""The same plan in-process and on a real two-worker Dask LocalCluster gives identical products."""

import json

from products import assert_same_products

from romanflow.run import Ledger, build_graph, run_plan


def test_local_cluster_matches_in_process(small_plan, tmp_path):
    inproc, dask = tmp_path / "inproc", tmp_path / "dask"
    first = run_plan(small_plan, inproc, progress=False)
    graph = build_graph(small_plan, inproc)
    assert first.executor == "in-process" and not first.skipped
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
