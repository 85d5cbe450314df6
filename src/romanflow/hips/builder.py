"""HiPS trees from L3 mosaics, one per band plus a colour composite, merged sky cell by sky cell.

Layout of an output folder ``DIR``::

    DIR/<BAND>/properties, Moc.fits, NorderK/DirD/NpixN.fits (values, MJy/sr) and .png (display)
    DIR/colour/properties, Moc.fits, NorderK/DirD/NpixN.png      (three bands, or two and their mean)
    DIR/.hips_state.json                                           what each sky cell contributed
    DIR/.contributions/<BAND>/<cell>/{tiles,value,weight}.npy     each cell's deepest-order tiles

Adding a sky cell samples its mosaic onto the deepest-order tiles it covers, stores that contribution,
and rewrites only those tiles (the inverse-variance weighted mean of every cell covering them), their
ancestors down to order :data:`MIN_ORDER`, and the colour tiles at the same places. Every other tile
is left as it is (same bytes). Adding a cell again replaces its earlier contribution. Display ranges
(``hips_pixel_cut``) are fixed when a band's tree is created, so tiles written later match the others.
"""

from __future__ import annotations

import datetime
import json
import logging
import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from romanflow.errors import InputFileError, ParameterError, RomanflowError
from romanflow.hips.mosaic_input import MosaicInput, read_mosaic
from romanflow.kernels import hips_tiles as kt

_log = logging.getLogger(__name__)

#: Pixels per tile side.
TILE_WIDTH = 512
#: Lowest order written (order 3 tiles span about 7.3 degrees).
MIN_ORDER = 3
#: Name of the colour composite's tree.
COLOUR = "colour"
STATE_FILE = ".hips_state.json"
CONTRIBUTIONS = ".contributions"
#: Percentiles of a band's first mosaic that set its display range.
CUT_PERCENTILES = (10.0, 99.95)


def healpix_pixel_arcsec(order: int) -> float:
    """Side of a HEALPix cell of ``order`` (arcsec): sqrt(4 pi / (12 * 4**order)) rad."""
    return math.degrees(math.sqrt(4 * math.pi / (12 * 4 ** order))) * 3600.0


def tile_order_for(pixel_scale_arcsec: float, width: int = TILE_WIDTH) -> int:
    """Deepest tile order whose pixels are no coarser than ``pixel_scale_arcsec``."""
    bits = int(width).bit_length() - 1
    for order in range(0, 30 - bits):
        if healpix_pixel_arcsec(order + bits) <= pixel_scale_arcsec:
            return order
    return 29 - bits


def tile_path(tree: Path, order: int, index: int, ext: str) -> Path:
    """``tree/NorderK/DirD/NpixN.ext`` with D = 10000 * (N // 10000), as HiPS lays tiles out."""
    return Path(tree) / f"Norder{order}" / f"Dir{(index // 10000) * 10000}" / f"Npix{index}.{ext}"


