"""The values that decide what the synthesized reference files hold, and their hash.

A store lives in a folder named after :func:`parameter_fingerprint`, so a store
written from other values is never reused. The hash covers values, not source
text: a comment or docstring edit leaves it unchanged, while any change to a
number that reaches a file changes it. :func:`synthesis_inputs` lists them:

* the synthesizer's version tag (``FILE_VERSION``) and its constants (USEAFTER
  date, inverse-linearity degree and samples, photometric constants, types);
* the detector facts the files use (sizes, border, channel width, frame time,
  pixel scale, filters and their galsim band names, detector names);
* every MA table as the synthesizer writes it (read pattern and times);
* every DQ bit value of :mod:`romanflow.dq`;
* the :class:`~romanflow.detector_model.DetectorModel` of every detector at a
  small probe size (:data:`PROBE_SCIENCE_SIZE`) with the default seed: gain,
  read noise, bias, linearity, full well, saturation, dark rate, mask,
  correlated-noise amplitudes, nominal gain, the flat of every filter (one
  detector), and the inverse-linearity coefficients the synthesizer derives;
* the distortion coefficients shipped in ``romanflow/data/wfi_distortion.json``;
* the versions of galsim (photometric conversion) and of roman_datamodels and
  rad (the file schemas).
"""

from __future__ import annotations

import dataclasses
import hashlib
from functools import lru_cache
from importlib import metadata

import numpy as np

from romanflow import detector, detector_model, dq
from romanflow.geometry import distortion
from romanflow.refdata import synthesize

#: Science size of the probe models (the smallest supported: 128 pixels with the border).
PROBE_SCIENCE_SIZE = 120
#: Packages whose versions decide file values or their schema.
VALUE_PACKAGES = ("galsim", "roman_datamodels", "rad")


def _package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "absent"


def _model_values(model: detector_model.DetectorModel) -> dict:
    return {
        "gain": model.gain, "read_noise": model.read_noise, "bias": model.bias,
        "linearity_coeffs": model.linearity_coeffs, "full_well": model.full_well,
        "saturation": model.saturation, "dark_rate": model.dark_rate, "mask": model.mask,
        "correlated_noise": dataclasses.asdict(model.correlated_noise), "nominal_gain": model.nominal_gain,
    }


def synthesis_inputs() -> dict:
    """Every value that decides the synthesized files, by name (see the module docstring)."""
    seed = detector_model.DEFAULT_MODEL_SEED
    models = {name: detector_model.DetectorModel(name, PROBE_SCIENCE_SIZE, seed) for name in detector.DETECTORS}
    first = models[detector.DETECTORS[0]]
    dq_bits = {name: value for name, value in vars(dq).items()
               if name.isupper() and isinstance(value, int) and not isinstance(value, bool)}
    return {
        "file_version": synthesize.FILE_VERSION,
        "synthesizer": {
            "useafter": synthesize.SYNTH_USEAFTER, "inverse_degree": synthesize.INVERSE_DEGREE,
            "inverse_samples": synthesize.INVERSE_SAMPLES,
            "photom_relative_uncertainty": synthesize.PHOTOM_RELATIVE_UNCERTAINTY,
            "ab_zero_point_jy": synthesize.AB_ZERO_POINT_JY, "types": synthesize.SYNTH_TYPES,
        },
        "detector": {
            "detectors": detector.DETECTORS, "n_pix_total": detector.N_PIX_TOTAL, "n_border": detector.N_BORDER,
            "channel_width": detector.CHANNEL_WIDTH, "frame_time": detector.FRAME_TIME,
            "pixel_scale": detector.PIXEL_SCALE, "imaging_filters": detector.IMAGING_FILTERS,
            "galsim_bands": detector.GALSIM_BANDS,
        },
        "ma_tables": {number: synthesize.science_table(number) for number in sorted(detector.MA_TABLES)},
        "dq": dq_bits,
        "model_seed": seed,
        "models": {name: _model_values(model) for name, model in models.items()},
        "flats": {f: first.flat_dn(f) for f in detector.IMAGING_FILTERS},
        "inverse_linearity": synthesize.inverse_linearity_coeffs(
            first.linearity_coeffs, 1.05 * float(first.full_well.max())),
        "distortion": {name: dataclasses.asdict(d) for name, d in distortion.distortion_table().items()},
        "packages": {name: _package_version(name) for name in VALUE_PACKAGES},
    }


def _feed(digest, value) -> None:
    """Add a value to the hash in a canonical form (type, shape and exact bits of arrays)."""
    if isinstance(value, np.ndarray):
        digest.update(f"a{value.dtype.str}{value.shape}".encode())
        digest.update(np.ascontiguousarray(value).tobytes())
    elif isinstance(value, dict):
        digest.update(f"d{len(value)}".encode())
        for key in sorted(value, key=str):
            _feed(digest, str(key))
            _feed(digest, value[key])
    elif isinstance(value, (list, tuple)):
        digest.update(f"l{len(value)}".encode())
        for item in value:
            _feed(digest, item)
    elif isinstance(value, np.generic):
        _feed(digest, value.item())
    elif isinstance(value, (bool, int, float, str)) or value is None:
        digest.update(f"{type(value).__name__}:{value!r};".encode())
    else:
        raise TypeError(f"cannot fingerprint a {type(value).__name__}")


@lru_cache(maxsize=1)
def parameter_fingerprint() -> str:
    """Short hash (10 hex digits) of :func:`synthesis_inputs`; computed once per process."""
    digest = hashlib.sha256()
    _feed(digest, synthesis_inputs())
    return digest.hexdigest()[:10]
