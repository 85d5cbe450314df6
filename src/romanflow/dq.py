"""Data-quality bit values, as the official data models define them.

Pixel flags are uint32, group (per-resultant) flags uint8. Kept here as plain
integers so that kernels need not import the data-model package.
:func:`decode` names the bits of a value, :func:`encode` ORs named bits.

These are pixel flags (the ``dq`` arrays of L1/L2 products); the flags of
measured sources are another set, :mod:`romanflow.source_flags`.
"""

from romanflow.bitmask import decode_bits, encode_bits

DO_NOT_USE = 1 << 0
SATURATED = 1 << 1
JUMP_DET = 1 << 2
DROPOUT = 1 << 3
GW_AFFECTED_DATA = 1 << 4
PERSISTENCE = 1 << 5
AD_FLOOR = 1 << 6
OUTLIER = 1 << 7
UNRELIABLE_ERROR = 1 << 8
NON_SCIENCE = 1 << 9
DEAD = 1 << 10
HOT = 1 << 11
WARM = 1 << 12
LOW_QE = 1 << 13
TELEGRAPH = 1 << 15
NONLINEAR = 1 << 16
BAD_REF_PIXEL = 1 << 17
NO_FLAT_FIELD = 1 << 18
NO_GAIN_VALUE = 1 << 19
NO_LIN_CORR = 1 << 20
NO_SAT_CHECK = 1 << 21
UNRELIABLE_BIAS = 1 << 22
UNRELIABLE_DARK = 1 << 23
UNRELIABLE_SLOPE = 1 << 24
UNRELIABLE_FLAT = 1 << 25
UNRELIABLE_RESET = 1 << 28
#: Synthetic flux was added here (source injection); the official schema leaves bit 29 reserved (RESERVED_7).
INJECTED = 1 << 29
OTHER_BAD_PIXEL = 1 << 30
REFERENCE_PIXEL = 1 << 31

#: Group (resultant) flags, uint8.
GROUP_DO_NOT_USE = DO_NOT_USE
GROUP_SATURATED = SATURATED
GROUP_JUMP_DET = JUMP_DET
GROUP_DROPOUT = DROPOUT
GROUP_AD_FLOOR = AD_FLOOR

PIXEL_FLAGS = {
    name: value
    for name, value in globals().items()
    if name.isupper() and not name.startswith("GROUP_") and isinstance(value, int)
}


def decode(value) -> list[str]:
    """Names of the pixel flags set in ``value``, in bit order; ``ValueError`` for a bit that is no pixel
    flag (bits 14, 26 and 27 are unused) or a negative value."""
    return decode_bits(value, PIXEL_FLAGS, "pixel flag")


def encode(names) -> int:
    """OR of the named pixel flags: ``encode(['DO_NOT_USE', 'SATURATED']) == 3``; one name may be a string."""
    return encode_bits(names, PIXEL_FLAGS, "pixel flag")
