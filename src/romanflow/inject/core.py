"""Inject sources into L2 exposures and L3 mosaics: new products, originals untouched.

For each image: the sources on it are rendered with its PSF
(:mod:`romanflow.inject.render`), their flux converted from AB magnitudes
through the image's own photometric constant; Poisson noise is drawn for the
added flux with the image's per-pixel variance-per-flux
(:func:`romanflow.kernels.injection.variance_per_flux`), and ``var_poisson`` and
``err`` grow by the same variance. Pixels that received flux get the
``INJECTED`` DQ bit (L2; a mosaic has no DQ array). Each injected image is
written as a new file (``*_inj_cal.asdf``, ``*_inj_coadd.asdf``) whose
``meta.injection`` names its parent and the source table, with a Parquet
table of the sources on it and their footprints (``*_inj_sources.parquet``).

Everything is checked (catalog columns, bands, positions, destinations) before
the first product is written.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from romanflow.errors import InputFileError, OutputExistsError, RomanflowError
from romanflow.inject.sources import magnitude_columns

_log = logging.getLogger(__name__)

__all__ = ["InjectedImage", "inject_images", "injected_name", "sources_table_path"]

#: Sources whose stamp centre lies this far outside an image (pixels) are not drawn on it.
EDGE_PIX = 20


@dataclass
class Target:
    """An image to inject into, as read once for planning."""

    path: Path
    level: str  # "L2" or "L3"
    band: str
    band_image: object  # romanflow.catalog.band_image.BandImage
    x: np.ndarray  # positions of every catalog source on it (pixels)
    y: np.ndarray
    on_image: np.ndarray  # bool: drawn on this image
    psf_fwhm_arcsec: float | None = None  # a Gaussian PSF asked for instead of the image's


@dataclass
class InjectedImage:
    """One injected product."""

    path: Path
    parent: Path
    level: str
    band: str
    sources: pd.DataFrame  # the sources drawn on it, with footprints (see SOURCE_COLUMNS)
    sources_path: Path


#: Columns of the per-image source table, with units and meanings (also written into its Parquet metadata).
SOURCE_COLUMNS = {
    "injection_id": ("", "identifier of the source in the injection catalog"),
    "ra": ("deg", "right ascension of the injected source (ICRS)"),
    "dec": ("deg", "declination of the injected source (ICRS)"),
    "type": ("", "star, sersic or bulge_disk"),
    "mag": ("mag(AB)", "AB magnitude asked for in this image's band"),
    "flux_njy": ("nJy", "total flux asked for"),
    "x": ("pix", "0-based pixel position on the image"),
    "y": ("pix", "0-based pixel position on the image"),
    "flux_image": ("image unit", "total flux in the image's unit (DN/s or MJy/sr summed over pixels)"),
    "stamp_flux_image": ("image unit", "flux added to the image: the stamp's sum within the image"),
    "stamp_x0": ("pix", "first column of the stamp (footprint)"),
    "stamp_y0": ("pix", "first row of the stamp (footprint)"),
    "stamp_size": ("pix", "side of the square stamp"),
    "half_light_radius": ("arcsec", "half-light radius (0 for stars)"),
}


def injected_name(path) -> str:
    """File name of the injected copy: ``X_cal.asdf`` -> ``X_inj_cal.asdf``, ``X_coadd.asdf`` -> ``X_inj_coadd.asdf``
    (``X_i2d.asdf`` likewise; anything else ``X_inj.asdf``)."""
    name = Path(path).name
    stem = name[:-5] if name.endswith(".asdf") else name
    for suffix in ("_cal", "_coadd", "_i2d"):
        if stem.endswith(suffix):
            return f"{stem[:-len(suffix)]}_inj{suffix}.asdf"
    return f"{stem}_inj.asdf"


def sources_table_path(injected_path) -> Path:
    """The Parquet table of the sources drawn on an injected product."""
    p = Path(injected_path)
    return p.with_name(p.name[:-5] + "_sources.parquet")


def _read_target(path, sources: pd.DataFrame, catalog_name: str, psf_fwhm_arcsec=None) -> Target:
    from romanflow.catalog.products import read_band_image
    from romanflow.formats import open_model

    path = Path(path)
    detector = None
    with open_model(path, ("ImageModel", "MosaicModel")) as model:
        level = "L2" if type(model).__name__ == "ImageModel" else "L3"
        if level == "L2":
            try:
                detector = str(model.meta.instrument.detector)
            except (KeyError, AttributeError):
                detector = None
    image = read_band_image(path, psf_fwhm_arcsec=psf_fwhm_arcsec)
    if level == "L2" and not np.any(np.asarray(image.err) > 0):
        raise InputFileError(path, "no pixel with a positive error")
    band = image.band.upper()
    mags = magnitude_columns(sources)
    if band not in mags:
        raise InputFileError(catalog_name, f"no mag_{band} column for {path.name} (band {band}); "
                                           f"the catalog has {', '.join(sorted(mags)) or 'none'}")
    x, y = (np.asarray(v, float) for v in image.wcs.world_to_pixel_values(sources["ra"].to_numpy(float),
                                                                           sources["dec"].to_numpy(float)))
    ny, nx = image.data.shape
    on = np.isfinite(x) & np.isfinite(y) & (x > -EDGE_PIX) & (y > -EDGE_PIX) & (x < nx - 1 + EDGE_PIX) \
        & (y < ny - 1 + EDGE_PIX) & np.isfinite(sources[mags[band]].to_numpy(float))
    if detector and detector.upper().startswith("WFI"):
        image.provenance["detector"] = detector
    return Target(path, level, band, image, x, y, on, psf_fwhm_arcsec)


def _open_checked(path):
    """A product already opened and validated by :func:`_read_target` in this run, opened again without
    re-validating its arrays."""
    import roman_datamodels as rdm

    return rdm.open(path)


def _variance_arrays(target: Target):
    """(data, var_poisson, err) in the file's own units, as float64 copies."""
    with _open_checked(target.path) as model:
        return (np.array(model.data, np.float64), np.array(model.var_poisson, np.float64),
                np.array(model.err, np.float64))


