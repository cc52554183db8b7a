"""Seeded sampling that RTL and golden agree on: a 32-bit Galois LFSR and an integer
inverse-CDF draw over Shiftmax probabilities.

LFSR: Galois form, shifting right, feedback mask ``0x80200003`` (taps 32, 22, 2, 1, the
maximal-length 32-bit tap set of Xilinx XAPP052, table 3). One step:
``lsb = s & 1; s >>= 1; if lsb: s ^= 0x80200003``. A zero state stays zero, so a zero seed
is replaced by 1 when seeding (:func:`seed_state`).

Draw (the SAMPLE instruction, golden/isa.py), over probabilities ``p`` (unsigned, Q15 from
SHIFTMAX), n of them:

1. ``s = lfsr_step^16(s)`` (16 steps, a leap the hardware unrolls into one XOR network, so
   the 15 bits of ``u`` are all new each draw and consecutive draws are not shifted copies
   of each other); ``u = s >> 17`` (15 bits, uniform in [0, 2^15));
2. pass 1: ``T = sum p`` (at most 4096 * 2^15 = 2^27: 28 bits unsigned);
3. ``thr = (u * T) >> 15`` (in [0, T)); 43-bit product;
4. pass 2: the index is the smallest j with ``p_0 + ... + p_j > thr`` (0 if T = 0).

So token j is drawn with probability ``p_j / T`` up to the 2^-15 resolution of ``u``.
"""
from __future__ import annotations

__all__ = ["LFSR_MASK", "U_BITS", "STEPS_PER_DRAW", "lfsr_leap", "lfsr_step", "seed_state", "sample_index", "split_state",
           "join_state"]

LFSR_MASK = 0x80200003
U_BITS = 15
#: LFSR steps a draw (at least U_BITS, so each draw's bits are fresh).
STEPS_PER_DRAW = 16


def lfsr_step(s: int) -> int:
    """One step of the 32-bit Galois LFSR (``s`` an unsigned 32-bit int)."""
    s &= 0xFFFFFFFF
    lsb = s & 1
    s >>= 1
    if lsb:
        s ^= LFSR_MASK
    return s


def lfsr_leap(s: int) -> int:
    """``STEPS_PER_DRAW`` steps of :func:`lfsr_step`."""
    for _ in range(STEPS_PER_DRAW):
        s = lfsr_step(s)
    return s


def seed_state(seed: int) -> int:
    """The LFSR state for a user seed: its low 32 bits, with 0 replaced by 1."""
    s = int(seed) & 0xFFFFFFFF
    return s or 1


def split_state(s: int) -> tuple[int, int]:
    """The state as two 16-bit scratch words (low, high), each as a signed int16 value."""
    def sx(v):
        return v - (1 << 16) if v >= (1 << 15) else v
    return sx(s & 0xFFFF), sx((s >> 16) & 0xFFFF)


def join_state(lo: int, hi: int) -> int:
    """Inverse of :func:`split_state`."""
    return (int(lo) & 0xFFFF) | ((int(hi) & 0xFFFF) << 16)


def sample_index(p, s: int) -> tuple[int, int]:
    """Draw an index from probabilities ``p`` (sequence of non-negative ints) with LFSR
    state ``s``. Returns ``(index, new_state)``.

    Raises
    ------
    ValueError if a probability is negative or the list is empty.
    """
    p = [int(v) for v in p]
    if not p:
        raise ValueError("SAMPLE over an empty vector")
    if min(p) < 0:
        raise ValueError("SAMPLE probabilities must be non-negative")
    s = lfsr_leap(s)
    u = s >> (32 - U_BITS)
    total = sum(p)
    thr = (u * total) >> U_BITS
    cum = 0
    for j, v in enumerate(p):
        cum += v
        if cum > thr:
            return j, s
    return 0, s
