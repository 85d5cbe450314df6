"""L2 images to one L3 sky-cell mosaic: sky matching, outlier rejection, resampling."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from romanflow.errors import RomanflowError
from romanflow.mosaic.outliers import detect_outliers, outlier_table_path, write_outlier_table
from romanflow.mosaic.resample import MosaicProduct, member_references, resample, write_mosaic


def make_mosaic(inputs: Sequence, out_wcs, out_path=None, *, skycell: str | None = None, kernel: str = "square",
                pixfrac: float = 1.0, weight_type: str = "ivm", sky_match: bool = True, outliers: bool = True,
                snr=(5.0, 4.0), scale=(1.2, 0.7), maskpt: float = 0.7, optical_element: str | None = None,
                pixmap_step: int = 32, units: str = "surface_brightness") -> tuple[MosaicProduct, object]:
    """Combine L2 inputs into a mosaic on ``out_wcs``; optionally write it and its outlier record.

    Parameters
    ----------
    inputs : sequence of L2 paths or RateImage
        Read one at a time (twice more when ``outliers``).
    out_wcs : astropy.wcs.WCS
        Sky-cell grid or a cutout of one.
    out_path : path, optional
        L3 file to write; the outlier record goes to ``<stem>_outliers.parquet`` beside it. The file
        records where its members are, relative to itself (:func:`~romanflow.mosaic.resample.member_references`).
        Both files are written, or neither.
    units : {'surface_brightness', 'rate'}
        MJy/sr (the L3 convention; inputs need ``meta.photometry``) or DN/s per output pixel.

    Returns
    -------
    product : MosaicProduct
    outlier_table : astropy.table.Table or None

    Raises
    ------
    NoUsablePixelsError
        When no input pixel can go into the mosaic; an input without a usable pixel is
        only left out, with a warning naming it.
    """
    if isinstance(inputs, (str, Path)) or not isinstance(inputs, Sequence) or len(inputs) == 0:
        raise RomanflowError("make_mosaic needs a non-empty list of L2 inputs")
    flags, sky_levels, table = None, None, None
    if outliers and len(inputs) > 1:
        found = detect_outliers(inputs, out_wcs, snr=snr, scale=scale, maskpt=maskpt, kernel=kernel,
                                pixfrac=pixfrac, weight_type=weight_type, sky_match=sky_match,
                                pixmap_step=pixmap_step)
        flags, sky_levels, table = found.flags, found.sky_levels, found.table
    product = resample(iter(inputs), out_wcs, kernel=kernel, pixfrac=pixfrac, weight_type=weight_type,
                       sky_match=sky_match, extra_flags=flags, sky_levels=sky_levels, pixmap_step=pixmap_step,
                       units=units)
    if out_path is not None:
        left_out = set(product.meta.get("left_out", ()))
        members = [m for k, m in enumerate(member_references(inputs, out_path)) if k not in left_out]
        written = []
        try:
            if table is not None:
                written.append(write_outlier_table(table, outlier_table_path(out_path)))
            write_mosaic(product, out_path, skycell=skycell, members=members, optical_element=optical_element,
                         outlier_detection=table is not None)
        except BaseException:
            for path in written:  # no outlier record without its mosaic
                Path(path).unlink(missing_ok=True)
            raise
    return product, table
