"""Data-quality bit values, as the official data models define them.

Pixel flags are uint32, group (per-resultant) flags uint8. Kept here as plain
integers so that kernels need not import the data-model package.
"""

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


def describe(value: int) -> list[str]:
    """Names of the pixel flags set in ``value``."""
    return [name for name, bit in PIXEL_FLAGS.items() if int(value) & bit]
