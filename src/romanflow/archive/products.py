"""What the archive records of one product file, read from its metadata only.

ASDF files are opened lazily (no array is read: the shape comes from the array's header), Parquet
files by their footer, association files as JSON. A product's identifier (``obs_id``) is its file
name without the extension: the aligned L2 file written by registration is the next version of the
calibrated L2 file of the same name.
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from romanflow.archive.sphere import bounding_cap, format_stcs, parse_stcs, xyz
from romanflow.errors import InputFileError

#: WFI imaging filter bandpasses (m): approximate half-power edges.
BANDPASS_M = {
    "F062": (0.480e-6, 0.760e-6), "F087": (0.760e-6, 0.977e-6), "F106": (0.927e-6, 1.192e-6),
    "F129": (1.131e-6, 1.454e-6), "F146": (0.927e-6, 2.000e-6), "F158": (1.380e-6, 1.774e-6),
    "F184": (1.683e-6, 2.000e-6), "F213": (1.950e-6, 2.300e-6),
}

#: Roman product kinds: (product_level, calib_level, dataproduct_type, subtype in words).
KINDS = {
    "uncal": ("L1", 1, "cube", "WFI up-the-ramp resultants"),
    "cal": ("L2", 2, "image", "WFI calibrated rate image"),
    "source_table": ("L2", 2, "measurements", "point sources of one calibrated exposure"),
    "coadd": ("L3", 3, "image", "sky-cell mosaic"),
    "outlier_record": ("L3", 3, "measurements", "pixels rejected while mosaicking"),
    "association": ("L3", 3, "association", "members of a mosaic"),
    "catalog": ("L4", 4, "measurements", "multi-band source catalog"),
    "reference": ("ref", 0, "calibration", "calibration reference file"),
}

#: Lineage roles.
SCIENCE, REFERENCE, MEMBER = "science", "reference", "member"

_MIME = {".asdf": "application/asdf", ".parquet": "application/vnd.apache.parquet", ".json": "application/json"}


@dataclass
class ProductRecord:
    """The archive's view of one product file."""

    obs_id: str
    kind: str
    columns: dict  #: ObsCore + Roman column values
    vertices: np.ndarray | None = None  #: footprint (n, 3) unit vectors, None without a footprint
    inputs: list = field(default_factory=list)  #: (input obs_id, role, detail)
    ref_files: dict = field(default_factory=dict)  #: reftype -> reference file name used
    sources: object = None  #: callable returning catalog rows (ra, dec, fluxes) for catalogs


#: ObsCore subtype of the catalogs other than a sky cell's multi-band catalog, by their ``romanflow.catalog_kind``.
_CATALOG_SUBTYPES = {"injection_input": "source-injection input catalog",
                     "injection_output": "source-injection output catalog (injected matched to recovered)"}


def obs_id_of(name: str) -> str:
    """Product identifier of a file name: the name without its extension(s)."""
    name = Path(str(name)).name
    for ext in (".asdf", ".parquet", ".json"):
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def _plain(value):
    if isinstance(value, np.generic):
        return value.item()
    return value


def _get(node, dotted, default=None):
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, TypeError, IndexError, AttributeError):
            return default
        if node is None:
            return default
    node = _plain(node)
    if isinstance(node, str) and node.strip() in ("?", "", "N/A"):
        return default
    if isinstance(node, (int, float)) and not isinstance(node, bool) and node == -999999:
        return default
    return node


def _mjd(value):
    if value is None:
        return None
    from astropy.time import Time
    from erfa import ErfaWarning

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ErfaWarning)
        try:
            t = value if isinstance(value, Time) else Time(str(value), scale="utc")
            return float(t.utc.mjd)
        except Exception:  # noqa: BLE001 - an unreadable date is recorded as unknown
            return None


def footprint_columns(vertices: np.ndarray | None) -> dict:
    """s_ra, s_dec, s_fov, s_region of a footprint (None values without one)."""
    if vertices is None:
        return {"s_ra": None, "s_dec": None, "s_fov": None, "s_region": None}
    from romanflow.archive.sphere import radec

    centre, radius = bounding_cap(vertices)
    ra, dec = radec(centre)
    vra, vdec = radec(vertices)
    return {"s_ra": float(ra), "s_dec": float(dec), "s_fov": 2.0 * radius, "s_region": format_stcs(vra, vdec)}


