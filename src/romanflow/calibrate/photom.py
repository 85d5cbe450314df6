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
    and ``pixelareasr`` (sr). The conversion is recorded in MJy/sr per DN/s
    (``conversion_megajanskys``, the schema's keys) and in µJy/arcsec² per DN/s
    (``conversion_microjanskys``); keys already there (the ``gain`` that ramp
    fitting records) are kept.
    """
    element = get_meta(image.meta, "instrument.optical_element")
    row = phot_table.get(element) if phot_table else None
    if row is None:
        raise RomanflowError(f"photom reference has no entry for optical element {element}")
    megajanskys = float(row["photmjsr"])
    uncertainty = float(row.get("uncertainty", 0.0))
    photometry = dict(image.meta.get("photometry") or {})
    photometry.update({
        "conversion_megajanskys": megajanskys,
        "conversion_megajanskys_uncertainty": uncertainty,
        "conversion_microjanskys": megajanskys * MJYSR_TO_UJY_ARCSEC2,
        "conversion_microjanskys_uncertainty": uncertainty * MJYSR_TO_UJY_ARCSEC2,
        "pixel_area": float(row["pixelareasr"]),
    })
    image.meta["photometry"] = photometry
    mark_step(image.meta, "photom")
    return image
