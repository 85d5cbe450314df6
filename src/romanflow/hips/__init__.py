"""HiPS (IVOA Hierarchical Progressive Survey) trees from L3 mosaics: per band and a colour composite.

:func:`build_hips` merges mosaics into the trees of a folder sky cell by sky cell, rewriting only the
tiles a cell touches; ``romanflow hips MOSAIC... -o DIR`` runs it from the command line.
"""

from romanflow.hips.builder import COLOUR, TILE_WIDTH, HipsReport, HipsTrees, build_hips, tile_order_for, tile_path
from romanflow.hips.mosaic_input import MosaicInput, read_mosaic

__all__ = ["build_hips", "HipsReport", "HipsTrees", "MosaicInput", "read_mosaic", "tile_order_for", "tile_path",
           "TILE_WIDTH", "COLOUR"]
