"""The Wide Field Instrument facts in one place.

Sizes, the reference border, read timing, optical elements and the
multi-accumulation (MA) tables. Everything that depends on how an exposure was
read (frame time, read pattern) must be taken from that exposure's metadata;
the tables here are what the system knows for *building* exposures and for
checking metadata, never a substitute for it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from romanflow.errors import RomanflowError

# --- Focal plane ---------------------------------------------------------------
N_DETECTORS = 18
DETECTORS = tuple(f"WFI{i:02d}" for i in range(1, N_DETECTORS + 1))

N_PIX_TOTAL = 4096  #: pixels per side of a full detector, reference border included
N_BORDER = 4  #: width of the reference-pixel border (pixels)
N_PIX_SCIENCE = N_PIX_TOTAL - 2 * N_BORDER  #: 4088 science pixels per side
CHANNEL_WIDTH = 128  #: columns per readout channel (amplifier)
N_CHANNELS = N_PIX_TOTAL // CHANNEL_WIDTH  #: 32 science channels on a full detector
AMP33_WIDTH = 128  #: columns of the extra reference output (amp33)
PAD_CYCLES_PER_ROW = 14  #: idle clock cycles appended to each row of a channel
ROW_PERIOD = CHANNEL_WIDTH + PAD_CYCLES_PER_ROW  #: pixel times per row of one channel: pixels, then pad cycles
PIXEL_TIME = 4.915263e-6  #: time to read one pixel of one channel (s)
PIXEL_SCALE = 0.11  #: nominal pixel scale (arcsec/pixel)
PIXEL_PITCH_UM = 10.0  #: physical pixel size (micron)

FRAME_TIME = 3.16247  #: seconds per read of the current ("Rev F") MA tables

#: Small science size used by tests (same physics, 256 x 256 with the border).
SMALL_SCIENCE_SIZE = N_PIX_TOTAL // 16 - 2 * N_BORDER  # 248

# --- Optical elements ----------------------------------------------------------
IMAGING_FILTERS = ("F062", "F087", "F106", "F129", "F146", "F158", "F184", "F213")
OPTICAL_ELEMENTS = IMAGING_FILTERS + ("GRISM", "PRISM", "DARK")

#: Mission filter name -> the band name galsim.roman uses.
GALSIM_BANDS = {
    "F062": "R062",
    "F087": "Z087",
    "F106": "Y106",
    "F129": "J129",
    "F146": "W146",
    "F158": "H158",
    "F184": "F184",
    "F213": "K213",
}


def detector_number(detector: str | int) -> int:
    """Return the 1-based detector number of ``'WFI07'``, ``'wfi07'``, ``7`` …"""
    if isinstance(detector, (int, np.integer)):
        number = int(detector)
    else:
        text = str(detector).upper()
        if not text.startswith("WFI") or not text[3:].isdigit():
            raise RomanflowError(f"unknown detector {detector!r}: expected WFI01..WFI18")
        number = int(text[3:])
    if not 1 <= number <= N_DETECTORS:
        raise RomanflowError(f"unknown detector {detector!r}: expected WFI01..WFI18")
    return number


def detector_name(detector: str | int) -> str:
    """Return the canonical detector name, e.g. ``'WFI07'``."""
    return f"WFI{detector_number(detector):02d}"


def check_filter(optical_element: str) -> str:
    """Return the optical element in upper case, or raise for an unknown one."""
    name = str(optical_element).upper()
    if name not in OPTICAL_ELEMENTS:
        raise RomanflowError(
            f"unknown optical element {optical_element!r}: expected one of {', '.join(OPTICAL_ELEMENTS)}"
        )
    return name


def total_size(science_size: int) -> int:
    """Pixels per side including the reference border for a given science size."""
    total = int(science_size) + 2 * N_BORDER
    if science_size <= 0 or total % CHANNEL_WIDTH:
        raise RomanflowError(
            f"science size {science_size} not supported: size + {2 * N_BORDER} must be a "
            f"positive multiple of the {CHANNEL_WIDTH}-column channel width (e.g. 248, 504, 4088)"
        )
    return total


# --- Multi-accumulation tables -------------------------------------------------
def _contiguous(sizes):
    """Read pattern from consecutive group sizes, e.g. [1, 2] -> [[1], [2, 3]]."""
    pattern, start = [], 1
    for n in sizes:
        pattern.append(list(range(start, start + n)))
        start += n
    return pattern


# Imaging tables of the current ("Rev F") MA-table set, as the number of
# consecutive reads averaged into each resultant.
_IMAGING_GROUPS = {
    3: [1, 2, 6, 8, 1],
    4: [1, 1, 2, 5, 8, 8, 8, 10, 1],
    5: [1, 1, 2, 6, 6, 6, 6, 6, 8, 10, 10, 1],
    6: [1, 1, 2, 6, 6, 6, 8, 8, 8, 8, 8, 10, 10, 10, 1],
    7: [1, 1, 2, 8, 8, 10, 10, 12, 12, 12, 12, 12, 12, 12, 1],
    8: [1, 1, 2, 8, 9, 10, 12, 16, 16, 16, 16, 16, 16, 16, 1],
    9: [1, 1, 2, 8, 8, 10, 12, 16, 16, 16, 16, 16, 32, 32, 1],
    10: [1, 1, 2, 8, 12, 16, 16, 16, 16, 16, 32, 32, 32, 32, 1],
    11: [1, 1, 2, 16, 16, 16, 32, 32, 32, 32, 32, 32, 32, 32, 1],
    12: [1, 2, 2, 4, 4, 4, 4, 4, 4, 4, 4, 4, 8, 8, 1],
    13: [1, 2, 2, 4, 4, 4, 4, 8, 8, 8, 8, 8, 8, 8, 1],
    14: [1, 2, 2, 4, 6, 8, 8, 8, 8, 8, 8, 8, 8, 16, 1],
    15: [1, 2, 2, 4, 6, 6, 12, 12, 12, 12, 12, 12, 12, 12, 1],
    16: [1, 2, 2, 8, 12, 12, 12, 12, 12, 12, 12, 16, 16, 16, 1],
    17: [2, 2, 2, 6, 8, 12, 16, 16, 16, 16, 16, 16, 32, 32, 1],
}

_TABLE_NAMES = {4: "C2A_IMG_HLWAS"}


@dataclass(frozen=True)
class MATable:
    """One multi-accumulation table: a number, a name and a read pattern.

    Parameters
    ----------
    number : int
        MA table number (``meta.exposure.ma_table_number``).
    name : str
        MA table name (``meta.exposure.ma_table_name``).
    read_pattern : tuple of tuple of int
        1-based read numbers averaged into each resultant.
    """

    number: int
    name: str
    read_pattern: tuple

    @property
    def n_resultants(self) -> int:
        return len(self.read_pattern)

    @property
    def last_read(self) -> int:
        return self.read_pattern[-1][-1]

    def as_list(self) -> list:
        return [list(r) for r in self.read_pattern]

    def timing(self, frame_time: float = FRAME_TIME) -> "ReadPattern":
        """The table's read pattern with its timing quantities for a frame time (s)."""
        return ReadPattern(self.read_pattern, frame_time)


