"""HiPS trees from synthetic L3 mosaics whose pixel values are a known function of sky position."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from romanflow.hips import build_hips, read_mosaic, tile_path
from romanflow.hips.builder import MIN_ORDER, read_fits_tile, tile_sky_positions



def _checksums(tree):
    return {p.relative_to(tree).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(tree.rglob("Npix*")) if p.is_file()}


def _deepest(tree, order):
    return sorted(int(p.stem[4:]) for p in (tree / f"Norder{order}").glob("Dir*/Npix*.fits"))


@pytest.fixture(scope="module")
def tree_a(mosaics, tmp_path_factory):
    out = tmp_path_factory.mktemp("hips_a") / "hips"
    report = build_hips([mosaics["A"]], out)
    return out, report


def test_fits_tiles_reproduce_mosaic_values(tree_a, sky):
    SOURCES, truth = sky.SOURCES, sky.truth
    out, report = tree_a
    assert report.order == 13  # 0.050" HEALPix pixels for 0.055" mosaic pixels
    tiles = _deepest(out / "F158", report.order)
    assert 4 <= len(tiles) <= 20
    errors, n_valid = [], 0
    for index in tiles:
        value = read_fits_tile(tile_path(out / "F158", report.order, index, "fits"))
        ra, dec = tile_sky_positions(report.order, index)
        good = np.isfinite(value)
        n_valid += good.sum()
        errors.append(np.abs(value[good] - truth(ra[good], dec[good])))
    errors = np.concatenate(errors)
    # bilinear interpolation error <= h^2/8 (|f_xx| + |f_yy|) <= h^2/8 * 2 peak/sigma^2 for a Gaussian
    bound = max(peak * (0.055 / sigma) ** 2 / 4 for _, _, peak, sigma in SOURCES)
    assert errors.max() < bound
    assert errors.max() > 0.2 * bound  # the bound is not vacuous: the sources are resolved and resampled
    assert np.median(errors) < 1e-3
    # about the mosaic's area (800x500 pixels of 0.055", less the empty strip) is covered by valid tile pixels
    area = 797 * 500 * 0.055**2
    assert n_valid * 0.0503**2 == pytest.approx(area, rel=0.05)


def test_source_peaks_land_on_their_sky_positions(tree_a, sky):
    """The brightest tile pixel near each source is at the source's position, with its peak value."""
    SOURCES, truth = sky.SOURCES, sky.truth
    from cdshealpix.nested import lonlat_to_healpix
    from astropy import units as u

    out, report = tree_a
    for ra0, dec0, peak, _ in SOURCES:
        index = int(lonlat_to_healpix(np.array([ra0]) * u.deg, np.array([dec0]) * u.deg, report.order)[0])
        value = read_fits_tile(tile_path(out / "F158", report.order, index, "fits"))
        ra, dec = tile_sky_positions(report.order, index)
        near = np.hypot((ra - ra0) * np.cos(np.radians(dec0)), dec - dec0) * 3600 < 1.0
        k = np.nanargmax(np.where(near, value, -np.inf))
        sep = np.hypot((ra.flat[k] - ra0) * np.cos(np.radians(dec0)), dec.flat[k] - dec0) * 3600
        assert sep < 0.05  # within one HiPS pixel (0.050")
        assert value.flat[k] == pytest.approx(truth(ra0, dec0), rel=0.02)


def test_tile_layout_matches_the_hpx_projection_of_the_tile():
    """Pixel centres agree with the FITS HPX projection of a HiPS tile (reproject's tile header)."""
    from astropy.coordinates import ICRS
    from astropy.wcs import WCS
    from reproject.hips._utils import tile_header_2d

    order, index, width = 13, 325446789, 512
    header = tile_header_2d(level=order, index=index, frame=ICRS(), tile_size=width)
    wcs = WCS(header[0] if isinstance(header, tuple) else header)
    ra, dec = tile_sky_positions(order, index, width)
    rows, cols = np.mgrid[0:width:37, 0:width:41]
    x, y = wcs.world_to_pixel_values(ra[rows, cols], dec[rows, cols])
    assert np.max(np.abs(x - cols)) < 1e-3 and np.max(np.abs(y - rows)) < 1e-3


def test_lower_orders_average_their_children(tree_a, sky):
    truth = sky.truth
    out, report = tree_a
    tree = out / "F158"
    parent = _deepest(tree, report.order)[0] >> 2
    value = read_fits_tile(tile_path(tree, report.order - 1, parent, "fits"))
    children = [read_fits_tile(tile_path(tree, report.order, 4 * parent + c, "fits")) for c in range(4)]
    ra, dec = tile_sky_positions(report.order - 1, parent)
    good = np.isfinite(value)
    assert good.any()
    # a parent pixel is the mean of 4 children covering 0.1": the truth smoothed over that cell
    assert np.nanmedian(np.abs(value[good] - truth(ra[good], dec[good]))) < 0.01
    assert sum(c is not None for c in children) >= 1
    for order in range(MIN_ORDER, report.order + 1):
        assert _deepest(tree, order), f"no tile at order {order}"
    props = (tree / "properties").read_text()
    assert "hips_order           = 13" in props and "hips_tile_format     = png fits" in props


