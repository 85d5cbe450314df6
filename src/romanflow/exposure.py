"""Lightweight in-memory products: arrays plus a plain metadata tree.

Steps work on these; conversion to and from roman_datamodels happens only at
the file edge (:mod:`romanflow.formats`), so a chain of steps never copies a
ramp cube needlessly.

``meta`` mirrors the official ``roman.meta`` tree as nested dicts of plain
Python values (times as :class:`astropy.time.Time`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from romanflow.detector import N_BORDER, ReadPattern


@dataclass
class RampExposure:
    """One detector's resultants (L1, or a ramp being calibrated).

    Attributes
    ----------
    data : ndarray, (n_resultants, ny, nx)
        Resultants in DN, reference border included (uint16 raw, float32 once calibration starts).
    amp33 : ndarray, (n_resultants, ny, 128)
        The reference output's resultants (DN).
    meta : dict
        Metadata tree (``exposure.read_pattern``, ``exposure.frame_time``, ``instrument`` …).
    groupdq : ndarray of uint8, optional
        Per-resultant flags.
    pixeldq : ndarray of uint32, optional
        Per-pixel flags.
    reference_read, reference_amp33 : ndarray, optional
        On-board subtracted reference read, when present in the L1.
    """

    data: np.ndarray
    amp33: np.ndarray
    meta: dict
    groupdq: np.ndarray | None = None
    pixeldq: np.ndarray | None = None
    reference_read: np.ndarray | None = None
    reference_amp33: np.ndarray | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def n_resultants(self) -> int:
        return self.data.shape[0]

    @property
    def read_pattern(self) -> ReadPattern:
        return ReadPattern.from_meta(self.meta)

    @property
    def science_size(self) -> int:
        return self.data.shape[-1] - 2 * N_BORDER


@dataclass
class RateImage:
    """One detector's calibrated count-rate image (L2), border trimmed.

    Attributes
    ----------
    data : ndarray of float32, (ny, nx)
        Count rate (DN/s).
    err : ndarray, (ny, nx)
        Total 1-sigma uncertainty (DN/s).
    dq : ndarray of uint32
        Pixel flags.
    var_poisson, var_rnoise, var_flat : ndarray
        Variance components ((DN/s)²).
    meta : dict
        Metadata tree, including ``cal_step`` and ``ref_file`` provenance.
    wcs : gwcs.WCS or None
        Detector-to-sky transform once assign_wcs has run.
    extra : dict
        Optional arrays carried to the file (``chisq``, ``dumo``, ``amp33``, border reference pixels …).
    """

    data: np.ndarray
    err: np.ndarray
    dq: np.ndarray
    var_poisson: np.ndarray
    var_rnoise: np.ndarray
    meta: dict
    var_flat: np.ndarray | None = None
    wcs: Any = None
    extra: dict[str, Any] = field(default_factory=dict)


def get_meta(meta: dict, dotted: str, default=None):
    """Return ``meta['a']['b']`` for ``'a.b'``, or ``default`` if any level is missing."""
    node = meta
    for key in dotted.split("."):
        if not isinstance(node, dict) or key not in node:
            return default
        node = node[key]
    return node


def set_meta(meta: dict, dotted: str, value) -> None:
    """Set ``meta['a']['b'] = value`` for ``'a.b'``, creating levels as needed."""
    keys = dotted.split(".")
    node = meta
    for key in keys[:-1]:
        node = node.setdefault(key, {})
    node[keys[-1]] = value