MA_TABLES = {
    number: MATable(number, _TABLE_NAMES.get(number, f"IMG_MA{number:02d}"),
                    tuple(tuple(r) for r in _contiguous(groups)))
    for number, groups in _IMAGING_GROUPS.items()
}
# Test tables (not part of the flight set; 110 has 16 resultants over 44 reads).
MA_TABLES[109] = MATable(109, "TEST_109", tuple(tuple(r) for r in (
    [1], [2, 3], [5, 6, 7], [10, 11, 12, 13], [15, 16, 17, 18, 19, 20], [21, 22, 23, 24, 25, 26],
    [27, 28, 29, 30, 31, 32], [33, 34, 35, 36, 37, 38], [39, 40, 41, 42, 43], [44])))
MA_TABLES[110] = MATable(110, "TEST_110", tuple(tuple(r) for r in ([1],) + tuple(
    tuple(range(s, s + 3)) for s in range(2, 42, 3)) + ([44],)))

DEFAULT_MA_TABLE = 4


def ma_table(number: int) -> MATable:
    """Return the MA table with this number, or raise a clear error."""
    try:
        return MA_TABLES[int(number)]
    except (KeyError, TypeError, ValueError):
        known = ", ".join(str(n) for n in sorted(MA_TABLES))
        raise RomanflowError(f"unknown MA table {number!r}: known tables are {known}") from None


