"""The numerics contract of ternac: every width, rounding and saturation rule, defined once.

Everything that computes on integers (the integer golden models, the compiler, the program
interpreter, the RTL parameters and the tests) imports its rules from here. Nothing in this
module knows about hardware; it only states the arithmetic.

Sources
-------
* BitNet b1.58 (Ma et al. 2024, "The Era of 1-bit LLMs", eq. 1-3): absmean weight
  quantization ``gamma = mean|W|``, ``t = clamp(round(W / (gamma + eps)), -1, 1)``.
* Jacob et al. 2018 ("Quantization and Training of Neural Networks for Efficient
  Integer-Arithmetic-Only Inference", sec. 2.2): a real multiplier ``M`` is applied as a
  fixed-point integer ``m`` and a right shift ``s`` (dyadic requantization).

Tie rules (the two roundings of ternac, stated once)
----------------------------------------------------
* **Float to integer rounds half to even** (``torch.round``, Python ``round``): the host's
  float-to-int8 step :func:`quantize_act` (``round(x / scale)``: 0.5 -> 0, 1.5 -> 2,
  -0.5 -> 0, -2.5 -> -2), the absmean trits :func:`absmean_ternarize` and the dyadic
  constant ``m`` of :func:`dyadic`. These run on the host (or at compile time), never in
  the RTL.
* **Integer right shifts round half up**, towards +inf (:func:`round_half_up_shift`,
  ``(v + 2^(s-1)) >> s`` with an arithmetic shift): requantization :func:`requantize` and
  every shift of the integer units and of the RTL (``5 >> 1`` rounds 2.5 -> 3, ``-5 >> 1``
  rounds -2.5 -> -2).

So a value exactly halfway rounds differently in the two places: 2.5 quantized from float
is 2, 2.5 as ``5 * 2^-1`` requantized is 3. Both are deliberate (torch's float rounding on
the host; one adder and a shift in hardware) and tested (tests/test_numerics.py).
"""
from __future__ import annotations

import math

import torch

from .widths import (ACT_BITS, ACT_MAX, ACT_MIN, M_BITS, S_BITS, S_MAX, WIDE_MAX,  # noqa: F401
                     acc_width)

__all__ = [
    "ACT_BITS", "ACT_MIN", "ACT_MAX", "ABSMEAN_EPS", "M_BITS", "S_BITS", "S_MAX",
    "absmean_ternarize", "check_ternary", "TRIT_DTYPES", "quantize_act", "acc_width", "ternary_matvec",
    "dyadic", "requantize", "sat", "relu", "round_half_up_shift",
]

#: eps of the absmean scale (BitNet b1.58): gamma = mean|W| + eps.
ABSMEAN_EPS = 1e-5


def absmean_ternarize(w: torch.Tensor, eps: float = ABSMEAN_EPS) -> tuple[torch.Tensor, float]:
    """Quantize a weight tensor to trits with the BitNet b1.58 absmean rule.

    ``gamma = mean(|W|) + eps`` over the whole tensor; ``t = clamp(round(W / gamma), -1, 1)``
    with ``torch.round`` (round half to even; ties are measure-zero for real weights).

    Parameters
    ----------
    w : torch.Tensor, float, any shape
    eps : float

    Returns
    -------
    (t, gamma) : (torch.Tensor int8 of w's shape with values in {-1, 0, +1}, float)

    Source: Ma et al. 2024, "The Era of 1-bit LLMs", eq. (1)-(3).
    """
    w = w.detach().to(torch.float32)
    gamma = float(w.abs().mean()) + eps
    t = torch.clamp(torch.round(w / gamma), -1, 1).to(torch.int8)
    return t, gamma


#: The dtypes :func:`check_ternary` reads trits from.
TRIT_DTYPES = (torch.int8, torch.uint8, torch.int16, torch.int32, torch.int64, torch.float16,
               torch.bfloat16, torch.float32, torch.float64)


def check_ternary(t: torch.Tensor, name: str = "tensor") -> torch.Tensor:
    """Return ``t`` as int8 if every element is a trit in {-1, 0, +1}.

    Raises
    ------
    ValueError
        naming the tensor, the first offending value and its index, or its dtype if it is
        not one of :data:`TRIT_DTYPES` (bool, float8, uint16-64 and complex tensors are
        refused: torch does not compare all of them, and none is a trit format).
    """
    if t.dtype not in TRIT_DTYPES:
        raise ValueError(f"{name} has dtype {t.dtype}, which ternac does not read trits from "
                         f"(int8 to int64, uint8, float16, bfloat16, float32 or float64)")
    if t.is_floating_point():
        if not torch.all(torch.isfinite(t)):
            raise ValueError(f"{name} holds NaN or infinite values, so it is not ternary")
        if not torch.all(t == torch.round(t)):
            raise ValueError(f"{name} holds non-integer values, so it is not ternary")
    bad = (t < -1) | (t > 1)
    if bool(bad.any()):
        idx = tuple(int(i) for i in torch.nonzero(bad)[0])
        raise ValueError(f"{name} is not ternary: element {idx} is {t[idx].item()!r}, "
                         f"but trits must be -1, 0 or +1")
    return t.to(torch.int8)