def _corners(wcs, shape) -> np.ndarray | None:
    """Footprint (4, 3) of an image from its WCS at the outer pixel edges; None if it cannot be evaluated."""
    ny, nx = shape
    x = np.array([-0.5, nx - 0.5, nx - 0.5, -0.5])
    y = np.array([-0.5, -0.5, ny - 0.5, ny - 0.5])
    try:
        ra, dec = wcs(x, y, with_bounding_box=False)
    except TypeError:
        ra, dec = wcs.pixel_to_world_values(x, y)
    ra, dec = np.asarray(ra, float), np.asarray(dec, float)
    if not (np.all(np.isfinite(ra)) and np.all(np.isfinite(dec))):
        return None
    return xyz(ra, dec)


def _base_columns(kind: str, obs_id: str, path: Path, size: int) -> dict:
    level, calib, dptype, subtype = KINDS[kind]
    return {"obs_id": obs_id, "obs_publisher_did": f"ivo://romanflow/{obs_id}", "obs_collection": "romanflow",
            "dataproduct_type": dptype, "dataproduct_subtype": subtype, "calib_level": calib,
            "facility_name": "Roman", "instrument_name": "WFI", "access_url": f"files/{obs_id}",
            "access_format": _MIME.get(path.suffix, "application/octet-stream"),
            "access_estsize": int(math.ceil(size / 1024)), "product_level": level, "product_kind": kind,
            "o_ucd": "phot.flux.density" if dptype in ("image", "cube") else None,
            "pol_states": None}


def _band(columns: dict, element) -> None:
    element = str(element).upper() if element else None
    columns["optical_element"] = element
    columns["em_min"], columns["em_max"] = BANDPASS_M.get(element, (None, None))


def read_product(path: Path) -> ProductRecord:
    """The record of one product file; InputFileError if it is not a product romanflow knows."""
    path = Path(path)
    size = path.stat().st_size
    name = path.name
    if name.endswith(".asdf"):
        return _read_asdf(path, size)
    if name.endswith(".parquet"):
        return _read_parquet(path, size)
    if name.endswith("_asn.json"):
        return _read_association(path, size)
    raise InputFileError(path, "not a product the archive knows (expected *.asdf, *.parquet or *_asn.json)")


_BLOCK_MAGIC = b"\xd3BLK"
_BLOCK_INDEX = b"#ASDF BLOCK INDEX"


def _check_blocks(path: Path, size: int) -> None:
    """Refuse an ASDF file whose binary blocks end past its end (a truncated file), reading only its tail
    (the block index) and the last block's header — never the arrays."""
    import struct

    import yaml

    with open(path, "rb") as f:
        f.seek(max(0, size - 65536))
        tail = f.read()
        at = tail.rfind(_BLOCK_INDEX)
        if at < 0:
            f.seek(0)
            head = f.read(min(size, 1 << 20))
            if _BLOCK_MAGIC in head or _BLOCK_MAGIC in tail:
                raise InputFileError(path, "truncated or corrupt ASDF file (its block index is missing)")
            return
        try:
            offsets = yaml.safe_load(tail[at:].split(b"\n", 1)[1].decode("ascii", "replace"))
            last = int(max(offsets))
        except Exception:  # noqa: BLE001 - a damaged index is the file's problem
            raise InputFileError(path, "corrupt ASDF block index") from None
        f.seek(last)
        header = f.read(6 + 48)
    if len(header) < 54 or header[:4] != _BLOCK_MAGIC:
        raise InputFileError(path, "truncated or corrupt ASDF file (no block at the offset its index gives)")
    header_size = struct.unpack(">H", header[4:6])[0]
    allocated = struct.unpack(">Q", header[14:22])[0]
    if last + 6 + header_size + allocated > size:
        raise InputFileError(path, "truncated ASDF file (its last data block ends past the end of the file)")


