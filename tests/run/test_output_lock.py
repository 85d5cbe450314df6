"""One run at a time per output folder, and a report that names what failed."""

import subprocess
import sys
from pathlib import Path

import pytest

from romanflow.errors import InputFileError, RomanflowError
from romanflow.run import tasks as tasks_module
from romanflow.run.executors import run_graph
from romanflow.run.graph import Task, TaskGraph
from romanflow.run.ledger import LOCK_NAME, output_lock


def test_the_lock_is_exclusive_between_processes_and_reentrant_within_one(tmp_path):
    out = tmp_path / "out"
    with output_lock(out):
        with output_lock(out):  # the same process may take it again
            pass
        result = subprocess.run([sys.executable, "-c", f"from romanflow.run.ledger import output_lock\n"
                                 f"with output_lock({str(out)!r}): pass\n"], capture_output=True, text=True)
        assert result.returncode != 0
        assert "another romanflow run is using this output folder" in result.stderr
    result = subprocess.run([sys.executable, "-c", f"from romanflow.run.ledger import output_lock\n"
                             f"with output_lock({str(out)!r}): pass\n"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not out.exists()  # made by the lock, nothing run: removed again


def test_a_lock_held_by_a_killed_process_is_free(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    holder = subprocess.Popen([sys.executable, "-c", "import time\nfrom romanflow.run.ledger import output_lock\n"
                               f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n"
                               "    time.sleep(120)\n"], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(RomanflowError, match=f"{out}: another romanflow run"):
        with output_lock(out):
            pass
    holder.kill()
    holder.wait()
    assert (out / LOCK_NAME).exists()
    with output_lock(out):
        pass


def _stand_in(out, info=None, broken=False):
    if broken:
        raise InputFileError(out, "not an ASDF file")
    Path(out).write_text("done\n")
    return {"products": [out], "info": info or {}}


def test_report_names_failed_registrations_and_tasks(tmp_path, monkeypatch):
    for kind in ("register", "mosaic"):
        monkeypatch.setitem(tasks_module.TASK_FUNCTIONS, kind, _stand_in)
    graph = TaskGraph(tmp_path.resolve())
    graph.add(Task("register-a", "register", {"out": str(tmp_path / "a"), "info": {"status": "FAILED",
                                                                                   "reason": "too few matches"}}))
    graph.add(Task("register-b", "register", {"out": str(tmp_path / "b"), "info": {"status": "SUCCESS"}}))
    graph.add(Task("mosaic-x", "mosaic", {"out": str(tmp_path / "m"), "broken": True},
                   deps=("register-a", "register-b")))
    report = run_graph(graph, progress=False, raise_on_failure=False)
    assert report.registration_failures == {"register-a": "too few matches"}
    assert list(report.failed) == ["mosaic-x"]
    with pytest.raises(RomanflowError, match="1 of 1 task"):
        run_graph(graph, progress=False)
