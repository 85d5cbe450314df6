#!/usr/bin/env python3
"""Fit the WFI distortion polynomials to galsim.roman and write them as package data.

Usage::

    python tools/make_distortion.py [OUTPUT]   # default src/romanflow/data/wfi_distortion.json

Prints the GalSim version, the fit RMS of each detector (mas) and the file written.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    from romanflow.geometry.distortion import DISTORTION_PATH
    from romanflow.geometry.galsim_fit import fit_distortion, write_distortion_file

    args = sys.argv[1:] if argv is None else list(argv)
    path = Path(args[0]) if args else DISTORTION_PATH
    start = time.perf_counter()
    table = fit_distortion()
    import galsim

    print(f"galsim {galsim.__version__}; fit in {time.perf_counter() - start:.1f} s")
    for name, d in table.items():
        print(f"  {name}: V2V3 centre ({d.v2c:9.3f}, {d.v3c:9.3f}) arcsec, fit RMS {d.fit_rms_mas:.2e} mas")
    print(write_distortion_file(path, table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
