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
