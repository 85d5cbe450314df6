"""Benchmark: HiPS tiles from an L3 mosaic, romanflow against reproject's ``reproject_to_hips``, side by side.

Run: ``.venv/bin/python -m benchmarks.hips [--size 2500] [--workdir bench_output/hips]``.

One synthetic F158 mosaic (a ``--size`` square cut from a sky cell at 0.055", Gaussian stars on a sky)
is written once to ``--workdir``. Both builders start from the same arrays in memory and write
512-pixel tiles from order 13 (0.050" pixels) down: romanflow its FITS and PNG tiles, properties and
Moc.fits (no colour: one band); reproject its FITS tiles (bilinear interpolation, one thread), and its
own properties and index. Tiles per second count FITS tiles of every order. The two trees are then
compared tile by tile where both have values: they must agree (the same bilinear resampling of the
same mosaic on the same HEALPix pixels) to 1e-3 of the image's range, which also checks that the two
lay pixels out in tiles alike. Target: romanflow at least as fast as reproject.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from benchmarks.environment import header, peak_rss_gib, verdict

CELL = "009p19x16y30"
ORDER = 13
TARGET_RATIO = 1.0


def _mosaic(folder: Path, size: int) -> Path:
    """The synthetic L3 file (written once)."""
    from romanflow.mosaic.resample import MosaicProduct, write_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_wcs

    path = folder / f"bench_{size}_f158_coadd.asdf"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    wcs = cutout_wcs(skycell_wcs(CELL), 100, 100, size, size)
    rng = np.random.default_rng(3)
    data = 0.2 + rng.normal(0, 0.01, (size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    for x0, y0, peak in zip(rng.uniform(0, size, 300), rng.uniform(0, size, 300), rng.uniform(1, 50, 300)):
        lo_x, hi_x = int(max(x0 - 15, 0)), int(min(x0 + 16, size))
        lo_y, hi_y = int(max(y0 - 15, 0)), int(min(y0 + 16, size))
        data[lo_y:hi_y, lo_x:hi_x] += peak * np.exp(-0.5 * ((xx[lo_y:hi_y, lo_x:hi_x] - x0) ** 2
                                                            + (yy[lo_y:hi_y, lo_x:hi_x] - y0) ** 2) / 2.2**2)
    ones = np.ones((size, size), np.float32)
    arrays = {"data": data.astype(np.float32), "err": ones * 0.01, "weight": ones, "context": np.ones((1, size, size), np.uint32),
              "exposure_time": ones * 100, "var_rnoise": ones * 1e-4, "var_poisson": ones * 1e-4, "var_flat": ones * 0}
    write_mosaic(MosaicProduct(arrays, wcs, [], {"units": "surface_brightness"}), path, skycell=CELL,
                 optical_element="F158")
    return path


def _astropy_wcs(mosaic):
    """The mosaic's TAN grid as an astropy WCS (what reproject takes)."""
    from astropy.wcs import WCS

    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [mosaic.ra0, mosaic.dec0]
    w.wcs.crpix = [mosaic.crpix[0] + 1, mosaic.crpix[1] + 1]
    w.wcs.cd = np.linalg.inv(mosaic.cd_inverse)
    w.wcs.set()
    return w


def _fits_tiles(tree: Path) -> dict:
    return {(int(p.parent.parent.name[6:]), int(p.stem[4:])): p for p in tree.glob("Norder*/Dir*/Npix*.fits")}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2500, help="mosaic side in pixels (default 2500)")
    parser.add_argument("--workdir", type=Path, default=Path("bench_output/hips"))
    args = parser.parse_args(argv)
    header("hips")
    from astropy.io import fits
    from reproject import reproject_interp
    from reproject.hips import reproject_to_hips

    from romanflow.hips import build_hips, read_mosaic

    path = _mosaic(args.workdir, args.size)
    mosaic = read_mosaic(path)
    print(f"mosaic: {path.name}, {args.size} x {args.size} pixels of {mosaic.pixel_scale_arcsec:.3f}\"; "
          f"tiles of 512 pixels from order {ORDER} down", flush=True)
    ours, theirs = args.workdir / "romanflow_tree", args.workdir / "reproject_tree"
    for tree in (ours, theirs):
        shutil.rmtree(tree, ignore_errors=True)

    start = time.perf_counter()
    build_hips([mosaic], ours, colour=False)
    t_ours = time.perf_counter() - start
    data = np.where(mosaic.valid, mosaic.data, np.nan)
    start = time.perf_counter()
    reproject_to_hips((data, _astropy_wcs(mosaic)), coord_system_out="equatorial", reproject_function=reproject_interp,
                      output_directory=str(theirs), level=ORDER, tile_size=512, threads=False, order="bilinear")
    t_theirs = time.perf_counter() - start

    ours_tiles, theirs_tiles = _fits_tiles(ours / "F158"), _fits_tiles(theirs)
    deepest = sorted(k for k in ours_tiles if k[0] == ORDER)
    common = [k for k in deepest if k in theirs_tiles]
    worst = 0.0
    span = float(np.nanmax(data) - np.nanmin(data))
    for key in common:
        a = fits.getdata(ours_tiles[key]).astype(float)
        b = fits.getdata(theirs_tiles[key]).astype(float)
        both = np.isfinite(a) & np.isfinite(b)
        if both.any():
            worst = max(worst, float(np.max(np.abs(a[both] - b[both]))) / span)
    rate_ours, rate_theirs = len(ours_tiles) / t_ours, len(theirs_tiles) / t_theirs
    print()
    print(f"{'builder':<34}{'FITS tiles':>11}{'seconds':>9}{'tiles/s':>9}")
    print(f"{'romanflow build_hips (+PNG, MOC)':<34}{len(ours_tiles):>11}{t_ours:>9.2f}{rate_ours:>9.1f}")
    print(f"{'reproject reproject_to_hips':<34}{len(theirs_tiles):>11}{t_theirs:>9.2f}{rate_theirs:>9.1f}")
    ratio = rate_ours / rate_theirs
    print(f"ratio romanflow / reproject: {ratio:.2f}x tiles/s; deepest tiles compared: {len(common)} of "
          f"{len(deepest)}; largest difference {worst:.2e} of the image's range; peak memory {peak_rss_gib():.2f} GiB")
    misses = []
    if ratio < TARGET_RATIO:
        misses.append(f"romanflow {ratio:.2f}x reproject's tiles/s (target >= {TARGET_RATIO:.1f}x)")
    if not common or worst > 1e-3:
        misses.append(f"tiles disagree with reproject's by {worst:.2e} of the range ({len(common)} compared)")
    return verdict(misses)


if __name__ == "__main__":
    raise SystemExit(main())
