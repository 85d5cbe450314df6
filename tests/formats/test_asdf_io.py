"""L1 and L2 products: write, validate against the official schemas, read back equal."""

from __future__ import annotations

import numpy as np
import pytest

from romanflow.detector import ma_table
from romanflow.errors import InputFileError
from romanflow.exposure import RampExposure, RateImage
from romanflow.formats import check_l1, read_l1, read_l2, write_l1, write_l2


def _l1(n_res=9, n=256, seed=0):
    rng = np.random.default_rng(seed)
    meta = {"instrument": {"name": "WFI", "detector": "WFI07", "optical_element": "F158"},
            "exposure": {"type": "WFI_IMAGE", "read_pattern": ma_table(4).as_list()[:n_res], "frame_time": 3.16247,
                         "ma_table_number": 4, "nresultants": n_res}}
    return RampExposure(data=rng.integers(0, 65535, (n_res, n, n), dtype=np.uint16),
                        amp33=rng.integers(0, 65535, (n_res, n, 128), dtype=np.uint16), meta=meta)


def test_l1_round_trip_validates_with_roman_datamodels(tmp_path):
    import roman_datamodels.datamodels as rdm

    exposure = _l1()
    path = write_l1(exposure, tmp_path / "r0000101001001001001_0001_wfi07_uncal.asdf")
    with rdm.open(path) as model:
        model.validate()
        assert type(model).__name__ == "ScienceRawModel"
    back = read_l1(path)
    assert np.array_equal(back.data, exposure.data) and np.array_equal(back.amp33, exposure.amp33)
    assert back.meta["exposure"]["read_pattern"] == exposure.meta["exposure"]["read_pattern"]
    assert back.meta["instrument"]["detector"] == "WFI07"
    assert check_l1(path)["exposure"]["frame_time"] == pytest.approx(3.16247)
    assert not any(p.name.endswith(".partial") for p in tmp_path.iterdir())


def test_l2_round_trip(tmp_path):
    import roman_datamodels.datamodels as rdm

    rng = np.random.default_rng(1)
    shape = (248, 248)
    var_p = rng.uniform(0.01, 1, shape).astype(np.float32)
    var_r = rng.uniform(0.01, 1, shape).astype(np.float32)
    image = RateImage(data=rng.normal(1, 1, shape).astype(np.float32), err=np.sqrt(var_p + var_r),
                      dq=rng.integers(0, 4, shape).astype(np.uint32), var_poisson=var_p, var_rnoise=var_r,
                      meta=_l1().meta)
    path = write_l2(image, tmp_path / "x_cal.asdf")
    with rdm.open(path) as model:
        model.validate()
    back = read_l2(path)
    assert np.array_equal(back.data, image.data) and np.array_equal(back.dq, image.dq)
    # err and variances are float16 in the official schema: rounding is within 2^-11 = 4.9e-4 relative
    for name, sent in (("err", image.err), ("var_poisson", var_p), ("var_rnoise", var_r)):
        np.testing.assert_allclose(getattr(back, name), sent, rtol=2**-11, atol=0, err_msg=name)


def test_bad_files_name_the_file_and_the_problem(tmp_path):
    good = write_l1(_l1(), tmp_path / "good_uncal.asdf")
    truncated = tmp_path / "cut_uncal.asdf"
    truncated.write_bytes(good.read_bytes()[:5000])
    with pytest.raises(InputFileError, match="cut_uncal.asdf"):
        read_l1(truncated)
    empty = tmp_path / "empty_uncal.asdf"
    empty.write_bytes(b"")
    with pytest.raises(InputFileError, match="empty"):
        read_l1(empty)
    short = _l1()
    short.data = short.data[:5]  # the read pattern still says 9
    path = write_l1(short, tmp_path / "short_uncal.asdf")
    with pytest.raises(InputFileError, match="9"):
        check_l1(path)
    with pytest.raises(InputFileError, match="no such file"):
        read_l1(tmp_path / "missing.asdf")


def _write_unvalidated(source, target, edit):
    """Copy an ASDF file with ``edit(tree)`` applied, skipping schema validation (to make invalid files)."""
    from unittest import mock

    import asdf

    with asdf.open(source, lazy_load=False, memmap=False) as af:
        edit(af.tree["roman"])
        with mock.patch("asdf.schema.validate", lambda *a, **k: None):
            af.write_to(target)
    return target


def test_unknown_ma_table_is_refused(tmp_path):
    exposure = _l1()
    exposure.meta["exposure"]["ma_table_number"] = 999
    path = write_l1(exposure, tmp_path / "ma999_uncal.asdf")
    for reader in (check_l1, read_l1):
        with pytest.raises(InputFileError, match=r"ma999_uncal.asdf.*ma_table_number 999 is not a known MA table"):
            reader(path)


def test_read_pattern_beyond_the_ma_table_is_refused(tmp_path):
    exposure = _l1()
    exposure.meta["exposure"]["read_pattern"] = [*exposure.meta["exposure"]["read_pattern"][:-1], [1000]]
    path = write_l1(exposure, tmp_path / "read1000_uncal.asdf")
    with pytest.raises(InputFileError, match=r"read1000_uncal.asdf.*read 1000"):
        read_l1(path)
    other = _l1()
    other.meta["exposure"]["read_pattern"] = ma_table(5).as_list()[:9]  # a valid pattern, of another table
    path = write_l1(other, tmp_path / "other_uncal.asdf")
    with pytest.raises(InputFileError, match="does not match MA table 4"):
        check_l1(path)


