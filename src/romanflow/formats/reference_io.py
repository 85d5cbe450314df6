"""Reference files in ASDF through roman_datamodels.

:func:`write_reference` writes any reference type the calibration uses as the
official ``<Type>RefModel``, validated against the schema before the file
appears under its final name. :func:`read_reference` opens a reference file,
checks it is the wanted type and carries the needed arrays, and returns a
light :class:`ReferenceData` holding plain arrays and metadata.

Arrays are full frame (reference border included) as in the official files.
Units: DN for levels, DN/s for rates, e-/DN for gain, DN per read for read
noise, (MJy/sr)/(DN/s) for the photometric conversion.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from romanflow.errors import InputFileError
from romanflow.formats.asdf_io import atomic_path, open_model, to_plain


@dataclass(frozen=True)
class ReferenceSpec:
    """What a reference type is made of.

    Attributes
    ----------
    model : str
        roman_datamodels class name.
    arrays : dict
        Required array name -> (dtype, ndim).
    optional : dict
        Arrays read when present (name -> (dtype, ndim)).
    objects : tuple of str
        Required non-array members (tables, transforms).
    exposure_type : bool
        The schema requires ``meta.exposure.type``/``p_exptype``.
    optical_element : bool
        The schema requires ``meta.instrument.optical_element``.
    """

    model: str
    arrays: dict
    optional: dict = field(default_factory=dict)
    objects: tuple = ()
    exposure_type: bool = False
    optical_element: bool = False


_F32, _U32, _C128 = np.float32, np.uint32, np.complex128

#: Reference types this module reads and writes.
REFERENCE_SPECS = {
    "mask": ReferenceSpec("MaskRefModel", {"dq": (_U32, 2)}),
    "saturation": ReferenceSpec("SaturationRefModel", {"data": (_F32, 2), "dq": (_U32, 2)}),
    "refpix": ReferenceSpec("RefpixRefModel", {"gamma": (_C128, 2), "zeta": (_C128, 2), "alpha": (_C128, 2)}),
    "linearity": ReferenceSpec("LinearityRefModel", {"coeffs": (_F32, 3), "dq": (_U32, 2)}),
    "inverselinearity": ReferenceSpec("InverselinearityRefModel", {"coeffs": (_F32, 3), "dq": (_U32, 2)}),
    "dark": ReferenceSpec(
        "DarkRefModel",
        {"dark_slope": (_F32, 2), "dark_slope_error": (_F32, 2), "dq": (_U32, 2)},
        optional={"data": (_F32, 3)},  # per-resultant darks of older (per-MA-table) files
        exposure_type=True,
        optical_element=True,
    ),
    "gain": ReferenceSpec("GainRefModel", {"data": (_F32, 2)}),
    "readnoise": ReferenceSpec("ReadnoiseRefModel", {"data": (_F32, 2)}, exposure_type=True),
    "flat": ReferenceSpec(
        "FlatRefModel", {"data": (_F32, 2), "err": (_F32, 2), "dq": (_U32, 2)}, optical_element=True
    ),
    "distortion": ReferenceSpec(
        "DistortionRefModel", {}, objects=("coordinate_distortion_transform",), optical_element=True
    ),
    "photom": ReferenceSpec("WfiImgPhotomRefModel", {}, objects=("phot_table",)),
    "matable": ReferenceSpec("MATableRefModel", {}, objects=("science_tables", "guide_window_tables")),
    # dark decay after reset: decay_table[detector] = {amplitude (DN), time_constant (s)}
    "darkdecaysignal": ReferenceSpec("DarkdecaysignalRefModel", {}, objects=("decay_table",)),
    # effective PSFs: psf[defocus, spectral_type, grid_index, y, x] (romanflow.psf.library)
    "epsf": ReferenceSpec("EpsfRefModel", {"psf": (_F32, 5)}, optical_element=True),
}

REFERENCE_TYPES = tuple(REFERENCE_SPECS)

_OLD_DARK_TAG = "asdf://stsci.edu/datamodels/roman/tags/reference_files/dark-1.2.0"

#: Exposure types of the schemas; a reference applies to all of them unless told (``p_exptype``).
EXPOSURE_TYPES = ("WFI_IMAGE", "WFI_SPECTRAL", "WFI_IM_DARK", "WFI_SP_DARK", "WFI_FLAT", "WFI_LOLO", "WFI_WFSC")


@dataclass
class ReferenceData:
    """A reference file's content: arrays/objects by name plus plain metadata.

    Members are reachable as ``ref["dark_slope"]`` or ``ref.dark_slope``.
    """

    reftype: str
    path: Path
    meta: dict
    content: dict[str, Any]

    def __getitem__(self, name):
        return self.content[name]

    def __contains__(self, name):
        return name in self.content

    def __getattr__(self, name):
        content = self.__dict__.get("content", {})
        if name in content:
            return content[name]
        raise AttributeError(name)


def open_quietly(path, expected=None):
    """:func:`open_model` without the warning that a copied file's ``meta.filename`` differs from its name."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="meta.filename")
        return open_model(path, expected)


def reference_spec(reftype: str) -> ReferenceSpec:
    """The :class:`ReferenceSpec` of a reference type (lower case, e.g. ``'flat'``)."""
    from romanflow.errors import RomanflowError

    key = str(reftype).lower()
    if key not in REFERENCE_SPECS:
        raise RomanflowError(f"unknown reference type {reftype!r}: expected one of {', '.join(REFERENCE_TYPES)}")
    return REFERENCE_SPECS[key]


def model_class_name(reftype: str) -> str:
    """roman_datamodels class name of a reference type."""
    return reference_spec(reftype).model


