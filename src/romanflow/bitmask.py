"""Reading and writing OR-combinations of named bits: the one helper behind every flag registry.

:mod:`romanflow.dq` (pixel data quality) and :mod:`romanflow.source_flags` (measured sources) each
hold a ``{name: bit}`` table and call these two functions with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping


def decode_bits(value, bits: Mapping[str, int], kind: str) -> list[str]:
    """Names of the bits set in ``value``, in the table's order.

    Parameters
    ----------
    value : int
        An OR of bits of the table (any integer type, e.g. one element of a flag array).
    bits : mapping of str to int
        The table: name -> bit value.
    kind : str
        What the bits are, for the error message ("pixel flag", "source flag").

    Raises
    ------
    ValueError
        If ``value`` is negative or has a bit that is not in the table.
    """
    value = int(value)
    known = 0
    for bit in bits.values():
        known |= bit
    if value < 0 or value & ~known:
        raise ValueError(f"{value} is not a combination of {kind}s (unknown bits {value & ~known:#x})")
    return [name for name, bit in bits.items() if value & bit]


def encode_bits(names: str | Iterable[str], bits: Mapping[str, int], kind: str) -> int:
    """OR of the named bits; ``names`` may be a single name.

    Raises
    ------
    ValueError
        If a name is not in the table.
    """
    if isinstance(names, str):
        names = [names]
    value = 0
    for name in names:
        if name not in bits:
            raise ValueError(f"unknown {kind} {name!r}; known: {', '.join(bits)}")
        value |= bits[name]
    return value
