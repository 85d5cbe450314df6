"""An L3 mosaic as the HiPS builder reads it: values, validity, weight and a fast TAN sky -> pixel map."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from romanflow.errors import InputFileError
from romanflow.kernels.sky_projection import tan_project

#: Largest disagreement (pixels) allowed between the mosaic's gwcs and the TAN map read from its wcsinfo.
TAN_TOLERANCE_PIX = 1e-3


@dataclass
class MosaicInput:
    """One band of one sky cell, ready to be sampled onto HiPS tiles.

    Attributes
    ----------
    path : Path
    band : str
        Optical element (``'F158'``).
    cell : str
        Sky-cell name (the file's stem when the mosaic has none).
    data : ndarray float32 (ny, nx)
        Surface brightness (MJy/sr).
    valid : ndarray bool (ny, nx)
        Pixels with data (weight > 0 and finite).
    weight : ndarray float32 (ny, nx)
        Resampling weight (inverse variance), 0 where not valid.
    ra0, dec0 : float
        TAN tangent point (deg).
    crpix : (float, float)
        0-based pixel (x, y) of the tangent point.
    cd_inverse : ndarray (2, 2)
        Pixels per degree of standard coordinates (inverse of the CD matrix).
    pixel_scale_arcsec : float
    """

    path: Path
    band: str
    cell: str
    data: np.ndarray
    valid: np.ndarray
    weight: np.ndarray
    ra0: float
    dec0: float
    crpix: tuple
    cd_inverse: np.ndarray
    pixel_scale_arcsec: float

    def world_to_pixel(self, ra, dec):
        """0-based pixel (x, y) of sky positions (deg); NaN beyond the projection's hemisphere."""
        xi, eta = tan_project(ra, dec, self.ra0, self.dec0)
        m = self.cd_inverse
        x = self.crpix[0] + m[0, 0] * xi + m[0, 1] * eta
        y = self.crpix[1] + m[1, 0] * xi + m[1, 1] * eta
        return x, y

    def pixel_to_world(self, x, y):
        """Sky positions (deg) of 0-based pixels."""
        from romanflow.kernels.sky_projection import tan_deproject

        cd = np.linalg.inv(self.cd_inverse)
        dx = np.asarray(x, float) - self.crpix[0]
        dy = np.asarray(y, float) - self.crpix[1]
        return tan_deproject(cd[0, 0] * dx + cd[0, 1] * dy, cd[1, 0] * dx + cd[1, 1] * dy, self.ra0, self.dec0)


def _from_model(path: Path, model) -> MosaicInput:
    meta = model.meta
    try:
        band = str(meta.instrument.optical_element).upper()
        info = meta.wcsinfo
        ra0, dec0 = float(info.ra_ref), float(info.dec_ref)
        x_ref, y_ref = float(info.x_ref), float(info.y_ref)
        scale = float(info.pixel_scale)  # deg per pixel
        orientation = float(getattr(info, "orientation", 0.0) or 0.0)
        cell = str(getattr(info, "skycell_name", "") or "")
    except (AttributeError, KeyError, TypeError, ValueError) as exc:
        raise InputFileError(path, f"mosaic metadata incomplete for HiPS (meta.wcsinfo / optical_element): {exc}") from None
    if not (np.isfinite([ra0, dec0, x_ref, y_ref, scale]).all() and scale > 0):
        raise InputFileError(path, "meta.wcsinfo has no usable ra_ref, dec_ref, x_ref, y_ref, pixel_scale")
    data = np.asarray(model.data, np.float32)
    if data.ndim != 2:
        raise InputFileError(path, f"data has shape {data.shape}: expected a 2-D image")
    weight = np.asarray(model.weight, np.float32) if "weight" in model else np.ones_like(data)
    if weight.shape != data.shape:
        raise InputFileError(path, f"weight {weight.shape} and data {data.shape} differ in shape")
    valid = np.isfinite(data) & np.isfinite(weight) & (weight > 0)
    theta = np.radians(orientation)
    # standard coordinates (xi east, eta north) per pixel: x to the west (-xi) for a north-up image
    cd = scale * np.array([[-np.cos(theta), np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    mosaic = MosaicInput(path=path, band=band, cell=cell if cell and cell.lower() != "none" else path.stem,
                         data=data, valid=valid, weight=np.where(valid, weight, 0).astype(np.float32),
                         ra0=ra0, dec0=dec0, crpix=(x_ref, y_ref), cd_inverse=np.linalg.inv(cd),
                         pixel_scale_arcsec=scale * 3600.0)
    wcs = meta.wcs if "wcs" in meta else None
    if wcs is not None and hasattr(wcs, "world_to_pixel_values"):
        ny, nx = data.shape
        px = np.array([0.0, nx - 1.0, 0.0, nx - 1.0, nx / 2.0])
        py = np.array([0.0, 0.0, ny - 1.0, ny - 1.0, ny / 2.0])
        ra, dec = wcs.pixel_to_world_values(px, py)
        x, y = mosaic.world_to_pixel(np.asarray(ra), np.asarray(dec))
        error = float(np.nanmax(np.hypot(x - px, y - py)))
        if not error <= TAN_TOLERANCE_PIX:
            raise InputFileError(path, f"meta.wcs is not the north-up TAN grid meta.wcsinfo describes "
                                       f"(they differ by {error:.3g} pixels): the HiPS builder needs that grid")
    return mosaic


def read_mosaic(path) -> MosaicInput:
    """Read an L3 ``MosaicModel`` ASDF file for the HiPS builder (checked: schema, arrays, WCS)."""
    from romanflow.formats import open_model

    path = Path(path)
    model = open_model(path, "MosaicModel")
    with model:
        try:
            return _from_model(path, model)
        except InputFileError:
            raise
        except Exception as exc:  # noqa: BLE001 - a damaged array block: name the file
            raise InputFileError(path, f"cannot be read as a mosaic: {exc}") from None