def test_schema_invalid_data_is_refused(tmp_path):
    good = write_l1(_l1(), tmp_path / "good_uncal.asdf")

    def to_float_with_nan(roman):
        data = np.asarray(roman["data"]).astype(np.float32)
        data[0, 0, 0] = np.nan
        roman["data"] = data

    bad = _write_unvalidated(good, tmp_path / "float_uncal.asdf", to_float_with_nan)
    for reader in (check_l1, read_l1):
        with pytest.raises(InputFileError, match=r"float_uncal.asdf: does not match its ScienceRawModel schema"):
            reader(bad)


def test_corrupt_compressed_block_is_refused(tmp_path):
    import asdf

    good = write_l1(_l1(), tmp_path / "good_uncal.asdf")
    with asdf.open(good, lazy_load=False) as af:
        block = af._blocks.blocks[0]
        start, size = block.data_offset, block.header["used_size"]
    raw = bytearray(good.read_bytes())
    for i in range(start + size // 2, start + size // 2 + 16):
        raw[i] ^= 0x5A
    bad = tmp_path / "flipped_uncal.asdf"
    bad.write_bytes(bytes(raw))
    with pytest.raises(InputFileError, match=r"flipped_uncal.asdf.*checksum"):
        read_l1(bad)


def _dead_pid() -> int:
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_partial_folders_of_dead_processes_are_cleared(tmp_path):
    import os

    from romanflow.formats import asdf_io, atomic_path

    host = asdf_io._host_token()
    dead = _dead_pid()
    stale = tmp_path / f".x_cal.asdf.{host}.{dead}.abc123_z.partial"
    stale.mkdir()
    (stale / "x_cal.asdf").write_bytes(b"half")
    live = tmp_path / f".y_cal.asdf.{host}.{os.getppid()}.abc123_z.partial"  # a live process holds it
    live.mkdir()
    other_host = tmp_path / f".z_cal.asdf.00000000.{dead}.abc123_z.partial"
    other_host.mkdir()
    unknown = tmp_path / f".w_cal.asdf.{host}.{dead}.abc123_z.partial"  # holds something romanflow never writes
    unknown.mkdir()
    (unknown / "notes.txt").write_text("mine")
    old_style = tmp_path / ".v_cal.asdf.abc123_z.partial"  # no pid marker
    old_style.mkdir()
    user_file = tmp_path / ".a_cal.asdf.12345678.1.x.partial"
    user_file.write_text("a file, not a folder")
    past = asdf_io._PROCESS_START - 60
    for path in (stale, live, other_host, unknown, old_style):
        os.utime(path, (past, past))
    asdf_io._CLEARED_FOLDERS.discard((os.getpid(), os.path.abspath(tmp_path)))
    with atomic_path(tmp_path / "new.txt") as tmp:
        tmp.write_text("ok")
    assert not stale.exists()
    assert all(p.exists() for p in (live, other_host, unknown, old_style, user_file))
    assert (tmp_path / "new.txt").read_text() == "ok"
    # a stale-looking folder newer than this process is left alone (it may belong to the current run)
    fresh = tmp_path / f".u_cal.asdf.{host}.{dead}.abc123_z.partial"
    fresh.mkdir()
    assert asdf_io.clear_stale_partials(tmp_path) == []


def test_unusable_output_locations_are_os_errors_naming_the_path(tmp_path):
    import errno
    import os

    from romanflow.errors import OutputExistsError
    from romanflow.formats import atomic_path, check_output_path

    regular = tmp_path / "a_file"
    regular.write_text("x")
    with pytest.raises(NotADirectoryError) as info:
        check_output_path(regular / "sub" / "x_cal.asdf")
    assert info.value.filename == str(regular)
    with pytest.raises(OSError) as info:
        with atomic_path(regular / "sub" / "x_cal.asdf") as tmp:
            tmp.write_text("never")
    assert info.value.filename is not None and "partial" not in info.value.filename
    (tmp_path / "taken_cal.asdf").mkdir()
    with pytest.raises(OutputExistsError, match="is a folder"):
        check_output_path(tmp_path / "taken_cal.asdf", overwrite=True)
    long_name = "y" * 252 + ".ok"
    with pytest.raises(OSError) as info:
        check_output_path(tmp_path / (long_name + "x"))
    assert info.value.errno == errno.ENAMETOOLONG and info.value.filename.endswith("x")
    # a name that fits, even though name + temporary suffix would not
    with atomic_path(tmp_path / long_name) as tmp:
        tmp.write_text("fits")
    assert (tmp_path / long_name).read_text() == "fits"
    existing = tmp_path / "kept.txt"
    existing.write_text("user data")
    with pytest.raises(OutputExistsError, match="--overwrite"):
        check_output_path(existing)
    assert existing.read_text() == "user data"
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o500)
        try:
            with pytest.raises(PermissionError):
                check_output_path(locked / "x_cal.asdf")
        finally:
            locked.chmod(0o700)
