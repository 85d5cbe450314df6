"""Matching injected sources to detections on hand-built cases, with blends; recovery on synthetic images."""

import numpy as np
import pandas as pd
import pytest

from romanflow.inject import generate_sources, inject_images
from romanflow.inject.recover import FLAGS, OUTPUT_COLUMNS, recover, write_output_catalog
from romanflow.kernels.matching import match_sources, neighbours_within

from .conftest import FWHM_ARCSEC


def test_hand_built_blends_and_neighbours():
    # injected (arcsec, AB mag):
    #   A, B: a pair 0.25" apart, detected as one source near A with A's brightness -> A matched, B not
    #   C: one detection at the right brightness and a fainter spurious one nearer -> the right one wins
    #   D, E: equally far from one detection; E's magnitude fits it -> E matched, D not
    #   F: nothing within the radius
    x_in = np.array([0.0, 0.25, 10.0, 20.0, 20.6, 30.0])
    y_in = np.zeros(6)
    m_in = np.array([20.0, 22.0, 21.0, 24.0, 21.0, 22.0])
    x_out = np.array([0.03, 10.12, 10.06, 20.3, 31.0])
    y_out = np.array([0.0, 0.0, 0.0, 0.0, 0.0])
    m_out = np.array([19.85, 21.05, 25.0, 21.1, 22.0])
    index, sep, n_cand = match_sources(x_in, y_in, m_in, x_out, y_out, m_out, radius=0.4, mag_tolerance=1.0)
    np.testing.assert_array_equal(index, [0, -1, 1, -1, 3, -1])
    np.testing.assert_allclose(sep[[0, 2, 4]], [0.03, 0.12, 0.3], atol=1e-12)
    assert np.isnan(sep[[1, 3, 5]]).all()
    np.testing.assert_array_equal(n_cand, [1, 1, 2, 1, 1, 0])
    # without magnitudes the nearer detection of C would win
    index_pos, _, _ = match_sources(x_in, y_in, np.full(6, np.nan), x_out, y_out, m_out, radius=0.4)
    assert index_pos[2] == 2
    # one detection is never given to two injected sources
    assert len(set(index[index >= 0])) == (index >= 0).sum()
    np.testing.assert_array_equal(neighbours_within(x_in, y_in, 1.0), [1, 1, 0, 1, 1, 0])
    np.testing.assert_array_equal(neighbours_within(x_in, y_in, 1.0, x_out, y_out), [1, 1, 2, 1, 1, 1])


@pytest.fixture(scope="module")
def recovered(field, tmp_path_factory):
    from romanflow.formats import read_l2

    out = tmp_path_factory.mktemp("recover")
    image = read_l2(field.l2[0])
    ra, dec, _ = field.real
    sources = generate_sources(image.wcs, image.data.shape, ["F158"], n=16, mag_range=(20.0, 21.5),
                               star_fraction=1.0, avoid=(ra, dec), avoid_radius_arcsec=1.5,
                               min_separation_arcsec=2.0, seed=7)
    # a blend: one more star 0.15" from the first, 2.5 mag fainter
    extra = sources.iloc[[0]].copy()
    extra["injection_id"] = 999
    extra["dec"] = extra["dec"] + 0.15 / 3600
    extra["mag_F158"] = extra["mag_F158"] + 2.5
    sources = pd.concat([sources, extra], ignore_index=True)
    [injected] = inject_images([field.l2[0]], sources, out, seed=1, psf_fwhm_arcsec=FWHM_ARCSEC)
    result = recover([injected.path], [injected.sources], [field.l2[0]], psf_fwhm_arcsec=FWHM_ARCSEC)
    return result, out


def test_recovered_bright_stars_are_matched_with_the_right_flux(recovered):
    result, out = recovered
    o = result.output.set_index("injection_id")
    isolated = o[(o["recovery_flags"] & (FLAGS["BLEND_INJECTED"] | FLAGS["NEAR_REAL"])) == 0]
    assert len(isolated) >= 12 and isolated["matched"].all()
    z = (isolated["flux_out"] - isolated["flux_in"]) / isolated["flux_out_err"]
    assert np.abs(z).max() < 5
    assert abs(np.median(isolated["flux_out"] / isolated["flux_in"]) - 1) < 0.02
    assert (isolated["separation"] < 0.05).all()
    # the blend: the bright star keeps the detection, the faint one is flagged and unmatched
    first = result.output["injection_id"].iloc[0]
    assert o.loc[first, "matched"] and not o.loc[999, "matched"]
    assert o.loc[first, "recovery_flags"] & FLAGS["BLEND_INJECTED"]
    assert o.loc[999, "recovery_flags"] & FLAGS["BLEND_INJECTED"]
    # the parent's real stars are detected but not new; every new detection is an injected star
    d = result.detections
    assert (~d["is_new"]).sum() >= 8
    assert (d[d["is_new"]]["injection_id"] >= 0).all()


def test_output_catalog_has_documented_columns(recovered):
    import pyarrow.parquet as pq

    result, out = recovered
    path = write_output_catalog(result.output, out / "out.parquet", provenance={"cell": "test"})
    schema = pq.read_schema(path)
    assert set(schema.names) == set(OUTPUT_COLUMNS)
    for name in schema.names:
        assert schema.field(name).metadata[b"description"]
    assert schema.field("flux_out").metadata[b"unit"] == b"nJy"
