"""Which failures of a task let the rest of a run go on, and which stop it."""

import pytest

from romanflow.errors import InputFileError, RomanflowError
from romanflow.run import Ledger, calibrate_and_register, run_graph
from romanflow.run import tasks as task_module
from romanflow.run.executors import InProcessExecutor
from romanflow.run.graph import Task, TaskGraph


def _ok(name):
    return {"products": [], "info": {"name": name}}


def _bad_input(path):
    raise InputFileError(path, "not an ASDF file")


def _bug():
    raise ValueError("arrays of mismatched shapes")


@pytest.fixture
def kinds(monkeypatch):
    functions = dict(task_module.TASK_FUNCTIONS, ok=_ok, bad_input=_bad_input, bug=_bug)
    monkeypatch.setattr(task_module, "TASK_FUNCTIONS", functions)


def test_bad_input_fails_its_task_and_the_others_finish(tmp_path, kinds):
    graph = TaskGraph(tmp_path)
    graph.add(Task("broken", "bad_input", {"path": "x_uncal.asdf"}))
    graph.add(Task("after-broken", "ok", {"name": "b"}, deps=("broken",)))
    graph.add(Task("independent", "ok", {"name": "c"}))
    with pytest.raises(RomanflowError, match="broken: InputFileError: x_uncal.asdf: not an ASDF file"):
        run_graph(graph, InProcessExecutor(), progress=False)
    assert set(Ledger(tmp_path).entries()) == {"independent"}


def test_a_programming_error_stops_the_run_with_its_own_type(tmp_path, kinds):
    graph = TaskGraph(tmp_path)
    graph.add(Task("buggy", "bug", {}))
    with pytest.raises(ValueError, match="mismatched shapes"):
        run_graph(graph, InProcessExecutor(), progress=False)


def test_calibrate_and_register_checks_the_reference_catalog_before_any_work(tmp_path):
    with pytest.raises(InputFileError, match="gaia.parquet: reference catalog not found"):
        calibrate_and_register([tmp_path / "missing_uncal.asdf"], tmp_path, tmp_path / "gaia.parquet")