def test_incremental_update_rewrites_only_touched_tiles(mosaics, tmp_path):
    out = tmp_path / "hips"
    build_hips([mosaics["A"]], out)
    before = _checksums(out / "F158")
    report = build_hips([mosaics["B"]], out)
    after = _checksums(out / "F158")
    state = json.loads((out / ".hips_state.json").read_text())
    touched = set(state["bands"]["F158"]["cells"]["009p19x15y30"]["tiles"])
    touched_all = set()
    for order in range(report.order, MIN_ORDER - 1, -1):
        touched_all |= {f"Norder{order}/Dir{(t // 10000) * 10000}/Npix{t}.{ext}" for t in touched for ext in ("fits", "png")}
        touched = {t >> 2 for t in touched}
    untouched = set(before) - touched_all
    assert untouched, "cell B should leave some of cell A's tiles alone"
    assert all(after[name] == before[name] for name in untouched)
    changed = {name for name in before if after[name] != before[name]}
    assert changed and changed <= touched_all
    assert set(after) - set(before), "cell B adds tiles of its own"
    # merged incrementally == built in one go
    scratch = tmp_path / "scratch"
    build_hips([mosaics["A"], mosaics["B"]], scratch)
    assert _checksums(scratch / "F158").keys() == after.keys()
    for name in after:
        if name.endswith(".fits"):
            a = read_fits_tile(out / "F158" / name)
            b = read_fits_tile(scratch / "F158" / name)
            np.testing.assert_array_equal(a, b)
    # adding a cell again replaces its contribution: nothing changes
    build_hips([mosaics["B"]], out)
    assert _checksums(out / "F158") == after


def test_colour_composite_and_moc(mosaics, tmp_path, sky):
    SOURCES = sky.SOURCES
    from mocpy import MOC
    from PIL import Image
    from astropy import units as u

    out = tmp_path / "hips"
    report = build_hips([mosaics["A"], mosaics["A106"]], out)
    assert report.colour_tiles_written > 0
    props = (out / "colour" / "properties").read_text()
    assert "dataproduct_subtype  = color" in props and "F106 F158" in props
    ra0, dec0, _, _ = SOURCES[0]
    from cdshealpix.nested import lonlat_to_healpix

    index = int(lonlat_to_healpix(np.array([ra0]) * u.deg, np.array([dec0]) * u.deg, report.order)[0])
    rgba = np.asarray(Image.open(tile_path(out / "colour", report.order, index, "png")))
    assert rgba.shape == (512, 512, 4)
    fits_value = read_fits_tile(tile_path(out / "F158", report.order, index, "fits"))
    k = np.unravel_index(np.nanargmax(fits_value), fits_value.shape)
    # the PNG is the FITS tile upside down; the source is bright in every channel there
    assert (rgba[511 - k[0], k[1], :3] > 200).all() and rgba[511 - k[0], k[1], 3] == 255
    grey = np.asarray(Image.open(tile_path(out / "F158", report.order, index, "png")))
    assert grey.shape == (512, 512, 2) and grey[511 - k[0], k[1], 0] > 200
    moc = MOC.from_fits(out / "F158" / "Moc.fits")
    assert moc.contains_lonlat(np.array([s[0] for s in SOURCES]) * u.deg, np.array([s[1] for s in SOURCES]) * u.deg).all()
    assert not moc.contains_lonlat(np.array([ra0 + 1.0]) * u.deg, np.array([dec0]) * u.deg).any()


def test_read_mosaic_rejects_other_products(tmp_path):
    from romanflow.errors import RomanflowError

    bad = tmp_path / "not.asdf"
    bad.write_text("not an asdf file")
    with pytest.raises(RomanflowError, match="not.asdf"):
        read_mosaic(bad)


def test_tile_to_mosaic_map_from_nodes_is_exact_to_1e4_pixel(mosaics):
    from romanflow.hips.builder import candidate_tiles, tile_to_mosaic_pixels

    mosaic = read_mosaic(mosaics["A"])
    for index in candidate_tiles(mosaic, 13)[:3]:
        x, y = tile_to_mosaic_pixels(mosaic, 13, int(index))
        ra, dec = tile_sky_positions(13, int(index))
        xe, ye = mosaic.world_to_pixel(ra, dec)
        assert np.max(np.hypot(x - xe, y - ye)) < 1e-4
