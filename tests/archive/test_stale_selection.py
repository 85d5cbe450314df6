"""``reference_stale`` agrees with the reference selection applied to each product one by one."""

import numpy as np
from astropy.time import Time

from romanflow.archive.stale import reference_stale, stale_products
from romanflow.archive.synthetic import survey_records
from romanflow.detector import DETECTORS, IMAGING_FILTERS
from romanflow.refdata.context import Context, Rule

FIRST = "2027-01-01T00:00:00"


def _context(tmp_path, t_cut, t_back, t_before):
    """The synthetic products' own references, with changes:
    WFI02 dark replaced from ``t_cut`` on; WFI03 dark replaced from ``t_cut`` and restored from ``t_back``
    (a stale interval inside the survey); a WFI04 F158 flat with an exact rule from ``t_cut``; a WFI05 gain
    replaced only after the survey; a WFI06 dark replaced before it began."""
    iso = lambda mjd: Time(mjd, format="mjd").isot  # noqa: E731
    rules = {"dark": [], "flat": [], "gain": []}
    for det in DETECTORS:
        d = det.lower()
        dark = {FIRST: f"roman_wfi_dark_{d}_0002.asdf"}
        if det == "WFI02":
            dark[iso(t_cut)] = f"roman_wfi_dark_{d}_0003.asdf"
        if det == "WFI03":
            dark[iso(t_cut)] = f"roman_wfi_dark_{d}_0003.asdf"
            dark[iso(t_back)] = f"roman_wfi_dark_{d}_0002.asdf"
        if det == "WFI06":
            dark[iso(t_before)] = f"roman_wfi_dark_{d}_0004.asdf"
        rules["dark"].append(Rule({"instrument.detector": det, "exposure.type": "N/A"}, dark))
        gain = {FIRST: f"roman_wfi_gain_{d}_0002.asdf"}
        if det == "WFI05":
            gain["2040-01-01T00:00:00"] = f"roman_wfi_gain_{d}_0003.asdf"
        rules["gain"].append(Rule({"instrument.detector": det}, gain))
        for f in IMAGING_FILTERS:
            rules["flat"].append(Rule({"instrument.detector": det, "instrument.optical_element": f},
                                      {FIRST: f"roman_wfi_flat_{d}_{f.lower()}_0002.asdf"}))
    rules["flat"].append(Rule({"instrument.detector": "WFI04", "instrument.optical_element": "F158",
                               "exposure.type": "WFI_IMAGE"}, {iso(t_cut): "roman_wfi_flat_wfi04_f158_0005.asdf"}))
    return Context("stale_test_0001", rules, root=tmp_path)


def _one_by_one(records, ctx):
    """Stale products by selecting each product's references on its own (the pipeline's selection)."""
    out = set()
    for rec, _ in records:
        if not rec.ref_files:
            continue
        c = rec.columns
        meta = {"instrument": {"detector": c["detector"], "optical_element": c["optical_element"]},
                "exposure": {"type": c["exposure_type"], "ma_table_number": c["ma_table_number"],
                             "start_time": Time(c["t_min"], format="mjd").isot}}
        for reftype, name in rec.ref_files.items():
            _, best = ctx.select_rule(reftype, meta)
            if best != name:
                out.add(rec.obs_id)
    return out


def test_reference_stale_equals_selection_per_product(open_archive, tmp_path):
    records = survey_records(2500, seed=11)
    arc = open_archive(tmp_path)
    arc.ingest_records(records)
    times = np.sort([r.columns["t_min"] for r, _ in records if r.kind == "cal"])
    t_cut, t_back = float(times[len(times) // 3]) + 1e-4, float(times[2 * len(times) // 3]) + 1e-4
    ctx = _context(tmp_path, t_cut, t_back, float(times[0]) - 1.0)
    expected = _one_by_one(records, ctx)
    found = reference_stale(arc, ctx)
    assert set(found) == expected
    detectors = {oid.split("_")[1] for oid in expected}
    assert detectors == {"wfi02", "wfi03", "wfi06", "wfi04"}  # the WFI05 gain change lies after the survey
    assert all(found[o].startswith("flat:") for o in found if "_wfi04_" in o)
    wfi03 = [r.columns["t_min"] for r, _ in records if r.obs_id in expected and "_wfi03_" in r.obs_id]
    assert min(wfi03) >= t_cut and max(wfi03) < t_back  # only the interval where the replacement applied
    # and through lineage: every mosaic with a stale member is stale, then its catalog
    table = stale_products(arc, ctx)
    assert set(table["obs_id"][table["reason"] == "reference"]) == expected
    assert np.any(table["reason"] == "downstream")
