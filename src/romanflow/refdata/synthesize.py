"""Reference files synthesized from the detector parameter set.

Every array comes from :class:`romanflow.detector_model.DetectorModel`, the
same parameters the simulator injects, so the embedded store calibrates
simulated data consistently. Nothing here invents detector parameters; the
only numbers added are those of the reference *format* (USEAFTER date,
inverse-polynomial degree) and the photometric constants taken from
``galsim.roman``.

The synthesized references are exact descriptions of the model, so their
uncertainty arrays (``dark_slope_error``, flat ``err``) are zero.

Array shapes
------------
Each type has the shape the official steps (romancal) apply it to. The
FLAT is applied to the L2 rate image, whose reference border is already
trimmed, and romancal's flat_field skips the step when the flat's shape
differs from the image's: the flat is ``science_size`` square (4088² at full
size). Every other image type is applied to the ramp, or trimmed by the step
itself (the DARK's ``[4:-4, 4:-4]``), so it covers the full frame,
``science_size + 8`` square (4096² at full size).

Inverse linearity
-----------------
The INVERSELINEARITY reference maps a linear signal L (DN) to the measured
value m = Σ d_k L^k. It is a per-pixel least-squares fit of degree
:data:`INVERSE_DEGREE` to the exact inverse of the LINEARITY polynomial on
:data:`INVERSE_SAMPLES` evenly spaced levels from 0 to 1.05 × the largest
full well of the detector. Its largest error over that range is below 0.1 DN
(checked in the tests), far below the read noise.

Photometric conversion
----------------------
For a source of constant f_ν, galsim.roman's AB-zeropointed bandpasses give a
photon rate per unit collecting area ``10**(-0.4 (m_AB - zp))`` (photons/s/cm²).
Multiplying by the collecting area A (cm²) gives e-/s, dividing by the gain g
(e-/DN, the detector's nominal gain; the FLAT folds each channel's departure
from it into the response) gives DN/s. So 1 DN/s corresponds
to f_ν = 3631 Jy · g · 10**(-0.4 zp) / A, and spread over one nominal pixel
of Ω = (0.11″)² sr, ``photmjsr = 3631e-6 · g · 10**(-0.4 zp) / (A · Ω)``
in (MJy/sr)/(DN/s). Its uncertainty is set to :data:`PHOTOM_RELATIVE_UNCERTAINTY`
of the value.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from romanflow import dq
from romanflow.detector import (
    DETECTORS,
    FRAME_TIME,
    GALSIM_BANDS,
    IMAGING_FILTERS,
    MA_TABLES,
    N_BORDER,
    PIXEL_SCALE,
)
from romanflow.detector_model import DEFAULT_MODEL_SEED, DetectorModel, measured_from_linear
from romanflow.errors import RomanflowError
from romanflow.formats.reference_io import reference_meta, write_reference

#: Version tag of the synthesizer, in the names of the files it writes; a new synthesizer writes new names.
FILE_VERSION = "0002"
#: USEAFTER date of the synthesized references.
SYNTH_USEAFTER = "2020-01-01T00:00:00"
#: Degree of the inverse-linearity polynomial.
INVERSE_DEGREE = 5
#: Number of signal levels the inverse-linearity fit uses.
INVERSE_SAMPLES = 64
#: Relative 1-sigma uncertainty recorded for the photometric conversion.
PHOTOM_RELATIVE_UNCERTAINTY = 0.01
#: Reference types the synthesizer produces -> whether the type needs an imaging filter.
SYNTH_TYPES = {
    "mask": False, "saturation": False, "linearity": False, "inverselinearity": False, "dark": False,
    "gain": False, "readnoise": False, "flat": True, "distortion": True, "photom": False, "matable": False,
    "darkdecaysignal": False, "refpix": False,
}

#: Flux density of AB magnitude zero (Jy).
AB_ZERO_POINT_JY = 3631.0
_ARCSEC_RAD = np.pi / (180.0 * 3600.0)

#: Types synthesized by a higher-level package that registers its writer (type -> package).
PLUGIN_TYPES = {"epsf": "romanflow.psf"}
#: Registered writers: type -> writer(path, detector, optical_element) -> Path.
PLUGIN_SYNTHESIZERS: dict = {}


def register_synthesizer(reftype: str, writer) -> None:
    """Register the writer of a :data:`PLUGIN_TYPES` reference (called by the package that makes it)."""
    PLUGIN_SYNTHESIZERS[reftype.lower()] = writer


@lru_cache(maxsize=1)
def detector_model(detector: str, science_size: int, seed: int = DEFAULT_MODEL_SEED) -> DetectorModel:
    """The :class:`DetectorModel` of one detector (the last one is kept in memory)."""
    return DetectorModel(detector, science_size, seed)


def _meta(reftype, model, description, optical_element=None):
    return reference_meta(
        reftype, model.detector, optical_element=optical_element, useafter=SYNTH_USEAFTER,
        description=f"{description} (romanflow synthesized, science size {model.science_size}, seed {model.seed})",
        pedigree="SIMULATION",
    )


def _distinct_columns(coeffs: np.ndarray):
    """Distinct coefficient sets of a (n, ny, nx) array: (sets (n, k), index (ny, nx)), or None if many.

    Pixels commonly share coefficients (e.g. per readout channel); fitting each
    distinct set once gives the same result as fitting every pixel.
    """
    n = coeffs.shape[0]
    columns = np.ascontiguousarray(coeffs.reshape(n, -1).T)  # (pixels, n)
    words = columns.view(np.uint32 if columns.dtype.itemsize == 4 else np.uint64).astype(np.uint64)
    hashed = np.zeros(columns.shape[0], dtype=np.uint64)
    for k in range(n):  # a mixing hash of the bit patterns, verified below
        hashed = (hashed ^ words[:, k]) * np.uint64(0x100000001B3)
    keys, first, index = np.unique(hashed, return_index=True, return_inverse=True)
    if len(keys) > columns.shape[0] // 4:
        return None
    sets = columns[first]
    if not np.array_equal(sets[index], columns):  # a hash collision: fit every pixel instead
        return None
    return sets.T, index.reshape(coeffs.shape[1:])


def inverse_linearity_coeffs(coeffs: np.ndarray, max_linear: float, degree: int = INVERSE_DEGREE,
                             n_samples: int = INVERSE_SAMPLES, block_rows: int = 64) -> np.ndarray:
    """Least-squares polynomial inverse of a linearity correction.

    Parameters
    ----------
    coeffs : ndarray (n, ny, nx)
        Correction polynomial, linear = Σ c_k m^k (DN).
    max_linear : float
        Upper end of the fitted range of linear signal (DN).
    degree : int
        Degree of the inverse polynomial.
    n_samples : int
        Evenly spaced linear levels in [0, max_linear] used for the fit.
    block_rows : int
        Rows processed at a time (bounds memory).

    Returns
    -------
    ndarray (degree + 1, ny, nx) float32
        measured = Σ d_k L^k (DN).
    """
    distinct = _distinct_columns(coeffs)
    if distinct is not None:
        sets, index = distinct
        fitted = _fit_inverse(sets[:, :, None], max_linear, degree, n_samples, block_rows)[:, :, 0]
        return fitted[:, index]
    return _fit_inverse(coeffs, max_linear, degree, n_samples, block_rows)


def _fit_inverse(coeffs, max_linear, degree, n_samples, block_rows):
    levels = np.linspace(0.0, max_linear, n_samples)
    design = np.vander(levels / max_linear, degree + 1, increasing=True)
    projector = np.linalg.pinv(design)  # (degree+1, n_samples), scaled variable
    scale = max_linear ** np.arange(degree + 1, dtype=np.float64)
    ny, nx = coeffs.shape[1:]
    out = np.empty((degree + 1, ny, nx), dtype=np.float32)
    for start in range(0, ny, block_rows):
        block = coeffs[:, start:start + block_rows]
        linear = np.broadcast_to(levels[:, None, None], (n_samples,) + block.shape[1:])
        measured = measured_from_linear(linear, block)
        fit = np.tensordot(projector, measured, axes=(1, 0))
        out[:, start:start + block_rows] = fit / scale[:, None, None]
    return out


def photometric_conversion(optical_element: str, gain: float) -> dict:
    """PHOTOM table entry of an imaging filter for a mean gain (e-/DN); see the module notes."""
    import galsim.roman

    band = galsim.roman.getBandpasses(AB_zeropoint=True)[GALSIM_BANDS[optical_element]]
    area_cm2 = float(galsim.roman.collecting_area)
    pixel_sr = (PIXEL_SCALE * _ARCSEC_RAD) ** 2
    photmjsr = AB_ZERO_POINT_JY * 1e-6 * gain * 10.0 ** (-0.4 * band.zeropoint) / (area_cm2 * pixel_sr)
    wavelength_nm = np.asarray(band.wave_list, dtype=np.float64)
    throughput = np.array([band(w) for w in wavelength_nm])
    return {
        "photmjsr": float(photmjsr),
        "uncertainty": float(PHOTOM_RELATIVE_UNCERTAINTY * photmjsr),
        "pixelareasr": float(pixel_sr),
        "collecting_area": area_cm2 * 1e-4,
        "wavelength": (wavelength_nm * 1e-3).astype(np.float32),
        "effective_area": (throughput * area_cm2 * 1e-4).astype(np.float32),
    }


def science_table(number: int) -> dict:
    """The MATABLE entry of one MA table: read pattern and exposure times (s) at :data:`FRAME_TIME`."""
    table = MA_TABLES[number]
    pattern = table.as_list()
    last = np.array([reads[-1] for reads in pattern], dtype=np.float64)
    mean = np.array([np.mean(reads) for reads in pattern]) * FRAME_TIME
    return {
        "accumulated_exposure_time": (last * FRAME_TIME).tolist(),
        "effective_exposure_time": (mean - mean[0]).tolist(),
        "frame_time": FRAME_TIME,
        "integration_duration": ((last + 1) * FRAME_TIME).tolist(),
        "ma_table_description": f"{table.name}: {table.n_resultants} resultants over {table.last_read} reads",
        "ma_table_name": table.name,
        "ma_table_number": number,
        "fsw_slot_number": 0,
        "min_science_resultants": 1,
        "num_pre_science_reads": 0,
        "num_pre_science_resultants": 0,
        "num_science_resultants": table.n_resultants,
        "observing_mode": "IMAGING",
        "pre_science_read_is_reference": [],
        "pre_science_read_is_resultant": [],
        "pre_science_read_types": [],
        "pre_science_time_after_reset": 0.0,
        "reset_frame_time": FRAME_TIME,
        "science_read_pattern": pattern,
    }


def _distortion(detector: str, science_size: int):
    """Detector pixels (0-based, science area) -> (V2, V3) arcsec, from :mod:`romanflow.geometry`."""
    try:
        from romanflow.geometry import distortion_transform
    except ImportError as exc:
        raise RomanflowError(f"distortion references need romanflow.geometry.distortion_transform ({exc})") from None
    return distortion_transform(detector, science_size=science_size)


def synthesize_reference(path, reftype: str, detector: str, science_size: int,
                         optical_element: str | None = None, seed: int = DEFAULT_MODEL_SEED) -> Path:
    """Write the ``reftype`` reference of one detector (and filter) from its DetectorModel.

    Parameters
    ----------
    path : str or Path
        Output file (written atomically).
    reftype : str
        One of :data:`SYNTH_TYPES`.
    detector : str
        ``'WFI01'`` … ``'WFI18'`` (ignored for ``matable``).
    science_size : int
        Science pixels per side (4088 full size).
    optical_element : str, optional
        Filter, for ``flat`` and ``distortion``.
    seed : int
        Parameter-set seed.
    """
    reftype = reftype.lower()
    if reftype in PLUGIN_SYNTHESIZERS or reftype in PLUGIN_TYPES:
        writer = PLUGIN_SYNTHESIZERS.get(reftype)
        if writer is None:
            raise RomanflowError(f"{reftype} references are synthesized by {PLUGIN_TYPES[reftype]}: import it first")
        if optical_element not in IMAGING_FILTERS:
            raise RomanflowError(f"{reftype} references need an imaging filter, got {optical_element!r}")
        return writer(Path(path), detector, optical_element)
    if reftype not in SYNTH_TYPES:
        raise RomanflowError(f"the embedded store cannot synthesize {reftype} references")
    if SYNTH_TYPES[reftype] and optical_element not in IMAGING_FILTERS:
        raise RomanflowError(f"{reftype} references need an imaging filter, got {optical_element!r}")
    if reftype == "matable":  # one file for all detectors
        meta = reference_meta(reftype, "NOT_CONFIGURED", useafter=SYNTH_USEAFTER, pedigree="SIMULATION",
                              description="imaging multi-accumulation tables (romanflow)")
        return write_reference(path, reftype, meta, guide_window_tables={},
                               science_tables={f"SCI{n:04d}": science_table(n) for n in sorted(MA_TABLES)})
    if reftype == "darkdecaysignal":  # one file for all detectors
        meta = reference_meta(reftype, "NOT_CONFIGURED", useafter=SYNTH_USEAFTER, pedigree="SIMULATION",
                              description="dark decay after reset, A exp(-t/tau) (romanflow)")
        table = {}
        for name in DETECTORS:
            amplitude, time_constant = DetectorModel(name, science_size, seed).dark_decay
            table[name] = {"amplitude": amplitude, "time_constant": time_constant}
        return write_reference(path, reftype, meta, decay_table=table)
    model = detector_model(detector, science_size, seed)
    shape = model.shape
    zeros_dq = np.zeros(shape, dtype=np.uint32)
    if reftype == "mask":
        return write_reference(path, reftype, _meta(reftype, model, "bad-pixel mask"), dq=model.mask)
    if reftype == "saturation":
        return write_reference(path, reftype, _meta(reftype, model, "saturation level (DN, measured)"),
                               data=model.saturation, dq=zeros_dq)
    if reftype == "linearity":
        return write_reference(path, reftype, _meta(reftype, model, "linearity correction polynomial"),
                               coeffs=model.linearity_coeffs, dq=zeros_dq)
    if reftype == "inverselinearity":
        coeffs = inverse_linearity_coeffs(model.linearity_coeffs, 1.05 * float(model.full_well.max()))
        return write_reference(
            path, reftype,
            _meta(reftype, model, f"inverse linearity, degree-{INVERSE_DEGREE} least-squares fit"),
            coeffs=coeffs, dq=zeros_dq)
    if reftype == "dark":
        return write_reference(path, reftype, _meta(reftype, model, "dark current rate (DN/s)", "DARK"),
                               dark_slope=model.dark_rate, dark_slope_error=np.zeros(shape, np.float32),
                               dq=zeros_dq)
    if reftype == "gain":
        return write_reference(path, reftype, _meta(reftype, model, "gain (e-/DN)"), data=model.gain)
    if reftype == "refpix":  # the same coefficients for every channel: one row applies to all
        gamma, zeta, alpha = model.refpix_coefficients()
        return write_reference(path, reftype, _meta(reftype, model, "reference-pixel correction coefficients, "
                                                    "one row for all channels"),
                               gamma=gamma[None], zeta=zeta[None], alpha=alpha[None])
    if reftype == "readnoise":
        return write_reference(path, reftype, _meta(reftype, model, "read noise (DN per read)"),
                               data=model.read_noise)
    if reftype == "flat":
        # the science pixels only: the official flat_field step needs the L2 image's shape
        trim = slice(N_BORDER, -N_BORDER)
        flat = np.ascontiguousarray(model.flat_dn(optical_element)[trim, trim])  # channel gains folded in
        flat_dq = np.zeros(flat.shape, dtype=np.uint32)
        flat_dq[flat == 0] |= dq.NO_FLAT_FIELD
        return write_reference(path, reftype, _meta(reftype, model, f"flat field {optical_element}", optical_element),
                               data=flat, err=np.zeros(flat.shape, np.float32), dq=flat_dq)
    if reftype == "distortion":  # the same optics for every imaging filter
        return write_reference(
            path, reftype, _meta(reftype, model, "distortion: detector pixels -> (v2, v3) arcsec", optical_element),
            coordinate_distortion_transform=_distortion(model.detector, model.science_size))
    gain = model.nominal_gain
    table = {element: photometric_conversion(element, gain) for element in IMAGING_FILTERS}
    return write_reference(path, reftype, _meta(reftype, model, "photometric conversion per filter"),
                           phot_table=table)
