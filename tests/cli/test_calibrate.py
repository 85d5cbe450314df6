"""`romanflow calibrate` on good and bad input, through the real command."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from romanflow.detector import SMALL_SCIENCE_SIZE
from romanflow.formats import read_l1, read_l2, write_l1


def run_cli(*args, env_store):
    env = {"ROMANFLOW_REFDATA": str(env_store), "PATH": "/usr/bin:/bin"}
    return subprocess.run([sys.executable, "-m", "romanflow.cli", "calibrate", *map(str, args)],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def l1_file(tmp_path_factory):
    from romanflow.simulate import simulate

    out = tmp_path_factory.mktemp("sim")
    result = simulate(detectors=["WFI03"], optical_element="F158", science_size=SMALL_SCIENCE_SIZE, seed=2,
                      n_sources=4000, output_dir=out)
    return Path(result["l1"][0])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    return tmp_path_factory.mktemp("store")


def test_calibrates_with_override_and_skip(l1_file, store, tmp_path):
    first = run_cli(l1_file, "-o", tmp_path / "a", "--skip", "flat_field", env_store=store)
    assert first.returncode == 0, first.stderr
    image = read_l2(tmp_path / "a" / l1_file.name.replace("_uncal", "_cal"))
    assert image.meta["cal_step"]["flat_field"] == "SKIPPED"
    assert image.meta["cal_step"]["ramp_fit"] == "COMPLETE"
    # an explicit dark override wins over the store's choice and is recorded
    dark = next(Path(store).rglob("roman_wfi_dark_wfi03_*.asdf"))
    second = run_cli(l1_file, "-o", tmp_path / "b", "--override-dark", dark, env_store=store)
    assert second.returncode == 0, second.stderr
    assert read_l2(next((tmp_path / "b").glob("*_cal.asdf"))).meta["ref_file"]["dark"] == dark.name


def _assert_clean_failure(result, out_dir: Path, *words):
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if "error" in line.lower()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for word in words:
        assert word in lines[0]
    assert not out_dir.exists() or not any(out_dir.rglob("*.asdf"))


def test_truncated_file(l1_file, store, tmp_path):
    bad = tmp_path / "truncated_uncal.asdf"
    bad.write_bytes(l1_file.read_bytes()[: l1_file.stat().st_size // 3])
    result = run_cli(bad, "-o", tmp_path / "out", env_store=store)
    _assert_clean_failure(result, tmp_path / "out", str(bad))


def test_wrong_product_type(l1_file, store, tmp_path):
    first = run_cli(l1_file, "-o", tmp_path / "l2", env_store=store)
    assert first.returncode == 0, first.stderr
    l2 = next((tmp_path / "l2").glob("*_cal.asdf"))
    result = run_cli(l2, "-o", tmp_path / "out", env_store=store)
    _assert_clean_failure(result, tmp_path / "out", "ImageModel")


def test_missing_metadata(l1_file, store, tmp_path):
    exposure = read_l1(l1_file)
    del exposure.meta["exposure"]["frame_time"]
    bad = tmp_path / "nometa_uncal.asdf"
    try:
        write_l1(exposure, bad)
    except Exception:  # the schema itself may require it: then blank it instead
        exposure.meta["exposure"]["frame_time"] = -999999.0
        write_l1(exposure, bad)
    result = run_cli(bad, "-o", tmp_path / "out", env_store=store)
    _assert_clean_failure(result, tmp_path / "out", "frame_time")


def test_wrong_shape(l1_file, store, tmp_path):
    exposure = read_l1(l1_file)
    exposure.data = np.ascontiguousarray(exposure.data[:-2])  # fewer resultants than the read pattern says
    bad = tmp_path / "short_uncal.asdf"
    write_l1(exposure, bad)
    result = run_cli(bad, "-o", tmp_path / "out", env_store=store)
    _assert_clean_failure(result, tmp_path / "out", "resultants")


def test_error_in_a_worker_process_is_one_line(l1_file, store, tmp_path):
    # Two inputs go to a process pool: the missing override is found in a worker and must reach the
    # user as the same one-line error, not as a broken pool.
    inputs = []
    for name in ("a", "b"):
        copy = tmp_path / name / l1_file.name
        copy.parent.mkdir()
        copy.write_bytes(l1_file.read_bytes())
        inputs.append(copy)
    missing = tmp_path / "nowhere" / "my_dark.asdf"
    result = run_cli(*inputs, "-o", tmp_path / "out", "--workers", "2", "--override-dark", missing,
                     env_store=store)
    _assert_clean_failure(result, tmp_path / "out", str(missing))
    assert "BrokenProcessPool" not in result.stderr
    assert not list(tmp_path.rglob("*_cal.asdf"))