def _write_bytes_atomically(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_fits_tile(path: Path, value: np.ndarray, order: int, index: int) -> None:
    from astropy.io import fits

    header = fits.Header()
    header["ORDER"] = (order, "HiPS tile order")
    header["NPIX"] = (index, "HiPS tile index (NESTED)")
    header["BUNIT"] = "MJy/sr"
    hdu = fits.PrimaryHDU(np.asarray(value, np.float32), header=header)
    _write_bytes_atomically(path, lambda tmp: hdu.writeto(tmp, output_verify="silentfix", checksum=False))


def read_fits_tile(path: Path) -> np.ndarray | None:
    """A FITS tile's values (float32), or None when the tile does not exist."""
    from astropy.io import fits

    if not Path(path).is_file():
        return None
    with fits.open(path, memmap=False) as hdul:
        return np.asarray(hdul[0].data, np.float32)


def _write_png(path: Path, rgba: np.ndarray) -> None:
    from PIL import Image

    mode = "LA" if rgba.shape[-1] == 2 else "RGBA"
    image = Image.fromarray(np.ascontiguousarray(rgba), mode=mode)
    _write_bytes_atomically(path, lambda tmp: image.save(tmp, format="PNG", optimize=False, compress_level=1))


@dataclass
class HipsReport:
    """What one call of :func:`build_hips` did."""

    output_dir: Path
    bands: list = field(default_factory=list)
    cells: list = field(default_factory=list)
    order: int = 0
    tiles_written: int = 0
    colour_tiles_written: int = 0
    seconds: float = 0.0

    def summary(self) -> str:
        return (f"{self.output_dir}: {len(self.cells)} mosaic(s) ({', '.join(self.bands)}), tile order {self.order}: "
                f"{self.tiles_written} band tiles and {self.colour_tiles_written} colour tiles written "
                f"in {self.seconds:.1f} s")


# --------------------------------------------------------------------- sampling one mosaic
def tile_sky_positions(order: int, index: int, width: int = TILE_WIDTH):
    """(ra, dec) in degrees of every pixel centre of tile ``(order, index)``, arrays (width, width)."""
    from cdshealpix.nested import healpix_to_lonlat

    bits = width.bit_length() - 1
    cells = kt.tile_cell_indices(order, index, width)
    lon, lat = healpix_to_lonlat(cells.ravel(), order + bits)
    return (np.asarray(lon.to_value("deg")).reshape(width, width),
            np.asarray(lat.to_value("deg")).reshape(width, width))


def candidate_tiles(mosaic: MosaicInput, order: int, width: int = TILE_WIDTH) -> np.ndarray:
    """Tiles of ``order`` that may hold valid pixels of ``mosaic`` (a superset: neighbours included)."""
    from cdshealpix.nested import lonlat_to_healpix, neighbours
    from astropy import units as u

    ny, nx = mosaic.data.shape
    tile_arcsec = healpix_pixel_arcsec(order)
    step = max(1, int(tile_arcsec / mosaic.pixel_scale_arcsec / 4))
    ys = np.unique(np.r_[np.arange(0, ny, step), ny - 1])
    xs = np.unique(np.r_[np.arange(0, nx, step), nx - 1])
    gy, gx = np.meshgrid(ys, xs, indexing="ij")
    keep = mosaic.valid[gy, gx]
    if not keep.any():
        return np.zeros(0, np.int64)
    ra, dec = mosaic.pixel_to_world(gx[keep], gy[keep])
    found = np.unique(lonlat_to_healpix(np.asarray(ra) * u.deg, np.asarray(dec) * u.deg, order).astype(np.int64))
    around = neighbours(found.astype(np.uint64), order).astype(np.int64)
    return np.unique(np.r_[found, around[around >= 0].ravel()])


#: Spacing (tile pixels) of the nodes at which the tile -> mosaic pixel map is computed exactly; between
#: them it is interpolated linearly (the map is smooth within a tile: the error is below 1e-4 pixel).
NODE_STEP = 16


def tile_to_mosaic_pixels(mosaic: MosaicInput, order: int, index: int, width: int = TILE_WIDTH):
    """Mosaic pixel (x, y) of every tile pixel centre, arrays (width, width), from an exact node grid."""
    from cdshealpix.nested import healpix_to_lonlat

    bits = width.bit_length() - 1
    nodes = kt.node_positions(width, NODE_STEP)
    cells = kt.tile_cell_indices(order, index, width)[np.ix_(nodes, nodes)]
    lon, lat = healpix_to_lonlat(cells.ravel(), order + bits)
    x, y = mosaic.world_to_pixel(lon.to_value("deg"), lat.to_value("deg"))
    w = kt.interpolation_weights(nodes, width)
    shape = (len(nodes), len(nodes))
    return kt.interpolate_grid(x.reshape(shape), w), kt.interpolate_grid(y.reshape(shape), w)


def sample_tile(mosaic: MosaicInput, order: int, index: int, width: int = TILE_WIDTH):
    """The mosaic resampled (bilinear, surface brightness preserved) onto one tile: (value, weight)."""
    x, y = tile_to_mosaic_pixels(mosaic, order, index, width)
    value = kt.bilinear_sample(mosaic.data, mosaic.valid, x, y)
    weight = kt.nearest_sample(mosaic.weight, x, y)
    weight = np.where(np.isfinite(value), weight, 0.0).astype(np.float32)
    return value, weight


def mosaic_contribution(mosaic: MosaicInput, order: int, width: int = TILE_WIDTH):
    """Every deepest-order tile the mosaic covers: (indices (m,), values (m, w, w), weights (m, w, w))."""
    tiles, values, weights = [], [], []
    for index in candidate_tiles(mosaic, order, width):
        value, weight = sample_tile(mosaic, order, int(index), width)
        if (weight > 0).any():
            tiles.append(int(index))
            values.append(value)
            weights.append(weight)
    if not tiles:
        return np.zeros(0, np.int64), np.zeros((0, width, width), np.float32), np.zeros((0, width, width), np.float32)
    return np.array(tiles, np.int64), np.stack(values), np.stack(weights)


# --------------------------------------------------------------------- the tree on disk
class HipsTrees:
    """The HiPS trees of one output folder and their build state."""

    def __init__(self, output_dir, *, width: int = TILE_WIDTH):
        self.root = Path(output_dir)
        self.width = int(width)
        self.state_path = self.root / STATE_FILE
        if self.state_path.is_file():
            try:
                self.state = json.loads(self.state_path.read_text())
            except (OSError, ValueError) as exc:
                raise InputFileError(self.state_path, f"HiPS build state unreadable: {exc}") from None
            if int(self.state.get("width", width)) != self.width:
                raise ParameterError("tile_width", width, f"{self.root} holds tiles {self.state['width']} wide")
        else:
            if self.root.exists() and any(p for p in self.root.iterdir() if not p.name.startswith(".")):
                raise RomanflowError(f"{self.root}: exists and is not a romanflow HiPS folder "
                                     f"(no {STATE_FILE}); choose an empty or new folder")
            self.state = {"width": self.width, "order": None, "bands": {}}

    # -- state
    @property
    def order(self):
        return self.state.get("order")

    def save_state(self) -> None:
        text = json.dumps(self.state, indent=1, sort_keys=True)
        _write_bytes_atomically(self.state_path, lambda tmp: Path(tmp).write_text(text))

    def _contribution_dir(self, band: str, cell: str) -> Path:
        return self.root / CONTRIBUTIONS / band / cell

    def _store_contribution(self, band, cell, tiles, values, weights) -> None:
        folder = self._contribution_dir(band, cell)
        folder.mkdir(parents=True, exist_ok=True)
        for name, array in (("value", values), ("weight", weights), ("tiles", tiles)):  # tiles last: it marks done
            _write_bytes_atomically(folder / f"{name}.npy", lambda tmp, a=array: np.save(open(tmp, "wb"), a))

    def _load_contribution(self, band: str, cell: str):
        folder = self._contribution_dir(band, cell)
        tiles = np.load(folder / "tiles.npy")
        return (tiles, np.load(folder / "value.npy", mmap_mode="r"), np.load(folder / "weight.npy", mmap_mode="r"))

    # -- building
    def add(self, mosaic: MosaicInput) -> set:
        """Merge one mosaic into its band's tree; return the deepest-order tiles rewritten."""
        if self.order is None:
            self.state["order"] = tile_order_for(mosaic.pixel_scale_arcsec, self.width)
        order = self.order
        bands = self.state["bands"]
        band_state = bands.setdefault(mosaic.band, {"cells": {}, "cut": None})
        if band_state["cut"] is None:
            band_state["cut"] = list(kt.display_cut(mosaic.data[mosaic.valid], *CUT_PERCENTILES))
        tiles, values, weights = mosaic_contribution(mosaic, order, self.width)
        previous = set(band_state["cells"].get(mosaic.cell, {}).get("tiles", []))
        self._store_contribution(mosaic.band, mosaic.cell, tiles, values, weights)
        band_state["cells"][mosaic.cell] = {"mosaic": str(mosaic.path), "tiles": [int(t) for t in tiles]}
        touched = previous | {int(t) for t in tiles}
        self._write_deepest(mosaic.band, touched)
        return touched

    def _write_deepest(self, band: str, touched: set) -> None:
        order = self.order
        tree = self.root / band
        cells = self.state["bands"][band]["cells"]
        by_cell = {name: set(info["tiles"]) for name, info in cells.items()}
        loaded = {}
        for index in sorted(touched):
            values, weights = [], []
            for name, cell_tiles in by_cell.items():
                if index not in cell_tiles:
                    continue
                if name not in loaded:
                    tiles, v, w = self._load_contribution(band, name)
                    loaded[name] = ({int(t): k for k, t in enumerate(tiles)}, v, w)
                position, v, w = loaded[name]
                k = position[index]
                values.append(np.asarray(v[k]))
                weights.append(np.asarray(w[k]))
            if values:
                value, _ = kt.combine_weighted(values, weights)
                self._write_band_tile(band, order, index, value)
            else:  # a cell re-added no longer covers it and no other does
                for ext in ("fits", "png"):
                    tile_path(tree, order, index, ext).unlink(missing_ok=True)

    def _write_band_tile(self, band: str, order: int, index: int, value: np.ndarray) -> None:
        tree = self.root / band
        _write_fits_tile(tile_path(tree, order, index, "fits"), value, order, index)
        low, high = self.state["bands"][band]["cut"]
        alpha = np.isfinite(value)
        _write_png(tile_path(tree, order, index, "png"), kt.to_rgba8([kt.stretch(value, low, high)], alpha))

    def write_ancestors(self, band: str, touched: set) -> dict:
        """Rewrite the ancestors of ``touched`` deepest tiles, order by order; {order: tiles rewritten}."""
        tree = self.root / band
        written = {self.order: set(touched)}
        current = set(touched)
        for order in range(self.order - 1, MIN_ORDER - 1, -1):
            parents = {t >> 2 for t in current}
            for parent in sorted(parents):
                children = []
                for c in range(4):
                    v = read_fits_tile(tile_path(tree, order + 1, 4 * parent + c, "fits"))
                    children.append(None if v is None else (v, np.isfinite(v).astype(np.float32)))
                if all(c is None for c in children):
                    for ext in ("fits", "png"):
                        tile_path(tree, order, parent, ext).unlink(missing_ok=True)
                    continue
                value, _ = kt.parent_tile(children, self.width)
                self._write_band_tile(band, order, parent, value)
            written[order] = parents
            current = parents
        return written

    def band_tiles(self, band: str) -> np.ndarray:
        """Deepest-order tiles of ``band``'s tree (from every cell's contribution)."""
        cells = self.state["bands"][band]["cells"]
        return np.unique(np.array([t for info in cells.values() for t in info["tiles"]], np.int64))

    def all_tiles(self, bands) -> dict:
        """``{order: tiles}`` present in any of the trees of ``bands``."""
        out: dict = {}
        for band in bands:
            for order in range(MIN_ORDER, self.order + 1):
                folder = self.root / band / f"Norder{order}"
                found = {int(p.stem[4:]) for p in folder.glob("Dir*/Npix*.fits")}
                out.setdefault(order, set()).update(found)
        return out

    # -- colour
    def colour_bands(self) -> list:
        """The bands of the colour composite, bluest first: three (the bluest, a middle one, the reddest)
        or, with two bands, both (green is their mean)."""
        bands = sorted(self.state["bands"], key=lambda b: int("".join(ch for ch in b if ch.isdigit()) or 0))
        if len(bands) < 2:
            return []
        if len(bands) == 2:
            return bands
        return [bands[0], bands[len(bands) // 2], bands[-1]]

    def write_colour(self, written: dict) -> int:
        """Rewrite the colour tiles at ``{order: tiles}``; return how many were written."""
        bands = self.colour_bands()
        if not bands:
            return 0
        tree = self.root / COLOUR
        count = 0
        for order, tiles in written.items():
            for index in sorted(tiles):
                planes, alpha = [], np.zeros((self.width, self.width), bool)
                for band in bands:
                    v = read_fits_tile(tile_path(self.root / band, order, index, "fits"))
                    low, high = self.state["bands"][band]["cut"]
                    if v is None:
                        planes.append(np.zeros((self.width, self.width)))
                    else:
                        planes.append(kt.stretch(v, low, high))
                        alpha |= np.isfinite(v)
                path = tile_path(tree, order, index, "png")
                if not alpha.any():
                    path.unlink(missing_ok=True)
                    continue
                if len(planes) == 2:
                    planes = [planes[0], 0.5 * (planes[0] + planes[1]), planes[1]]
                rgb = [planes[2], planes[1], planes[0]]  # red = reddest band
                _write_png(path, kt.to_rgba8(rgb, alpha))
                count += 1
        return count

    def write_allsky(self, name: str) -> None:
        """``Norder3/Allsky.png`` of tree ``name``: every order-3 PNG tile shrunk to 1/8, 27 to a row."""
        from PIL import Image

        tree = self.root / name
        small = self.width // 8
        columns, rows = 27, math.ceil(12 * 4**MIN_ORDER / 27)
        canvas = None
        for path in sorted((tree / f"Norder{MIN_ORDER}").glob("Dir*/Npix*.png")):
            index = int(path.stem[4:])
            with Image.open(path) as tile:
                if canvas is None:
                    canvas = Image.new(tile.mode, (columns * small, rows * small))
                canvas.paste(tile.resize((small, small), Image.Resampling.BOX),
                             ((index % columns) * small, (index // columns) * small))
        target = tree / f"Norder{MIN_ORDER}" / "Allsky.png"
        if canvas is None:
            target.unlink(missing_ok=True)
            return
        _write_bytes_atomically(target, lambda tmp: canvas.save(tmp, format="PNG"))

    # -- metadata
    def write_metadata(self, band: str | None) -> None:
        """``properties`` and ``Moc.fits`` of one band's tree (or of the colour tree for None)."""
        from cdshealpix.nested import healpix_to_lonlat

        if band is None:
            bands = self.colour_bands()
            if not bands:
                return
            tiles = np.unique(np.concatenate([self.band_tiles(b) for b in bands]))
            tree, name = self.root / COLOUR, COLOUR
        else:
            tiles, tree, name = self.band_tiles(band), self.root / band, band
        tree.mkdir(parents=True, exist_ok=True)
        order = self.order
        if tiles.size:
            from mocpy import MOC

            moc = MOC.from_healpix_cells(tiles.astype(np.uint64), np.full(tiles.size, order, np.uint8), max_depth=order)
            _write_bytes_atomically(tree / "Moc.fits", lambda tmp: moc.save(str(tmp), format="fits", overwrite=True))
            lon, lat = healpix_to_lonlat(tiles.astype(np.uint64), order)
            ra, dec = _mean_direction(lon.to_value("deg"), lat.to_value("deg"))
            spread = float(np.max(_separation(ra, dec, lon.to_value("deg"), lat.to_value("deg")))) if tiles.size else 1
            fov = min(180.0, 2.5 * spread + healpix_pixel_arcsec(order) / 3600.0 * 1.5)
        else:
            ra, dec, fov = 0.0, 0.0, 180.0
        bits = self.width.bit_length() - 1
        now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%MZ")
        from romanflow.version import __version__

        props = {
            "creator_did": f"ivo://romanflow/hips/{name}",
            "obs_title": f"romanflow WFI {name}" if band else f"romanflow WFI colour ({', '.join(self.colour_bands())})",
            "obs_description": ("L3 mosaics resampled onto HEALPix tiles (surface brightness, MJy/sr)" if band
                                else "Colour composite: red, green, blue from the bands " + ", ".join(reversed(self.colour_bands()))),
            "dataproduct_type": "image",
            "hips_version": "1.4",
            "hips_builder": f"romanflow {__version__}",
            "hips_release_date": now,
            "hips_status": "public master clonableOnce",
            "hips_frame": "equatorial",
            "hips_order": str(order),
            "hips_order_min": str(MIN_ORDER),
            "hips_tile_width": str(self.width),
            "hips_tile_format": "png fits" if band else "png",
            "hips_pixel_scale": f"{healpix_pixel_arcsec(order + bits) / 3600.0:.6g}",
            "hips_initial_ra": f"{ra:.8f}",
            "hips_initial_dec": f"{dec:.8f}",
            "hips_initial_fov": f"{fov:.6f}",
            "moc_sky_fraction": f"{tiles.size / (12 * 4 ** order):.3g}",
            "romanflow_bands": band if band else " ".join(self.colour_bands()),
        }
        if band:
            low, high = self.state["bands"][band]["cut"]
            props.update({"hips_pixel_cut": f"{low:.6g} {high:.6g}", "hips_data_range": f"{low:.6g} {high:.6g}",
                          "hips_pixel_bitpix": "-32", "data_pixel_bitpix": "-32", "obs_regime": "Infrared"})
        else:
            props["dataproduct_subtype"] = "color"
        text = "".join(f"{k:<20} = {v}\n" for k, v in props.items())
        _write_bytes_atomically(tree / "properties", lambda tmp: Path(tmp).write_text(text))


def _mean_direction(ra, dec):
    r, d = np.radians(ra), np.radians(dec)
    v = np.array([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)]).mean(axis=1)
    return float(np.degrees(np.arctan2(v[1], v[0])) % 360.0), float(np.degrees(np.arcsin(v[2] / np.linalg.norm(v))))


def _separation(ra0, dec0, ra, dec):
    r0, d0, r, d = (np.radians(np.asarray(a, float)) for a in (ra0, dec0, ra, dec))
    c = np.sin(d0) * np.sin(d) + np.cos(d0) * np.cos(d) * np.cos(r - r0)
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


def build_hips(mosaics, output_dir, *, width: int = TILE_WIDTH, colour: bool = True) -> HipsReport:
    """Merge L3 mosaics (paths or :class:`MosaicInput`) into the HiPS trees of ``output_dir``.

    Each mosaic goes into its band's tree; a mosaic of a sky cell already there replaces that cell's
    earlier contribution. Only the tiles the given mosaics touch (and their ancestors, and the colour
    tiles at those places) are rewritten.
    """
    import time

    start = time.perf_counter()
    mosaics = list(mosaics)
    if not mosaics:
        raise RomanflowError("build_hips needs at least one mosaic")
    trees = HipsTrees(output_dir, width=width)
    report = HipsReport(output_dir=trees.root)
    touched_by_band: dict = {}
    for item in mosaics:
        mosaic = item if isinstance(item, MosaicInput) else read_mosaic(item)
        if trees.order is not None:
            wanted = tile_order_for(mosaic.pixel_scale_arcsec, trees.width)
            if wanted != trees.order:
                _log.warning("%s: %.3f\" pixels would suit tile order %d; the trees in %s use %d",
                             mosaic.path, mosaic.pixel_scale_arcsec, wanted, trees.root, trees.order)
        touched_by_band.setdefault(mosaic.band, set()).update(trees.add(mosaic))
        trees.save_state()
        report.cells.append(f"{mosaic.band}:{mosaic.cell}")
        _log.info("%s: sky cell %s (%s) sampled", mosaic.path, mosaic.cell, mosaic.band)
    written_all: dict = {}
    for band, touched in touched_by_band.items():
        written = trees.write_ancestors(band, touched)
        report.tiles_written += sum(len(t) for t in written.values())
        for order, tiles in written.items():
            written_all.setdefault(order, set()).update(tiles)
        trees.write_allsky(band)
        trees.write_metadata(band)
    if colour and trees.colour_bands():
        if trees.state.get("colour_bands") != trees.colour_bands():  # a new choice of bands: redo every tile
            written_all = trees.all_tiles(trees.colour_bands())
            trees.state["colour_bands"] = trees.colour_bands()
            trees.save_state()
        report.colour_tiles_written = trees.write_colour(written_all)
        trees.write_allsky(COLOUR)
        trees.write_metadata(None)
    report.bands = sorted(touched_by_band)
    report.order = trees.order
    report.seconds = time.perf_counter() - start
    return report
