"""Survey plans: generation, and clear errors before any work for bad plans."""

import re
import socket

import pytest
import yaml
from small_plan import small_plan_dict

from romanflow.cli import main
from romanflow.errors import RomanflowError
from romanflow.run import Ledger, build_graph, load_plan, plan_from_dict, run_plan, tiled_plan
from romanflow.run.plan import wfi_extent_deg


def _plan_with(tmp_path, **changes):
    data = small_plan_dict()
    for key, value in changes.items():
        data["exposures"][0][key] = value
    path = tmp_path / "plan.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("key, value, message", [
    ("filter", "F999", "unknown filter 'F999'"),
    ("ma_table", 77, "unknown MA table 77"),
    ("detectors", ["WFI19"], "unknown detector(s) WFI19"),
])
def test_bad_plan_fails_before_any_work(tmp_path, capsys, key, value, message):
    out = tmp_path / "out"
    assert main(["run", str(_plan_with(tmp_path, **{key: value})), "-o", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and "plan.yaml" in err and err.count("\n") == 1
    assert not out.exists()


def test_overlapping_outputs_are_refused(tmp_path):
    data = small_plan_dict()
    data["exposures"][1]["ids"] = dict(data["exposures"][0]["ids"])  # same file names as exposure 1
    with pytest.raises(RomanflowError, match="also written by exposure 't001_f158_d1'"):
        build_graph(plan_from_dict(data), tmp_path / "out")
    data = small_plan_dict()
    data["exposures"][1]["id"] = data["exposures"][0]["id"]
    with pytest.raises(RomanflowError, match="id used twice"):
        build_graph(plan_from_dict(data), tmp_path / "out")


def test_unreachable_scheduler_is_a_clear_error(tmp_path, small_plan):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "out"
    with pytest.raises(RomanflowError, match=f"cannot reach the Dask scheduler at tcp://127.0.0.1:{port}"):
        run_plan(small_plan, out, scheduler=f"tcp://127.0.0.1:{port}", progress=False)
    assert not out.exists()


def test_unknown_keys_and_missing_inputs(tmp_path):
    with pytest.raises(RomanflowError, match="unknown key"):
        plan_from_dict({"exposure": []})
    with pytest.raises(RomanflowError, match="no such file or folder"):
        build_graph(plan_from_dict({"inputs": [str(tmp_path / "nothing")]}), tmp_path / "out")
    with pytest.raises(RomanflowError, match="missing 'filter'"):
        plan_from_dict({"exposures": [{"pointing": {"ra": 1, "dec": 2}}]})


def test_plan_command_tiles_the_field(tmp_path):
    path = tmp_path / "plan.yaml"
    width, height = wfi_extent_deg()
    assert 0.28 < width * height < 1.0  # the box around the 0.28 deg² WFI field at this position angle
    size = 1.2
    assert main(["plan", "--ra", "10", "--dec", "-30", "--size-deg", str(size), "--filters", "F158", "F106",
                 "--dither", "4", "--detectors", "WFI01", "WFI10", "-o", str(path)]) == 0
    plan = load_plan(path)
    nx, ny = -(-size // (width * 0.9)), -(-size // (height * 0.9))
    assert len(plan.exposures) == nx * ny * 2 * 4
    assert plan.filters == ["F106", "F158"] and plan.n_detectors == 2 * len(plan.exposures)
    assert len({e.id for e in plan.exposures}) == len(plan.exposures)
    decs = sorted({e.dec for e in plan.exposures})
    assert decs[0] < -30 < decs[-1] and decs[-1] - decs[0] == pytest.approx((ny - 1) * height * 0.9, rel=1e-6)
    offsets = sorted({e.dither for e in plan.exposures})
    assert len(offsets) == 4 and offsets[0] == (0.0, 0.0)
    with pytest.raises(RomanflowError, match="unknown dither"):
        tiled_plan(10, -30, 1, ["F158"], dither="3")


def test_graph_shape_and_ledger(small_plan, tmp_path):
    graph = build_graph(small_plan, tmp_path / "out")
    kinds = [t.kind for t in graph]
    assert kinds.count("simulate") == kinds.count("calibrate") == 2
    assert kinds.count("register") == 2  # one join per exposure
    assert kinds.count("mosaic") == 1 and kinds.count("catalog") == 1 and kinds[-1] == "hats"
    mosaic = next(t for t in graph if t.kind == "mosaic")
    x0, y0, nx, ny = mosaic.params["cutout"]
    assert 248 * 2 < nx < 1000 and 248 * 2 < ny < 1000  # a cutout around the data, not the 5000-px cell
    seen = set()
    for t in graph:  # every task comes after what it needs
        assert set(t.deps) <= seen
        seen.add(t.key)

    ledger = Ledger(tmp_path / "out")
    product = tmp_path / "out" / "x.txt"
    product.parent.mkdir(parents=True)
    product.write_text("abc")
    ledger.record("t", [product], seconds=1.0)
    assert ledger.done("t")["products"][0]["bytes"] == 3
    product.write_text("abcd")  # changed after the record: no longer done
    assert ledger.done("t") is None


@pytest.mark.parametrize("data, message", [
    ({"exposures": 5}, "exposures: expected a list of exposures"),
    ({"scene": [1], "exposures": []}, "scene: expected a mapping"),
    ({"inputs": 7}, "inputs: expected a list of files or folders"),
    ({"catalog": {"n_pixels": 0}}, "catalog.n_pixels: expected an integer >= 1"),
    ({"exposures": [{"pointing": {"ra": 1, "dec": 2}, "filter": "F158", "ids": {"visit": "one"}}]},
     "exposures[0].ids: expected a mapping of non-negative integers"),
])
def test_values_of_the_wrong_type_name_the_plan_file_and_the_key(tmp_path, data, message):
    from romanflow.errors import InputFileError

    path = tmp_path / "typed.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(InputFileError, match=re.escape(message)) as err:
        load_plan(path)
    assert err.value.path == str(path)


@pytest.mark.parametrize("kwargs, name", [
    ({"size_deg": float("nan")}, "size_deg"), ({"size_deg": -1.0}, "size_deg"), ({"dec": 95.0}, "dec"),
    ({"pointing_error_arcsec": -1.0}, "pointing_error_arcsec"), ({"ra": float("inf")}, "ra"),
])
def test_tiled_plan_refuses_unusable_numbers(kwargs, name):
    from romanflow.errors import ParameterError

    args = {"ra": 10.0, "dec": -30.0, "size_deg": 0.1, **kwargs}
    with pytest.raises(ParameterError, match=name):
        tiled_plan(args.pop("ra"), args.pop("dec"), args.pop("size_deg"), ["F158"], detectors=["WFI01"],
                   science_size=248, **args)


def test_scene_density_must_be_positive(small_plan):
    small_plan.scene["density_per_arcmin2"] = 0.0
    with pytest.raises(RomanflowError, match="scene.density_per_arcmin2: expected a finite number > 0"):
        build_graph(small_plan, "unused")
