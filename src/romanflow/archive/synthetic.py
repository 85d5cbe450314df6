"""Synthetic archive content: real WFI detector footprints at chosen pointings, with lineage.

The 18 detector outlines are computed once from the WFI geometry (:mod:`romanflow.geometry`) for a
boresight at (0, 0) with PA 0 and rotated to each pointing, so a million footprints cost seconds.
Used by the archive benchmark and the property tests (no files: records go straight to
:meth:`~romanflow.archive.Archive.ingest_records`).
"""

from __future__ import annotations

import functools
import hashlib

import numpy as np

from romanflow.archive.products import BANDPASS_M, KINDS, ProductRecord, footprint_columns
from romanflow.archive.sphere import radec

#: Nominal USEAFTER of the synthetic references, and the start of the synthetic survey (MJD).
SURVEY_START_MJD = 61557.0


@functools.lru_cache(maxsize=1)
def wfi_template() -> np.ndarray:
    """Outlines (18, 4, 3) of the 18 full-size WFI detectors for a boresight at (0, 0), PA 0."""
    from romanflow import geometry
    from romanflow.archive.sphere import xyz
    from romanflow.detector import DETECTORS, N_PIX_SCIENCE

    pointing = geometry.pointing_for(0.0, 0.0, 0.0)
    edge = N_PIX_SCIENCE - 0.5
    x = np.array([-0.5, edge, edge, -0.5])
    y = np.array([-0.5, -0.5, edge, edge])
    out = []
    for det in DETECTORS:
        ra, dec = geometry.DetectorProjection(det, pointing, N_PIX_SCIENCE).pixel_to_world(x, y)
        out.append(xyz(ra, dec))
    return np.array(out)


def rotations(ra, dec, pa) -> np.ndarray:
    """Rotation matrices (n, 3, 3) taking (0, 0) to (ra, dec) with position angle ``pa`` (deg)."""
    a, d, p = (np.radians(np.asarray(v, float)) for v in (ra, dec, pa))
    n = a.size
    ca, sa, cd, sd, cp, sp = np.cos(a), np.sin(a), np.cos(d), np.sin(d), np.cos(p), np.sin(p)
    rx = np.zeros((n, 3, 3))
    rx[:, 0, 0] = 1
    rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = cp, -sp, sp, cp
    ry = np.zeros((n, 3, 3))
    ry[:, 1, 1] = 1
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 2, 0], ry[:, 2, 2] = cd, -sd, sd, cd
    rz = np.zeros((n, 3, 3))
    rz[:, 2, 2] = 1
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1] = ca, -sa, sa, ca
    return rz @ ry @ rx


def pointing_footprints(ra, dec, pa) -> np.ndarray:
    """Detector outlines (n, 18, 4, 3) of pointings (deg)."""
    rot = rotations(ra, dec, pa)
    return np.einsum("nij,dkj->ndki", rot, wfi_template())


def random_pointings(n: int, rng, *, region=None) -> tuple:
    """``n`` pointings: uniform on the sphere, or in ``region`` = (ra0, dec0, half-size deg)."""
    if region is None:
        ra = rng.uniform(0, 360, n)
        dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    else:
        ra0, dec0, half = region
        dec = np.clip(dec0 + rng.uniform(-half, half, n), -89.9, 89.9)
        ra = (ra0 + rng.uniform(-half, half, n) / np.cos(np.radians(dec))) % 360.0
    return ra, dec, rng.uniform(0, 360, n)


def _info(obs_id: str) -> dict:
    return {"uri": f"synthetic/{obs_id}.asdf", "sha256": hashlib.sha256(obs_id.encode()).hexdigest(),
            "size": 1 << 20, "mtime_ns": 0}


