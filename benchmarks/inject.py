"""Source injection: cost of injecting and recovering sources in a sky cell against the cell's own catalog
time (side by side, one run), and whether Poisson noise for the added flux must be drawn at the ramp level.

Usage: ``.venv/bin/python -m benchmarks.inject [--size 5000] [--inject 2000] [--pixels 20000]``

Target: inject + recover < 2x the cell's normal catalog time. The noise table compares, per added
flux, the scatter of a ramp fitted with the source in it (ramp level) with that of the sky-only fit plus
Poisson noise drawn at the rate level from the image's own variance per flux.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

TARGET_RATIO = 2.0


def _write_cell(path, size, n_sources, fwhm, scale):
    """A synthetic sky-cell mosaic (MJy/sr) with ``n_sources`` stars and galaxies, as an L3 file."""
    import roman_datamodels.datamodels as rdm

    from romanflow.catalog.synthetic import random_scene, render, tan_wcs
    from romanflow.mosaic.resample import _gwcs_from_celestial

    shape = (size, size)
    n_gal = n_sources // 5
    scene = random_scene(shape, n_sources - n_gal, n_gal, flux_range_njy=(20.0, 2e4), min_separation=8.0,
                         galaxy_hlr_arcsec=(0.15, 0.4), seed=1)
    image, err, _ = render(scene, shape, psf_fwhm_arcsec=fwhm, sky_sigma_njy=1.0, background_njy=3.0, seed=2)
    njy = 1e15 * (scale / 206264.806) ** 2  # nJy per pixel of 1 MJy/sr
    model = rdm.MosaicModel.create_fake_data(shape=shape, defaults={"meta": {"filename": path.name,
                                                                             "product_type": "l3"}})
    model.meta.instrument.optical_element = "F158"
    model.data = (image / njy).astype(np.float32)
    model.err = (err / njy).astype(np.float32)
    # a fitted image's Poisson variance follows its data: 1/100 MJy/sr per MJy/sr here
    model.var_poisson = (np.clip(image / njy, 0, None) * 0.01).astype(np.float32)
    model.weight = np.ones(shape, np.float32)
    model.meta.wcs = _gwcs_from_celestial(tan_wcs(shape, scale))
    model.meta.resample.members = []
    model.save(path)
    return path


def cost(size: int, n_inject: int, fwhm: float = 0.15, scale: float = 0.055):
    from romanflow.inject import generate_sources, inject_images
    from romanflow.inject.recover import catalog_images, recover

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        cell = _write_cell(Path(tmp) / "cell_f158_coadd.asdf", size, max(size * size // 2500, 100), fwhm, scale)
        rows.append(("write synthetic cell (not timed against)", time.perf_counter() - t0))
        t0 = time.perf_counter()
        parent, images = catalog_images([cell], psf_fwhm_arcsec=fwhm)
        t_catalog = time.perf_counter() - t0
        rows.append((f"cell catalog, as normal ({len(parent)} sources)", t_catalog))
        t0 = time.perf_counter()
        sources = generate_sources(images[0].wcs, images[0].data.shape, ["F158"], n=n_inject,
                                   mag_range=(20.0, 28.0), star_fraction=0.5, pixel_scale_arcsec=scale, seed=3)
        [result] = inject_images([cell], sources, Path(tmp) / "inj", psf_fwhm_arcsec=fwhm, seed=3)
        t_inject = time.perf_counter() - t0
        rows.append((f"inject {len(sources)} sources (render, noise, write)", t_inject))
        t0 = time.perf_counter()
        rec = recover([result.path], [result.sources], parent_catalog=parent, psf_fwhm_arcsec=fwhm)
        t_recover = time.perf_counter() - t0
        rows.append((f"recover: catalog + match ({int(rec.output['matched'].sum())} matched)", t_recover))
    return rows, t_catalog, t_inject + t_recover


def noise_study(n_pixels: int, sky_e: float = 1.5, gain: float = 1.8, read_noise_dn: float = 6.0):
    """Std of ramp-level and rate-level injected rates for several added fluxes (MA table 4)."""
    from romanflow.detector import ma_table
    from romanflow.kernels.injection import poisson_noise_for, variance_per_flux
    from romanflow.kernels.ramp.casertano import fit_ramps_casertano
    from romanflow.simulate.ramp import sample_resultants

    table = ma_table(4)
    pattern = table.timing()
    shape = (max(n_pixels // 200, 1), 200)
    ones = np.ones(shape, np.float32)

    def fit(rate_e, seed):
        seeds = np.random.SeedSequence(seed).generate_state(shape[0]).astype(np.uint32)
        res = sample_resultants(rate_e * ones, gain * ones, 0.0 * ones, 1e9 * ones,
                                np.stack([0.0 * ones, ones]), read_noise_dn * ones, pattern.read_pattern,
                                pattern.frame_time, seeds)
        return fit_ramps_casertano(res, None, read_noise_dn * ones, gain * ones, pattern, detect_jumps=False)

    sky = fit(sky_e, 1)
    k = variance_per_flux(sky.slope, sky.var_poisson)
    rng = np.random.default_rng(5)
    rows = []
    for f_e in (0.5, 5.0, 50.0, 500.0):
        added_dn = f_e / gain
        ramp = fit(sky_e + f_e, 2)
        rate_level = sky.slope + added_dn + poisson_noise_for(np.full(shape, added_dn), k, rng)
        truth = (sky_e + f_e) / gain
        err_ramp = np.sqrt(ramp.var_poisson + ramp.var_rnoise)
        err_rate = np.sqrt(sky.var_poisson + sky.var_rnoise + k * added_dn)
        rows.append((f_e, float(np.std(ramp.slope)), float(np.std(rate_level)),
                     float(np.std((ramp.slope - truth) / err_ramp)), float(np.std((rate_level - truth) / err_rate)),
                     float(np.mean(rate_level) / np.mean(ramp.slope) - 1)))
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=5000, help="sky-cell side (pixels of 0.055\")")
    parser.add_argument("--inject", type=int, default=2000, help="sources to inject")
    parser.add_argument("--pixels", type=int, default=20_000, help="pixels in the noise study")
    args = parser.parse_args(argv)
    try:
        from benchmarks.environment import header

        header("inject")
    except ImportError:
        pass

    print(f"\nnoise for the added flux, MA table 4, {args.pixels} pixels, sky 1.5 e-/s, gain 1.8, read noise 6 DN")
    print(f"{'added e-/s':>10} {'std ramp':>9} {'std rate':>9} {'ratio':>6} {'z ramp':>7} {'z rate':>7} "
          f"{'mean diff':>9}")
    for f_e, s_ramp, s_rate, z_ramp, z_rate, mean in noise_study(args.pixels):
        print(f"{f_e:>10.1f} {s_ramp:>9.4f} {s_rate:>9.4f} {s_rate / s_ramp:>6.3f} {z_ramp:>7.3f} {z_rate:>7.3f} "
              f"{mean:>+9.4f}")

    rows, t_catalog, t_total = cost(args.size, args.inject)
    width = max(len(r[0]) for r in rows)
    print(f"\ninjection cost: {args.size}x{args.size} sky cell, {args.inject} sources, side by side")
    print(f"{'stage':<{width}}  seconds")
    for name, seconds in rows:
        print(f"{name:<{width}}  {seconds:7.2f}")
    ratio = t_total / t_catalog
    print(f"{'inject + recover / cell catalog':<{width}}  {ratio:7.2f}x  (target < {TARGET_RATIO:.1f}x)")
    if ratio >= TARGET_RATIO:
        print(f"target missed: {ratio:.2f}x >= {TARGET_RATIO:.1f}x")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
