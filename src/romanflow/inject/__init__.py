"""Source injection: synthetic sources through the real pipeline, their recovery, completeness and depth.

:func:`inject_images` adds sources (:func:`read_injection_catalog`, :func:`generate_sources`) to L2
exposures or L3 mosaics as new products; :func:`recover` catalogs the injected products with the
catalog code and matches what it finds to what was injected; :mod:`romanflow.inject.metrics` turns the
matches into completeness, purity and bias curves, depth per sky cell and a HEALPix depth map.
"""

from romanflow.inject.core import InjectedImage, inject_images, injected_name, sources_table_path
from romanflow.inject.recover import recover
from romanflow.inject.sources import generate_sources, magnitude_columns, read_injection_catalog

__all__ = ["InjectedImage", "generate_sources", "inject_images", "injected_name", "magnitude_columns",
           "read_injection_catalog", "recover", "sources_table_path"]