def inject_images(paths, sources: pd.DataFrame, output_dir, *, catalog_name: str = "injection catalog",
                  noise: bool = True, seed: int = 0, overwrite: bool = False,
                  psf_fwhm_arcsec: float | None = None) -> list[InjectedImage]:
    """Inject the sources into every image that they fall on; write the injected copies.

    Parameters
    ----------
    paths : sequence of path
        L2 ``ImageModel`` or L3 ``MosaicModel`` files (any mix of bands).
    sources : DataFrame
        Injection catalog (:mod:`romanflow.inject.sources`).
    output_dir : path
        Folder for the injected products and their source tables.
    catalog_name : str
        How errors name the catalog (its file).
    noise : bool
        Add Poisson noise for the added flux.
    seed : int
        Seed of the noise (each image draws from its own stream).
    overwrite : bool
        Replace existing injected products.
    psf_fwhm_arcsec : float, optional
        Render with a Gaussian PSF of this FWHM instead of the image's PSF model
        (as ``romanflow catalog --psf-fwhm`` measures).

    Returns
    -------
    list of InjectedImage
        One per image that at least one source falls on.

    Raises
    ------
    InputFileError
        An image cannot be read, the catalog lacks a band an image has, or no source falls on any image.
    OutputExistsError
        A product exists and ``overwrite`` is false.
    """
    from romanflow.formats import check_output_path

    paths = [Path(p) for p in paths]
    if not paths:
        raise RomanflowError("no image to inject into")
    output_dir = Path(output_dir)
    for p in paths:
        if output_dir.resolve() / injected_name(p) == p.resolve():
            raise OutputExistsError(p, "the injected copy would replace the original: choose another -o")
    targets = [_read_target(p, sources, catalog_name, psf_fwhm_arcsec) for p in paths]
    if not any(t.on_image.any() for t in targets):
        raise InputFileError(catalog_name, f"no source falls on any of the {len(paths)} image(s)")
    outs = [output_dir / injected_name(t.path) for t in targets]
    if len(set(outs)) != len(outs):
        raise RomanflowError("two images would write the same injected product: give images with different names")
    for t, out in zip(targets, outs):
        if t.on_image.any():
            check_output_path(out, overwrite=overwrite)
            check_output_path(sources_table_path(out), overwrite=overwrite)
    results = []
    seeds = np.random.SeedSequence([int(seed), 0x1EC7]).spawn(len(targets))
    for t, out, ss in zip(targets, outs, seeds):
        if not t.on_image.any():
            _log.info("%s: no injection source falls on it; no product", t.path)
            continue
        results.append(_inject_one(t, sources, out, noise=noise, rng=np.random.default_rng(ss),
                                   catalog_name=catalog_name))
    return results


