"""L1 and L2 products in ASDF through roman_datamodels.

Files are validated against the official schemas on write, so the official
tools open them, and official files (romanisim, romancal) load here. Every
write goes to a temporary name first and is renamed into place, so a failure
never leaves a half-written product.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np

from romanflow.errors import InputFileError
from romanflow.exposure import RampExposure, RateImage

#: Metadata an L1 file must carry for calibration to proceed.
REQUIRED_L1_META = (
    "exposure.read_pattern",
    "exposure.frame_time",
    "instrument.detector",
    "instrument.optical_element",
)


def _rdm():
    import roman_datamodels.datamodels as rdm

    return rdm


def to_plain(node):
    """Convert a roman_datamodels node tree to nested dicts/lists of plain values."""
    if hasattr(node, "keys") and not isinstance(node, np.ndarray):
        return {str(k): to_plain(node[k]) for k in node.keys()}
    if isinstance(node, (list, tuple, Sequence)) and not isinstance(node, (str, bytes)) or type(node).__name__ == "LNode":
        return [to_plain(v) for v in node]
    if isinstance(node, np.generic):
        return node.item()
    return node


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path with the same file name; move it to ``path`` on success.

    The temporary lives in a hidden folder beside the target, so the rename is
    atomic and nothing partial is ever visible under the final name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmpdir = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent))
    try:
        tmp = tmpdir / path.name
        yield tmp
        os.replace(tmp, path)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def open_model(path, expected: str | tuple[str, ...] | None = None):
    """Open an ASDF product with roman_datamodels, with clear errors.

    Parameters
    ----------
    path : str or Path
        File to open.
    expected : str or tuple of str, optional
        Accepted model class names (e.g. ``'ScienceRawModel'``).
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty")
    rdm = _rdm()
    try:
        with warnings.catch_warnings():
            # a renamed file is legitimate: its meta.filename is simply updated in memory
            warnings.filterwarnings("ignore", message=".*does not match filename.*")
            model = rdm.open(path)
    except Exception as exc:  # asdf/yaml/schema validation raise many kinds for a bad file: name the file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputFileError(path, f"not a readable Roman ASDF product (truncated or corrupt?): {first[:200]}") from None
    if expected is not None:
        names = (expected,) if isinstance(expected, str) else tuple(expected)
        if type(model).__name__ not in names:
            found = type(model).__name__
            model.close()
            raise InputFileError(path, f"wrong product type {found}: expected {' or '.join(names)}")
    return model


def _load_array(path, model, name, dtype=None):
    try:
        arr = np.asarray(getattr(model, name))
    except Exception as exc:  # asdf/numpy raise many kinds for a truncated block: name the file
        raise InputFileError(path, f"array '{name}' cannot be read (truncated file?): {exc}") from None
    return arr.astype(dtype, copy=False) if dtype is not None else arr


def _is_missing(value) -> bool:
    if value is None:
        return True
    if isinstance(value, str):
        return value in ("", "?")
    if isinstance(value, list):
        return len(value) == 0
    if isinstance(value, (int, float)):
        return value == -999999
    return False


def _check_meta(path, meta, required):
    from romanflow.exposure import get_meta

    missing = [key for key in required if _is_missing(get_meta(meta, key))]
    if missing:
        raise InputFileError(path, f"missing metadata: {', '.join('meta.' + k for k in missing)}")


def _check_l1_model(path, model) -> dict:
    """Metadata of an open L1 model after checking what calibration needs (no array is read)."""
    meta = to_plain(model.meta)
    _check_meta(path, meta, REQUIRED_L1_META)
    shape = tuple(model["data"].shape) if "data" in model else ()
    if len(shape) != 3:
        raise InputFileError(path, f"data has shape {shape}: expected (n_resultants, ny, nx)")
    n_res = len(meta["exposure"]["read_pattern"])
    if shape[0] != n_res:
        raise InputFileError(path, f"data has {shape[0]} resultants but the read pattern describes {n_res}")
    if shape[1] != shape[2] or (shape[2] - 8) <= 0 or shape[2] % 128:
        raise InputFileError(path, f"frames of {shape[1]}x{shape[2]} pixels: expected square frames of a multiple "
                                   "of 128 pixels (4096 for a full detector), reference border included")
    if "amp33" not in model:
        raise InputFileError(path, "no amp33 array")
    return meta


def check_l1(path) -> dict:
    """Check an L1 file can be calibrated (type, metadata, shapes) without reading its arrays.

    Returns its metadata; raises :class:`InputFileError` naming the file and the problem.
    """
    with open_model(path, ("ScienceRawModel", "RampModel")) as model:
        return _check_l1_model(path, model)