def reference_meta(
    reftype: str,
    detector: str,
    *,
    optical_element: str | None = None,
    exposure_types=EXPOSURE_TYPES,
    useafter="2020-01-01T00:00:00",
    description: str = "",
    author: str = "romanflow",
    pedigree: str = "SIMULATION",
    origin: str = "romanflow",
) -> dict:
    """Reference-file metadata the schemas require, as a plain dict."""
    from astropy.time import Time

    spec = reference_spec(reftype)
    meta = {
        "reftype": reftype.upper(),
        "pedigree": pedigree,
        "description": description or f"{reftype} reference for {detector}",
        "author": author,
        "useafter": useafter if isinstance(useafter, Time) else Time(useafter, scale="utc"),
        "telescope": "ROMAN",
        "origin": origin,
        "instrument": {"name": "WFI", "detector": detector},
    }
    if spec.optical_element:
        meta["instrument"]["optical_element"] = optical_element or "F158"
    if spec.exposure_type:
        types = [exposure_types] if isinstance(exposure_types, str) else list(exposure_types)
        meta["exposure"] = {"type": types[0], "p_exptype": "".join(f"{t}|" for t in types)}
    return meta


def write_reference(path, reftype: str, meta: dict, **content) -> Path:
    """Write a reference file of type ``reftype`` as a validated ``<Type>RefModel``.

    Parameters
    ----------
    path : str or Path
        Output file (written atomically).
    reftype : str
        One of :data:`REFERENCE_TYPES`.
    meta : dict
        Reference metadata (see :func:`reference_meta`); keys left out get the schema's placeholders.
    **content
        The type's arrays (cast to the schema dtypes) and objects, e.g.
        ``dark_slope=..., dark_slope_error=..., dq=...`` or ``phot_table={...}``.
        ``coeffs`` is (n_coeffs, ny, nx); ``data`` of an older-style dark is
        (n_resultants, ny, nx).
    """
    import roman_datamodels.datamodels as rdm

    spec = reference_spec(reftype)
    path = Path(path)
    allowed = set(spec.arrays) | set(spec.optional) | set(spec.objects)
    unknown = set(content) - allowed
    missing = (set(spec.arrays) | set(spec.objects)) - set(content)
    if unknown or missing:
        raise ValueError(
            f"{reftype} reference: unknown members {sorted(unknown)}; missing members {sorted(missing)}"
        )
    # Older per-MA-table darks carry a 3-D stack of per-resultant darks (schema dark-1.2.0).
    tag = _OLD_DARK_TAG if reftype.lower() == "dark" and "data" in content else None
    model = getattr(rdm, spec.model).create_fake_data(
        shape=(1, 1, 1) if "coeffs" in spec.arrays or tag else (1, 1),
        defaults={"meta": meta},
        **({"tag": tag} if tag else {}),
    )
    shapes = set()
    for name, value in content.items():
        if name in spec.arrays or name in spec.optional:
            dtype, ndim = spec.arrays.get(name) or spec.optional[name]
            array = np.asarray(value, dtype=dtype)
            if array.ndim != ndim:
                raise ValueError(f"{reftype} reference: '{name}' must be {ndim}-D, got shape {array.shape}")
            shapes.add(array.shape[-2:])
            setattr(model, name, array)
        else:
            setattr(model, name, value)
    if len(shapes) > 1:
        raise ValueError(f"{reftype} reference: arrays disagree on the image shape: {sorted(shapes)}")
    model.validate()
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def _plain_object(value):
    """Plain Python/numpy copy of a table or leave a model object as it is."""
    if hasattr(value, "keys") and not hasattr(value, "evaluate"):
        return {str(k): _plain_object(value[k]) for k in value.keys()}
    if type(value).__name__ == "NDArrayType" or isinstance(value, np.ndarray):
        return np.array(value)
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        return [_plain_object(v) for v in value]
    return value


def read_reference(path, reftype: str) -> ReferenceData:
    """Read a reference file of type ``reftype``.

    Raises
    ------
    InputFileError
        The file is missing, truncated or corrupt, of another model type (e.g.
        a flat where a dark is wanted), or lacks a required array or table.
    """
    spec = reference_spec(reftype)
    path = Path(path)
    model = open_quietly(path, spec.model)
    content = {}
    with model:
        meta = to_plain(model.meta)
        for name, (dtype, ndim) in list(spec.arrays.items()) + list(spec.optional.items()):
            if name not in model:
                if name in spec.arrays:
                    raise InputFileError(path, f"{spec.model} has no '{name}' array")
                continue
            try:
                array = np.array(getattr(model, name))
            except Exception as exc:  # asdf/numpy raise many kinds for a truncated block: name the file
                raise InputFileError(path, f"array '{name}' cannot be read (truncated file?): {exc}") from None
            if array.ndim != ndim:
                raise InputFileError(path, f"array '{name}' has shape {array.shape}: expected {ndim}-D")
            content[name] = array
        for name in spec.objects:
            if name not in model or getattr(model, name) is None:
                raise InputFileError(path, f"{spec.model} has no '{name}'")
            try:
                content[name] = _plain_object(getattr(model, name))
            except Exception as exc:  # asdf/astropy raise many kinds for a damaged object: name the file
                raise InputFileError(path, f"'{name}' cannot be read (truncated file?): {exc}") from None
    shapes = {a.shape[-2:] for a in content.values() if isinstance(a, np.ndarray)}
    if len(shapes) > 1:
        raise InputFileError(path, f"arrays disagree on the image shape: {sorted(shapes)}")
    return ReferenceData(reftype=reftype.lower(), path=path, meta=meta, content=content)


def reference_model_type(path) -> str:
    """Class name of the roman_datamodels model stored in ``path`` (clear error if unreadable)."""
    model = open_quietly(path)
    with model:
        return type(model).__name__
