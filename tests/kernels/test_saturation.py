"""Saturation flagging kernel."""

import numpy as np

from romanflow import dq
from romanflow.detector import FRAME_TIME, ReadPattern, ma_table
from romanflow.kernels.saturation import flag_saturation

PATTERN = ReadPattern(ma_table(4).as_list(), FRAME_TIME)  # reads 1,2,3-4,5-9,10-17,...


def _cube(columns):
    return np.array(columns, np.float32).T[:, None, :]


def test_forward_backward_and_floor():
    thr = 1000.0
    data = _cube([
        [10, 20, 40, 100, 200, 300, 400, 500, 600],  # never saturates
        [10, 20, 40, 100, 1000, 900, 950, 990, 999],  # saturates at 4 and stays flagged
        [10, 20, 40, 850, 1000, 1000, 1000, 1000, 1000],  # 3 (reads 5-9) reaches thr·7/9: DNU
        [0, 20, -3, 100, 200, 300, 400, 500, 600],  # A/D floor
    ])
    gdq = flag_saturation(data, np.full((1, 4), thr, np.float32), PATTERN)[:, 0]
    assert not gdq[:, 0].any()
    assert np.array_equal(gdq[:4, 1], [0, 0, 0, 0]) and np.all(gdq[4:, 1] == dq.SATURATED)
    assert gdq[3, 2] == dq.DO_NOT_USE and np.all(gdq[4:, 2] == dq.SATURATED) and not gdq[:3, 2].any()
    floor = dq.AD_FLOOR | dq.DO_NOT_USE
    assert gdq[0, 3] == floor and gdq[2, 3] == floor and gdq[1, 3] == 0


def test_no_check_and_existing_flags():
    data = _cube([[65000] * 9, [65000] * 9, [65000] * 9])
    thr = np.array([[np.nan, 1000.0, 1000.0]], np.float32)
    thr_dq = np.array([[0, dq.NO_SAT_CHECK, 0]], np.uint32)
    existing = np.zeros(data.shape, np.uint8)
    existing[0, 0, 2] = dq.DROPOUT
    gdq = flag_saturation(data, thr, PATTERN, existing, threshold_dq=thr_dq)[:, 0]
    assert not gdq[:, 0].any() and not gdq[:, 1].any()  # unchecked pixels: threshold 65536, above any uint16 value
    assert np.all(gdq[:, 2] & dq.SATURATED) and gdq[0, 2] & dq.DROPOUT
    assert not existing[1:].any()  # input not modified


def test_second_resultant_rule():
    # resultant 3 saturated, resultant 2 suspiciously high though resultant 1 predicts no saturation
    pattern = ReadPattern([[1], [2, 3, 4, 5], [6, 7, 8, 9], [10]], FRAME_TIME)
    # 1200 is below the backward-pass level 2000·3.5/5 = 1400 but above 2000/4 reads
    data = _cube([[10, 1200, 3000, 3000]])
    gdq = flag_saturation(data, np.full((1, 1), 2000.0, np.float32), pattern)[:, 0, 0]
    assert gdq[1] == dq.DO_NOT_USE and gdq[2] == dq.SATURATED and gdq[0] == 0
