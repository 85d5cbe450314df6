"""Synthesized references describe the DetectorModel exactly."""

import numpy as np
import pytest

from romanflow import dq
from romanflow.detector import IMAGING_FILTERS, MA_TABLES, PIXEL_SCALE, SMALL_SCIENCE_SIZE
from romanflow.detector_model import DetectorModel, measured_from_linear
from romanflow.errors import RomanflowError
from romanflow.formats.reference_io import read_reference
from romanflow.refdata.synthesize import inverse_linearity_coeffs, synthesize_reference

SIZE = SMALL_SCIENCE_SIZE


@pytest.fixture(scope="module")
def model():
    return DetectorModel("WFI04", SIZE)


def _synth(tmp_path, reftype, element=None):
    path = synthesize_reference(tmp_path / f"{reftype}.asdf", reftype, "WFI04", SIZE, element)
    return read_reference(path, reftype)


def test_arrays_equal_the_detector_model(tmp_path, model):
    np.testing.assert_array_equal(_synth(tmp_path, "mask").dq, model.mask)
    np.testing.assert_array_equal(_synth(tmp_path, "saturation").data, model.saturation)
    np.testing.assert_array_equal(_synth(tmp_path, "linearity").coeffs, model.linearity_coeffs)
    dark = _synth(tmp_path, "dark")
    np.testing.assert_array_equal(dark.dark_slope, model.dark_rate)
    assert dark.meta["instrument"]["optical_element"] == "DARK"
    np.testing.assert_array_equal(_synth(tmp_path, "gain").data, model.gain)
    np.testing.assert_array_equal(_synth(tmp_path, "readnoise").data, model.read_noise)
    for reftype in ("mask", "gain"):
        ref = read_reference(tmp_path / f"{reftype}.asdf", reftype)
        assert ref.meta["instrument"]["detector"] == "WFI04"
        assert next(iter(ref.content.values())).shape == (SIZE + 8, SIZE + 8)  # full frame, border included


def test_flat_and_its_no_flat_field_flags(tmp_path, model):
    ref = _synth(tmp_path, "flat", "F129")
    science = (slice(4, -4), slice(4, -4))
    flat = model.flat_dn("F129")[science]  # the response in DN: channel gains folded in
    np.testing.assert_array_equal(ref.data, flat)
    dead = flat == 0
    assert dead.sum() > 0  # the model has dead pixels at this size and seed
    assert np.all(ref.dq[dead] & dq.NO_FLAT_FIELD)
    assert not np.any(ref.dq[~dead] & dq.NO_FLAT_FIELD)
    assert ref.meta["instrument"]["optical_element"] == "F129"
    assert not np.array_equal(ref.data, model.flat_dn("F158")[science])  # filters differ
    # Dividing a rate (DN/s) by the flat gives the rate at the nominal gain: electrons / nominal gain.
    good = ~dead
    electrons = 100.0 * model.flat("F129")[science]
    rate = electrons / model.gain[science]
    np.testing.assert_allclose(rate[good] / ref.data[good], 100.0 / model.nominal_gain, rtol=1e-5)


def test_each_reference_has_the_shape_the_official_step_applies_it_to(tmp_path):
    """The flat divides the border-trimmed L2 image (romancal's flat_field skips any other shape); the other
    images are applied to the full-frame ramp (the dark step trims its own border)."""
    n = SIZE + 8
    assert _synth(tmp_path, "flat", "F158").data.shape == (SIZE, SIZE)
    for reftype in ("mask", "saturation", "dark", "gain", "readnoise"):
        ref = _synth(tmp_path, reftype)
        assert {a.shape for a in ref.content.values() if isinstance(a, np.ndarray)} == {(n, n)}, reftype
    assert _synth(tmp_path, "linearity").coeffs.shape[1:] == (n, n)


def test_inverse_linearity_accuracy(tmp_path, model):
    ref = _synth(tmp_path, "inverselinearity")
    top = 1.05 * float(model.full_well.max())
    levels = np.linspace(0.0, top, 97)[:, None, None]  # not the fit's sample levels
    truth = measured_from_linear(np.broadcast_to(levels, (97,) + model.shape), model.linearity_coeffs)
    d = ref.coeffs.astype(np.float64)
    fitted = sum(d[k] * levels**k for k in range(d.shape[0]))
    assert np.abs(fitted - truth).max() < 0.1  # DN, the documented accuracy
    # And it inverts the correction polynomial: linearity(inverse(L)) ~ L.
    c = model.linearity_coeffs.astype(np.float64)
    back = sum(c[k] * fitted**k for k in range(4))
    assert np.abs(back - levels).max() < 0.15