def _read_asdf(path: Path, size: int) -> ProductRecord:
    import asdf

    obs_id = obs_id_of(path.name)
    _check_blocks(path, size)
    try:
        with warnings.catch_warnings(), asdf.config_context() as config:
            warnings.simplefilter("ignore")
            config.validate_on_read = False  # a product missing metadata is registered and flagged, not refused
            af = asdf.open(path, lazy_load=True, memmap=False)
    except Exception as exc:  # noqa: BLE001 - any failure to parse the file is the file's problem
        raise InputFileError(path, f"cannot be read as ASDF ({type(exc).__name__}: {exc})") from None
    with af:
        try:
            root = af.tree["roman"]
            meta = root["meta"]
        except (KeyError, TypeError):
            raise InputFileError(path, "not a Roman product (no roman.meta in the ASDF tree)") from None
        model_type = _get(meta, "model_type") or type(root).__name__
        reftype = _get(meta, "reftype")
        if reftype:
            return _reference_record(path, size, obs_id, meta, str(reftype).lower())
        if model_type in ("ScienceRawModel", "WfiScienceRaw"):
            kind = "uncal"
        elif model_type in ("ImageModel", "WfiImage"):
            kind = "cal"
        elif model_type in ("MosaicModel", "WfiMosaic"):
            kind = "coadd"
        else:
            raise InputFileError(path, f"unsupported ASDF model {model_type!r} (expected an L1, L2, L3 or reference file)")
        c = _base_columns(kind, obs_id, path, size)
        try:
            shape = tuple(int(n) for n in root["data"].shape[-2:])
        except (KeyError, TypeError, AttributeError):
            shape = None
        c["s_xel1"], c["s_xel2"] = (shape[1], shape[0]) if shape else (None, None)
        _band(c, _get(meta, "instrument.optical_element"))
        c["software_version"] = _get(meta, "calibration_software_version")
        flags = []
        vertices = None
        inputs = []
        injection_parent = _plain(_get(meta, "injection.parent"))
        injection_parent = injection_parent if isinstance(injection_parent, str) and injection_parent else None
        ref_files = {}
        if kind in ("uncal", "cal"):
            c["detector"] = _get(meta, "instrument.detector")
            c["ma_table_number"] = _get(meta, "exposure.ma_table_number")
            c["exposure_type"] = _get(meta, "exposure.type")
            for col, key in (("program", "observation.program"), ("visit", "observation.visit"),
                             ("pass_number", "observation.pass"), ("exposure", "observation.exposure")):
                value = _get(meta, key)
                c[col] = int(value) if isinstance(value, (int, np.integer)) else None
            c["t_min"] = _mjd(_get(meta, "exposure.start_time"))
            c["t_max"] = _mjd(_get(meta, "exposure.end_time"))
            c["t_exptime"] = _get(meta, "exposure.effective_exposure_time") or _get(meta, "exposure.exposure_time")
            c["s_resolution"] = 0.11
            c["target_name"] = _get(meta, "observation.observation_id")
        if kind == "uncal":
            region = _get(meta, "wcsinfo.s_region")
            if region:
                try:
                    vertices = xyz(*parse_stcs(region))
                except ValueError:
                    vertices = None
            if shape:
                c["s_xel1"], c["s_xel2"] = shape[1] - 8, shape[0] - 8
        elif kind == "cal":
            wcs = _get(meta, "wcs")
            if wcs is not None and shape:
                vertices = _corners(wcs, shape)
            if injection_parent is None:
                inputs.append((obs_id.removesuffix("_cal") + "_uncal", SCIENCE, ""))
            for reftype, fname in sorted((_get(meta, "ref_file") or {}).items()):
                fname = _plain(fname)
                if isinstance(fname, str) and fname.strip() not in ("?", "", "N/A"):
                    ref_files[reftype] = fname
                    inputs.append((obs_id_of(fname), REFERENCE, reftype))
        else:  # coadd
            wcs = _get(meta, "wcs")
            if wcs is not None and shape:
                vertices = _corners(wcs, shape)
            c["skycell"] = _get(meta, "wcsinfo.skycell_name")
            c["target_name"] = c["skycell"]
            c["t_min"] = _mjd(_get(meta, "coadd_info.time_first"))
            c["t_max"] = _mjd(_get(meta, "coadd_info.time_last"))
            c["t_exptime"] = _get(meta, "coadd_info.exposure_time")
            scale = _get(meta, "wcsinfo.pixel_scale")
            c["s_resolution"] = float(scale) * 3600.0 if scale else None
            for member in _get(meta, "resample.members") or []:
                inputs.append((obs_id_of(member), MEMBER, ""))
        if injection_parent is not None:
            # a copy with injected sources: made from its parent product (whose inputs it shares)
            inputs.insert(0, (obs_id_of(injection_parent), SCIENCE, "injection parent"))
            c["dataproduct_subtype"] = f"{c['dataproduct_subtype']} with injected sources"
        if vertices is None:
            flags.append("no_wcs" if kind != "uncal" else "no_footprint")
    c.update(footprint_columns(vertices))
    c["flags"] = ",".join(flags) or None
    return ProductRecord(obs_id, kind, c, vertices, inputs, ref_files)


def _reference_record(path, size, obs_id, meta, reftype) -> ProductRecord:
    c = _base_columns("reference", obs_id, path, size)
    c["detector"] = _get(meta, "instrument.detector")
    _band(c, _get(meta, "instrument.optical_element"))
    c["t_min"] = _mjd(_get(meta, "useafter"))
    c["target_name"] = reftype
    c["dataproduct_subtype"] = f"{reftype} reference file"
    c["software_version"] = _get(meta, "pedigree")
    c.update(footprint_columns(None))
    return ProductRecord(obs_id, "reference", c, None, [], {})


