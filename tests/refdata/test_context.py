"""Context rules and best-reference selection."""

import numpy as np
import pytest
import yaml

from romanflow.errors import InputFileError, ReferenceSelectionError, RomanflowError
from romanflow.formats.reference_io import reference_meta, write_reference
from romanflow.refdata import Context, best_references, select, select_reference

N = 8


def _write(folder, name, reftype, **meta_kw):
    meta = reference_meta(reftype, meta_kw.pop("detector", "WFI01"), **meta_kw)
    image = np.ones((N, N), np.float32)
    flags = np.zeros((N, N), np.uint32)
    content = {
        "flat": {"data": image, "err": image, "dq": flags},
        "dark": {"dark_slope": image, "dark_slope_error": image, "dq": flags},
        "gain": {"data": image},
        "mask": {"dq": flags},
    }[reftype]
    return write_reference(folder / name, reftype, meta, **content)


@pytest.fixture
def context_file(tmp_path):
    """A hand-written context over tiny files, covering each kind of parkey."""
    for name, reftype, kw in [
        ("flat_01_f158_old.asdf", "flat", {"optical_element": "F158"}),
        ("flat_01_f158_new.asdf", "flat", {"optical_element": "F158"}),
        ("flat_01_f062.asdf", "flat", {"optical_element": "F062"}),
        ("flat_02_f158.asdf", "flat", {"detector": "WFI02", "optical_element": "F158"}),
        ("dark_01_image.asdf", "dark", {}),
        ("dark_01_flatexp.asdf", "dark", {}),
        ("dark_01_ma4.asdf", "dark", {}),
        ("gain_any.asdf", "gain", {}),
        ("gain_01.asdf", "gain", {}),
        ("mask_01.asdf", "mask", {}),
    ]:
        _write(tmp_path, name, reftype, **kw)
    tree = {
        "context": "test_0007",
        "reftypes": {
            "flat": {"rules": [
                {"match": {"instrument.detector": "WFI01", "instrument.optical_element": "F158"},
                 "useafter": {"2020-01-01 00:00:00": "flat_01_f158_old.asdf",
                              "2027-06-01T00:00:00": "flat_01_f158_new.asdf"}},
                {"match": {"instrument.detector": "WFI01", "instrument.optical_element": "F062"},
                 "useafter": {"2020-01-01T00:00:00": "flat_01_f062.asdf"}},
                {"match": {"instrument.detector": "WFI02", "instrument.optical_element": "F158"},
                 "useafter": {"2020-01-01T00:00:00": "flat_02_f158.asdf"}},
                {"match": {"instrument.detector": "N/A", "instrument.optical_element": ["GRISM", "PRISM"]},
                 "useafter": {"2020-01-01T00:00:00": "N/A"}},
            ]},
            "dark": {"rules": [
                {"match": {"instrument.detector": "WFI01", "exposure.type": ["WFI_IMAGE", "WFI_IM_DARK"],
                           "exposure.ma_table_number": "N/A"},
                 "useafter": {"2020-01-01T00:00:00": "dark_01_image.asdf"}},
                {"match": {"instrument.detector": "WFI01", "exposure.type": "WFI_FLAT"},
                 "useafter": {"2020-01-01T00:00:00": "dark_01_flatexp.asdf"}},
                {"match": {"instrument.detector": "WFI01", "exposure.type": ["WFI_IMAGE"],
                           "exposure.ma_table_number": 4},
                 "useafter": {"2020-01-01T00:00:00": "dark_01_ma4.asdf"}},
            ]},
            "gain": {"rules": [
                {"match": {"instrument.detector": "N/A"}, "useafter": {"2020-01-01T00:00:00": "gain_any.asdf"}},
                {"match": {"instrument.detector": "WFI01"}, "useafter": {"2019-01-01T00:00:00": "gain_01.asdf"}},
            ]},
            "mask": {"rules": [
                {"match": {"instrument.detector": "WFI01"}, "useafter": {"2030-01-01T00:00:00": "mask_01.asdf"}},
            ]},
        },
    }
    path = tmp_path / "test_0007.context.yaml"
    path.write_text(yaml.safe_dump(tree))
    return path


def _meta(detector="WFI01", element="F158", exptype="WFI_IMAGE", start="2027-01-01T00:00:00", ma=3):
    return {"instrument": {"detector": detector, "optical_element": element},
            "exposure": {"type": exptype, "start_time": start, "ma_table_number": ma}}


def test_match_on_detector_and_optical_element(context_file):
    assert select_reference("flat", _meta(), context_file).name == "flat_01_f158_old.asdf"
    assert select_reference("flat", _meta(element="F062"), context_file).name == "flat_01_f062.asdf"
    assert select_reference("flat", _meta(detector="WFI02"), context_file).name == "flat_02_f158.asdf"
    assert select is select_reference


def test_useafter_picks_latest_not_after_start(context_file):
    assert select_reference("flat", _meta(start="2027-05-31T23:59:59"), context_file).name == "flat_01_f158_old.asdf"
    assert select_reference("flat", _meta(start="2027-06-01T00:00:00"), context_file).name == "flat_01_f158_new.asdf"
    from astropy.time import Time

    assert select_reference("flat", _meta(start=Time("2028-01-01")), context_file).name == "flat_01_f158_new.asdf"
    with pytest.raises(ReferenceSelectionError, match="mask .*USEAFTER date on or before 2027-01-01"):
        select_reference("mask", _meta(), context_file)


