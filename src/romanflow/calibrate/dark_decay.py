"""dark_decay: subtract the signal that follows the reset, A·exp(−t/τ), from every resultant."""

from __future__ import annotations

from romanflow.calibrate.inputs import check_ramp_exposure
from romanflow.errors import RomanflowError
from romanflow.exposure import RampExposure, get_meta
from romanflow.kernels.dark_decay import subtract_dark_decay
from romanflow.provenance import mark_step


def dark_decay(exposure: RampExposure, decay_table: dict) -> RampExposure:
    """Subtract the DARKDECAYSIGNAL reference's decay of this detector (DN) from the resultants, in place.

    ``decay_table[detector]`` holds ``amplitude`` (DN at t = 0) and ``time_constant`` (s); the signal
    is averaged over the reads of each resultant at each pixel's own read time
    (:mod:`romanflow.kernels.dark_decay`). A detector whose entry is missing or null is left alone.
    """
    check_ramp_exposure(exposure)
    detector = get_meta(exposure.meta, "instrument.detector")
    entry = (decay_table or {}).get(detector)
    if not entry or entry.get("amplitude") is None or entry.get("time_constant") is None:
        exposure.meta.setdefault("cal_logs", []).append(f"dark_decay: no decay for {detector}, nothing subtracted")
        mark_step(exposure.meta, "dark_decay")
        return exposure
    amplitude, time_constant = float(entry["amplitude"]), float(entry["time_constant"])
    if not time_constant > 0:
        raise RomanflowError(f"dark-decay reference: time constant {time_constant} s of {detector} is not > 0")
    subtract_dark_decay(exposure.data, amplitude, time_constant, exposure.read_pattern)
    exposure.meta.setdefault("cal_logs", []).append(
        f"dark_decay: subtracted {amplitude:.3f} DN x exp(-t/{time_constant:.1f} s)")
    mark_step(exposure.meta, "dark_decay")
    return exposure
