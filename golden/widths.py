"""Bit widths and ranges of the numerics contract, free of torch so that hw/ can size its
datapaths from the same numbers (golden.numerics re-exports them with the rules that use
them; the docstrings there give the sources)."""
from __future__ import annotations

import math

__all__ = ["ACT_BITS", "ACT_MAX", "ACT_MIN", "M_BITS", "S_BITS", "S_MAX", "WIDE_MAX",
           "acc_width"]

#: Activations: symmetric int8 in [-127, 127] (-128 never produced, so -x never overflows).
ACT_BITS = 8
ACT_MAX = 127
ACT_MIN = -127
#: Dyadic requantization: m unsigned M_BITS, shift s of S_BITS.
M_BITS = 16
S_BITS = 6
S_MAX = (1 << S_BITS) - 1
#: Symmetric int16 saturation of scratch words (residual stream, state, WIDE outputs).
WIDE_MAX = (1 << 15) - 1


def acc_width(fan_in: int, act_max: int = ACT_MAX) -> int:
    """Bits of a signed accumulator that holds any ternary dot product of ``fan_in`` terms.

    ``|sum_i t_i x_i| <= fan_in * act_max``, so ``ceil(log2(fan_in * act_max + 1)) + 1``
    bits (one for the sign) are exact. For fan_in = 64: 14 bits; 512: 17; 4096: 20.

    Raises
    ------
    ValueError if ``fan_in`` < 1.
    """
    if fan_in < 1:
        raise ValueError(f"fan-in must be at least 1, not {fan_in!r}")
    return math.ceil(math.log2(fan_in * act_max + 1)) + 1