class ReadPattern:
    """Timing quantities of a read pattern that ramp fitting needs.

    Parameters
    ----------
    read_pattern : sequence of sequence of int
        1-based read numbers averaged into each resultant.
    frame_time : float
        Time between reads (s).

    Attributes (all numpy arrays over resultants)
    ----------------------------------------------
    n_reads : int array
        Reads averaged in each resultant, N_i.
    mean_times : float array
        Mean time of each resultant, t̄_i = frame_time · mean(reads) (s).
    tau : float array
        Poisson variance factor τ_i (s): Var(R_i) = σ²/N_i + f·τ_i for a
        flux f and per-read noise σ, with
        τ_i = (frame_time/N_i²) Σ_k (2(N_i−k)−1)·read_k over sorted reads.
    """

    def __init__(self, read_pattern, frame_time: float):
        if frame_time is None or not np.isfinite(frame_time) or frame_time <= 0:
            raise RomanflowError(f"invalid frame time {frame_time!r}: must be a positive number of seconds")
        pattern = [sorted(int(r) for r in reads) for reads in read_pattern]
        if not pattern or any(len(r) == 0 for r in pattern):
            raise RomanflowError("invalid read pattern: every resultant needs at least one read")
        flat = [r for reads in pattern for r in reads]
        if min(flat) < 1 or any(b <= a for a, b in zip(flat, flat[1:])):
            raise RomanflowError("invalid read pattern: reads must be positive and strictly increasing")
        self.read_pattern = pattern
        self.frame_time = float(frame_time)

    @cached_property
    def n_reads(self) -> np.ndarray:
        return np.array([len(r) for r in self.read_pattern], dtype=np.int64)

    @cached_property
    def mean_times(self) -> np.ndarray:
        return np.array([self.frame_time * np.mean(r) for r in self.read_pattern])

    @cached_property
    def tau(self) -> np.ndarray:
        out = []
        for reads in self.read_pattern:
            n = len(reads)
            k = np.arange(n)
            out.append(self.frame_time * np.sum((2 * (n - k) - 1) * np.asarray(reads)) / n**2)
        return np.array(out)

    @property
    def n_resultants(self) -> int:
        return len(self.read_pattern)

    @property
    def last_read(self) -> int:
        return self.read_pattern[-1][-1]

    @property
    def exposure_time(self) -> float:
        """Time from reset to the last read (s)."""
        return self.last_read * self.frame_time

    @property
    def effective_exposure_time(self) -> float:
        """Time between the means of the first and last resultants (s)."""
        return float(self.mean_times[-1] - self.mean_times[0])

    def covariance(self, flux: float, read_noise: float) -> np.ndarray:
        """Covariance matrix of the resultants (DN²) for a flux (DN/s) and per-read noise (DN)."""
        t = self.mean_times
        cov = flux * np.minimum.outer(t, t)
        np.fill_diagonal(cov, read_noise**2 / self.n_reads + flux * self.tau)
        return cov

    @classmethod
    def from_meta(cls, meta: dict) -> "ReadPattern":
        """Build from an exposure's metadata (``meta['exposure']``)."""
        exposure = meta.get("exposure", {}) if isinstance(meta, dict) else {}
        pattern = exposure.get("read_pattern")
        frame_time = exposure.get("frame_time")
        if not pattern:
            raise RomanflowError("metadata has no exposure.read_pattern")
        if frame_time is None:
            raise RomanflowError("metadata has no exposure.frame_time")
        return cls(pattern, float(frame_time))
