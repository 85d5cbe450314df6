"""``romanflow plan`` and ``romanflow run``: bad requests stop with one line; failures are named and exit 2."""

import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from romanflow.cli import main
from romanflow.errors import InputFileError
from romanflow.run import graph as graph_module
from romanflow.run import tasks as tasks_module
from romanflow.run.graph import Task, TaskGraph

PLAN_ARGS = ["plan", "--ra", "150", "--dec", "2", "--size-deg", "0.05", "--detectors", "WFI01", "--size", "248"]


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def _one_line_error(argv, capsys, folder, expected):
    before = _files(folder)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, err
    assert err.count("\n") == 1 and ": error: " in err, err
    assert expected in err, err
    assert _files(folder) == before  # nothing written, nothing partial
    return out, err


@pytest.fixture
def plan_file(tmp_path, capsys):
    path = tmp_path / "plan.yaml"
    assert main([*PLAN_ARGS, "-o", str(path)]) == 0
    capsys.readouterr()
    return path


@pytest.mark.parametrize("flag, value", [
    ("--density", "-5"), ("--density", "0"), ("--density", "nan"), ("--size-deg", "nan"), ("--size-deg", "-1"),
    ("--pointing-error-rms", "-1"), ("--pointing-error-rms", "nan"), ("--ra", "inf"), ("--dec", "91"),
])
def test_plan_refuses_unusable_numbers(tmp_path, capsys, flag, value):
    argv = [*PLAN_ARGS, "-o", str(tmp_path / "p.yaml")]
    if flag in argv:
        argv[argv.index(flag) + 1] = value
    else:
        argv += [flag, value]
    _one_line_error(argv, capsys, tmp_path, f"argument {flag}: ")


@pytest.mark.parametrize("change, key", [
    ({"exposures": 5}, "exposures: expected a list"),
    ({"scene": 5}, "scene: expected a mapping"),
    ({"scene": {"density_per_arcmin2": -5}}, "scene.density_per_arcmin2: expected a finite number > 0"),
    ({"registration": {"minobj": "many"}}, "registration.minobj: expected an integer >= 1"),
    ({"mosaic": {"cutout": "yes"}}, "mosaic.cutout: expected true or false"),
    ({"science_size": "big"}, "science_size: expected an integer"),
    ({"name": ["a"]}, "name: expected a text"),
    ({"exposures": [{"pointing": 5, "filter": "F158"}]}, "exposures[0].pointing: expected a mapping"),
    ({"exposures": [{"pointing": {"ra": "x", "dec": 1}, "filter": "F158"}]}, "exposures[0].pointing.ra: "),
    ({"exposures": [{"pointing": {"ra": 1, "dec": 1}, "filter": "F158", "dither": 3}]},
     "exposures[0].dither: expected a list of 2 finite numbers"),
    ({"exposures": [{"pointing": {"ra": 1, "dec": 1}, "filter": 158}]}, "exposures[0].filter: "),
])
def test_plan_values_of_the_wrong_type_name_the_file_and_the_key(plan_file, tmp_path, capsys, change, key):
    data = yaml.safe_load(plan_file.read_text())
    data.update(change)
    plan_file.write_text(yaml.safe_dump(data))
    _, err = _one_line_error(["run", str(plan_file), "-o", str(tmp_path / "out")], capsys, tmp_path, key)
    assert f"error: {plan_file}: " in err


@pytest.mark.parametrize("args, flag", [(["--memory-limit", "lots"], "--memory-limit"),
                                        (["--workers", "0"], "--workers")])
def test_run_refuses_bad_arguments(plan_file, tmp_path, capsys, args, flag):
    _one_line_error(["run", str(plan_file), "-o", str(tmp_path / "out"), *args], capsys, tmp_path,
                    f"argument {flag}: ")


def test_unusable_output_locations(plan_file, tmp_path, capsys):
    (tmp_path / "plain").write_text("mine\n")
    _one_line_error([*PLAN_ARGS, "-o", str(tmp_path / "plain" / "p.yaml")], capsys, tmp_path, "plain")
    _one_line_error(["run", str(plan_file), "-o", str(tmp_path / "plain" / "out")], capsys, tmp_path, "plain")
    assert (tmp_path / "plain").read_text() == "mine\n"


