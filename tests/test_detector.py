"""WFI facts: detectors, sizes, MA tables and read-pattern timing."""

from __future__ import annotations

import numpy as np
import pytest

from romanflow.detector import (
    DEFAULT_MA_TABLE,
    DETECTORS,
    FRAME_TIME,
    MA_TABLES,
    ReadPattern,
    detector_name,
    ma_table,
    total_size,
)
from romanflow.errors import RomanflowError

#: (resultants, last read, seconds) of the imaging tables, from the mission's table definitions.
EXPECTED = {3: (5, 18, 57), 4: (9, 44, 139), 5: (12, 63, 199), 6: (15, 93, 294), 7: (15, 125, 395),
            8: (15, 156, 493), 9: (15, 187, 591), 10: (15, 233, 737), 11: (15, 309, 977)}


def test_detectors_and_sizes():
    assert len(DETECTORS) == 18 and DETECTORS[0] == "WFI01" and DETECTORS[-1] == "WFI18"
    assert detector_name(7) == detector_name("wfi07") == "WFI07"
    assert total_size(4088) == 4096 and total_size(248) == 256
    with pytest.raises(RomanflowError, match="WFI19"):
        detector_name("WFI19")
    with pytest.raises(RomanflowError, match="multiple"):
        total_size(250)


@pytest.mark.parametrize("number", sorted(EXPECTED))
def test_imaging_tables_match_the_mission_definitions(number):
    n_res, last, seconds = EXPECTED[number]
    table = ma_table(number)
    assert table.n_resultants == n_res and table.last_read == last
    assert round(table.timing(FRAME_TIME).exposure_time) == seconds


def test_every_table_is_contiguous_and_starts_and_ends_with_one_read():
    for number in range(3, 18):
        reads = [r for group in MA_TABLES[number].read_pattern for r in group]
        assert reads == list(range(1, len(reads) + 1))
        assert len(MA_TABLES[number].read_pattern[-1]) == 1
        assert MA_TABLES[number].n_resultants == (15 if number >= 6 else EXPECTED[number][0])
    assert ma_table(DEFAULT_MA_TABLE).name == "C2A_IMG_HLWAS"
    assert ma_table(4).as_list()[3] == [5, 6, 7, 8, 9]


def test_unknown_table_is_a_clear_error():
    with pytest.raises(RomanflowError, match="unknown MA table 99"):
        ma_table(99)


def test_read_pattern_covariance_matches_brute_force():
    """Var and covariance of resultants from the pattern equal those of averaged Poisson reads."""
    pattern = ReadPattern([[1], [2, 3], [5, 6, 7], [10]], frame_time=3.0)
    flux, sigma = 2.0, 4.0
    times = 3.0 * np.arange(1, 11)
    # read k accumulates Poisson counts up to t_k: Cov(read_j, read_k) = flux * min(t_j, t_k) + sigma^2 delta_jk
    read_cov = flux * np.minimum.outer(times, times) + sigma**2 * np.eye(10)
    averaging = np.zeros((4, 10))
    for i, reads in enumerate(pattern.read_pattern):
        averaging[i, np.array(reads) - 1] = 1.0 / len(reads)
    expected = averaging @ read_cov @ averaging.T
    assert np.allclose(pattern.covariance(flux, sigma), expected)
    assert np.allclose(pattern.mean_times, [3.0, 7.5, 18.0, 30.0])


def test_read_pattern_from_metadata_and_bad_patterns():
    meta = {"exposure": {"read_pattern": [[1], [2, 3]], "frame_time": 3.16247}}
    assert ReadPattern.from_meta(meta).n_resultants == 2
    with pytest.raises(RomanflowError, match="frame_time"):
        ReadPattern.from_meta({"exposure": {"read_pattern": [[1]]}})
    with pytest.raises(RomanflowError, match="increasing"):
        ReadPattern([[2], [1]], 3.0)
    with pytest.raises(RomanflowError, match="frame time"):
        ReadPattern([[1]], -1.0)