def cal_record(obs_id, vertices, *, detector, band, t_min, exptime=139.0, ref_version="0002",
               pointing_index=0) -> ProductRecord:
    """A calibrated-image record as ingest would read it from an L2 file."""
    level, calib, dptype, subtype = KINDS["cal"]
    c = {"obs_id": obs_id, "obs_publisher_did": f"ivo://romanflow/{obs_id}", "obs_collection": "romanflow",
         "dataproduct_type": dptype, "dataproduct_subtype": subtype, "calib_level": calib,
         "facility_name": "Roman", "instrument_name": "WFI", "access_url": f"files/{obs_id}",
         "access_format": "application/asdf", "access_estsize": 1024, "product_level": level, "product_kind": "cal",
         "detector": detector, "optical_element": band, "exposure_type": "WFI_IMAGE", "ma_table_number": 4,
         "t_min": t_min, "t_max": t_min + exptime / 86400.0, "t_exptime": exptime, "s_resolution": 0.11,
         "s_xel1": 4088, "s_xel2": 4088, "em_min": BANDPASS_M[band][0], "em_max": BANDPASS_M[band][1],
         "program": 1, "visit": int(pointing_index), "pass_number": 1, "exposure": 1, "software_version": "synthetic",
         "flags": None}
    c.update(footprint_columns(vertices))
    refs = {"dark": f"roman_wfi_dark_{detector.lower()}_{ref_version}.asdf",
            "flat": f"roman_wfi_flat_{detector.lower()}_{band.lower()}_{ref_version}.asdf",
            "gain": f"roman_wfi_gain_{detector.lower()}_{ref_version}.asdf"}
    inputs = [(obs_id.removesuffix("_cal") + "_uncal", "science", "")]
    inputs += [(name.removesuffix(".asdf"), "reference", reftype) for reftype, name in refs.items()]
    return ProductRecord(obs_id, "cal", c, vertices, inputs, refs)


def survey_records(n_products: int, *, seed: int = 0, region=(150.0, 2.0, 5.0), bands=("F158", "F106"),
                   mosaic_depth: int = 8, with_mosaics: bool = True):
    """About ``n_products`` records of a survey: L2 images of 18 detectors per pointing and, per HEALPix
    cell of ``mosaic_depth`` and band, a mosaic made from them and a catalog made from the mosaic.

    Returns ``[(ProductRecord, info), ...]``, levels in order (inputs before products).
    """
    from romanflow.archive.sphere import point_cells, xyz
    from romanflow.detector import DETECTORS

    rng = np.random.default_rng(seed)
    n_point = max(1, int(np.ceil(n_products * (0.94 if with_mosaics else 1.0) / 18)))
    ra, dec, pa = random_pointings(n_point, rng, region=region)
    feet = pointing_footprints(ra, dec, pa)
    band_of = rng.integers(0, len(bands), n_point)
    t0 = SURVEY_START_MJD + np.sort(rng.uniform(0, 365.0, n_point))
    out = []
    members: dict = {}
    cells = point_cells(ra, dec, mosaic_depth)
    for i in range(n_point):
        band = bands[band_of[i]]
        for d, det in enumerate(DETECTORS):
            obs_id = f"r{i:09d}_{det.lower()}_cal"
            out.append((cal_record(obs_id, feet[i, d], detector=det, band=band, t_min=float(t0[i]),
                                   pointing_index=i), _info(obs_id)))
            members.setdefault((int(cells[i]), band), []).append((obs_id, float(t0[i])))
    if with_mosaics:
        import astropy.units as u
        from cdshealpix.nested import vertices as hp_vertices

        for (cell, band), mem in sorted(members.items()):
            lon, lat = hp_vertices(np.array([cell], np.uint64), mosaic_depth)
            v = xyz(lon.to_value(u.deg)[0], lat.to_value(u.deg)[0])
            cra, cdec = radec(v.sum(axis=0))
            name = f"c{mosaic_depth}_{cell}_{band.lower()}"
            times = [t for _, t in mem]
            for kind, obs_id, inputs in (("coadd", f"{name}_coadd", [(m, "member", "") for m, _ in mem]),
                                         ("catalog", f"{name}_cat", [(f"{name}_coadd", "science", "")])):
                level, calib, dptype, subtype = KINDS[kind]
                c = {"obs_id": obs_id, "obs_publisher_did": f"ivo://romanflow/{obs_id}",
                     "obs_collection": "romanflow", "dataproduct_type": dptype, "dataproduct_subtype": subtype,
                     "calib_level": calib, "facility_name": "Roman", "instrument_name": "WFI",
                     "access_url": f"files/{obs_id}", "access_format": "application/asdf", "access_estsize": 1024,
                     "product_level": level, "product_kind": kind, "optical_element": band,
                     "em_min": BANDPASS_M[band][0], "em_max": BANDPASS_M[band][1], "t_min": min(times),
                     "t_max": max(times) + 139.0 / 86400.0, "skycell": name, "flags": None}
                c.update(footprint_columns(v))
                out.append((ProductRecord(obs_id, kind, c, v, inputs, {}), _info(obs_id)))
    return out
