"""Source flags: the one registry of the bits that qualify a measured source.

Every flag column of a source table (``flags`` of the point-source catalogs
used for registration, ``psf_flags_<band>`` and ``warning_flags`` of the L4
catalogs, the ``flags`` returned by :func:`romanflow.kernels.psf_fit.fit_psf_sources`)
holds an OR of bits from this one table, so a bit means the same wherever it
appears and :func:`decode` reads any of them. Each column sets only some of
the bits; the columns' descriptions list which.

Pixel data-quality bits (the ``dq`` arrays of L1/L2 products) are a different
set: see :mod:`romanflow.dq`.

==================  =====  =============================================================
name                value  meaning
==================  =====  =============================================================
``EDGE``            1      the measurement's footprint (PSF-fit box, largest aperture)
                           leaves the image or includes masked pixels
``BLENDED``         2      blended with another source
``SATURATED``       4      a saturated pixel in the source's footprint
``PSF_FIT_FAILED``  8      no usable PSF fit
``LOW_SNR_KRON``    16     Kron flux below 1 sigma; its magnitude is NaN
``LEFT_BOX``        32     the PSF-fitted position left its allowed region
``NOT_CONVERGED``   64     the PSF-fitted position had not settled
==================  =====  =============================================================

>>> from romanflow import source_flags
>>> source_flags.decode(5)
['EDGE', 'SATURATED']
>>> source_flags.encode(["EDGE", "SATURATED"])
5
"""

from __future__ import annotations

from romanflow.bitmask import decode_bits, encode_bits

from dataclasses import dataclass

__all__ = [
    "SourceFlag",
    "REGISTRY",
    "SOURCE_FLAGS",
    "EDGE",
    "BLENDED",
    "SATURATED",
    "PSF_FIT_FAILED",
    "LOW_SNR_KRON",
    "LEFT_BOX",
    "NOT_CONVERGED",
    "decode",
    "encode",
    "legend",
]


@dataclass(frozen=True)
class SourceFlag:
    """One source flag.

    Attributes
    ----------
    name : str
        Upper-case name (``'EDGE'``).
    value : int
        The bit, a power of two.
    description : str
        When the bit is set, as one sentence.
    """

    name: str
    value: int
    description: str


# Plain integers, so that compiled kernels can use them as constants.
EDGE = 1
BLENDED = 2
SATURATED = 4
PSF_FIT_FAILED = 8
LOW_SNR_KRON = 16
LEFT_BOX = 32
NOT_CONVERGED = 64

#: Every source flag, in bit order.
REGISTRY: tuple[SourceFlag, ...] = (
    SourceFlag("EDGE", EDGE,
               "The measurement's footprint (the PSF-fit box, or the largest aperture) leaves the image or "
               "includes masked pixels."),
    SourceFlag("BLENDED", BLENDED,
               "Blended with another source: another detection within the blend radius (point-source "
               "detection), or a segment split from a larger one by deblending (catalogs)."),
    SourceFlag("SATURATED", SATURATED, "A pixel of the source's footprint is flagged saturated."),
    SourceFlag("PSF_FIT_FAILED", PSF_FIT_FAILED,
               "No usable PSF fit: too few usable pixels or singular normal equations (the fitted values "
               "are NaN), or a fit its user rejects (a non-positive flux, a position far from the start)."),
    SourceFlag("LOW_SNR_KRON", LOW_SNR_KRON, "The Kron flux has S/N below 1; its magnitude is NaN."),
    SourceFlag("LEFT_BOX", LEFT_BOX,
               "The PSF-fitted position moved farther from the centre of its fit box than allowed."),
    SourceFlag("NOT_CONVERGED", NOT_CONVERGED,
               "The PSF-fitted position had not settled after the last iteration."),
)

#: Bit value of every flag, by name.
SOURCE_FLAGS: dict[str, int] = {flag.name: flag.value for flag in REGISTRY}

_BY_NAME = {flag.name: flag for flag in REGISTRY}
_ALL_BITS = 0
for _flag in REGISTRY:
    if _flag.value <= 0 or _flag.value & (_flag.value - 1) or _flag.value & _ALL_BITS:
        raise ValueError(f"source flag {_flag.name}: {_flag.value} is not a power of two unused by another flag")
    _ALL_BITS |= _flag.value
del _flag


def decode(value) -> list[str]:
    """Names of the flags set in ``value`` (an OR of source-flag bits, any integer type), in bit order;
    ``ValueError`` for a bit that is no source flag or a negative value."""
    return decode_bits(value, SOURCE_FLAGS, "source flag")


def encode(names) -> int:
    """OR of the named flags: ``encode(['EDGE', 'SATURATED']) == 5``; one name may be given as a string."""
    return encode_bits(names, SOURCE_FLAGS, "source flag")


def legend(names) -> str:
    """Short legend of some flags for a column description: ``'1 EDGE, 4 SATURATED'``.

    Raises
    ------
    ValueError
        If a name is no source flag.
    """
    encode(names)
    return ", ".join(f"{_BY_NAME[name].value} {name}" for name in names)
