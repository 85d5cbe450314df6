"""Valid products of every level, built once per session at small size, for the command-line tests."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from romanflow.detector import SMALL_SCIENCE_SIZE

#: Sky-cell pixel scale (arcsec) of the small L3.
L3_PIXEL_SCALE = 0.11


@dataclass(frozen=True)
class ValidInputs:
    """One valid file of each kind the commands read (names as the commands write them)."""

    folder: Path
    l1: Path          # L1 ScienceRawModel, WFI01, F158, science size 248
    l2: Path          # its L2 ImageModel
    l3: Path          # an L3 MosaicModel on a cutout of the sky cell (--no-psf for catalogs of it)
    asn: Path         # association of the L2 (member named by its file name, beside it)
    cutout: tuple     # (x0, y0, nx, ny) of a sky-cell cutout at 0.055 arcsec covering the L2
    catalog: Path     # source catalog of the L2 (Parquet)
    refcat: Path      # astrometric reference catalog of the field (Parquet, Gaia columns)
    plan: Path        # survey plan (YAML) written by `romanflow plan`
    archive: Path     # an embedded archive database (archive.db) holding the L2, its L3 and catalog

    def path(self, kind: str) -> Path:
        return getattr(self, kind)


def _cutout(l2_path: Path, cell: str, pixel_scale: float, margin: int = 8) -> tuple[int, int, int, int]:
    """(x0, y0, nx, ny) of the sky-cell grid at ``pixel_scale`` covering the L2 image."""
    from romanflow.formats import read_l2
    from romanflow.mosaic.skycells import image_footprint, skycell_wcs

    image = read_l2(l2_path)
    ra, dec = image_footprint(image.wcs, image.data.shape)
    x, y = skycell_wcs(cell, pixel_scale).world_to_pixel_values(ra, dec)
    x0, y0 = int(np.floor(x.min())) - margin, int(np.floor(y.min())) - margin
    return x0, y0, int(np.ceil(x.max())) + margin - x0, int(np.ceil(y.max())) + margin - y0


@pytest.fixture(scope="session")
def valid_inputs(tmp_path_factory) -> ValidInputs:
    from romanflow.calibrate import calibrate
    from romanflow.cli import main
    from romanflow.mosaic.associations import build_associations, summarize_l2
    from romanflow.mosaic.pipeline import make_mosaic
    from romanflow.mosaic.skycells import cutout_wcs, skycell_wcs
    from romanflow.simulate import simulate

    folder = tmp_path_factory.mktemp("valid_inputs")
    sim = simulate(detectors=["WFI01"], optical_element="F158", science_size=SMALL_SCIENCE_SIZE,
                   n_sources=100_000, seed=3, output_dir=folder / "sim")
    l1 = Path(sim["l1"][0])
    refcat = Path(sim["gaia"])
    l2 = Path(calibrate([l1], folder / "cal", workers=1)[0])

    asn = build_associations([summarize_l2(l2)])[0]
    cell = asn["target"]
    asn["products"][0]["members"] = [{"expname": l2.name, "exptype": "science"}]
    asn_path = l2.parent / f"{asn['products'][0]['name']}_asn.json"
    asn_path.write_text(json.dumps(asn, indent=2) + "\n")

    l3 = folder / "l3" / f"{asn['products'][0]['name']}_coadd.asdf"
    l3.parent.mkdir()
    grid = cutout_wcs(skycell_wcs(cell, L3_PIXEL_SCALE), *_cutout(l2, cell, L3_PIXEL_SCALE))
    make_mosaic([str(l2)], grid, l3, skycell=cell, optical_element="F158", outliers=False)

    catalog_dir = folder / "catalog"
    assert main(["catalog", str(l2), "-o", str(catalog_dir), "--no-psf", "-q"]) == 0
    catalog = next(catalog_dir.glob("*.parquet"))

    plan = folder / "plan.yaml"
    assert main(["plan", "--ra", "270", "--dec", "66", "--size-deg", "0.05", "--detectors", "WFI01",
                 "--size", "small", "--dither", "2", "-o", str(plan), "-q"]) == 0

    archive = folder / "archive" / "archive.db"
    archive.parent.mkdir()
    assert main(["archive", "ingest", str(l2), str(l3), str(catalog), "--db", f"sqlite:///{archive}",
                 "--root", str(folder), "-q"]) == 0

    return ValidInputs(folder=folder, l1=l1, l2=l2, l3=l3, asn=asn_path, cutout=_cutout(l2, cell, 0.055),
                       catalog=catalog, refcat=refcat, plan=plan, archive=archive)