def _read_parquet(path: Path, size: int) -> ProductRecord:
    import pyarrow.parquet as pq

    obs_id = obs_id_of(path.name)
    try:
        pf = pq.ParquetFile(path)
        md = {k.decode(): v.decode() for k, v in (pf.schema_arrow.metadata or {}).items()}
        names = pf.schema_arrow.names
    except Exception as exc:  # noqa: BLE001 - the file's problem
        raise InputFileError(path, f"cannot be read as Parquet ({type(exc).__name__}: {exc})") from None
    inputs = []
    if "romanflow.catalog_kind" in md:
        kind = "catalog"
        c = _base_columns(kind, obs_id, path, size)
        try:
            for name in json.loads(md.get("romanflow.inputs", "[]")):
                inputs.append((obs_id_of(name), SCIENCE, ""))
            filters = json.loads(md.get("romanflow.filters", "[]"))
            c["software_version"] = json.loads(md.get("romanflow.version", "null"))
        except (ValueError, TypeError):
            raise InputFileError(path, "unreadable romanflow metadata in the Parquet footer") from None
        try:  # JSON as romanflow writes it; a bare name is accepted too
            catalog_kind = json.loads(md["romanflow.catalog_kind"])
        except (ValueError, TypeError):
            catalog_kind = md["romanflow.catalog_kind"]
        if catalog_kind in _CATALOG_SUBTYPES:
            c["dataproduct_subtype"] = _CATALOG_SUBTYPES[catalog_kind]
        c["skycell"] = obs_id
        for suffix in ("_cat", "_injection_input", "_injection_output"):
            c["skycell"] = c["skycell"].removesuffix(suffix)
        c["target_name"] = c["skycell"]
        if len(filters) == 1:
            _band(c, filters[0])
        elif filters:
            c["optical_element"] = " ".join(str(f).upper() for f in filters)
            edges = [BANDPASS_M[f.upper()] for f in filters if f.upper() in BANDPASS_M]
            if edges:
                c["em_min"], c["em_max"] = min(e[0] for e in edges), max(e[1] for e in edges)
        flux_cols = [n for n in names if n.endswith("_flux") and (n.startswith("psf_") or n.startswith("kron_")
                                                                      or n.startswith("flux"))]
        if "ra" not in names or "dec" not in names:
            raise InputFileError(path, "catalog without ra/dec columns")

        def sources(path=path, flux_cols=tuple(flux_cols)):
            t = pq.read_table(path, columns=["ra", "dec", *flux_cols])
            return (t.column("ra").to_numpy().astype(float), t.column("dec").to_numpy().astype(float),
                    {n: t.column(n).to_numpy().astype(float) for n in flux_cols})

        record = ProductRecord(obs_id, kind, c, None, inputs, {}, sources)
    elif obs_id.endswith("_outliers"):
        kind = "outlier_record"
        c = _base_columns(kind, obs_id, path, size)
        c["skycell"] = obs_id.split("_")[0]
        inputs.append((obs_id.removesuffix("_outliers"), SCIENCE, ""))
        record = ProductRecord(obs_id, kind, c, None, inputs)
    elif obs_id.endswith("_cat") and {"ra", "dec", "flux"} <= set(names):
        kind = "source_table"
        c = _base_columns(kind, obs_id, path, size)
        yaml_meta = md.get("table_meta_yaml", "")
        for key in ("detector", "optical_element"):
            marker = f"{{{key}: "
            i = yaml_meta.find(marker)
            if i >= 0:
                value = yaml_meta[i + len(marker): yaml_meta.find("}", i)].strip()
                if key == "detector":
                    c["detector"] = value
                else:
                    _band(c, value)
        inputs.append((obs_id.removesuffix("_cat") + "_cal", SCIENCE, ""))
        record = ProductRecord(obs_id, kind, c, None, inputs)
    else:
        raise InputFileError(path, "not a romanflow product Parquet file (no romanflow catalog metadata)")
    c.update(footprint_columns(None))
    c["flags"] = None
    return record


def _read_association(path: Path, size: int) -> ProductRecord:
    from romanflow.mosaic.associations import association_members, load_association

    asn = load_association(path)
    obs_id = obs_id_of(path.name)
    c = _base_columns("association", obs_id, path, size)
    c["target_name"] = asn.get("target")
    c["skycell"] = asn.get("target")
    c.update(footprint_columns(None))
    c["flags"] = None
    inputs = [(obs_id_of(m), MEMBER, "") for m in association_members(asn)]
    return ProductRecord(obs_id, "association", c, None, inputs)
