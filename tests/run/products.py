"""Helpers comparing the products of two runs of the same plan."""

from pathlib import Path

import numpy as np
import pandas as pd


def l2_arrays(path):
    from romanflow.formats import read_l2

    image = read_l2(path)
    return {"data": image.data, "err": image.err, "dq": image.dq, "var_poisson": image.var_poisson}


def assert_same_products(a: Path, b: Path):
    """Every L2/registered array, L3 array and catalog row of run ``a`` equals run ``b``'s."""
    import asdf

    names = sorted(p.relative_to(a) for p in a.glob("registered/*_cal.asdf"))
    assert names and names == sorted(p.relative_to(b) for p in b.glob("registered/*_cal.asdf"))
    for name in names + sorted(p.relative_to(a) for p in a.glob("l2/*_cal.asdf")):
        x, y = l2_arrays(a / name), l2_arrays(b / name)
        for key in x:
            np.testing.assert_array_equal(x[key], y[key], err_msg=f"{name}: {key}")
    mosaics = sorted(p.relative_to(a) for p in a.glob("l3/*_coadd.asdf"))
    assert mosaics
    for name in mosaics:
        with asdf.open(a / name) as fa, asdf.open(b / name) as fb:
            for key in ("data", "weight", "context"):
                np.testing.assert_array_equal(np.asarray(fa["roman"][key]), np.asarray(fb["roman"][key]),
                                              err_msg=f"{name}: {key}")
    cats = sorted(p.relative_to(a) for p in a.glob("l4/*_cat.parquet"))
    assert cats
    for name in cats:
        ta, tb = pd.read_parquet(a / name), pd.read_parquet(b / name)
        assert len(ta) > 20
        pd.testing.assert_frame_equal(ta, tb, check_exact=True)
    ha = pd.read_parquet(next((a / "hats").rglob("Npix=*.parquet")))
    hb = pd.read_parquet(next((b / "hats").rglob("Npix=*.parquet")))
    pd.testing.assert_frame_equal(ha, hb, check_exact=True)
