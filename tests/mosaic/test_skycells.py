import sys
from pathlib import Path

import numpy as np
import pytest

from romanflow.errors import RomanflowError
from romanflow.geometry import detector_gwcs, pointing_for
from romanflow.mosaic import skycells as sc

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))

import make_skymap  # noqa: E402


@pytest.fixture(scope="module")
def skymap():
    return sc.load_skymap()


def _random_sky(n, seed):
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    # poles, RA wrap, and the region edges themselves
    lat = make_skymap.ring_latitudes(make_skymap.NSIDE)
    edges = 0.5 * (lat[:-1] + lat[1:])
    extra_dec = np.r_[90.0, -90.0, 89.9999, -89.9999, 0.0, 0.0, edges, edges + 1e-9, edges - 1e-9]
    extra_ra = np.r_[0.0, 0.0, 77.0, 300.0, 0.0, 359.9999999, rng.uniform(0, 360, 3 * edges.size)]
    return np.r_[ra, extra_ra], np.r_[dec, extra_dec]


def test_shipped_table_matches_generator(skymap):
    regenerated = make_skymap.generate_projection_regions()
    assert len(skymap.table) == len(regenerated) == 3442
    for name in ("ra_tangent", "dec_tangent", "dec_min", "dec_max", "x_tangent", "ncell_x", "skycell_end"):
        np.testing.assert_allclose(np.asarray(skymap.table[name]), np.asarray(regenerated[name]))
    assert skymap.table.meta["nxy_skycell"] == 5000 and skymap.table.meta["skycell_border_pixels"] == 100
    # iso-latitude bands on HEALPix ring latitudes, polar caps tangent at the poles
    assert skymap.regions[0].dec_tangent == 90.0 and skymap.regions[-1].dec_tangent == -90.0
    ring_lat = make_skymap.ring_latitudes(make_skymap.NSIDE)
    band_decs = np.unique([r.dec_tangent for r in skymap.regions[1:-1]])
    np.testing.assert_allclose(np.sort(band_decs), np.sort(ring_lat[1:-1]))
    assert skymap.table.meta["nside"] == make_skymap.NSIDE


def test_make_skymap_writes_a_table_the_sky_map_reads(tmp_path):
    path = make_skymap.write_skymap(tmp_path / "regions.parquet")
    written = sc.load_skymap(path)
    assert len(written.regions) == 3442
    assert written.containing(270.0, 65.0) == sc.skycell_containing(270.0, 65.0)
    with pytest.raises(RomanflowError, match="not found"):
        sc.load_skymap(tmp_path / "missing.parquet")


def test_names_round_trip(skymap):
    ra, dec = _random_sky(500, 1)
    names = sc.skycell_containing(ra, dec)
    for name in names[:200]:
        reg, i, j = skymap.parse(name)
        assert skymap.name(reg.index, i, j) == name
        assert sc._NAME_RE.match(name)
        # a cell's centre lies in its own core (when the centre is inside the cell's region;
        # edge cells of a region have centres owned by the neighbouring region)
        w = sc.skycell_wcs(name)
        c_ra, c_dec = w.pixel_to_world_values(2499.5, 2499.5)
        if reg.contains(c_ra, c_dec):
            assert sc.skycell_containing(c_ra, c_dec) == [name]
    assert skymap.name(0, 62, 7).startswith("000p90x62y07")


def test_bad_names_raise():
    for bad in ("270p65", "hello", "999p65x01y01", "000p90x999y01"):
        with pytest.raises(RomanflowError):
            sc.skycell_wcs(bad)


def test_every_position_in_exactly_one_own_core(skymap):
    ra, dec = _random_sky(4000, 2)
    names = sc.skycell_containing(ra, dec)
    for k in range(0, ra.size, 7):
        w = sc.skycell_wcs(names[k])
        x, y = w.world_to_pixel_values(ra[k], dec[k])
        assert 49.5 <= x < 4949.5 and 49.5 <= y < 4949.5, (names[k], ra[k], dec[k], x, y)
    for name in set(names[::20]):
        assert skymap.cell_exists(name)


@pytest.mark.parametrize("scale, n, border", [(0.055, 5000, 100), (0.11, 2500, 50)])
def test_neighbours_share_grid_with_exact_overlap(scale, n, border):
    for base in ("148p03x03y07", "000p90x62y62", "011m82x10y20"):
        reg = sc.load_skymap().parse(base)[0]
        i, j = sc.load_skymap().parse(base)[1:]
        a = sc.skycell_wcs(base, scale)
        right = sc.skycell_wcs(f"{reg.prefix}x{i + 1:02d}y{j:02d}", scale)
        up = sc.skycell_wcs(f"{reg.prefix}x{i:02d}y{j + 1:02d}", scale)
        assert a.array_shape == (n, n)
        step = n - border
        xs = np.array([step - 0.5, step, n - 1.0, n - 0.5])
        ys = np.array([10.0, 2000.0, n - 1.0, 700.0])
        bx, by = right.world_to_pixel_values(*a.pixel_to_world_values(xs, ys))
        np.testing.assert_allclose(bx, xs - step, atol=2e-6)
        np.testing.assert_allclose(by, ys, atol=2e-6)
        # overlap is exactly `border` pixels: A's last pixel is B's pixel border-1
        assert round(float(bx[2])) == border - 1
        cx, cy = up.world_to_pixel_values(*a.pixel_to_world_values(ys, xs))
        np.testing.assert_allclose(cy, xs - step, atol=2e-6)
        np.testing.assert_allclose(cx, ys, atol=2e-6)