def quantize_act(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Quantize real activations to symmetric int8: ``clamp(round(x / scale), -127, 127)``.

    Parameters
    ----------
    x : torch.Tensor, float, any shape (real units)
    scale : float, real value of one LSB (> 0)

    Returns
    -------
    torch.Tensor, int8, same shape, values in [-127, 127].

    Raises
    ------
    ValueError if ``scale`` is not a positive finite number.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"activation scale must be positive and finite, not {scale!r}")
    q = torch.round(x.to(torch.float64) / scale)
    return torch.clamp(q, ACT_MIN, ACT_MAX).to(torch.int8)


def ternary_matvec(t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Exact integer ternary matrix-vector product ``acc[..., j] = sum_i t[j, i] * x[..., i]``.

    Parameters
    ----------
    t : (N, K) int8 trits
    x : (..., K) integer activations (int8 range)

    Returns
    -------
    (..., N) int64 accumulators; each fits in ``acc_width(K)`` signed bits.
    """
    return torch.matmul(x.to(torch.int64), t.to(torch.int64).T)


def sat(x: torch.Tensor, lo: int = ACT_MIN, hi: int = ACT_MAX) -> torch.Tensor:
    """Saturate (clamp) integers to [lo, hi]; default the int8 activation range [-127, 127]."""
    return torch.clamp(x, lo, hi)


def round_half_up_shift(v: torch.Tensor, s: int) -> torch.Tensor:
    """``(v + 2^(s-1)) >> s`` with an arithmetic shift: divide by 2^s, ties rounded up (+inf).

    For ``s = 0`` it is ``v``. This is the one rounding rule of every right shift in ternac.
    """
    v = v.to(torch.int64)
    if s == 0:
        return v
    return (v + (1 << (s - 1))) >> s


def requantize(acc: torch.Tensor, m: int, s: int, lo: int = ACT_MIN, hi: int = ACT_MAX) -> torch.Tensor:
    """Dyadic requantization: ``y = sat8((acc * m + 2^(s-1)) >> s)``.

    Parameters
    ----------
    acc : integer tensor (signed accumulators, any width up to 40 bits)
    m : int, unsigned multiplier, ``0 <= m < 2**M_BITS`` (16 bits)
    s : int, right shift, ``0 <= s <= S_MAX`` (6 bits)

    Returns
    -------
    int64 tensor, same shape, values in [lo, hi] (default [-127, 127]).

    Rounding is round-half-up: the constant ``2^(s-1)`` is added before an arithmetic right
    shift, so -2.5 -> -2 and 2.5 -> 3. Source: Jacob et al. 2018, sec. 2.2.
    """
    if not (0 <= m < (1 << M_BITS)):
        raise ValueError(f"dyadic multiplier m={m!r} does not fit {M_BITS} unsigned bits")
    if not (0 <= s <= S_MAX):
        raise ValueError(f"dyadic shift s={s!r} is outside [0, {S_MAX}]")
    return sat(round_half_up_shift(acc.to(torch.int64) * m, s), lo, hi)


def dyadic(scale: float, m_bits: int = M_BITS, s_max: int = S_MAX) -> tuple[int, int]:
    """Approximate a positive real multiplier as ``m / 2^s`` with ``m < 2^m_bits``.

    Chooses the largest ``s <= s_max`` for which ``m = round(scale * 2^s)`` still fits in
    ``m_bits`` unsigned bits, which keeps ``m_bits`` significant bits of ``scale``.

    Returns
    -------
    (m, s) : (int, int)

    Raises
    ------
    ValueError if ``scale`` is not positive and finite, or outside what ``m / 2^s`` can
    represent (``scale`` rounds to ``>= 2^m_bits``, or ``scale * 2^s_max`` rounds to 0).
    Relative error < 2^-15 for ``2^(m_bits - 1 - s_max) <= scale < 2^m_bits``; below that
    range ``m`` keeps fewer significant bits.
    """
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"requantization scale must be positive and finite, not {scale!r}")
    if round(scale) >= (1 << m_bits):
        raise ValueError(f"requantization scale {scale!r} does not fit {m_bits} bits")
    s = 0
    while s < s_max and round(scale * (1 << (s + 1))) < (1 << m_bits):
        s += 1
    m = int(round(scale * (1 << s)))
    if m == 0:
        raise ValueError(f"requantization scale {scale!r} is at most 2^-{s_max + 1}, too small "
                         f"to represent as m / 2^s with s <= {s_max}")
    return m, s


def relu(x: torch.Tensor) -> torch.Tensor:
    """Integer ReLU, ``max(x, 0)``; keeps dtype."""
    return torch.clamp(x, min=0)


def matvec_op(trits: torch.Tensor, x: torch.Tensor, m: int, s: int, flags: int) -> torch.Tensor:
    """The MATVEC instruction (golden.isa) on an (N, K) trit matrix and int8 inputs (..., K).

    ``acc = ternary_matvec(trits, x)``; with ``RAW`` the accumulators themselves (int32
    range); else ``requantize(acc, m, s)`` to int8 [-127, 127], or int16 [-32767, 32767]
    with ``WIDE``, then ReLU with ``RELU``. Returns int64 (..., N).
    """
    from .isa import Flag

    acc = ternary_matvec(trits, x)
    if flags & Flag.RAW:
        return acc
    hi = WIDE_MAX if flags & Flag.WIDE else ACT_MAX
    y = requantize(acc, m, s, -hi, hi)
    return relu(y) if flags & Flag.RELU else y
