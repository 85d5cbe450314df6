"""Synthetic sky images with known truth, for tests and benchmarks.

Point sources are pixel-integrated Gaussians and galaxies are sheared
exponential discs convolved with the same PSF, all drawn with GalSim in nJy
per pixel on a TAN grid. Noise is Gaussian with a per-pixel variance of
``sky_sigma² + image / gain`` (background plus source shot noise), and the
error map given back is exactly that standard deviation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def tan_wcs(shape, pixel_scale_arcsec: float = 0.055, ra_deg: float = 150.0, dec_deg: float = 2.0,
            rotation_deg: float = 0.0):
    """A TAN astropy WCS centred on the image, North up / East left when rotation is 0."""
    from astropy.wcs import WCS

    ny, nx = shape
    w = WCS(naxis=2)
    w.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    w.wcs.crval = [ra_deg, dec_deg]
    w.wcs.crpix = [(nx + 1) / 2, (ny + 1) / 2]
    s = pixel_scale_arcsec / 3600.0
    c, sn = np.cos(np.deg2rad(rotation_deg)), np.sin(np.deg2rad(rotation_deg))
    w.wcs.cd = np.array([[-s * c, s * sn], [s * sn, s * c]])
    w.array_shape = shape
    w.pixel_shape = (nx, ny)
    return w


@dataclass
class SyntheticScene:
    """Truth of a synthetic image: positions (pixels, 0-indexed), fluxes (nJy), kinds."""

    x: np.ndarray
    y: np.ndarray
    flux: np.ndarray
    is_galaxy: np.ndarray
    half_light_radius: np.ndarray  # arcsec, 0 for stars


def random_scene(shape, n_stars, n_galaxies, *, flux_range_njy=(200.0, 2e5), margin: float = 30.0,
                 min_separation: float = 20.0, galaxy_hlr_arcsec=(0.2, 0.5), seed: int = 0):
    """Sources at random, well-separated positions with log-uniform fluxes."""
    rng = np.random.default_rng(seed)
    ny, nx = shape
    n = n_stars + n_galaxies
    xs, ys = [], []
    tries = 0
    while len(xs) < n and tries < 200 * n:
        tries += 1
        x, y = rng.uniform(margin, nx - margin), rng.uniform(margin, ny - margin)
        if xs and np.min(np.hypot(np.array(xs) - x, np.array(ys) - y)) < min_separation:
            continue
        xs.append(x)
        ys.append(y)
    n = len(xs)
    flux = np.exp(rng.uniform(np.log(flux_range_njy[0]), np.log(flux_range_njy[1]), n))
    is_galaxy = np.zeros(n, bool)
    is_galaxy[n_stars:] = True
    hlr = np.where(is_galaxy, rng.uniform(*galaxy_hlr_arcsec, n), 0.0)
    return SyntheticScene(np.array(xs), np.array(ys), flux, is_galaxy, hlr)


def render(scene: SyntheticScene, shape, *, psf_fwhm_arcsec: float = 0.15, pixel_scale_arcsec: float = 0.055,
           sky_sigma_njy: float = 1.0, gain_per_njy: float = 5.0, background_njy: float = 0.0,
           flux_scale: float = 1.0, seed: int = 1):
    """Draw a scene: returns ``(image, err, noiseless)`` in nJy per pixel.

    ``flux_scale`` multiplies every flux (e.g. a colour per band).
    """
    import galsim

    rng = np.random.default_rng(seed)
    ny, nx = shape
    model = np.zeros(shape, np.float64)
    full = galsim.ImageD(nx, ny, scale=pixel_scale_arcsec)  # bounds 1..nx, 1..ny
    psf = galsim.Gaussian(fwhm=psf_fwhm_arcsec)
    ell_rng = np.random.default_rng(seed + 1000)
    for x, y, f, gal, hlr in zip(scene.x, scene.y, scene.flux * flux_scale, scene.is_galaxy, scene.half_light_radius):
        if gal:
            e = ell_rng.uniform(0, 0.5)
            beta = ell_rng.uniform(0, np.pi)
            obj = galsim.Exponential(half_light_radius=hlr, flux=f).shear(
                e=e, beta=beta * galsim.radians
            )
            obj = galsim.Convolve(obj, psf)
            size = int(np.ceil(12 * hlr / pixel_scale_arcsec)) | 1
        else:
            obj = psf.withFlux(f)
            size = int(np.ceil(6 * psf_fwhm_arcsec / pixel_scale_arcsec)) | 1
        size = max(size, 15)
        stamp = obj.drawImage(nx=size, ny=size, scale=pixel_scale_arcsec,
                              center=galsim.PositionD(x + 1, y + 1))
        bounds = stamp.bounds & full.bounds
        if bounds.isDefined():
            full[bounds] += stamp[bounds]
    model = full.array.copy() + background_njy
    var = sky_sigma_njy**2 + np.clip(model - background_njy, 0, None) / gain_per_njy
    err = np.sqrt(var)
    image = model + rng.normal(size=shape) * err
    return image.astype(np.float32), err.astype(np.float32), model


def point_source_snr(flux_njy, psf_fwhm_arcsec, pixel_scale_arcsec, sky_sigma_njy):
    """Background-limited optimal (PSF-weighted) S/N of a Gaussian point source."""
    sigma_pix = psf_fwhm_arcsec / pixel_scale_arcsec / (2 * np.sqrt(2 * np.log(2)))
    return np.asarray(flux_njy) / (sky_sigma_njy * np.sqrt(4 * np.pi) * sigma_pix)
