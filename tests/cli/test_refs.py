"""``romanflow refs init`` and ``romanflow refs best``."""

import subprocess
import sys

import numpy as np
import pytest
from astropy.time import Time

from romanflow.cli import main
from romanflow.detector import SMALL_SCIENCE_SIZE
from romanflow.exposure import RampExposure
from romanflow.formats import write_l1
from romanflow.formats.reference_io import read_reference

SIZE = SMALL_SCIENCE_SIZE
N = SIZE + 8
TYPES = ("mask", "saturation", "refpix", "linearity", "inverselinearity", "gain", "photom", "dark", "readnoise",
         "flat", "distortion", "matable", "darkdecaysignal")


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One store for the module: its files are made once, on first use."""
    return tmp_path_factory.mktemp("refstore")


@pytest.fixture(scope="module")
def l1_file(tmp_path_factory):
    meta = {
        "instrument": {"name": "WFI", "detector": "WFI08", "optical_element": "F106"},
        "exposure": {"type": "WFI_IMAGE", "start_time": Time("2027-02-01T00:00:00"), "read_pattern": [[1], [2, 3]],
                     "frame_time": 3.16247, "ma_table_number": 4},
    }
    exposure = RampExposure(data=np.zeros((2, N, N), np.uint16), amp33=np.zeros((2, N, 128), np.uint16), meta=meta)
    folder = tmp_path_factory.mktemp("in")
    return write_l1(exposure, folder / "r0000101001001001001_0001_wfi08_uncal.asdf")


def _store_dir(root):
    from romanflow.refdata import ReferenceStore

    return ReferenceStore(root, science_size=SIZE).directory


def _files(folder):
    return sorted(p.relative_to(folder) for p in folder.rglob("*"))


def test_best_prints_one_line_per_type(l1_file, store, capsys):
    assert main(["refs", "best", str(l1_file), "--store", str(store)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    choices = dict(line.split(None, 1) for line in lines)
    assert tuple(choices) == TYPES
    assert choices["refpix"].endswith("roman_wfi_refpix_wfi08_0002.asdf")
    assert choices["flat"] == str(_store_dir(store) / "roman_wfi_flat_wfi08_f106_0002.asdf")
    assert choices["dark"].endswith("roman_wfi_dark_wfi08_0002.asdf")
    assert read_reference(choices["flat"], "flat").data.shape == (SIZE, SIZE)  # the L2 image shape


def test_best_with_override(l1_file, store, tmp_path, capsys):
    assert main(["refs", "best", str(l1_file), "--store", str(store)]) == 0
    flat = dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())["flat"]
    mine = tmp_path / "my_flat.asdf"
    mine.write_bytes(open(flat, "rb").read())
    assert main(["refs", "best", str(l1_file), "--store", str(store), "--override-flat", str(mine)]) == 0
    assert dict(line.split(None, 1) for line in capsys.readouterr().out.strip().splitlines())["flat"] == str(mine)
    # The wrong model type as an override: one clear line, exit 2.
    dark = _store_dir(store) / "roman_wfi_dark_wfi08_0002.asdf"
    code = main(["refs", "best", str(l1_file), "--store", str(store), "--override-flat", str(dark)])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "cannot be used as the flat reference: wrong product type DarkRefModel" in err


def _check_error(argv, capsys, folder, expected):
    before = _files(folder)
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("romanflow refs") and ": error: " in err
    assert expected in err
    assert _files(folder) == before  # nothing written, nothing partial
    return err


def test_truncated_file(l1_file, store, tmp_path, capsys):
    cut = tmp_path / "cut_uncal.asdf"
    data = l1_file.read_bytes()
    cut.write_bytes(data[: len(data) // 3])
    _check_error(["refs", "best", str(cut), "--store", str(store)], capsys, tmp_path,
                 "cut_uncal.asdf: ")


def test_wrong_model_type(store, tmp_path, capsys):
    from romanflow.refdata import ReferenceStore

    made = ReferenceStore(store, science_size=SIZE).materialize("roman_wfi_flat_wfi01_f158_0002.asdf")
    flat = tmp_path / "flat.asdf"
    flat.write_bytes(made.read_bytes())
    _check_error(["refs", "best", str(flat), "--store", str(store)], capsys, tmp_path,
                 "wrong product type FlatRefModel")


def test_missing_metadata(l1_file, store, tmp_path, capsys):
    raw = l1_file.read_bytes()
    assert raw.count(b"start_time:") >= 1
    broken = tmp_path / "nostart_uncal.asdf"
    broken.write_bytes(raw.replace(b"start_time:", b"start_tim_:", 1))  # same length keeps blocks valid
    err = _check_error(["refs", "best", str(broken), "--store", str(store)], capsys, tmp_path,
                       "nostart_uncal.asdf: ")
    assert "start_time" in err


def test_init_subset_and_bad_detector(store, tmp_path, capsys):
    # WFI08 files exist already from the tests above (or are made now): only the new ones are built.
    main(["refs", "init", "--size", str(SIZE), "--detectors", "WFI08", "--filters", "F106", "--store", str(store)])
    capsys.readouterr()
    code = main(["refs", "init", "--size", str(SIZE), "--detectors", "wfi08", "--filters", "F106", "F213",
                 "--store", str(store)])
    out, err = capsys.readouterr()
    assert code == 0
    # 9 per-detector types, flat and distortion for two filters, the MA tables and the dark decay table.
    assert "15 files (2 new)" in out and " MB, " in out and out.strip().endswith(" s")
    assert len(list(_store_dir(store).glob("*_wfi08_*.asdf"))) == 13
    _check_error(["refs", "init", "--detectors", "WFI77", "--store", str(tmp_path / "other")], capsys, tmp_path,
                 "argument --detectors: 'WFI77': expected WFI01..WFI18 or all")


def test_command_line_exit_code(l1_file, store, tmp_path):
    # The real command: a renamed file with a metadata key missing gives exit 2 and exactly one line.
    broken = tmp_path / "renamed_uncal.asdf"
    broken.write_bytes(l1_file.read_bytes().replace(b"start_time:", b"start_tim_:", 1))
    result = subprocess.run([sys.executable, "-m", "romanflow.cli", "refs", "best", str(broken), "--store",
                             str(store)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1, result.stderr
    assert "renamed_uncal.asdf: " in result.stderr and "start_time" in result.stderr


@pytest.mark.parametrize("size", ["0", "-8", "nan"])
def test_init_refuses_a_size_that_is_not_a_detector_size(tmp_path, capsys, size):
    _check_error(["refs", "init", "--size", size, "--store", str(tmp_path / "s")], capsys, tmp_path,
                 "argument --size: ")


def test_best_on_a_folder_or_a_missing_file(store, tmp_path, capsys):
    _check_error(["refs", "best", str(tmp_path), "--store", str(store)], capsys, tmp_path,
                 f"{tmp_path}: is a folder, not a file")
    _check_error(["refs", "best", str(tmp_path / "absent_uncal.asdf"), "--store", str(store)], capsys, tmp_path,
                 "absent_uncal.asdf: no such file")


def test_init_into_a_store_under_a_regular_file(tmp_path, capsys):
    (tmp_path / "plain").write_text("mine\n")
    _check_error(["refs", "init", "--size", str(SIZE), "--detectors", "WFI01", "--filters", "F158",
                  "--store", str(tmp_path / "plain" / "refs")], capsys, tmp_path, "plain")
    assert (tmp_path / "plain").read_text() == "mine\n"
