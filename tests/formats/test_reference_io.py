"""Reference files: write (validated), read back equal, clear errors."""

import asdf
import numpy as np
import pytest

from romanflow import dq
from romanflow.errors import InputFileError, RomanflowError
from romanflow.formats.reference_io import (
    EXPOSURE_TYPES,
    REFERENCE_TYPES,
    read_reference,
    reference_meta,
    write_reference,
)

N = 16
RNG = np.random.default_rng(7)


def _image(dtype=np.float32):
    return RNG.normal(1.0, 0.1, (N, N)).astype(dtype)


def _flags():
    return RNG.integers(0, 2**31, (N, N)).astype(np.uint32)


def _content(reftype):
    if reftype == "mask":
        return {"dq": _flags()}
    if reftype == "saturation":
        return {"data": _image() * 6e4, "dq": _flags()}
    if reftype == "refpix":
        shape = (4, 9)
        return {k: RNG.normal(size=shape) + 1j * RNG.normal(size=shape) for k in ("gamma", "zeta", "alpha")}
    if reftype in ("linearity", "inverselinearity"):
        return {"coeffs": RNG.normal(size=(5, N, N)).astype(np.float32), "dq": _flags()}
    if reftype == "dark":
        return {"dark_slope": _image(), "dark_slope_error": _image() * 0.01, "dq": _flags()}
    if reftype in ("gain", "readnoise"):
        return {"data": _image()}
    if reftype == "flat":
        return {"data": _image(), "err": _image() * 0.01, "dq": _flags()}
    if reftype == "distortion":
        from astropy.modeling import models

        return {"coordinate_distortion_transform": (models.Shift(3.0) & models.Shift(-2.0)) | models.Rotation2D(30)}
    if reftype == "photom":
        entry = {"photmjsr": 0.5, "uncertainty": 0.005, "pixelareasr": 2.84e-13, "collecting_area": 3.757,
                 "wavelength": np.linspace(1.3, 1.9, 7, dtype=np.float32),
                 "effective_area": np.linspace(2.0, 2.5, 7, dtype=np.float32)}
        return {"phot_table": {"F158": entry, "F087": {**entry, "photmjsr": 0.7}}}
    if reftype == "darkdecaysignal":  # per detector: amplitude (DN/s) and time constant (s)
        return {"decay_table": {f"WFI{i:02d}": {"amplitude": float(RNG.uniform(0.1, 2.0)),
                                                "time_constant": float(RNG.uniform(10.0, 40.0))}
                                for i in range(1, 19)}}
    if reftype == "epsf":  # (defocus, spectral type, grid position, y, x)
        return {"psf": RNG.normal(size=(1, 3, 4, 9, 9)).astype(np.float32)}
    if reftype == "matable":
        table = {
            "accumulated_exposure_time": [3.2, 9.5], "effective_exposure_time": [0.0, 4.7], "frame_time": 3.16,
            "integration_duration": [6.3, 12.6], "ma_table_description": "two", "ma_table_name": "T2",
            "ma_table_number": 2, "fsw_slot_number": 0, "min_science_resultants": 1, "num_pre_science_reads": 0,
            "num_pre_science_resultants": 0, "num_science_resultants": 2, "observing_mode": "IMAGING",
            "pre_science_read_is_reference": [], "pre_science_read_is_resultant": [], "pre_science_read_types": [],
            "pre_science_time_after_reset": 0.0, "reset_frame_time": 3.16, "science_read_pattern": [[1], [2, 3]],
        }
        return {"science_tables": {"SCI0002": table}, "guide_window_tables": {}}
    raise AssertionError(reftype)


def _assert_equal(a, b):
    if isinstance(a, dict):
        assert set(a) == set(b)
        for key in a:
            _assert_equal(a[key], b[key])
    elif isinstance(a, np.ndarray):
        np.testing.assert_array_equal(np.asarray(b), a)
        assert np.asarray(b).dtype == a.dtype or a.dtype.kind == "f"
    else:
        assert a == b


