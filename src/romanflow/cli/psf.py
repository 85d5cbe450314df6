"""``romanflow psf``: a PSF image from the library (ASDF, FITS or PNG), or a focal-plane grid of PSFs."""

from __future__ import annotations

from pathlib import Path

import numpy as np

import romanflow.psf  # noqa: F401  (registers the epsf synthesizer of the reference store)
from romanflow.cli.options import (add_command, detector, filter_name, finite_float, non_negative_float, output_file,
                                   positive_int)
from romanflow.errors import ParameterError

_FORMATS = (".asdf", ".fits", ".png")


def register(subparsers) -> None:
    parser = add_command(
        subparsers, "psf", help="PSF image at a detector position, or a grid over the focal plane",
        description="Write the effective PSF (library, pixel-convolved) or optical PSF of a detector and "
                    "filter at a position (0-based science pixels of the full detector; source at array "
                    "coordinate ((n-1)/2, (n-1)/2); values: fraction of the flux per native-pixel area). "
                    "--grid draws PSFs over the 18 detectors as a PNG.")
    parser.add_argument("--detector", type=detector, default="WFI07", help="WFI01..WFI18 (default WFI07)")
    parser.add_argument("--filter", type=filter_name, default="F158", help="imaging filter (default F158)")
    parser.add_argument("--x", type=finite_float, default=2043.5, help="column (0-based science pixel)")
    parser.add_argument("--y", type=finite_float, default=2043.5, help="row (0-based science pixel)")
    parser.add_argument("--oversample", type=positive_int, default=1, help="samples per native pixel")
    parser.add_argument("--stamp-size", type=positive_int, help="samples per side (default 24·oversample + 1)")
    parser.add_argument("--spectrum", default=None,
                        help="spectral type (A0V, G2V, M5V ...) or temperature in K (default G2V)")
    parser.add_argument("--jitter", type=non_negative_float, metavar="MAS",
                        help="pointing jitter sigma per axis (mas; default the library's)")
    parser.add_argument("--optical", action="store_true", help="optical PSF without the pixel (direct galsim)")
    parser.add_argument("--grid", action="store_true", help="PNG of PSFs over the focal plane (3x3 per detector)")
    parser.add_argument("-o", "--output", type=output_file, required=True, metavar="FILE", help="output .asdf, .fits or .png")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing output")
    parser.set_defaults(func=run)


def _spectrum(text):
    if text is None:
        return None
    try:
        return float(text)
    except ValueError:
        return text


def _check_output(args) -> Path:
    from romanflow.errors import OutputExistsError

    path = Path(args.output)
    if path.suffix.lower() not in _FORMATS or (args.grid and path.suffix.lower() != ".png"):
        allowed = ".png" if args.grid else ", ".join(_FORMATS)
        raise ParameterError("--output", args.output, f"must end in {allowed}")
    if path.exists() and not args.overwrite:
        raise OutputExistsError(f"{path}: exists (use --overwrite)")
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def _save_png(path, image, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.imshow(np.log10(np.maximum(image / image.max(), 1e-5)), origin="lower", cmap="magma", vmin=-5, vmax=0)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    _atomic_savefig(fig, path)


def _atomic_savefig(fig, path):
    import os

    import matplotlib.pyplot as plt

    tmp = path.with_name(f".{path.name}.tmp")
    fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    os.replace(tmp, path)


def run(args) -> int:
    from romanflow.psf import psf_image

    path = _check_output(args)
    spectrum = _spectrum(args.spectrum)
    if args.grid:
        return _run_grid(args, path, spectrum)
    image = psf_image(args.detector, args.filter, args.x, args.y, oversample=args.oversample, spectrum=spectrum,
                      size=args.stamp_size, pixel_convolved=not args.optical, jitter_mas=args.jitter)
    meta = {"detector": args.detector, "optical_element": args.filter, "x": args.x, "y": args.y,
            "oversample": args.oversample, "spectrum": str(args.spectrum or "G2V"),
            "pixel_convolved": not args.optical, "centre": "array coordinate ((n-1)/2, (n-1)/2)",
            "unit": "fraction of the source flux per native-pixel area"}
    suffix = path.suffix.lower()
    tmp = path.with_name(f".{path.name}.tmp")
    if suffix == ".png":
        _save_png(path, image, f"{args.detector} {args.filter} ({args.x:.0f}, {args.y:.0f}) x{args.oversample}")
    elif suffix == ".fits":
        from astropy.io import fits

        hdu = fits.PrimaryHDU(image.astype(np.float32))
        for k, v in meta.items():
            hdu.header[k[:8].upper()] = (v if not isinstance(v, bool) else int(v))
        hdu.writeto(tmp, overwrite=True)
        tmp.replace(path)
    else:
        import asdf

        asdf.AsdfFile({"psf": image.astype(np.float32), "meta": meta}).write_to(tmp)
        tmp.replace(path)
    print(f"{path}: {image.shape[0]}x{image.shape[1]} PSF, sum {image.sum():.4f}")
    return 0


def _run_grid(args, path, spectrum) -> int:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from romanflow.detector import DETECTORS
    from romanflow.geometry.distortion import detector_center_v2v3
    from romanflow.psf import psf_model

    fig, ax = plt.subplots(figsize=(11, 6))
    centres = {d: detector_center_v2v3(d) for d in DETECTORS}
    span = 0.8 * 4088 * 0.11  # arcsec covered by a detector's panel
    for det in DETECTORS:
        model = psf_model(det, args.filter, spectrum=spectrum, jitter_mas=args.jitter)
        v2, v3 = centres[det]
        for j, y in enumerate((0.0, 2043.5, 4087.0)):
            for i, x in enumerate((0.0, 2043.5, 4087.0)):
                img = model.image(x, y, oversample=2, size=25)
                img = np.log10(np.maximum(img / img.max(), 1e-4))
                x0 = v2 + (i - 1.5) * span / 3
                y0 = v3 + (j - 1.5) * span / 3
                ax.imshow(img, extent=(x0, x0 + span / 3, y0, y0 + span / 3), origin="lower", cmap="magma",
                          vmin=-4, vmax=0)
        ax.text(v2, v3 + span / 2 + 20, det, ha="center", fontsize=7)
    v2s = [c[0] for c in centres.values()]
    v3s = [c[1] for c in centres.values()]
    ax.set_xlim(min(v2s) - span, max(v2s) + span)
    ax.set_ylim(min(v3s) - span, max(v3s) + span)
    ax.set_xlabel("V2 (arcsec)")
    ax.set_ylabel("V3 (arcsec)")
    ax.set_title(f"WFI {args.filter} effective PSFs (log scale, 3x3 per detector, 2x oversampled)")
    _atomic_savefig(fig, path)
    print(f"{path}: PSF grid over {len(DETECTORS)} detectors")
    return 0