def test_exposure_type_and_ma_table_number(context_file):
    assert select_reference("dark", _meta(exptype="WFI_IM_DARK"), context_file).name == "dark_01_image.asdf"
    assert select_reference("dark", _meta(exptype="WFI_FLAT"), context_file).name == "dark_01_flatexp.asdf"
    # An exact MA-table match beats the rule that leaves the table open (N/A).
    assert select_reference("dark", _meta(ma=4), context_file).name == "dark_01_ma4.asdf"
    assert select_reference("dark", _meta(ma=5), context_file).name == "dark_01_image.asdf"
    with pytest.raises(ReferenceSelectionError, match="dark .*exposure.type=WFI_SPECTRAL"):
        select_reference("dark", _meta(exptype="WFI_SPECTRAL"), context_file)


def test_wildcard_and_not_applicable(context_file):
    # The exact rule beats the N/A rule although its USEAFTER is older.
    assert select_reference("gain", _meta(), context_file).name == "gain_01.asdf"
    assert select_reference("gain", _meta(detector="WFI17"), context_file).name == "gain_any.asdf"
    assert select_reference("flat", _meta(detector="WFI09", element="GRISM"), context_file) is None


def test_no_match_names_reftype_and_parameters(context_file):
    with pytest.raises(ReferenceSelectionError) as info:
        select_reference("flat", _meta(detector="WFI03", element="F213"), context_file)
    message = str(info.value)
    assert "flat" in message and "instrument.detector=WFI03" in message
    assert "instrument.optical_element=F213" in message and "test_0007" in message
    with pytest.raises(ReferenceSelectionError, match="no rules for reference type saturation"):
        select_reference("saturation", _meta(), context_file)
    with pytest.raises(ReferenceSelectionError, match="exposure.start_time"):
        select_reference("flat", {"instrument": {"detector": "WFI01", "optical_element": "F158"}}, context_file)
    with pytest.raises(RomanflowError, match="unknown reference type"):
        select_reference("superbias9", _meta(), context_file)


def test_overrides_win_and_are_checked(context_file, tmp_path):
    mine = _write(tmp_path, "my_flat.asdf", "flat", detector="WFI11", optical_element="F213")
    assert select_reference("flat", _meta(), context_file, overrides={"flat": str(mine)}) == mine
    # An override wins even where the context has no match.
    assert select_reference("flat", _meta(detector="WFI05"), context_file, overrides={"flat": mine}) == mine
    assert select_reference("flat", _meta(), context_file, overrides={"flat": "N/A"}) is None
    wrong = tmp_path / "dark_01_image.asdf"
    with pytest.raises(InputFileError, match="cannot be used as the flat reference: wrong product type DarkRefModel"):
        select_reference("flat", _meta(), context_file, overrides={"flat": wrong})
    with pytest.raises(InputFileError, match="absent.asdf: cannot be used as the flat reference: no such file"):
        select_reference("flat", _meta(), context_file, overrides={"flat": tmp_path / "absent.asdf"})


def test_best_references_and_missing_file(context_file, tmp_path):
    ctx = Context.load(context_file)
    best = best_references(_meta(start="2031-01-01T00:00:00"), ctx, reftypes=("flat", "dark", "gain", "mask"))
    assert {k: v.name for k, v in best.items()} == {
        "flat": "flat_01_f158_new.asdf", "dark": "dark_01_image.asdf", "gain": "gain_01.asdf",
        "mask": "mask_01.asdf"}
    (tmp_path / "mask_01.asdf").unlink()
    with pytest.raises(ReferenceSelectionError, match="mask_01.asdf, which does not exist"):
        select_reference("mask", _meta(start="2031-01-01T00:00:00"), ctx)
    with pytest.raises(RomanflowError, match="overrides: bias"):
        best_references(_meta(), ctx, overrides={"bias": "x"})


def test_context_round_trip_and_bad_file(context_file, tmp_path):
    ctx = Context.load(context_file)
    copy = ctx.save(tmp_path / "copy" / "again.context.yaml")
    again = Context.load(copy)
    assert again.name == "test_0007"
    assert {k: [(r.match, r.useafter) for r in v] for k, v in again.rules.items()} == \
           {k: [(r.match, r.useafter) for r in v] for k, v in ctx.rules.items()}
    bad = tmp_path / "bad.context.yaml"
    bad.write_text("context: x\nreftypes: [1, 2\n")
    with pytest.raises(InputFileError, match="bad.context.yaml: not a valid reference context"):
        Context.load(bad)
    with pytest.raises(InputFileError, match="no such context file"):
        Context.load(tmp_path / "none.yaml")


def test_bad_useafter_date_is_reported(tmp_path):
    path = tmp_path / "d.context.yaml"
    path.write_text(yaml.safe_dump({"context": "d", "reftypes": {"gain": {"rules": [
        {"match": {"instrument.detector": "WFI01"}, "useafter": {"next tuesday": "g.asdf"}}]}}}))
    with pytest.raises(InputFileError, match="USEAFTER 'next tuesday' is not a date"):
        Context.load(path)
