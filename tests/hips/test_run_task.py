"""The run graph's HiPS task: every mosaic of a plan into the trees, recorded in the ledger."""

import copy

from romanflow.run import Ledger, build_graph
from romanflow.run.graph import Task
from romanflow.run.plan import plan_from_dict, tiled_plan
from romanflow.run.tasks import execute


def test_plan_with_hips_has_one_task_after_every_mosaic(tmp_path):
    plan = tiled_plan(270.0, 66.0, 0.05, ["F158", "F106"], dither="2", detectors=["WFI01"], science_size=248,
                      seed=5, name="hips_plan")
    data = plan.to_dict()
    assert "hips" not in {t.kind for t in build_graph(plan_from_dict(copy.deepcopy(data)), tmp_path / "a")}
    data["mosaic"] = {"hips": True}
    graph = build_graph(plan_from_dict(data), tmp_path / "b")
    [task] = [t for t in graph if t.kind == "hips"]
    mosaics = [t for t in graph if t.kind == "mosaic"]
    assert len(mosaics) == 2 and set(task.deps) == {t.key for t in mosaics}
    assert sorted(task.params["mosaic_paths"]) == sorted(t.params["out_path"] for t in mosaics)
    assert task.params["out_dir"] == str((tmp_path / "b" / "hips").resolve())


def test_hips_task_builds_the_trees_and_is_not_redone(mosaics, tmp_path):
    root = tmp_path / "run"
    task = Task("hips", "hips", dict(mosaic_paths=[str(mosaics["A"]), str(mosaics["A106"])],
                                     out_dir=str(root / "hips")))
    first = execute(task, root)
    assert not first["skipped"] and first["info"]["bands"] == ["F106", "F158"]
    assert first["info"]["tiles_written"] > 0 and first["info"]["colour_tiles_written"] > 0
    order = first["info"]["order"]
    assert any((root / "hips" / "F158").rglob(f"Norder{order}/*/*.fits"))
    assert (root / "hips" / "F106" / "properties").is_file()
    assert Ledger(root).done("hips") is not None
    assert execute(task, root)["skipped"]