def _render(target: Target, sources: pd.DataFrame):
    """Added-flux image (float64, the file's unit) and the table of the sources drawn."""
    from romanflow.inject.render import PSFProvider, render_sources
    from romanflow.kernels.injection import add_stamps

    image = target.band_image
    sel = np.nonzero(target.on_image)[0]
    rows = sources.iloc[sel].reset_index(drop=True)
    mag = rows[f"mag_{target.band}"].to_numpy(float)
    flux_njy = 10.0 ** (-0.4 * (mag - 31.4))
    flux_image = flux_njy / float(image.njy_per_pixel)
    x, y = target.x[sel], target.y[sel]
    detector = image.provenance.get("detector") if target.level == "L2" else None
    psf = PSFProvider(image, detector=detector, science_size=image.data.shape[0] if detector else None,
                      gaussian=target.psf_fwhm_arcsec is not None)
    stamps, x0, y0, half = render_sources(rows, x, y, flux_image, psf, image.wcs)
    added = np.zeros(image.data.shape, np.float64)
    landed = add_stamps(added, stamps, x0, y0)
    table = pd.DataFrame({
        "injection_id": rows["injection_id"].to_numpy(np.int64),
        "ra": rows["ra"].to_numpy(float), "dec": rows["dec"].to_numpy(float),
        "type": rows["type"].astype(str).to_numpy(),
        "mag": mag, "flux_njy": flux_njy, "x": x, "y": y,
        "flux_image": flux_image, "stamp_flux_image": landed,
        "stamp_x0": x0, "stamp_y0": y0, "stamp_size": 2 * half + 1,
        "half_light_radius": rows["half_light_radius"].to_numpy(float),
    })
    return added, table


def _inject_one(target: Target, sources, out: Path, *, noise: bool, rng, catalog_name: str) -> InjectedImage:
    from romanflow.kernels.injection import poisson_noise_for, variance_per_flux

    added, table = _render(target, sources)
    data, var_poisson, err = _variance_arrays(target)
    k = variance_per_flux(data, var_poisson)
    extra_var = k * added
    delta = added
    if noise:
        shot = poisson_noise_for(added, k, rng)
        delta = added + (_correlated_like(data, err, shot) if target.level == "L3" else shot)
    provenance = {
        "parent": target.path.name,
        "parents": [str(target.path)],
        "level": target.level,
        "band": target.band,
        "catalog": str(catalog_name),
        "n_sources": int(len(table)),
        "noise": bool(noise),
        "sources_table": sources_table_path(out).name,
        "psf": (f"Gaussian, FWHM {target.psf_fwhm_arcsec} arcsec" if target.psf_fwhm_arcsec is not None
                else "romanflow.psf.psf_image at each source's detector position" if target.level == "L2"
                and "detector" in target.band_image.provenance else "the catalog's PSF model of the image"),
    }
    if target.level == "L2":
        _write_l2(target, out, delta, extra_var, added > 0, provenance)
    else:
        _write_l3(target, out, delta, extra_var, provenance)
    table.insert(0, "image", out.name)
    table_path = write_sources_table(table, sources_table_path(out), provenance)
    _log.info("%s: %d sources injected", out, len(table))
    return InjectedImage(out, target.path, target.level, target.band, table, table_path)


