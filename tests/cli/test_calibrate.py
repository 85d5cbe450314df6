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
    # Two inputs for a process pool: the missing override is found before any work and reaches the
    # user as one line, not as a broken pool.
    inputs = []
    for name in ("a", "b"):
        copy = tmp_path / name / l1_file.name.replace("_uncal", f"{name}_uncal")
        copy.parent.mkdir()
        copy.write_bytes(l1_file.read_bytes())
        inputs.append(copy)
    missing = tmp_path / "nowhere" / "my_dark.asdf"
    result = run_cli(*inputs, "-o", tmp_path / "out", "--workers", "2", "--override-dark", missing,
                     env_store=store)
    _assert_clean_failure(result, tmp_path / "out", str(missing))
    assert "BrokenProcessPool" not in result.stderr
    assert not list(tmp_path.rglob("*_cal.asdf"))


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(src.read_bytes())
    return dst


def _damaged_copy(src: Path, dst: Path) -> Path:
    """``src`` with bytes flipped in the middle of its first (compressed) array block."""
    import asdf

    with asdf.open(src, lazy_load=False) as af:
        block = af._blocks.blocks[0]
        start, size = block.data_offset, block.header["used_size"]
    raw = bytearray(src.read_bytes())
    for i in range(start + size // 2, start + size // 2 + 64):
        raw[i] ^= 0x5A
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.write_bytes(bytes(raw))
    return dst


def test_same_output_name_and_existing_output(l1_file, store, tmp_path):
    a = _copy(l1_file, tmp_path / "a" / l1_file.name)
    b = _copy(l1_file, tmp_path / "b" / l1_file.name)
    result = run_cli(a, b, "-o", tmp_path / "out", env_store=store)
    _assert_clean_failure(result, tmp_path / "out", str(a), str(b))
    existing = tmp_path / "out" / l1_file.name.replace("_uncal", "_cal")
    existing.parent.mkdir()
    existing.write_bytes(b"an earlier result")
    refused = run_cli(a, "-o", tmp_path / "out", env_store=store)
    assert refused.returncode == 2 and "--overwrite" in refused.stderr and "Traceback" not in refused.stderr
    assert existing.read_bytes() == b"an earlier result"
    replaced = run_cli(a, "-o", tmp_path / "out", "--overwrite", env_store=store)
    assert replaced.returncode == 0, replaced.stderr
    assert read_l2(existing).meta["cal_step"]["ramp_fit"] == "COMPLETE"


@pytest.mark.parametrize("reftype", ["inverselinearity"])
def test_overrides_no_step_reads_are_not_offered(l1_file, store, tmp_path, reftype):
    result = run_cli(l1_file, "-o", tmp_path / "out", f"--override-{reftype}", tmp_path / "none.asdf",
                     env_store=store)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"--override-{reftype}" in result.stderr and not (tmp_path / "out").exists()


def test_a_damaged_input_among_several(l1_file, store, tmp_path):
    # every input is read and validated before any work: nothing is written, the damaged file is named
    good = _copy(l1_file, tmp_path / "in" / "good_uncal.asdf")
    damaged = _damaged_copy(l1_file, tmp_path / "in" / "damaged_uncal.asdf")
    result = run_cli(good, damaged, "-o", tmp_path / "out", "--workers", "2", env_store=store)
    _assert_clean_failure(result, tmp_path / "out", str(damaged), "checksum")
    assert "BrokenProcessPool" not in result.stderr and result.stdout == ""
    assert not (tmp_path / "out").exists()


def test_unusable_output_locations(l1_file, store, tmp_path):
    regular = tmp_path / "a_file"
    regular.write_text("x")
    result = run_cli(l1_file, "-o", regular / "out", env_store=store)
    _assert_clean_failure(result, regular, str(regular))
    taken = tmp_path / "taken"
    (taken / l1_file.name.replace("_uncal", "_cal")).mkdir(parents=True)
    result = run_cli(l1_file, "-o", taken, "--overwrite", env_store=store)
    _assert_clean_failure(result, tmp_path / "none", "folder")
    long_input = _copy(l1_file, tmp_path / "long" / ("y" * 250 + ".asdf"))  # its output name is 259 bytes
    result = run_cli(long_input, "-o", tmp_path / "out", env_store=store)
    _assert_clean_failure(result, tmp_path / "out", "too long")
    assert regular.read_text() == "x"


def _worker_pids(parent_pid: int) -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            cmdline = (stat.parent / "cmdline").read_bytes()
        except OSError:
            continue
        if int(fields[1]) == parent_pid and b"spawn_main" in cmdline:
            pids.append(int(stat.parent.name))
    return pids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


def test_killed_calibrate_takes_its_workers_with_it(l1_file, store, tmp_path):
    import os
    import signal
    import time

    inputs = [_copy(l1_file, tmp_path / "in" / f"e{i}_uncal.asdf") for i in range(4)]
    env = {"ROMANFLOW_REFDATA": str(store), "PATH": "/usr/bin:/bin"}
    parent = subprocess.Popen([sys.executable, "-m", "romanflow.cli", "calibrate", *map(str, inputs),
                               "-o", str(tmp_path / "out"), "--workers", "2", "-q"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    deadline = time.monotonic() + 120
    workers = []
    while time.monotonic() < deadline and len(workers) < 2:
        workers = _worker_pids(parent.pid)
        time.sleep(0.2)
    assert len(workers) == 2, "no worker processes started"
    time.sleep(3)  # the workers are calibrating
    os.kill(parent.pid, signal.SIGKILL)
    parent.wait(timeout=30)
    # a worker still importing when its parent dies arms the death signal only once it starts; under a
    # loaded machine that takes tens of seconds, and an orphan would otherwise run on for minutes
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline and any(_running(pid) for pid in workers):
        time.sleep(0.2)
    alive = [pid for pid in workers if _running(pid)]
    for pid in alive:
        os.kill(pid, signal.SIGKILL)
    assert not alive, "worker processes outlived the killed calibrate"
    # a rerun into the same folder clears what the killed run left half-written and calibrates
    rerun = run_cli(inputs[0], "-o", tmp_path / "out", "--overwrite", env_store=store)
    assert rerun.returncode == 0, rerun.stderr
    assert not [p for p in (tmp_path / "out").iterdir() if p.name.endswith(".partial")]
