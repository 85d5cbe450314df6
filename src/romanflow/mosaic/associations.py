"""Associations: which L2 products go into which L3 mosaic.

L2 products are grouped per sky cell they touch and per optical element, and
within that into one product per visit, per pass, or one for everything
(``full``). Each group becomes an association JSON file with the keys of the
official L3 associations::

    {"asn_type": "image", "asn_rule": "DMS_ELPP_Base", "asn_id": "a0001",
     "program": "00001", "data_release_id": "p", "target": "270p65x48y69",
     "skycell_wcs_info": {...},
     "products": [{"name": "...", "members": [{"expname": "x_cal.asdf", "exptype": "science"}]}]}

Product names: ``r<program:05>_<release>_<group>_<skycell>_<filter>`` where the
group is ``v<plan:02><pass:03><segment:03><observation:03><visit:03>`` for a
visit, ``p<plan:02><pass:03>`` for a pass and ``full`` for all; the file is
``<product name>_asn.json``.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

from romanflow.errors import InputFileError, ParameterError, RomanflowError
from romanflow.mosaic.skycells import skycell_wcs_info, skycells_for_image

PRODUCT_TYPES = ("visit", "pass", "full")
ASN_KEYS = ("asn_type", "asn_rule", "asn_id", "program", "target", "skycell_wcs_info", "products")


@dataclass(frozen=True)
class L2Summary:
    """What associations need to know about one L2 product."""

    path: str
    optical_element: str
    program: int
    execution_plan: int
    pass_: int
    segment: int
    observation: int
    visit: int
    skycells: tuple


def _int(value, default=0):
    try:
        value = int(value)
    except (TypeError, ValueError):
        return default
    return default if value < 0 else value


def summarize_l2(path) -> L2Summary:
    """Read the metadata and footprint of one L2 file (arrays are not loaded)."""
    from romanflow.formats import open_model, to_plain

    model = open_model(path, "ImageModel")
    with model:
        wcs = model.meta["wcs"] if "wcs" in model.meta else None
        if wcs is None:
            raise InputFileError(path, "L2 product has no WCS (meta.wcs is null): run assign_wcs first")
        shape = tuple(model.data.shape)
        obs = to_plain(model.meta.observation) if "observation" in model.meta else {}
        element = str(model.meta.instrument.optical_element)
    cells = tuple(skycells_for_image(wcs, shape))
    return L2Summary(
        path=str(path), optical_element=element, program=_int(obs.get("program")),
        execution_plan=_int(obs.get("execution_plan")), pass_=_int(obs.get("pass")),
        segment=_int(obs.get("segment")), observation=_int(obs.get("observation")),
        visit=_int(obs.get("visit")), skycells=cells,
    )


def _group_label(s: L2Summary, product_type: str) -> str:
    if product_type == "visit":
        return f"v{s.execution_plan:02d}{s.pass_:03d}{s.segment:03d}{s.observation:03d}{s.visit:03d}"
    if product_type == "pass":
        return f"p{s.execution_plan:02d}{s.pass_:03d}"
    return "full"


def build_associations(summaries, product_type: str = "full", data_release_id: str = "p",
                       skycells=None, *, parameter: str = "skycells") -> list[dict]:
    """Association dicts, one per (sky cell, optical element, visit/pass/all) group.

    Parameters
    ----------
    summaries : iterable of L2Summary
    product_type : {'visit', 'pass', 'full'}
    data_release_id : str
    skycells : collection of str, optional
        Keep only these cells. Each must be a sky cell name, and some input must touch it:
        a ParameterError named ``parameter`` otherwise.
    """
    if product_type not in PRODUCT_TYPES:
        raise RomanflowError(f"unknown product type '{product_type}' (choose from {', '.join(PRODUCT_TYPES)})")
    summaries = list(summaries)
    if skycells is not None:
        skycells = check_skycell_names(skycells, parameter)
    groups = defaultdict(list)
    for s in summaries:
        for cell in s.skycells:
            if skycells is not None and cell not in skycells:
                continue
            groups[(cell, s.optical_element.lower(), s.program, _group_label(s, product_type))].append(s)
    if skycells is not None:
        untouched = sorted(set(skycells) - {key[0] for key in groups})
        if untouched:
            raise ParameterError(parameter, untouched[0] if len(untouched) == 1 else untouched,
                                 f"no input touches {'this sky cell' if len(untouched) == 1 else 'these sky cells'}")
    asns = []
    for k, key in enumerate(sorted(groups)):
        cell, element, program, label = key
        members = sorted(groups[key], key=lambda s: s.path)
        name = f"r{program:05d}_{data_release_id}_{label}_{cell}_{element}"
        asns.append({
            "asn_type": "image",
            "asn_rule": "DMS_ELPP_Base",
            "asn_id": f"a{k + 1:04d}",
            "program": f"{program:05d}",
            "data_release_id": data_release_id,
            "target": cell,
            "skycell_wcs_info": skycell_wcs_info(cell),
            "products": [{
                "name": name,
                "members": [{"expname": m.path, "exptype": "science"} for m in members],
            }],
        })
    return asns


def check_skycell_names(names, parameter: str = "skycells") -> list[str]:
    """The sky cell names, each checked against the sky map (a ParameterError named ``parameter`` otherwise)."""
    from romanflow.mosaic.skycells import load_skymap

    skymap = load_skymap()
    out = []
    for name in names:
        try:
            skymap.parse(name)
        except RomanflowError as exc:
            raise ParameterError(parameter, name, str(exc)) from None
        out.append(str(name))
    return out


def find_l2_files(items) -> list[Path]:
    """L2 files named on the command line: files as given, folders searched for ``*.asdf``."""
    out = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(p.glob("*.asdf")))
        elif p.exists():
            out.append(p)
        else:
            raise InputFileError(p, "no such file or folder")
    if not out:
        raise InputFileError(", ".join(str(i) for i in items), "no L2 files (*.asdf) found there")
    return out


def write_association(asn: dict, out_dir, relative_to_out: bool = True) -> Path:
    """Write one association as ``<product name>_asn.json`` in ``out_dir`` (atomically).

    Member paths are written relative to ``out_dir`` when ``relative_to_out``.
    """
    import os

    from romanflow.formats import atomic_path

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    asn = json.loads(json.dumps(asn))
    if relative_to_out:
        for product in asn["products"]:
            for m in product["members"]:
                m["expname"] = os.path.relpath(Path(m["expname"]).resolve(), out_dir.resolve())
    path = out_dir / f"{asn['products'][0]['name']}_asn.json"
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(asn, indent=2) + "\n")
    return path


def load_association(path) -> dict:
    """Read and check an association; member paths become absolute (relative to the file).

    Raises an InputFileError naming the file for anything that is not an association: a folder,
    invalid JSON, a value of the wrong type, no members, a target that is not a sky cell.
    """
    from romanflow.mosaic.skycells import load_skymap

    path = Path(path)
    if path.is_dir():
        raise InputFileError(path, "is a folder, not an association (JSON) file")
    if not path.exists():
        raise InputFileError(path, "no such file")
    try:
        asn = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InputFileError(path, f"not a JSON association: {exc}") from None
    if not isinstance(asn, dict):
        raise InputFileError(path, f"not an association: the JSON holds a {type(asn).__name__}, not an object")
    missing = [k for k in ASN_KEYS if k not in asn]
    if missing:
        raise InputFileError(path, f"association lacks {', '.join(missing)}")
    products = asn["products"]
    if not isinstance(products, list) or not all(isinstance(p, dict) for p in products):
        raise InputFileError(path, "association 'products' must be a list of objects")
    if not products or not products[0].get("members"):
        raise InputFileError(path, "association has no product members")
    for k, product in enumerate(products):
        if not isinstance(product.get("name", ""), str) or not product.get("name"):
            raise InputFileError(path, f"association products[{k}] has no 'name' string")
        members = product.get("members", [])
        if not isinstance(members, list):
            raise InputFileError(path, f"association products[{k}].members must be a list")
        for j, m in enumerate(members):
            if not isinstance(m, dict) or not isinstance(m.get("expname"), str) or not m["expname"]:
                raise InputFileError(path, f"association products[{k}].members[{j}] needs an 'expname' string")
            p = Path(m["expname"])
            m["expname"] = str(p if p.is_absolute() else (path.parent / p))
    if not isinstance(asn["target"], str):
        raise InputFileError(path, "association 'target' must be a sky cell name")
    try:
        load_skymap().parse(asn["target"])
    except RomanflowError as exc:
        raise InputFileError(path, f"association target: {exc}") from None
    return asn


def association_members(asn: dict, exptype: str = "science") -> list[str]:
    """Member file paths of the first product."""
    return [m["expname"] for m in asn["products"][0]["members"] if m.get("exptype", exptype) == exptype]