def read_l1(path) -> RampExposure:
    """Read an L1 (``ScienceRawModel``) file into a :class:`RampExposure`."""
    model = open_model(path, ("ScienceRawModel", "RampModel"))
    with model:
        meta = _check_l1_model(path, model)
        raw = type(model).__name__ == "ScienceRawModel"
        data = _load_array(path, model, "data")
        amp33 = _load_array(path, model, "amp33")
        optional = {}
        for name in ("resultantdq", "reference_read", "reference_amp33") if raw else ("groupdq", "pixeldq"):
            if name in model:
                optional[name] = _load_array(path, model, name)
    return RampExposure(
        data=data,
        amp33=amp33,
        meta=meta,
        groupdq=optional.get("resultantdq", optional.get("groupdq")),
        pixeldq=optional.get("pixeldq"),
        reference_read=optional.get("reference_read"),
        reference_amp33=optional.get("reference_amp33"),
    )


def _version() -> str:
    from romanflow.version import __version__

    return __version__


def write_l1(exposure: RampExposure, path) -> Path:
    """Write a :class:`RampExposure` as a validated L1 ``ScienceRawModel`` file."""
    rdm = _rdm()
    path = Path(path)
    data = np.asarray(exposure.data)
    if data.dtype != np.uint16:
        raise ValueError(f"L1 data must be uint16 DN, got {data.dtype}")
    meta = dict(exposure.meta)
    meta["filename"] = path.name
    meta.setdefault("product_type", "l1")
    meta.setdefault("calibration_software_name", "romanflow")
    meta.setdefault("calibration_software_version", _version())
    model = rdm.ScienceRawModel.create_fake_data(shape=(1, 1, 1), defaults={"meta": meta})
    model.data = data
    model.amp33 = np.asarray(exposure.amp33, dtype=np.uint16)
    if exposure.groupdq is not None:
        model.resultantdq = np.asarray(exposure.groupdq, dtype=np.uint8)
    if exposure.reference_read is not None:
        model.reference_read = np.asarray(exposure.reference_read, dtype=np.uint16)
    if exposure.reference_amp33 is not None:
        model.reference_amp33 = np.asarray(exposure.reference_amp33, dtype=np.uint16)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path


def read_l2(path) -> RateImage:
    """Read an L2 (``ImageModel``) file into a :class:`RateImage`."""
    model = open_model(path, "ImageModel")
    with model:
        meta = to_plain({k: model.meta[k] for k in model.meta.keys() if k != "wcs"})
        _check_meta(path, meta, ("instrument.detector", "instrument.optical_element"))
        wcs = model.meta["wcs"] if "wcs" in model.meta else None
        arrays = {name: _load_array(path, model, name) for name in ("data", "err", "dq", "var_poisson")}
        var_rnoise = _load_array(path, model, "var_rnoise") if "var_rnoise" in model else None
        var_flat = _load_array(path, model, "var_flat") if "var_flat" in model else None
        extra = {name: _load_array(path, model, name) for name in ("chisq", "dumo") if name in model}
    err = arrays["err"].astype(np.float32)
    var_poisson = arrays["var_poisson"].astype(np.float32)
    if var_rnoise is None:
        # The official files may omit it: rebuild as err² − var_poisson − var_flat.
        var_rnoise = err**2 - var_poisson - (0 if var_flat is None else var_flat.astype(np.float32))
        var_rnoise = np.clip(var_rnoise, 0, None)
    return RateImage(
        data=arrays["data"].astype(np.float32),
        err=err,
        dq=arrays["dq"].astype(np.uint32),
        var_poisson=var_poisson,
        var_rnoise=var_rnoise.astype(np.float32),
        var_flat=None if var_flat is None else var_flat.astype(np.float32),
        meta=meta,
        wcs=wcs,
        extra=extra,
    )


def write_l2(image: RateImage, path) -> Path:
    """Write a :class:`RateImage` as a validated L2 ``ImageModel`` file."""
    rdm = _rdm()
    path = Path(path)
    shape = image.data.shape
    meta = dict(image.meta)
    meta["filename"] = path.name
    meta.setdefault("product_type", "l2")
    meta.pop("wcs", None)
    meta["model_type"] = "ImageModel"
    model = rdm.ImageModel.create_fake_data(shape=shape, defaults={"meta": meta})
    if image.wcs is not None:
        model.meta.wcs = image.wcs
    else:
        model.meta.wcs = None  # the schema requires the key; null until assign_wcs runs
    model.data = np.asarray(image.data, dtype=np.float32)
    model.dq = np.asarray(image.dq, dtype=np.uint32)
    model.err = np.asarray(image.err, dtype=np.float16)
    model.var_poisson = np.asarray(image.var_poisson, dtype=np.float16)
    model.var_rnoise = np.asarray(image.var_rnoise, dtype=np.float16)
    if image.var_flat is not None:
        model.var_flat = np.asarray(image.var_flat, dtype=np.float16)
    for name in ("chisq", "dumo"):
        value = image.extra.get(name)
        setattr(model, name, np.zeros(shape, np.float16) if value is None else np.asarray(value, np.float16))
    for name, value in image.extra.items():
        if name not in ("chisq", "dumo") and value is not None:
            setattr(model, name, value)
    with atomic_path(path) as tmp:
        model.save(tmp)
    return path
