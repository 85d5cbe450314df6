"""photom: photometric conversion constants into metadata; pixels stay in DN/s."""

from __future__ import annotations

from romanflow.provenance import mark_step
from romanflow.errors import RomanflowError
from romanflow.exposure import get_meta

#: 1 MJy/sr in µJy/arcsec².
MJYSR_TO_UJY_ARCSEC2 = 23.5045


def photom(image, phot_table: dict):
    """Set ``meta.photometry`` from a PHOTOM table keyed by optical element.

    ``phot_table[element]`` holds ``photmjsr`` (MJy/sr per DN/s), ``uncertainty``
    and ``pixelareasr`` (sr).
    """
    element = get_meta(image.meta, "instrument.optical_element")
    row = phot_table.get(element) if phot_table else None
    if row is None:
        raise RomanflowError(f"photom reference has no entry for optical element {element}")
    image.meta["photometry"] = {
        "conversion_megajanskys": float(row["photmjsr"]),
        "conversion_megajanskys_uncertainty": float(row.get("uncertainty", 0.0)),
        "pixel_area": float(row["pixelareasr"]),
    }
    mark_step(image.meta, "photom")
    return image