@pytest.mark.parametrize("reftype", REFERENCE_TYPES)
def test_round_trip_every_type(tmp_path, reftype):
    content = _content(reftype)
    meta = reference_meta(reftype, "WFI05", optical_element="F158", useafter="2026-02-03T04:05:06")
    path = write_reference(tmp_path / f"{reftype}.asdf", reftype, meta, **content)
    ref = read_reference(path, reftype)
    assert ref.reftype == reftype and ref.path == path
    assert ref.meta["reftype"] == reftype.upper()
    assert ref.meta["instrument"]["detector"] == "WFI05"
    assert str(ref.meta["useafter"].isot).startswith("2026-02-03T04:05:06")
    for name, value in content.items():
        if name == "coordinate_distortion_transform":
            x, y = np.array([0.0, 10.0, 100.0]), np.array([5.0, -3.0, 40.0])
            np.testing.assert_allclose(ref[name](x, y), value(x, y), rtol=1e-12)
        elif isinstance(value, np.ndarray):
            want = value.astype(ref[name].dtype)
            np.testing.assert_array_equal(ref[name], want)
            assert ref[name].dtype == {"dq": np.uint32, "gamma": np.complex128, "zeta": np.complex128,
                                       "alpha": np.complex128}.get(name, np.float32)
        else:
            _assert_equal(value, ref[name])
    if reftype in ("dark", "readnoise"):
        assert ref.meta["exposure"]["p_exptype"] == "".join(t + "|" for t in EXPOSURE_TYPES)
    if reftype in ("dark", "flat", "distortion"):
        assert ref.meta["instrument"]["optical_element"] == "F158"
    assert not list(tmp_path.glob(".*partial"))  # temporaries removed


def test_attribute_access_and_dq_values(tmp_path):
    flags = np.full((N, N), dq.DEAD | dq.DO_NOT_USE, dtype=np.uint32)
    path = write_reference(tmp_path / "m.asdf", "mask", reference_meta("mask", "WFI01"), dq=flags)
    ref = read_reference(path, "mask")
    assert ref.dq.dtype == np.uint32 and int(ref.dq[0, 0]) == dq.DEAD | dq.DO_NOT_USE


def test_older_per_resultant_dark_is_read(tmp_path):
    cube = RNG.normal(0.0, 1.0, (3, N, N)).astype(np.float32)
    content = {**_content("dark"), "data": cube}
    meta = reference_meta("dark", "WFI02")
    meta["exposure"].update(ma_table_name="C2A_IMG_HLWAS", ma_table_number=4)
    path = write_reference(tmp_path / "olddark.asdf", "dark", meta, **content)
    ref = read_reference(path, "dark")
    np.testing.assert_array_equal(ref["data"], cube)
    assert ref.meta["exposure"]["ma_table_number"] == 4
    # A current-style dark has no per-resultant cube.
    new = write_reference(tmp_path / "dark.asdf", "dark", reference_meta("dark", "WFI02"), **_content("dark"))
    assert "data" not in read_reference(new, "dark")


def test_write_validates_and_leaves_nothing_on_failure(tmp_path):
    meta = reference_meta("flat", "WFI01", optical_element="F158")
    with pytest.raises(ValueError, match="must be 2-D"):
        write_reference(tmp_path / "f.asdf", "flat", meta, data=np.ones((2, N, N)), err=_image(), dq=_flags())
    with pytest.raises(ValueError, match="missing members"):
        write_reference(tmp_path / "f.asdf", "flat", meta, data=_image())
    with pytest.raises(ValueError, match="disagree"):
        write_reference(tmp_path / "f.asdf", "flat", meta, data=_image(), err=np.ones((4, 4)), dq=_flags())
    bad = dict(meta, instrument={"name": "WFI", "detector": "WFI99", "optical_element": "F158"})
    # metadata the official schema rejects: the schema's own error, naming the value
    with pytest.raises(asdf.ValidationError, match="'WFI99' is not valid"):
        write_reference(tmp_path / "f.asdf", "flat", bad, data=_image(), err=_image(), dq=_flags())
    assert list(tmp_path.iterdir()) == []


def test_wrong_model_type_is_a_clear_error(tmp_path):
    path = write_reference(tmp_path / "flat.asdf", "flat", reference_meta("flat", "WFI01", optical_element="F062"),
                           **_content("flat"))
    with pytest.raises(InputFileError, match="flat.asdf: wrong product type FlatRefModel: expected DarkRefModel"):
        read_reference(path, "dark")


def test_truncated_and_missing_files(tmp_path):
    path = write_reference(tmp_path / "gain.asdf", "gain", reference_meta("gain", "WFI01"), data=_image())
    data = path.read_bytes()
    cut = tmp_path / "cut.asdf"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputFileError, match="cut.asdf"):
        read_reference(cut, "gain")
    with pytest.raises(InputFileError, match="no such file"):
        read_reference(tmp_path / "absent.asdf", "gain")
    with pytest.raises(RomanflowError, match="unknown reference type"):
        read_reference(path, "superflat")


def test_missing_array_is_reported(tmp_path):
    path = write_reference(tmp_path / "sat.asdf", "saturation", reference_meta("saturation", "WFI01"),
                           data=_image(), dq=_flags())
    raw = path.read_bytes()
    assert raw.count(b"\n  dq: ") == 1
    broken = tmp_path / "nodq.asdf"
    broken.write_bytes(raw.replace(b"\n  dq: ", b"\n  dx: ", 1))  # same length: block offsets stay valid
    with pytest.raises(InputFileError, match="nodq.asdf: .*'dq'"):
        read_reference(broken, "saturation")
