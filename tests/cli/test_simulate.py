"""`romanflow simulate` on bad arguments and existing or unusable outputs, through the real command."""

from __future__ import annotations

import subprocess
import sys

import pytest

SMALL = ("--size", "small", "--n-sources", "200", "--seed", "3", "-q")


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "romanflow.cli", "simulate", *map(str, args)],
                          capture_output=True, text=True, timeout=600)


def _files(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


def _assert_one_line_error(result, *words):
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("romanflow simulate: error:")
    for word in words:
        assert word in lines[0], lines[0]


@pytest.mark.parametrize("args, word", [
    (("--start-time", "yesterday"), "--start-time"),
    (("--ra", "nan"), "--ra"),
    (("--dec", "95"), "--dec"),
    (("--n-sources", "-3"), "--n-sources"),
    (("--pointing-error", "nan", "0", "0"), "--pointing-error"),
])
def test_bad_arguments_are_one_line(tmp_path, args, word):
    result = run_cli(*args, "-o", tmp_path / "out")
    _assert_one_line_error(result, word)
    assert not (tmp_path / "out").exists()


def test_a_simulation_in_the_folder_is_refused_unless_overwrite(tmp_path):
    out = tmp_path / "sim"
    first = run_cli("--filter", "F158", *SMALL, "-o", out)
    assert first.returncode == 0, first.stderr
    before = _files(out)
    for filt in ("F106", "F158"):
        again = run_cli("--filter", filt, *SMALL, "-o", out)
        _assert_one_line_error(again, "_wfi01_uncal.asdf", "--overwrite")
        assert _files(out) == before
    replaced = run_cli("--filter", "F106", *SMALL, "-o", out, "--overwrite")
    assert replaced.returncode == 0, replaced.stderr
    assert set(_files(out)) == set(before) and _files(out) != before


def test_failures_leave_no_truth_files(tmp_path):
    out = tmp_path / "out"
    bad_catalog = run_cli(*SMALL, "--catalog", tmp_path / "missing.csv", "-o", out)
    _assert_one_line_error(bad_catalog, "missing.csv")
    assert not out.exists()
    # an existing folder where the L1 file goes: refused before the truth is written
    (out / "r0000101001001001001_0001_wfi01_uncal.asdf").mkdir(parents=True)
    blocked = run_cli(*SMALL, "-o", out)
    _assert_one_line_error(blocked, "wfi01_uncal.asdf", "folder")
    assert not (out / "truth").exists()
    regular = tmp_path / "a_file"
    regular.write_text("x")
    under_file = run_cli(*SMALL, "-o", regular / "sim")
    _assert_one_line_error(under_file, str(regular))
    assert regular.read_text() == "x"
