"""L2 astrometry: point-source detection and PSF fitting, reference catalogs, tweakreg."""

from romanflow.astrometry.detect import detect_point_sources, source_catalog
from romanflow.source_flags import SOURCE_FLAGS
from romanflow.astrometry.refcat import read_refcat, refcat_at_epoch, write_refcat
from romanflow.astrometry.tweakreg import tweakreg

__all__ = [
    "SOURCE_FLAGS",
    "detect_point_sources",
    "source_catalog",
    "read_refcat",
    "refcat_at_epoch",
    "write_refcat",
    "tweakreg",
]
