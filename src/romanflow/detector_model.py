"""The detector parameter set: one source of truth for simulator and reference data.

A :class:`DetectorModel` draws, from a fixed seed, every per-pixel property of
one detector that the simulator injects and the calibration removes: gain,
read noise, bias, dark current, non-linearity, full well and saturation level,
pixel response (flat) and defects, and the amplitudes of the correlated read
noise. The reference-file synthesizer writes these same arrays as reference
files, so the embedded default store calibrates simulated data consistently.

All arrays cover the full frame including the 4-pixel reference border
(shape ``(n, n)`` with ``n = science_size + 8``); reference pixels have no
photon response. Units: DN for levels, DN/s for rates, e-/DN for gain.

Classic non-linearity is defined by the *correction* polynomial (the
LINEARITY reference): linear = m + c2·m² + c3·m³ for a measured value m in DN
(bias included). The simulator applies its exact inverse, so calibrating with
the reference recovers the linear signal up to float32 rounding.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from romanflow import dq
from romanflow.detector import (
    CHANNEL_WIDTH,
    IMAGING_FILTERS,
    N_BORDER,
    N_PIX_SCIENCE,
    check_filter,
    detector_name,
    detector_number,
    total_size,
)

#: Seed of the embedded default parameter set.
DEFAULT_MODEL_SEED = 20270501

# Component identifiers keep each property's random stream independent.
_GAIN, _RNOISE, _BIAS, _DARK, _LIN, _WELL, _RESP, _DEFECT, _FLAT, _CORR, _DECAY, _TRANSIENT = range(12)

#: The detector whose first read after reset carries a decaying transient.
TRANSIENT_DETECTOR = "WFI18"


@dataclass(frozen=True)
class CorrelatedNoiseParameters:
    """Amplitudes of the correlated read noise of one detector (DN per read).

    Attributes
    ----------
    common_1f : float
        rms of the 1/f noise shared by all channels and amp33.
    channel_1f : float
        rms of the 1/f noise independent in each channel (small: most of the
        correlated noise of an H4RG is common to all outputs).
    acn : float
        rms of the alternating-column noise (even/odd column offset along
        the read-time series), shared by all channels and amp33.
    white_ref : float
        white read noise of reference pixels and amp33.
    """

    common_1f: float
    channel_1f: float
    acn: float
    white_ref: float


@dataclass(frozen=True)
class DetectorModel:
    """Per-pixel physical parameters of one WFI detector.

    Parameters
    ----------
    detector : str or int
        Detector name (``'WFI07'``) or number (7).
    science_size : int
        Science pixels per side: 4088 for a full detector, smaller for tests.
    seed : int
        Seed of the parameter set (the default store uses ``DEFAULT_MODEL_SEED``).
    """

    detector: str
    science_size: int = N_PIX_SCIENCE
    seed: int = DEFAULT_MODEL_SEED

    def __post_init__(self):
        object.__setattr__(self, "detector", detector_name(self.detector))
        total_size(self.science_size)  # validates

    # --- helpers -------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        n = total_size(self.science_size)
        return (n, n)

    @property
    def n_channels(self) -> int:
        return self.shape[1] // CHANNEL_WIDTH

    @property
    def science(self) -> tuple[slice, slice]:
        """Slices selecting the science area of a full-frame array."""
        s = slice(N_BORDER, N_BORDER + self.science_size)
        return (s, s)

    def _rng(self, component: int, extra: int = 0, per_pixel: bool = True) -> np.random.Generator:
        """Random stream of one property; per-pixel maps depend on the size, detector-wide values do not."""
        size = self.science_size if per_pixel else 0
        return np.random.default_rng([self.seed, detector_number(self.detector), size, component, extra])

    def _per_channel(self, values: np.ndarray) -> np.ndarray:
        """Broadcast one value per channel to a full-frame float32 array."""
        row = np.repeat(np.asarray(values, dtype=np.float32), CHANNEL_WIDTH)
        return np.broadcast_to(row, self.shape).copy()

    @cached_property
    def _science_mask(self) -> np.ndarray:
        mask = np.zeros(self.shape, dtype=bool)
        mask[self.science] = True
        return mask

    # --- electronic properties ---------------------------------------------
    @cached_property
    def gain(self) -> np.ndarray:
        """Gain (e-/DN), one value per readout channel."""
        return self._per_channel(self._rng(_GAIN).uniform(1.8, 2.2, self.n_channels))

    @cached_property
    def read_noise(self) -> np.ndarray:
        """White read noise per read (DN), per pixel."""
        rng = self._rng(_RNOISE)
        return (5.0 * np.exp(rng.normal(0.0, 0.08, self.shape))).astype(np.float32)

    @cached_property
    def bias(self) -> np.ndarray:
        """Bias level (DN): a per-channel offset plus per-pixel structure."""
        rng = self._rng(_BIAS)
        per_channel = self._per_channel(rng.normal(1000.0, 60.0, self.n_channels))
        return (per_channel + rng.normal(0.0, 25.0, self.shape)).astype(np.float32)

    @cached_property
    def linearity_coeffs(self) -> np.ndarray:
        """Correction polynomial (4, ny, nx): linear = Σ c_k m^k, k = 0..3 (DN)."""
        rng = self._rng(_LIN)
        c2 = rng.uniform(1.7e-6, 2.3e-6, self.n_channels)
        c3 = rng.uniform(0.5e-11, 1.5e-11, self.n_channels)
        coeffs = np.zeros((4,) + self.shape, dtype=np.float32)
        coeffs[1] = 1.0
        coeffs[2] = self._per_channel(c2)
        coeffs[3] = self._per_channel(c3)
        return coeffs

    @cached_property
    def full_well(self) -> np.ndarray:
        """Largest linear level a pixel reaches, bias included (DN)."""
        rng = self._rng(_WELL)
        return rng.normal(64000.0, 1200.0, self.shape).clip(58000.0, 68000.0).astype(np.float32)

    @cached_property
    def saturation(self) -> np.ndarray:
        """Saturation threshold on measured (non-linear) values (DN), just below the plateau."""
        level = measured_from_linear(0.97 * self.full_well, self.linearity_coeffs)
        return np.floor(level).astype(np.float32)

    @cached_property
    def dark_decay(self) -> tuple[float, float]:
        """Dark decay after reset, ``A·exp(−t/τ)``: amplitude A (DN) and time constant τ (s), per detector."""
        rng = self._rng(_DECAY, per_pixel=False)
        return float(rng.uniform(0.3, 0.5)), float(rng.uniform(18.0, 28.0))

    @cached_property
    def first_read_transient(self) -> tuple[float, float, float, float] | None:
        """Typical first-read transient of WFI18, ``a·exp(−t/τa) + b·exp(−t/τb)``: (a DN, τa s, b DN, τb s).

        None for every other detector. ``t`` is the pixel's read time within the
        frame; the transient is in the first read only, and its amplitude changes
        from exposure to exposure (the simulator scales it per exposure).
        """
        if self.detector != TRANSIENT_DETECTOR:
            return None
        rng = self._rng(_TRANSIENT, per_pixel=False)
        return (float(rng.uniform(40.0, 60.0)), float(rng.uniform(0.08, 0.12)),
                float(rng.uniform(10.0, 15.0)), float(rng.uniform(0.5, 0.7)))

    @cached_property
    def correlated_noise(self) -> CorrelatedNoiseParameters:
        rng = self._rng(_CORR, per_pixel=False)  # the same detector at every test size
        return CorrelatedNoiseParameters(
            common_1f=float(rng.uniform(2.5, 3.5)),
            channel_1f=float(rng.uniform(0.3, 0.5)),
            acn=float(rng.uniform(0.8, 1.2)),
            white_ref=5.0,
        )

    def refpix_coefficients(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """REFPIX coefficients ``(gamma, zeta, alpha)``, complex128 (n_freq,), the same for every channel.

        The Wiener combination (:func:`romanflow.kernels.refpix.irrc_coefficients`) of
        this detector's correlated-noise spectra (:func:`correlated_noise_power`) over one
        read of ``ny · ROW_PERIOD`` samples: the common noise is the signal; amp33 adds
        its own 1/f and white noise; each side's 4 reference columns add their channel's
        1/f noise and their white read noise, raised by ``ROW_PERIOD / 4`` by the sparse
        sampling. Coefficients do not depend on the read pattern: every term scales as
        1/reads in a resultant.
        """
        from romanflow.detector import ROW_PERIOD
        from romanflow.kernels.refpix import N_REFERENCE_COLUMNS, irrc_coefficients

        ny, nx = self.shape
        n_samples = ny * ROW_PERIOD
        power = correlated_noise_power(self.correlated_noise, n_samples)
        columns = np.r_[0:N_REFERENCE_COLUMNS, nx - N_REFERENCE_COLUMNS:nx]
        column_white = float(np.mean(self.read_noise[:, columns].astype(np.float64) ** 2))
        column_noise = power["channel"] + column_white * (ROW_PERIOD / N_REFERENCE_COLUMNS) / n_samples
        return irrc_coefficients(power["common"], power["channel"] + power["amp33_white"], column_noise)

    # --- pixel response and defects ------------------------------------------
    @cached_property
    def _defects(self) -> dict:
        rng = self._rng(_DEFECT)
        u = rng.random(self.shape)
        science = self._science_mask
        dead = science & (u < 5e-4)
        low_qe = science & (u >= 5e-4) & (u < 1.5e-3)
        hot_draw = rng.random(self.shape)
        hot = science & (hot_draw < 2e-3)
        hot_rate = np.where(hot, 10.0 ** rng.uniform(-1.0, 1.3, self.shape), 0.0)
        return {"dead": dead, "low_qe": low_qe, "hot": hot, "hot_rate": hot_rate}

    @cached_property
    def dark_rate(self) -> np.ndarray:
        """Dark current (DN/s); reference pixels see none."""
        rng = self._rng(_DARK)
        base = rng.gamma(4.0, 0.005 / 4.0, self.shape)
        rate = np.where(self._science_mask, base + self._defects["hot_rate"], 0.0)
        return rate.astype(np.float32)

    @cached_property
    def pixel_response(self) -> np.ndarray:
        """Filter-independent pixel response (quantum efficiency relative to the mean)."""
        rng = self._rng(_RESP)
        resp = rng.normal(1.0, 0.015, self.shape).clip(0.9, 1.1)
        resp[self._defects["low_qe"]] *= 0.5
        resp[self._defects["dead"]] = 0.0
        resp[~self._science_mask] = 0.0
        return resp.astype(np.float32)

    def flat(self, optical_element: str) -> np.ndarray:
        """Pixel response in a filter, normalised to a median of 1 over good science pixels.

        Reference pixels are 0; dead pixels 0.
        """
        name = check_filter(optical_element)
        index = IMAGING_FILTERS.index(name) if name in IMAGING_FILTERS else len(IMAGING_FILTERS)
        rng = self._rng(_FLAT, index)
        n = self.shape[0]
        y, x = (np.mgrid[0:n, 0:n] / (n - 1) - 0.5) * 2.0
        a = rng.normal(0.0, 0.02, 5)
        large_scale = 1.0 + a[0] * x + a[1] * y + a[2] * x * y + a[3] * (x**2 - 1 / 3) + a[4] * (y**2 - 1 / 3)
        flat = self.pixel_response * large_scale
        good = self._science_mask & (self.pixel_response > 0)
        flat /= np.median(flat[good])
        return flat.astype(np.float32)

    @cached_property
    def nominal_gain(self) -> float:
        """Gain (e-/DN) that defines the DN of calibrated images: the mean over science pixels."""
        return float(np.mean(self.gain[self.science]))

    def flat_dn(self, optical_element: str) -> np.ndarray:
        """The FLAT reference: response in DN relative to a detector at the nominal gain.

        A flat measured in DN/s folds the channel-to-channel gain into the pixel
        response: ``flat(filter) · nominal_gain / gain``. Dividing a rate image
        (DN/s) by it gives the rate of a detector with the nominal gain everywhere,
        so one photometric conversion applies to every pixel.
        """
        return (self.flat(optical_element) * (self.nominal_gain / self.gain)).astype(np.float32)

    @cached_property
    def mask(self) -> np.ndarray:
        """Pixel DQ (uint32) of the defects, as the MASK reference records them."""
        d = self._defects
        flags = np.zeros(self.shape, dtype=np.uint32)
        flags[~self._science_mask] |= dq.REFERENCE_PIXEL
        flags[d["dead"]] |= dq.DEAD | dq.DO_NOT_USE
        flags[d["low_qe"]] |= dq.LOW_QE
        hot_rate = d["hot_rate"]
        flags[hot_rate > 1.0] |= dq.HOT
        flags[(hot_rate > 0.1) & (hot_rate <= 1.0)] |= dq.WARM
        return flags


def one_over_f_spectrum(n_samples: int) -> np.ndarray:
    """Unit-variance 1/f power spectrum over the rfft bins of ``n_samples`` samples.

    Returns ``S`` (float64, ``n_samples // 2 + 1`` bins) with ``S[k] ∝ 1/k`` for
    k ≥ 1 and ``S[0] = S[1]``, normalised so that the time series
    ``irfft(X, norm='forward')`` with ``E|X_k|² = S_k`` has variance 1, i.e.
    ``S[0] + 2·Σ S[1:-1] + S[-1] = 1`` (``n_samples`` even).
    """
    if n_samples < 4 or n_samples % 2:
        raise ValueError(f"time series length {n_samples} must be an even number >= 4")
    n_freq = n_samples // 2 + 1
    k = np.arange(n_freq, dtype=np.float64)
    k[0] = 1.0
    spectrum = 1.0 / k
    total = spectrum[0] + 2.0 * spectrum[1:-1].sum() + spectrum[-1]
    return spectrum / total


def correlated_noise_power(params: CorrelatedNoiseParameters, n_samples: int) -> dict:
    """Per-read power spectra (DN² per rfft bin, ``E|X_k|²`` with ``irfft(X, norm='forward')``) of one read.

    ``n_samples`` is the length of one read's time series (``ny · ROW_PERIOD``).
    Returns ``common`` (1/f and alternating-column noise shared by every output),
    ``channel`` (each output's own 1/f noise) and ``amp33_white`` (amp33's white
    noise, flat). The simulator draws its noise from these spectra; the REFPIX
    reference is computed from them.
    """
    unit = one_over_f_spectrum(n_samples)
    return {
        "common": params.common_1f**2 * unit + params.acn**2 * unit[::-1],
        "channel": params.channel_1f**2 * unit,
        "amp33_white": np.full(unit.size, params.white_ref**2 / n_samples),
    }


def measured_from_linear(linear: np.ndarray, coeffs: np.ndarray, iterations: int = 6) -> np.ndarray:
    """Invert the linearity correction: find m with Σ c_k m^k = linear (DN).

    Newton iterations starting from m = linear; the polynomial is monotonic over
    the detector's range so this converges to float precision in a few steps.
    """
    linear = np.asarray(linear, dtype=np.float64)
    c = [np.asarray(ck, dtype=np.float64) for ck in coeffs]
    m = linear.copy()
    for _ in range(iterations):
        value = c[-1]
        deriv = np.zeros_like(m)
        for ck in c[-2::-1]:
            deriv = deriv * m + value
            value = value * m + ck
        m = m - (value - linear) / deriv
    return m
