"""``romanflow psf``: files in each format, one-line errors."""

import asdf
import numpy as np
from astropy.io import fits

from romanflow.cli import main


def test_psf_command_writes_fits_asdf_and_png(tmp_path, capsys):
    args = ["psf", "--detector", "WFI07", "--filter", "F158", "--x", "2000", "--y", "100", "--oversample", "2"]
    assert main([*args, "-o", str(tmp_path / "p.fits")]) == 0
    image = fits.getdata(tmp_path / "p.fits")
    assert image.shape == (49, 49) and np.unravel_index(image.argmax(), image.shape) == (24, 24)
    assert image[::2, ::2].sum() > 0.9
    assert main([*args, "-o", str(tmp_path / "p.asdf")]) == 0
    with asdf.open(tmp_path / "p.asdf") as af:
        np.testing.assert_allclose(af["psf"], image)
        assert af["meta"]["unit"].startswith("fraction")
    assert main([*args, "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").read_bytes()[:4] == b"\x89PNG"
    # an existing output is kept unless --overwrite
    assert main([*args, "-o", str(tmp_path / "p.fits")]) == 2
    assert main(["psf", "--x", "4100", "-o", str(tmp_path / "q.fits")]) == 2
    assert main(["psf", "--spectrum", "Q0V", "-o", str(tmp_path / "q.fits")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert any("off the detector" in line for line in err) and any("Q0V" in line for line in err)
    assert not (tmp_path / "q.fits").exists()