def test_inverse_fit_recovers_an_exact_polynomial():
    # A linear correction linear = 2 m has inverse m = L / 2 exactly.
    coeffs = np.zeros((4, 3, 5), np.float32)
    coeffs[1] = 2.0
    inverse = inverse_linearity_coeffs(coeffs, 1000.0, degree=3, block_rows=2)
    np.testing.assert_allclose(inverse[1], 0.5, rtol=1e-6)
    np.testing.assert_allclose(inverse[[0, 2, 3]], 0.0, atol=1e-6)
    # Every pixel different (no shared coefficient sets): the per-pixel fit gives the same answer.
    coeffs[1] = np.random.default_rng(3).uniform(1.5, 2.5, (3, 5))
    inverse = inverse_linearity_coeffs(coeffs, 1000.0, degree=3, block_rows=2)
    np.testing.assert_allclose(inverse[1], 1.0 / coeffs[1], rtol=1e-6)


def test_photom_matches_a_galsim_ab_source(tmp_path, model):
    import galsim
    import galsim.roman

    ref = _synth(tmp_path, "photom")
    assert set(ref.phot_table) == set(IMAGING_FILTERS)
    gain = model.nominal_gain
    assert gain == pytest.approx(float(np.mean(model.gain[4:-4, 4:-4])))
    bands = galsim.roman.getBandpasses(AB_zeropoint=True)
    for element, band in (("F158", "H158"), ("F062", "R062")):
        row = ref.phot_table[element]
        # Independent route: a flat-f_nu source of AB magnitude 20 through the galsim bandpass.
        sed = galsim.SED(galsim.LookupTable([100, 3000], [1.0, 1.0]), "nm", "fnu").withMagnitude(20.0, bands[band])
        electrons = sed.calculateFlux(bands[band]) * galsim.roman.collecting_area
        rate_dn = electrons / gain
        f_nu_jy = 3631.0 * 10 ** (-0.4 * 20.0)
        surface_mjysr = f_nu_jy * 1e-6 / row["pixelareasr"]  # the source spread over one pixel
        np.testing.assert_allclose(row["photmjsr"] * rate_dn, surface_mjysr, rtol=1e-3)
        np.testing.assert_allclose(row["pixelareasr"], (PIXEL_SCALE / 206264.806) ** 2, rtol=1e-6)
        assert row["uncertainty"] == pytest.approx(0.01 * row["photmjsr"])
        assert row["wavelength"].dtype == np.float32 and row["effective_area"].max() > 1.0  # m²


def test_matable_holds_every_table(tmp_path):
    ref = _synth(tmp_path, "matable")
    assert set(ref.science_tables) == {f"SCI{n:04d}" for n in MA_TABLES}
    table = ref.science_tables["SCI0004"]
    assert table["science_read_pattern"] == MA_TABLES[4].as_list()
    assert table["ma_table_name"] == "C2A_IMG_HLWAS"
    assert table["accumulated_exposure_time"][-1] == pytest.approx(139.15, abs=0.01)  # 44 reads


def test_distortion_transform_round_trips(tmp_path):
    from romanflow.geometry import distortion_transform

    ref = _synth(tmp_path, "distortion", "F158")
    transform = ref.coordinate_distortion_transform
    expected = distortion_transform("WFI04", science_size=SIZE)
    x, y = np.array([0.0, 100.0, 247.0]), np.array([0.0, 200.0, 10.0])
    np.testing.assert_allclose(transform(x, y), expected(x, y), rtol=0, atol=1e-9)
    v2, v3 = transform(x, y)
    np.testing.assert_allclose(transform.inverse(v2, v3), (x, y), atol=1e-3)
    assert ref.meta["instrument"]["optical_element"] == "F158"


def test_unknown_requests_are_refused(tmp_path):
    with pytest.raises(RomanflowError, match="cannot synthesize ipc"):
        synthesize_reference(tmp_path / "r.asdf", "ipc", "WFI01", SIZE)
    with pytest.raises(RomanflowError, match="need an imaging filter"):
        synthesize_reference(tmp_path / "f.asdf", "flat", "WFI01", SIZE, "GRISM")
    assert not list(tmp_path.iterdir())