def _correlated_like(data, err, noise) -> np.ndarray:
    """``noise`` (independent per pixel) given the pixel-to-pixel correlation of a resampled image's
    own noise, each pixel's variance kept: drizzling spreads a source's shot noise over neighbouring
    mosaic pixels as it spreads the background's, and the catalog's errors on a mosaic assume it.

    The correlation is measured on the image between sources
    (:func:`romanflow.catalog.detect.noise_correlation`); the noise is convolved with the kernel
    whose autocorrelation it is (:func:`romanflow.kernels.injection.correlation_kernel`), so it also
    reaches a few pixels around the stamps, as a drizzled star's noise does."""
    from romanflow.catalog import detect
    from romanflow.kernels.injection import correlation_kernel
    from romanflow.psf import convolve_same

    bad = ~np.isfinite(data) | ~np.isfinite(err) | (err <= 0)
    background, _ = detect.estimate_background(np.where(bad, 0.0, data), box_size=64, mask=bad)
    rho = detect.noise_correlation(np.where(bad, 0.0, data - background), np.where(bad, 1.0, err), bad)
    if not (np.isfinite(rho).all() and rho[rho.shape[0] // 2, rho.shape[1] // 2] > 0):
        return noise
    return convolve_same(noise, correlation_kernel(rho / rho[rho.shape[0] // 2, rho.shape[1] // 2]))


def _write_l2(target: Target, out: Path, delta, extra_var, footprint, provenance) -> None:
    from romanflow import dq as dqbits
    from romanflow.formats import read_l2, write_l2

    image = read_l2(target.path)
    image.data = (image.data.astype(np.float64) + delta).astype(np.float32)
    image.var_poisson = (image.var_poisson.astype(np.float64) + extra_var).astype(np.float32)
    image.err = np.sqrt(image.err.astype(np.float64) ** 2 + extra_var).astype(np.float32)
    image.dq = image.dq | np.where(footprint, np.uint32(dqbits.INJECTED), np.uint32(0))
    image.meta["injection"] = provenance
    write_l2(image, out)


def _write_l3(target: Target, out: Path, delta, extra_var, provenance) -> None:
    from romanflow.formats import atomic_path

    with _open_checked(target.path) as model:
        model.data = (np.asarray(model.data, np.float64) + delta).astype(np.float32)
        model.var_poisson = (np.asarray(model.var_poisson, np.float64) + extra_var).astype(np.float32)
        model.err = np.sqrt(np.asarray(model.err, np.float64) ** 2 + extra_var).astype(np.float32)
        # the members stay the parent's exposures (without the injected sources): named from the new folder
        members = []
        import os

        for m in list(getattr(model.meta.resample, "members", []) or []):
            candidate = target.path.parent / str(m)
            members.append(Path(os.path.relpath(candidate.resolve(), out.parent.resolve())).as_posix()
                           if candidate.exists() else str(m))
        if members:
            model.meta.resample.members = members
        model.meta.filename = out.name
        model.meta["injection"] = provenance
        with atomic_path(out) as tmp:
            model.save(tmp)


def write_sources_table(table: pd.DataFrame, path, provenance: dict) -> Path:
    """Write a per-image source table as Parquet with units and descriptions (:data:`SOURCE_COLUMNS`)."""
    from romanflow.inject.tables import write_documented_parquet

    columns = dict(SOURCE_COLUMNS, image=("", "name of the injected product"))
    return write_documented_parquet(table, path, columns, provenance)
