"""L1 and L2 products in ASDF through roman_datamodels.

Files are validated against the official schemas on write, so the official
tools open them, and official files (romanisim, romancal) load here. Every
write goes to a temporary name first and is renamed into place, so a failure
never leaves a half-written product.

Every file is opened with its ASDF block checksums verified and its tree
validated against its schema, so a corrupt block or a value of the wrong type
is reported naming the file instead of flowing into the calibration.

A temporary folder ``.<name>.<host>.<pid>.<random>.partial`` holds each file
while it is written; one left behind by a killed process (same host, process
gone, older than the current process) is removed by the next write into the
same folder.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import re
import shutil
import socket
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from romanflow.errors import InputFileError, OutputExistsError
from romanflow.exposure import RampExposure, RateImage

#: Longest product file name the schemas allow in ``meta.filename`` (characters).
MAX_PRODUCT_NAME = 120

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


#: When this process started (s since the epoch): temporary folders older than this may be stale.
_PROCESS_START = time.time()

#: Longest file name most file systems take (bytes).
NAME_MAX = 255

_PARTIAL_RE = re.compile(r"^\.(?P<name>.+)\.(?P<host>[0-9a-f]{8})\.(?P<pid>[0-9]+)\.[A-Za-z0-9_]+\.partial$")
_CLEARED_FOLDERS: set = set()


def _host_token() -> str:
    return hashlib.sha1(socket.gethostname().encode()).hexdigest()[:8]


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    except OSError:
        return True
    return True


def clear_stale_partials(folder) -> list[Path]:
    """Remove temporary folders that a killed romanflow process left in ``folder``; return them.

    Only folders named as :func:`atomic_path` names them, made on this host by a
    process that no longer exists, last modified before this process started and
    holding nothing but the file being written, are removed; anything else is left alone.
    """
    folder = Path(folder)
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    host = _host_token()
    for entry in entries:
        match = _PARTIAL_RE.match(entry.name)
        if match is None or match["host"] != host or int(match["pid"]) == os.getpid():
            continue
        try:
            if not entry.is_dir(follow_symlinks=False) or entry.stat(follow_symlinks=False).st_mtime >= _PROCESS_START:
                continue
            if _process_alive(int(match["pid"])):
                continue
            # what atomic_path leaves: nothing, or the one file being written (named like the folder)
            contents = list(os.scandir(entry.path))
            if any(not item.name.startswith(match["name"]) or not item.is_file(follow_symlinks=False)
                   for item in contents):
                continue
            shutil.rmtree(entry.path)
            removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _name_too_long(name: str) -> bool:
    return len(os.fsencode(name)) > NAME_MAX


def check_output_path(path, *, overwrite: bool = False) -> Path:
    """Check, before any work, that a file can be written at ``path``.

    Raises
    ------
    OutputExistsError
        ``path`` exists and ``overwrite`` is false, or it is a folder (never replaced).
    OSError
        With the offending path as its filename: a name too long, a parent that is a
        file, a folder that cannot be created or written.
    """
    path = Path(path)
    if _name_too_long(path.name):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    if path.is_dir():
        raise OutputExistsError(path, "is a folder: a file is to be written there")
    if (path.exists() or path.is_symlink()) and not overwrite:
        raise OutputExistsError(path)
    check_output_folder(path.parent)
    return path


def check_product_name(path) -> Path:
    """Check that an ASDF product's file name fits ``meta.filename`` (:data:`MAX_PRODUCT_NAME` characters).

    Raises ``OSError`` (``ENAMETOOLONG``) naming the path otherwise.
    """
    path = Path(path)
    if len(path.name) > MAX_PRODUCT_NAME:
        raise OSError(errno.ENAMETOOLONG, f"File name too long for a Roman product (meta.filename allows "
                                          f"{MAX_PRODUCT_NAME} characters, this one has {len(path.name)})", str(path))
    return path


def check_output_folder(folder) -> Path:
    """Check that ``folder`` is, or can be created as, a writable folder (nothing is created).

    Raises ``OSError`` naming the folder (or the file in its way) otherwise.
    """
    folder = Path(folder)
    ancestor = folder
    while not ancestor.exists() and not ancestor.is_symlink():
        if ancestor.parent == ancestor:
            break
        ancestor = ancestor.parent
    if ancestor.exists() and not ancestor.is_dir():
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(ancestor))
    if not ancestor.exists():
        raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), str(ancestor))
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(ancestor))
    return folder


@contextlib.contextmanager
def atomic_path(path):
    """Yield a temporary path with the same file name; move it to ``path`` on success.

    The temporary lives in a hidden folder beside the target, so the rename is
    atomic and nothing partial is ever visible under the final name. Errors are
    ``OSError`` naming ``path`` (not the temporary).
    """
    path = Path(path)
    if _name_too_long(path.name):
        raise OSError(errno.ENAMETOOLONG, os.strerror(errno.ENAMETOOLONG), str(path))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(path.parent)) from None
    key = (os.getpid(), os.path.abspath(path.parent))
    if key not in _CLEARED_FOLDERS:
        _CLEARED_FOLDERS.add(key)
        clear_stale_partials(path.parent)
    marker = f".{_host_token()}.{os.getpid()}."
    random_part = 8  # characters tempfile adds
    room = NAME_MAX - 1 - len(marker) - random_part - len(".partial")
    stem = os.fsencode(path.name)[:room].decode(errors="ignore")  # shortened only when the name is long
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{stem}{marker}", suffix=".partial", dir=path.parent))
    except OSError as exc:
        raise type(exc)(exc.errno, exc.strerror, str(path.parent)) from None
    try:
        tmp = tmpdir / path.name
        yield tmp
        try:
            os.replace(tmp, path)
        except OSError as exc:
            raise type(exc)(exc.errno, exc.strerror, str(path)) from None
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip()
    return (text.splitlines()[0] if text else type(exc).__name__)[:200]


def _validate_as_stored(model) -> None:
    """Validate a model against its schema, ignoring ``meta.filename`` (set in memory to the file's
    current name, which may be longer than the schema allows for the stored value)."""
    meta = model.meta if "meta" in model else None
    name = meta.get("filename") if meta is not None and hasattr(meta, "get") else None
    if name is None:
        model.validate()
        return
    meta["filename"] = "product.asdf"
    try:
        model.validate()
    finally:
        meta["filename"] = name


def open_model(path, expected: str | tuple[str, ...] | None = None):
    """Open an ASDF product with roman_datamodels, validated, with clear errors.

    The file's block checksums are verified and its tree is validated against the
    model's schema (types, dtypes, required metadata); validation reads the arrays,
    so a damaged block is found here.

    Parameters
    ----------
    path : str or Path
        File to open.
    expected : str or tuple of str, optional
        Accepted model class names (e.g. ``'ScienceRawModel'``).

    Raises
    ------
    InputFileError
        Missing, empty, unreadable, not a Roman product, of another type, or schema-invalid.
    """
    path = Path(path)
    if not path.exists():
        raise InputFileError(path, "no such file")
    if path.is_dir():
        raise InputFileError(path, "is a folder, not a file")
    if path.stat().st_size == 0:
        raise InputFileError(path, "file is empty")
    rdm = _rdm()
    try:
        with warnings.catch_warnings():
            # a renamed file is legitimate: its meta.filename is simply updated in memory
            warnings.filterwarnings("ignore", message=".*does not match filename.*")
            model = rdm.open(path, validate_checksums=True)
    except PermissionError as exc:
        raise InputFileError(path, f"cannot be read: {exc.strerror}") from None
    except Exception as exc:  # asdf/yaml/schema validation raise many kinds for a bad file: name the file
        raise InputFileError(path, "not a readable Roman ASDF product (truncated or corrupt?): "
                                   f"{_first_line(exc)}") from None
    if expected is not None:
        names = (expected,) if isinstance(expected, str) else tuple(expected)
        if type(model).__name__ not in names:
            found = type(model).__name__
            model.close()
            raise InputFileError(path, f"wrong product type {found}: expected {' or '.join(names)}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            _validate_as_stored(model)
    except Exception as exc:  # jsonschema ValidationError and friends: the file breaks its schema
        model.close()
        if "checksum" in str(exc):
            raise InputFileError(path, f"corrupt data block: {_first_line(exc)}") from None
        raise InputFileError(path, f"does not match its {type(model).__name__} schema: {_first_line(exc)}") from None
    return model


def _load_array(path, model, name, dtype=None):
    try:
        arr = np.asarray(getattr(model, name))
    except Exception as exc:  # asdf/numpy raise many kinds for a truncated block: name the file
        raise InputFileError(path, f"array '{name}' cannot be read (truncated or corrupt file?): "
                                   f"{_first_line(exc)}") from None
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


def check_read_pattern(source, exposure_meta: dict) -> None:
    """Check an L1's read pattern against its MA table (``meta.exposure``).

    The MA table number must be one the WFI knows, and the read pattern must be
    the table's (or its first resultants, for a truncated exposure): every read
    a positive read number within the table's reads.

    Raises
    ------
    InputFileError
        Naming ``source`` and the disagreement.
    """
    from romanflow.detector import MA_TABLES

    pattern = exposure_meta.get("read_pattern")
    try:
        reads = [[int(r) for r in resultant] for resultant in pattern]
    except (TypeError, ValueError):
        raise InputFileError(source, f"meta.exposure.read_pattern {pattern!r} is not a list of lists of read "
                                     "numbers") from None
    if not reads or any(not r for r in reads):
        raise InputFileError(source, "meta.exposure.read_pattern has an empty resultant")
    flat = [r for resultant in reads for r in resultant]
    if flat[0] < 1 or any(b <= a for a, b in zip(flat, flat[1:])):
        raise InputFileError(source, "meta.exposure.read_pattern: reads must be positive and strictly increasing")
    number = exposure_meta.get("ma_table_number")
    if _is_missing(number):
        return
    table = MA_TABLES.get(int(number)) if isinstance(number, (int, np.integer)) else None
    if table is None:
        known = ", ".join(str(n) for n in sorted(MA_TABLES))
        raise InputFileError(source, f"meta.exposure.ma_table_number {number!r} is not a known MA table "
                                     f"({known})")
    expected = table.as_list()
    if flat[-1] > table.last_read:
        raise InputFileError(source, f"meta.exposure.read_pattern reaches read {flat[-1]}, beyond the "
                                     f"{table.last_read} reads of MA table {table.number}")
    if reads != expected[: len(reads)]:
        raise InputFileError(source, f"meta.exposure.read_pattern does not match MA table {table.number} "
                                     f"({table.name})")


def _check_l1_model(path, model) -> dict:
    """Metadata of an open L1 model after checking what calibration needs (no array is read)."""
    meta = to_plain(model.meta)
    _check_meta(path, meta, REQUIRED_L1_META)
    shape = tuple(model["data"].shape) if "data" in model else ()
    if len(shape) != 3:
        raise InputFileError(path, f"data has shape {shape}: expected (n_resultants, ny, nx)")
    check_read_pattern(path, meta["exposure"])
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
    path = check_product_name(path)
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
    path = check_product_name(path)
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