def test_pixel_scale_and_visit_grid():
    name = "148p03x03y07"
    fine = sc.skycell_wcs(name, 0.055)
    coarse = sc.skycell_wcs(name, 0.11)
    np.testing.assert_allclose(fine.proj_plane_pixel_scales()[0].to_value("arcsec"), 0.055, rtol=1e-12)
    np.testing.assert_allclose(coarse.proj_plane_pixel_scales()[0].to_value("arcsec"), 0.11, rtol=1e-12)
    # a visit pixel k is the 2x2 block of mosaic pixels 2k, 2k+1: its centre is at 2k + 0.5
    k = np.array([0.0, 17.0, 2499.0])
    fx, fy = fine.world_to_pixel_values(*coarse.pixel_to_world_values(k, k[::-1]))
    np.testing.assert_allclose(fx, 2 * k + 0.5, atol=1e-6)
    np.testing.assert_allclose(fy, 2 * k[::-1] + 0.5, atol=1e-6)
    # the sky scale at the cell centre is the nominal one to TAN accuracy (< 1.1 %)
    ra, dec = fine.pixel_to_world_values([2499.0, 2500.0], [2499.0, 2499.0])
    d = np.hypot((ra[1] - ra[0]) * np.cos(np.radians(dec[0])), dec[1] - dec[0]) * 3600
    assert abs(d / 0.055 - 1) < 0.011


def test_tan_projection_matches_astropy():
    w = sc.skycell_wcs("000p90x62y62")
    reg = sc.load_skymap().parse("000p90x62y62")[0]
    ra = np.array([10.0, 100.0, 250.0])
    dec = np.array([89.0, 86.0, 88.5])
    x, y = w.world_to_pixel_values(ra, dec)
    X, Y = sc.load_skymap().region_pixel(reg, ra, dec)
    np.testing.assert_allclose(x, X - 62 * 4900, atol=1e-6)
    np.testing.assert_allclose(y, Y - 62 * 4900, atol=1e-6)
    back = sc.tan_deproject(*sc.tan_project(ra, dec, 33.0, 41.0), 33.0, 41.0)
    np.testing.assert_allclose(back[1], dec, atol=1e-10)


def test_skycells_for_image_lists_cells_the_image_touches():
    # a full-size detector straddling a region boundary near dec 0
    pointing = pointing_for(3.75, 0.0, 10.0)
    wcs = detector_gwcs("WFI01", pointing, 4088)
    names = sc.skycells_for_image(wcs, (4088, 4088))
    assert 4 <= len(names) <= 30
    assert len({n[:6] for n in names}) >= 2  # more than one projection region
    t = np.linspace(-0.5, 4087.5, 96)
    gx, gy = np.meshgrid(t, t)
    ra, dec = wcs(gx.ravel(), gy.ravel(), with_bounding_box=False)
    assert set(sc.skycell_containing(ra, dec)) <= set(names)
    for name in names:  # every listed cell's full footprint holds part of the image
        x, y = sc.skycell_wcs(name).world_to_pixel_values(ra, dec)
        inside = (x >= -0.5) & (x < 4999.5) & (y >= -0.5) & (y < 4999.5)
        assert inside.any(), name


@pytest.mark.parametrize("cutout", [(0, 0, 0, 10), (0, 0, 10, -5), (5000, 0, 10, 10), (-20, -20, 10, 10)])
def test_cutouts_that_are_empty_or_miss_the_cell_are_refused(cutout):
    from romanflow.errors import ParameterError

    wcs = sc.skycell_wcs("148p03x03y07")
    with pytest.raises(ParameterError, match="cutout"):
        sc.cutout_wcs(wcs, *cutout)
    assert sc.cutout_wcs(wcs, -10, -10, 20, 20).array_shape == (20, 20)  # past the edge, but meeting the cell
    with pytest.raises(ParameterError, match="inside the sky cell"):
        sc.check_cutout(wcs, -10, -10, 20, 20, inside=True, name="--cutout")


@pytest.mark.parametrize("scale", [float("nan"), -0.055, 0.0, 0.07])
def test_pixel_scales_that_do_not_bin_the_cell_grid(scale):
    from romanflow.errors import ParameterError

    with pytest.raises(ParameterError, match="pixel_scale"):
        sc.skycell_wcs("148p03x03y07", scale)