# ------------------------------------------------------------------------------------------ run outcomes
def _fake_graph(root, register_info=None, broken=False):
    """scene -> register -> mosaic, with the work replaced by stand-ins writing one small file each."""
    g = TaskGraph(Path(root).resolve())
    g.add(Task("scene", "scene", {"out": str(g.root / "scene.txt")}))
    g.add(Task("register-x", "register", {"out": str(g.root / "reg.txt"), "info": register_info or {}},
               deps=("scene",)))
    g.add(Task("mosaic-x", "mosaic", {"out": str(g.root / "mos.txt"), "broken": broken}, deps=("register-x",)))
    return g


def _stand_in(out, info=None, broken=False):
    if broken:
        raise InputFileError(out, "not an ASDF file")
    Path(out).write_text("done\n")
    return {"products": [out], "info": info or {}}


@pytest.fixture
def fake_run(monkeypatch, plan_file):
    def use(register_info=None, broken=False):
        monkeypatch.setattr(graph_module, "build_graph",
                            lambda plan, out, **_: _fake_graph(out, register_info=register_info, broken=broken))
        for kind in ("scene", "register", "mosaic"):
            monkeypatch.setitem(tasks_module.TASK_FUNCTIONS, kind, _stand_in)
    return use


def test_failed_registration_is_named_and_the_exit_status_is_2(fake_run, plan_file, tmp_path, capsys):
    fake_run(register_info={"status": "FAILED", "reason": "3 matches, fewer than minobj=5"})
    out = tmp_path / "out"
    assert main(["run", str(plan_file), "-o", str(out), "-q"]) == 2
    stdout, err = capsys.readouterr()
    assert "not registered: register-x: 3 matches, fewer than minobj=5" in stdout
    assert err.count("\n") == 1 and "1 exposure(s) not registered" in err and str(out.resolve()) in err
    # a rerun finds the task done in the ledger, and still reports the failed registration
    assert main(["run", str(plan_file), "-o", str(out), "-q"]) == 2
    stdout, _ = capsys.readouterr()
    assert "0 task(s) run, 3 already done" in stdout and "not registered: register-x" in stdout


def test_failed_tasks_are_named_and_the_exit_status_is_2(fake_run, plan_file, tmp_path, capsys):
    fake_run(register_info={"status": "SUCCESS"}, broken=True)
    out = tmp_path / "out"
    assert main(["run", str(plan_file), "-o", str(out), "-q"]) == 2
    stdout, err = capsys.readouterr()
    assert "1 failed" in stdout and "failed: mosaic-x: InputFileError: " in stdout
    assert err.count("\n") == 1 and "1 of 3 task(s) failed (first: mosaic-x)" in err


def test_a_clean_run_exits_0(fake_run, plan_file, tmp_path, capsys):
    fake_run(register_info={"status": "SUCCESS"})
    assert main(["run", str(plan_file), "-o", str(tmp_path / "out"), "-q"]) == 0
    stdout, err = capsys.readouterr()
    assert "3 task(s) run, 0 already done, 0 failed" in stdout and err == ""


def test_a_second_run_into_the_same_folder_is_refused(fake_run, plan_file, tmp_path, capsys):
    fake_run(register_info={"status": "SUCCESS"})
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\nfrom romanflow.run.ledger import output_lock\n"
         f"with output_lock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(120)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code = main(["run", str(plan_file), "-o", str(out), "-q"])
        stdout, err = capsys.readouterr()
        assert code == 2 and err.count("\n") == 1
        assert f"{out.resolve()}: another romanflow run is using this output folder" in err
        assert not (out / "ledger").exists()  # nothing was run
    finally:
        holder.send_signal(signal.SIGKILL)  # the lock dies with the process
        holder.wait()
    assert main(["run", str(plan_file), "-o", str(out), "-q"]) == 0


def test_dry_run_into_a_closed_pipe_prints_no_traceback(plan_file, tmp_path):
    command = (f"{sys.executable} -m romanflow.cli run {plan_file} -o {tmp_path / 'out'} --dry-run | head -1")
    result = subprocess.run(["bash", "-o", "pipefail", "-c", command], capture_output=True, text=True, timeout=300)
    assert result.stdout.count("\n") == 1
    assert "Traceback" not in result.stderr and "error" not in result.stderr, result.stderr
