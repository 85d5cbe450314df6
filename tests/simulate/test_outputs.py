"""simulate(): parameters and outputs checked before any work; a failed run leaves nothing it created."""

from __future__ import annotations

import pytest

from romanflow.detector import SMALL_SCIENCE_SIZE
from romanflow.errors import OutputExistsError, ParameterError
from romanflow.simulate import core, simulate

SMALL = dict(detectors=["WFI01"], optical_element="F158", n_sources=50, science_size=SMALL_SCIENCE_SIZE, seed=1)


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())


@pytest.mark.parametrize("kwargs, name", [
    ({"start_time": "yesterday"}, "start_time"),
    ({"pointing": (float("nan"), 66.0, 0.0)}, "ra"),
    ({"pointing": (270.0, 95.0, 0.0)}, "dec"),
    ({"n_sources": -3}, "n_sources"),
    ({"pointing_error": (float("nan"), 0.0, 0.0)}, "pointing_error"),
    ({"seed": -1}, "seed"),
])
def test_bad_parameters_are_refused_before_any_file(tmp_path, kwargs, name):
    with pytest.raises(ParameterError, match=f"^{name}="):
        simulate(output_dir=tmp_path / "out", **{**SMALL, **kwargs})
    assert not (tmp_path / "out").exists()


def test_an_existing_simulation_is_refused_before_any_work(tmp_path, monkeypatch):
    planned = core.simulation_outputs(["WFI01"], tmp_path)
    l1 = planned["WFI01"][0]
    l1.write_bytes(b"an earlier simulation")
    calls = []
    monkeypatch.setattr(core, "random_scene", lambda *a, **k: calls.append(1))
    with pytest.raises(OutputExistsError, match=l1.name):
        simulate(output_dir=tmp_path, **{**SMALL, "optical_element": "F106"})
    assert not calls and _files(tmp_path) == [l1.relative_to(tmp_path)]
    assert l1.read_bytes() == b"an earlier simulation"


def test_a_failed_simulation_leaves_none_of_its_files(tmp_path, monkeypatch):
    def fail(*args, **kwargs):
        raise core.RomanflowError("no sky level here")

    monkeypatch.setattr(core, "simulate_detector", fail)
    with pytest.raises(core.RomanflowError):
        simulate(output_dir=tmp_path / "out", **SMALL)
    assert _files(tmp_path) == []
