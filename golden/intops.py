"""Integer-only nonlinear units: Shiftmax, sigmoid, SiLU, ShiftGELU, LayerNorm, RMSNorm.

The bit-exact specification of ternac's vector units. Every function takes integer
tensors (any integer dtype, computed in int64) and returns int64 tensors; floats appear
only in the offline computation of constants (dyadic multipliers, integer affine weights),
never in the integer path. Each unit has a float counterpart (``*_float``) that the bench
(:mod:`ternac.bench_numerics`) and the tests compare it with. Every rule of rounding,
saturation and requantization comes from :mod:`golden.numerics`.

Source: Z. Li and Q. Gu, "I-ViT: Integer-only Quantization for Efficient Vision
Transformer Inference", ICCV 2023 (arXiv:2207.01405): the Shiftmax, ShiftGELU and
I-LayerNorm sections, and the released code (github zkkli/I-ViT,
``models/quantization_utils/quant_modules.py``: ``IntSoftmax``, ``IntGELU``,
``IntLayerNorm``). The ``ivit_*`` functions at the end of this module mirror that code so
the bench can measure its pitfalls next to ours; nothing else uses them.

The shift-exp core (all units but the norms)
--------------------------------------------
``e^-v = 2^(-v log2 e)``; one dyadic multiply puts ``u = v log2 e`` in fixed point (log2 e
folded into the gain, like the scale), split into an integer part ``q`` and a fraction
``f``; ``2^-q`` is a right shift and ``2^-f ~ 1 - f (1/2 + b (1 - f))`` with b = 11/64: a
second-order term on the paper's chord ``1 - f/2`` (one multiply, ``r * S`` below; exact at
f = 0 and f = 1, so monotone across the powers of two). The result is within 0.30 % of
2^-f (the chord: 6.15 %) times the argument's rounding (2^(+-0.0006)), plus half an LSB.

Deviations from the paper (each measured by the bench, see docs/numerics.md)
----------------------------------------------------------------------------
1. Argument scaling: the paper divides the integer argument by ``x0 = floor(-1/S)`` (a
   per-element division by a non-power of two, and ``floor`` costs up to 1/|x0| of the
   exponent) and multiplies by log2 e ~ 1.4375 with shift-adds (0.36 % short of the
   exponent: 3 % at 8 nats). Here one dyadic multiply ``a * m >> s`` (``m/2^s = S * alpha *
   log2(e) * 2^F``, one DSP) puts the argument in powers of two with F = 10 fraction bits;
   the ShiftGELU constant 1.702 and log2 e are folded into the same ``m``, so they cost
   nothing. 2^-f is a quadratic, not the paper's chord (one more multiply, 20x closer).
2. Every right shift that drops bits rounds half up (:func:`golden.numerics.round_half_up_shift`,
   the one rounding rule of ternac); the paper floors.
3. Shiftmax normalizes before its one division: the reciprocal is
   ``R = round(2^(L + 15) / T)`` with ``L = floor(log2 T)``, so R keeps 15-16 significant
   bits whatever the row sum T (the paper's ``floor((2^31 - 1) / T)`` keeps ~5 bits when T
   is large). The output is unsigned with ``out_bits`` fraction bits (the paper: signed,
   ``out_bits - 1``) and rounded, not floored: 16-bit rows sum to 1 within 1 %.
4. Sigmoid, SiLU and ShiftGELU are elementwise: no row maximum is subtracted (the paper's
   ShiftGELU does, and its clamp at 2^-23 then maps inputs below -(max + ~9.4) to x/2).
   They use ``sigmoid(x) = 1 - sigmoid(-x)`` so the exponential only ever sees ``-|x|``,
   and one exact integer division a element, of a normalized denominator in
   [2^15, 2^16] (a 16-step pipelined or sequential divider).
5. LayerNorm computes ``N^2 var = N sum x^2 - (sum x)^2`` and ``N (x - mean) = N x - sum x``
   exactly (no rounded mean: a rounded integer mean is off by up to 0.5 LSB, which is a
   large error when the standard deviation is a few LSB), sizes every sum for 4096 int16
   elements, takes an exact digit-by-digit square root of the variance normalized to 32
   bits (16 significant result bits; the paper's 10 Newton steps from 2^16 give 64 for a
   variance of 100), one normalized division, and returns the affine bias alone for a
   zero variance (no division by zero). The normalized value keeps G fraction bits from
   the output width (:func:`norm_frac_bits`: 8 for int8, 16 for int16 outputs). RMSNorm is
   the same datapath with the mean forced to 0.

Widths
------
:data:`OPS` lists, for each unit, the width in bits of every intermediate (RTL sizes its
registers from it); the named constants below are the parameters those widths follow
from. Tests assert that every intermediate fits its declared width.
"""
from __future__ import annotations

import dataclasses
import math
from typing import NamedTuple

import torch

from . import numerics

__all__ = [
    # parameters
    "EXP_ARG_FRAC_BITS", "EXP_ARG_FP_MAX", "EXP_FRAC_BITS", "EXP_Q_CLAMP", "EXP_QUAD_C",
    "EXP_QUAD_FRAC_BITS", "EXP_IN_BITS", "SIG_FRAC_BITS", "GELU_ALPHA", "SM_N_MAX",
    "SM_RECIP_FRAC_BITS", "SM_OUT_BITS_MAX", "shiftmax_min_out_bits", "NORM_N_MAX",
    "NORM_IN_MAX", "NORM_ISQRT_BITS", "NORM_RECIP_NUM_BITS", "NORM_Y_FRAC_BITS_MIN",
    "NORM_Y_FRAC_BITS_MAX", "NORM_Y_PRE_SHIFT", "norm_frac_bits", "NORM_WEIGHT_BITS",
    "NORM_BIAS_BITS", "NORM_EPS_MAX", "OPS", "Width",
    # units
    "exp_gain", "shift_exp", "shift_exp_float",
    "shiftmax", "shiftmax_q", "shiftmax_float", "sigmoid_q", "gated_q",
    "int_sigmoid", "sigmoid_float", "int_silu", "silu_float", "shift_gelu", "gelu_float",
    "act_out_multiplier",
    "isqrt", "int_layernorm", "int_rmsnorm", "layernorm_float", "rmsnorm_float",
    "NormParams", "norm_params",
    # the I-ViT released code, for comparison only
    "ivit_shiftmax", "ivit_shift_gelu", "ivit_gelu_sigmoid", "ivit_isqrt", "ivit_layernorm",
]

# ---------------------------------------------------------------------------------------
# Parameters (every width in OPS follows from these)
# ---------------------------------------------------------------------------------------

# Defined once, torch-free, in golden/widths.py (hw/ sizes its units from the same numbers).
from .widths import (EXP_ARG_FRAC_BITS, EXP_ARG_FP_MAX, EXP_FRAC_BITS,  # noqa: E402
                     EXP_Q_CLAMP, EXP_QUAD_C, EXP_QUAD_FRAC_BITS, EXP_IN_BITS, SIG_FRAC_BITS,
                     GELU_ALPHA, SM_N_MAX, SM_RECIP_FRAC_BITS, SM_OUT_BITS_MAX,
                     shiftmax_min_out_bits, NORM_N_MAX, NORM_IN_MAX, NORM_ISQRT_BITS,
                     NORM_RECIP_NUM_BITS, NORM_Y_FRAC_BITS_MIN, NORM_Y_FRAC_BITS_MAX,
                     NORM_Y_PRE_SHIFT, norm_frac_bits, NORM_WEIGHT_BITS, NORM_BIAS_BITS,
                     NORM_EPS_MAX)

_LOG2E = math.log2(math.e)
_SM_SUM_BITS = 28  # T <= 4096 * 2^15 = 2^27
_SM_L_MAX = _SM_SUM_BITS - 1
_SM_SHIFT_MAX = _SM_L_MAX + SM_RECIP_FRAC_BITS - 1  # L + P - out_bits <= 41
_NORM_K_MAX = NORM_ISQRT_BITS - 1  # V' = 1 -> k = 15
_NORM_T_MAX = 12  # V' < 2^55 -> k >= -12
# y = rhu((d' R) << Z, 30 + Z - G - max(k, 0)): the shift lies in [0, 30 + Z - 8] = [0, 23]
_NORM_Y_SHIFT_MAX = NORM_RECIP_NUM_BITS + NORM_Y_PRE_SHIFT - NORM_Y_FRAC_BITS_MIN
_NORM_Y_BITS = NORM_Y_FRAC_BITS_MAX + 8  # |y| <= 64 2^G (1 + 2^-14): 24 bits signed at G = 16
_EXP_M_BITS = EXP_FRAC_BITS + EXP_QUAD_FRAC_BITS + 1  # M in (2^25, 2^26]: 27 bits
_EXP_S_MAX = (1 << (EXP_FRAC_BITS - EXP_ARG_FRAC_BITS - 1 + EXP_QUAD_FRAC_BITS)) \
    + EXP_QUAD_C * ((1 << EXP_ARG_FRAC_BITS) - 1)  # S <= 2^15 + 11 * 1023 = 44021

class Width(NamedTuple):
    """Width of one intermediate: ``bits``, ``signed``, and what it holds."""
    bits: int
    signed: bool
    what: str


def _u(bits: int, what: str) -> Width:
    return Width(bits, False, what)


def _s(bits: int, what: str) -> Width:
    return Width(bits, True, what)


#: Width of every intermediate of every unit, keyed by the names the functions' ``trace``
#: dicts use (the tests assert every traced value fits). RTL sizes its registers from it.
#: Streaming units do one element a cycle a pass; the divider and the square root run once
#: a vector (once an element for the sigmoid family). Widths are for the widest inputs
#: (int16, N = 4096); int8 inputs need fewer bits where noted.
OPS: dict[str, dict[str, Width]] = {
    "shift_exp": {
        "a": _u(EXP_IN_BITS, "argument a >= 0 (abs(x) or max - x)"),
        "a*m": _u(32, "a times the 16-bit gain m (S * alpha * log2(e) * 2^10 = m / 2^s)"),
        "u": _u(15, "min(rhu(a*m, s), 2^15 - 1): the argument in powers of two, 10 fraction "
                    "bits"),
        "q": _u(5, "min(u >> 10, 17): the power-of-two shift"),
        "r": _u(10, "u & 1023: the fraction f = r / 2^10"),
        "S": _u(_EXP_S_MAX.bit_length(), "2^15 + 11 (1023 - r): the slope, in [2^15, 44021]"),
        "r*S": _u(26, "r * S, the one multiply of the mantissa"),
        "M": _u(_EXP_M_BITS, "2^26 - r*S = 2^26 (1 - f (1/2 + (11/64)(1 - f))) ~ 2^26 2^-f, "
                             "in (2^25, 2^26]"),
        "e": _u(16, "rhu(M, q + 11) ~ 2^15 exp(-a S alpha), in [0, 2^15]"),
    },
    "shiftmax": {
        "x": _s(16, "logits (int8 normally: 8 bits)"),
        "a": _u(16, "max - x (int8 logits: 8 bits)"),
        "e": _u(16, "shift_exp(a), in [0, 2^15]"),
        "T": _u(_SM_SUM_BITS, "sum of e over N <= 4096, in [2^15, 2^27]"),
        "L": _u(5, "floor(log2 T), in [15, 27]"),
        "num": _u(43, "2^(L+15) + (T >> 1): the dividend"),
        "R": _u(16, "num // T, in [2^14, 2^15] (16 quotient bits)"),
        "eR": _u(31, "e * R"),
        "p": _u(SM_OUT_BITS_MAX, "min(rhu(eR, L + 15 - out_bits), 2^out_bits - 1)"),
    },
    "sigmoid": {
        "a": _u(16, "abs(x) (int8: 7 bits)"),
        "e": _u(16, "shift_exp(abs(x)), in [0, 2^15]"),
        "d": _u(17, "2^15 + e, in [2^15, 2^16]: the divisor"),
        "num": _u(31, "2^30 + (d >> 1): the dividend"),
        "sig_pos": _u(16, "num // d = sigmoid(abs(x)), in [2^14, 2^15] (16 quotient bits)"),
        "sig": _u(16, "sig_pos, or 2^15 - sig_pos for x < 0, in [0, 2^15]"),
    },
    "silu_gelu": {
        "prod": _s(31, "x * sig, scale S * 2^-15 (int8 x: 23 bits)"),
        "prod*m": _s(47, "product inside requantize (int8 x: 39 bits)"),
        "out": _s(8, "requantized output (out_bits, default 8)"),
    },
    "norm": {
        "S1": _s(28, "sum x (0 for RMSNorm)"),
        "S2": _u(42, "sum x^2"),
        "N*S2": _u(54, "N * S2"),
        "S1^2": _u(54, "S1 * S1"),
        "V": _u(55, "N*S2 - S1^2 + eps = N^2 (var + eps/N^2)"),
        "k": _s(5, "(32 - bitlen(V)) >> 1, in [-12, 15]"),
        "Vn": _u(32, "V << 2k, or V >> -2k (floor), in [2^30, 2^32)"),
        "r": _u(NORM_ISQRT_BITS, "isqrt(Vn), in [2^15, 2^16) (16 steps)"),
        "num": _u(31, "2^30 + (r >> 1): the dividend"),
        "R": _u(16, "num // r, in (2^14, 2^15] (16 quotient bits)"),
        "d": _s(29, "N*x - S1 = N (x - mean)"),
        "d'": _s(23, "rhu(d, max(-k, 0))"),
        "d'*R": _s(38, "d' * R"),
        "G": _u(5, "norm_frac_bits(out_bits): 8 for int8 outputs, 16 for int16"),
        "y": _s(_NORM_Y_BITS, "rhu((d'*R) << 1, 31 - G - max(k, 0)) ~ 2^G (x - mean)/std, "
                              "abs(y) <= 2^(G+6) (1 + 2^-14) (int8 outputs: 16 bits)"),
        "acc": _s(_NORM_Y_BITS + NORM_WEIGHT_BITS - 1,
                  "weight * y + bias (int8 outputs: 33 bits)"),
        "acc*m": _s(_NORM_Y_BITS + NORM_WEIGHT_BITS - 1 + 16,
                    "product inside requantize (int8 outputs: 49 bits)"),
        "out": _s(16, "requantized output (out_bits: 8 or 16)"),
    },
}


# ---------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------

def _int64(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        x = torch.as_tensor(x)
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise ValueError(f"{name} must be an integer tensor, not {x.dtype}")
    return x.to(torch.int64)


def _check_range(x: torch.Tensor, lo: int, hi: int, name: str) -> None:
    if x.numel() and (int(x.min()) < lo or int(x.max()) > hi):
        raise ValueError(f"{name} must lie in [{lo}, {hi}], but holds values in "
                         f"[{int(x.min())}, {int(x.max())}]")


def _check_scale(scale: float, name: str = "scale") -> float:
    scale = float(scale)
    if not (scale > 0 and math.isfinite(scale)):
        raise ValueError(f"{name} must be positive and finite, not {scale!r}")
    return scale


def _rhu_var(v: torch.Tensor, s: torch.Tensor, s_max: int) -> torch.Tensor:
    """``numerics.round_half_up_shift`` by a per-element (tensor) shift ``0 <= s <= s_max``.

    Written through the one rule as ``rhu(v << (s_max - s), s_max)``, which equals
    ``(v + 2^(s-1)) >> s`` for s >= 1 and ``v`` for s = 0. Callers keep
    ``|v| * 2^s_max < 2^62``.
    """
    return numerics.round_half_up_shift(v << (s_max - s), s_max)


def _bit_length(v: torch.Tensor, bits: int = 63) -> torch.Tensor:
    """Bit length of non-negative int64 values (0 for 0): a priority encoder."""
    n = torch.zeros_like(v)
    for i in range(bits):
        n += (v >> i) > 0
    return n


def _fits(v: torch.Tensor, bits: int, signed: bool) -> bool:
    if v.numel() == 0:
        return True
    lo = -(1 << (bits - 1)) if signed else 0
    hi = (1 << (bits - 1)) - 1 if signed else (1 << bits) - 1
    return lo <= int(v.min()) and int(v.max()) <= hi


# ---------------------------------------------------------------------------------------
# The shift-exp core
# ---------------------------------------------------------------------------------------

def exp_gain(scale: float, alpha: float = 1.0) -> tuple[int, int]:
    """Offline constant of the shift-exp core: the dyadic ``(m, s)`` of ``S alpha log2(e) 2^F``.

    ``u = rhu(a * m, s)`` is the exp argument ``a * S * alpha`` (nats) times log2 e, i.e. in
    powers of two, in fixed point with F = :data:`EXP_ARG_FRAC_BITS` = 10 fraction bits.
    ``m`` is 16 bits unsigned, ``s`` 6 bits (``numerics.dyadic``: relative error < 2^-15).
    If ``S * alpha * log2(e) * 2^F >= EXP_ARG_FP_MAX`` (every ``a >= 1`` lies beyond the
    argument clamp, 32 powers of two), ``(2^16 - 1, 0)`` is returned, which gives the same
    integers.

    Parameters
    ----------
    scale : float, real value of one input LSB (> 0)
    alpha : float, constant folded into the multiplier (1.702 for ShiftGELU)

    Raises
    ------
    ValueError if ``scale * alpha`` is not positive and finite, or too small for a dyadic
    (below about 2^-75).
    """
    g = _check_scale(scale) * _check_scale(alpha, "alpha") * _LOG2E * (1 << EXP_ARG_FRAC_BITS)
    if g >= EXP_ARG_FP_MAX:
        return (1 << numerics.M_BITS) - 1, 0
    return numerics.dyadic(g)


def shift_exp(a: torch.Tensor, m: int, s: int, *, trace: dict | None = None) -> torch.Tensor:
    """Shift-exp core: ``e ~ 2^15 * 2^-(a * m / 2^(s + 10))`` for integer ``a >= 0``.

    With ``(m, s) = exp_gain(S, alpha)`` that is ``2^15 exp(-a S alpha)``. Elementwise, one
    element a cycle, two multipliers (the dyadic gain and the mantissa's ``r * S``):

    1. ``u = min(rhu(a * m, s), 2^15 - 1)``: the argument in powers of two (log2 e is in
       ``m``), 10 fraction bits;
    2. ``q = min(u >> 10, 17)``, ``r = u & 1023``: ``u / 2^10 = q + f``, ``f = r / 2^10``;
    3. ``S = 2^15 + 11 (1023 - r)``, ``M = 2^26 - r * S``: ``2^-f ~ 1 - f (1/2 + b (1 - f))``,
       b = 11/64, with 26 fraction bits, in (2^25, 2^26] (``1023 - r`` is the bitwise
       complement of r: no carry);
    4. ``e = rhu(M, q + 11)``: ``2^-q`` and the 11 extra fraction bits in one rounding shift.

    (``rhu`` = :func:`golden.numerics.round_half_up_shift`.) Widths: ``OPS["shift_exp"]``;
    ``a`` 16 bits unsigned, ``a*m`` 32, ``u`` 15, ``q`` 5, ``r`` 10, ``S`` 16, ``r*S`` 26,
    ``M`` 27, ``e`` 16 bits unsigned.

    Parameters
    ----------
    a : integer tensor, any shape, values in [0, 2^16 - 1]
    m, s : the dyadic gain from :func:`exp_gain`
    trace : optional dict; if given, receives the intermediates by the names above

    Returns
    -------
    int64 tensor, same shape, values in [0, 2^15]; ``e(0) = 2^15``; non-increasing in ``a``
    (M falls with r, and M(1023) > 2^25 = M(0) / 2). Accuracy (tested): with
    ``v = a S alpha``, ``ref = 2^15 exp(-v)`` and ``c = 2^(2^-11 + v log2(e) 2^-15)``,
    ``ref / c * (1 - 0.00301) - 1/2 <= e <= ref * c * (1 + 0.00232) + 1/2`` (the
    quadratic: -0.301 % .. +0.232 % of 2^-f; the rounding of u: half an LSB of 2^-10; m:
    2^-15 of the exponent); e = 0 once v >= 11.1 (2^15 e^-v < 1/2).
    Source: I-ViT, Shiftmax section (ShiftExp); deviations 1 and 2 of the module docstring.

    Raises
    ------
    ValueError if ``a`` is not an integer tensor in range or ``m``/``s`` do not fit.
    """
    a = _int64(a, "shift_exp argument a")
    _check_range(a, 0, (1 << EXP_IN_BITS) - 1, "shift_exp argument a")
    if not (0 <= m < (1 << numerics.M_BITS) and 0 <= s <= numerics.S_MAX):
        raise ValueError(f"exp gain (m={m!r}, s={s!r}) does not fit {numerics.M_BITS}-bit m "
                         f"and s in [0, {numerics.S_MAX}]")
    F, K, P, C = EXP_ARG_FRAC_BITS, EXP_FRAC_BITS, EXP_QUAD_FRAC_BITS, EXP_QUAD_C
    prod = a * m
    u = torch.clamp(numerics.round_half_up_shift(prod, s), max=EXP_ARG_FP_MAX)
    q = torch.clamp(u >> F, max=EXP_Q_CLAMP)
    r = u & ((1 << F) - 1)
    slope = (1 << (K - F - 1 + P)) + C * (((1 << F) - 1) - r)
    rs = r * slope
    mant = (1 << (K + P)) - rs
    e = _rhu_var(mant, q + P, EXP_Q_CLAMP + P)
    if trace is not None:
        trace.update({"a": a, "a*m": prod, "u": u, "q": q, "r": r, "S": slope, "r*S": rs,
                      "M": mant, "e": e})
    return e


def shift_exp_float(a: torch.Tensor, scale: float, alpha: float = 1.0) -> torch.Tensor:
    """Float counterpart of :func:`shift_exp`: ``exp(-a * scale * alpha)`` (float64)."""
    return torch.exp(-a.to(torch.float64) * (float(scale) * float(alpha)))


# ---------------------------------------------------------------------------------------
# Shiftmax
# ---------------------------------------------------------------------------------------

def shiftmax(x: torch.Tensor, scale: float, out_bits: int = 16, dim: int = -1, *,
             trace: dict | None = None) -> torch.Tensor:
    """Integer softmax (Shiftmax): unsigned probabilities with ``out_bits`` fraction bits.

    For each row ``x`` of N <= 4096 logits (real value ``x * scale``):

    1. pass 1: ``mx = max x``;
    2. pass 2: ``e_i = shift_exp(mx - x_i)`` (16 bits unsigned, ``e = 2^15`` at the max),
       ``T = sum e_i`` (28 bits unsigned, ``T >= 2^15``, so never 0);
    3. once a row: ``L = floor(log2 T)`` (priority encoder), and the one division
       ``R = (2^(L+15) + (T >> 1)) // T`` (round half up; ``R`` in [2^14, 2^15], 16 bits
       unsigned, 16 quotient bits whatever T: the normalization before the division);
    4. pass 3: ``p_i = min(rhu(e_i * R, L + 15 - out_bits), 2^out_bits - 1)`` (``e_i * R``
       31 bits; ``e_i`` recomputed from ``x_i`` or read back).

    ``p / 2^out_bits ~ softmax(x * scale)``. Widths: ``OPS["shiftmax"]``.

    Parameters
    ----------
    x : integer tensor, any shape, int8 logits (int16 accepted: |x| <= 32767)
    scale : float, real value of one logit LSB (> 0)
    out_bits : int, 1..16; output scale 2^-out_bits (16 for attention, 8 for a byte)
    dim : the softmax axis (length 1..4096)
    trace : optional dict; receives the intermediates named in ``OPS["shiftmax"]`` (row
        quantities keep a trailing axis of 1, the softmax axis is last)

    Returns
    -------
    int64 tensor, same shape, values in [0, 2^out_bits - 1]. At 16 bits the rows sum to
    2^16 within 1 % for N <= 1024 (each element is within 1/2 LSB of ``e_i * 2^16 / T``).
    Below :func:`shiftmax_min_out_bits` (N) bits (8 bits: N > 512) a constant row rounds
    to all zeros: every probability is below half an LSB (the compiler refuses those).

    Source: I-ViT, Shiftmax section; deviations 1-3 of the module docstring.

    Raises
    ------
    ValueError for a non-integer tensor, logits beyond int16, a row longer than 4096,
    an ``out_bits`` outside 1..16 or a bad scale.
    """
    if not (isinstance(out_bits, int) and 1 <= out_bits <= SM_OUT_BITS_MAX):
        raise ValueError(f"shiftmax out_bits must be an integer in 1..{SM_OUT_BITS_MAX}, "
                         f"not {out_bits!r}")
    x = _int64(x, "shiftmax logits")
    _check_range(x, -NORM_IN_MAX, NORM_IN_MAX, "shiftmax logits")
    xm = x.movedim(dim, -1)
    n = xm.shape[-1]
    if not 1 <= n <= SM_N_MAX:
        raise ValueError(f"shiftmax rows must have 1..{SM_N_MAX} elements, not {n}")
    m, s = exp_gain(scale)
    return shiftmax_q(x, m, s, out_bits, dim, trace=trace)


def shiftmax_q(x: torch.Tensor, m: int, s: int, out_bits: int = 16, dim: int = -1, *,
               trace: dict | None = None) -> torch.Tensor:
    """:func:`shiftmax` with the exp gain given as integers ``(m, s) = exp_gain(scale)``.

    This is the form the accelerator executes (the instruction carries ``m`` and ``s``);
    :func:`shiftmax` computes the gain offline and calls it. Same widths and result.
    """
    x = _int64(x, "shiftmax logits")
    xm = x.movedim(dim, -1)
    P = SM_RECIP_FRAC_BITS
    mx = xm.amax(-1, keepdim=True)
    a = mx - xm
    e = shift_exp(a, m, s)
    T = e.sum(-1, keepdim=True)
    L = _bit_length(T, _SM_SUM_BITS) - 1
    num = (torch.ones_like(T) << (L + P)) + (T >> 1)
    R = torch.div(num, T, rounding_mode="floor")
    eR = e * R
    p = torch.clamp(_rhu_var(eR, L + P - out_bits, _SM_SHIFT_MAX), max=(1 << out_bits) - 1)
    if trace is not None:
        trace.update({"x": xm, "a": a, "e": e, "T": T, "L": L, "num": num, "R": R, "eR": eR,
                      "p": p})
    return p.movedim(-1, dim)


def shiftmax_float(x: torch.Tensor, scale: float, dim: int = -1) -> torch.Tensor:
    """Float counterpart of :func:`shiftmax`: ``softmax(x * scale)`` in float64."""
    return torch.softmax(x.to(torch.float64) * float(scale), dim=dim)


# ---------------------------------------------------------------------------------------
# Sigmoid, SiLU, ShiftGELU (elementwise)
# ---------------------------------------------------------------------------------------

def _sigmoid_core(x: torch.Tensor, m: int, s: int, trace: dict | None) -> torch.Tensor:
    K, B = EXP_FRAC_BITS, SIG_FRAC_BITS
    a = x.abs()
    e = shift_exp(a, m, s)
    d = (1 << K) + e
    num = (1 << (B + K)) + (d >> 1)
    sp = torch.div(num, d, rounding_mode="floor")
    sig = torch.where(x >= 0, sp, (1 << B) - sp)
    if trace is not None:
        trace.update({"a": a, "e": e, "d": d, "num": num, "sig_pos": sp, "sig": sig})
    return sig


def _check_act(x: torch.Tensor, name: str) -> torch.Tensor:
    x = _int64(x, name)
    _check_range(x, -NORM_IN_MAX, NORM_IN_MAX, name)
    return x


def int_sigmoid(x: torch.Tensor, scale: float, *, trace: dict | None = None) -> torch.Tensor:
    """Integer sigmoid, elementwise: ``sig ~ 2^15 * sigmoid(x * scale)``.

    1. ``a = |x|``; ``e = shift_exp(a, exp_gain(scale))`` ~ ``2^15 e^-|x S|`` (16 bits u);
    2. ``d = 2^15 + e`` in [2^15, 2^16] (17 bits u);
    3. ``sig+ = (2^30 + (d >> 1)) // d`` = ``round(2^15 / (1 + e^-|x S|))`` in
       [2^14, 2^15] (one exact division an element: 31-bit by 17-bit, 16 quotient bits);
    4. ``sig = sig+`` for ``x >= 0``, ``2^15 - sig+`` for ``x < 0``
       (``sigmoid(x) = 1 - sigmoid(-x)``: the exponential only sees ``-|x|``).

    Depends on its own element only. ``sig(x) + sig(-x) = 2^15`` exactly; ``sig(0) = 2^14``.

    Parameters
    ----------
    x : integer tensor, any shape, int8 (int16 accepted: |x| <= 32767)
    scale : float, real value of one input LSB (> 0)
    trace : optional dict; receives the intermediates named in ``OPS["sigmoid"]``

    Returns
    -------
    int64 tensor, same shape, values in [0, 2^15] (scale 2^-15, 16 bits unsigned).
    Max abs error against ``sigmoid(x * scale)``: about 0.015 (target 0.05 + 1 LSB).

    Source: the sigmoid inside I-ViT's ShiftGELU section; deviations 1, 2, 4.

    Raises
    ------
    ValueError for a non-integer tensor, values beyond int16 or a bad scale.
    """
    x = _check_act(x, "int_sigmoid input")
    m, s = exp_gain(scale)
    return _sigmoid_core(x, m, s, trace)



def sigmoid_q(x: torch.Tensor, m: int, s: int) -> torch.Tensor:
    """:func:`int_sigmoid` with the exp gain given as integers ``(m, s) = exp_gain(scale)``
    (the accelerator's form): ``[0, 2^15]``, 16 bits unsigned."""
    return _sigmoid_core(_check_act(x, "sigmoid_q input"), m, s, None)


def gated_q(x: torch.Tensor, m: int, s: int, mo: int, so: int, out_bits: int = 8) -> torch.Tensor:
    """:func:`int_silu` / :func:`shift_gelu` with integer constants (the accelerator's form):
    ``requantize(x * sigmoid_q(x, m, s), mo, so)`` saturated to the symmetric ``out_bits``
    range. ``(m, s) = exp_gain(S, alpha)`` (alpha 1 for SiLU, 1.702 for GELU),
    ``(mo, so) = act_out_multiplier(S, out_scale)``."""
    x = _check_act(x, "gated_q input")
    hi = (1 << (out_bits - 1)) - 1
    return numerics.requantize(x * _sigmoid_core(x, m, s, None), mo, so, -hi, hi)

def sigmoid_float(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Float counterpart of :func:`int_sigmoid`: ``sigmoid(x * scale)`` (float64, in [0, 1])."""
    return torch.sigmoid(x.to(torch.float64) * float(scale))


def act_out_multiplier(scale: float, out_scale: float) -> tuple[int, int]:
    """Offline dyadic ``(m, s)`` that requantizes ``x * sig`` (scale ``S * 2^-15``) to ``out_scale``.

    ``numerics.dyadic(scale * 2^-15 / out_scale)``. Raises ``ValueError`` as ``dyadic`` does.
    """
    return numerics.dyadic(_check_scale(scale) * 2.0 ** -SIG_FRAC_BITS
                           / _check_scale(out_scale, "out_scale"))


def _gated(x: torch.Tensor, scale: float, alpha: float, out_scale: float | None, out_bits: int,
           name: str, trace: dict | None) -> torch.Tensor:
    x = _check_act(x, f"{name} input")
    if not (isinstance(out_bits, int) and 2 <= out_bits <= 32):
        raise ValueError(f"{name} out_bits must be an integer in 2..32, not {out_bits!r}")
    m, s = exp_gain(scale, alpha)
    sig = _sigmoid_core(x, m, s, trace)
    prod = x * sig
    if trace is not None:
        trace["prod"] = prod
    if out_scale is None:
        return prod
    mo, so = act_out_multiplier(scale, out_scale)
    hi = (1 << (out_bits - 1)) - 1
    out = numerics.requantize(prod, mo, so, -hi, hi)
    if trace is not None:
        trace.update({"prod*m": prod * mo, "out": out})
    return out


def int_silu(x: torch.Tensor, scale: float, out_scale: float | None = None, out_bits: int = 8,
             *, trace: dict | None = None) -> torch.Tensor:
    """Integer SiLU, elementwise: ``x * sigmoid(x * S)`` on the :func:`int_sigmoid` datapath.

    ``prod = x * sig`` with ``sig`` from :func:`int_sigmoid` (product 23 bits signed for
    int8 ``x``, 31 for int16), real value ``prod * S * 2^-15``. With ``out_scale``,
    ``out = numerics.requantize(prod, *act_out_multiplier(S, out_scale))`` saturated to the
    symmetric ``out_bits`` range (product by m: 39 bits for int8 ``x``, 47 for int16).
    Widths: ``OPS["sigmoid"]`` and ``OPS["silu_gelu"]``, the names of ``trace``.

    Parameters
    ----------
    x : integer tensor, any shape, int8 (int16 accepted)
    scale : float, real value of one input LSB
    out_scale : float or None; None returns ``prod`` (scale ``S * 2^-15``)
    out_bits : int, width of the requantized output (symmetric, default int8 [-127, 127])
    trace : optional dict; receives the intermediates named in ``OPS["sigmoid"]`` and
        ``OPS["silu_gelu"]``

    Returns
    -------
    int64 tensor, same shape. Target (tested): max abs error against
    ``x S * sigmoid(x S)`` <= 0.05 + 1 output LSB for |x S| <= 8, <= 1 % of |x S| + 1 LSB
    beyond.

    Source: SiLU = x sigmoid(x) (Elfwing et al. 2018) on the ShiftGELU datapath of I-ViT.

    Raises
    ------
    ValueError for a non-integer tensor, values beyond int16, or bad scales / out_bits.
    """
    return _gated(x, scale, 1.0, out_scale, out_bits, "int_silu", trace)


def silu_float(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Float counterpart of :func:`int_silu`: ``v * sigmoid(v)``, ``v = x * scale`` (float64)."""
    v = x.to(torch.float64) * float(scale)
    return v * torch.sigmoid(v)


def shift_gelu(x: torch.Tensor, scale: float, out_scale: float | None = None, out_bits: int = 8,
               *, trace: dict | None = None) -> torch.Tensor:
    """ShiftGELU, elementwise: ``x * sigmoid(1.702 x S)``, 1.702 folded into the exp gain.

    Identical to :func:`int_silu` but the exp gain is ``exp_gain(S, 1.702)``: the dyadic
    ``m / 2^s`` of ``S * 1.702 * 2^10`` (16-bit m), so the constant costs nothing.
    Widths, output and parameters as :func:`int_silu`.

    Returns
    -------
    int64 tensor. Target (tested): max abs error against ``v * sigmoid(1.702 v)`` (``v = x
    S``) <= 0.05 + 1 output LSB for |v| <= 8, <= 1 % |v| + 1 LSB beyond; the sigmoid form
    itself differs from the erf GELU by up to 0.02 (the bench reports both).

    Source: I-ViT, ShiftGELU section; deviations 1, 2, 4 (no row maximum).

    Raises
    ------
    ValueError as :func:`int_silu`.
    """
    return _gated(x, scale, GELU_ALPHA, out_scale, out_bits, "shift_gelu", trace)


def gelu_float(x: torch.Tensor, scale: float) -> torch.Tensor:
    """Float counterpart of :func:`shift_gelu`: ``v * sigmoid(1.702 v)``, ``v = x * scale``."""
    v = x.to(torch.float64) * float(scale)
    return v * torch.sigmoid(GELU_ALPHA * v)


# ---------------------------------------------------------------------------------------
# Integer square root, LayerNorm, RMSNorm
# ---------------------------------------------------------------------------------------

def isqrt(v, bits: int = 62):
    """Exact integer square root ``floor(sqrt(v))``, digit by digit (one result bit a step).

    The binary restoring algorithm: ``bits / 2`` steps, each a compare, a subtract and two
    shifts, on a remainder of ``bits`` bits; no multiplier, exact for every input (no
    initial guess, unlike Newton's iteration).

    Parameters
    ----------
    v : int, or integer tensor of any shape, values in [0, 2^bits)
    bits : int, even, 2..62: the input width (the norms use 32: 16 steps)

    Returns
    -------
    int (for an int) or int64 tensor: ``floor(sqrt(v))``, ``bits / 2`` bits.

    Raises
    ------
    ValueError for negative or too wide inputs, or an odd/out-of-range ``bits``.
    """
    if not (isinstance(bits, int) and 2 <= bits <= 62 and bits % 2 == 0):
        raise ValueError(f"isqrt bits must be an even integer in 2..62, not {bits!r}")
    scalar = isinstance(v, int)
    t = _int64(torch.as_tensor(v) if scalar else v, "isqrt input")
    _check_range(t, 0, (1 << bits) - 1, "isqrt input")
    rem = t.clone()
    res = torch.zeros_like(t)
    one = 1 << (bits - 2)
    while one:
        trial = res + one
        ge = rem >= trial
        rem = torch.where(ge, rem - trial, rem)
        res = torch.where(ge, (res >> 1) + one, res >> 1)
        one >>= 2
    return int(res) if scalar else res


def _norm(x, weight, bias, m, s, eps, out_bits, dim, rms, trace, name):
    x = _int64(x, f"{name} input")
    _check_range(x, -NORM_IN_MAX, NORM_IN_MAX, f"{name} input")
    xm = x.movedim(dim, -1)
    n = xm.shape[-1]
    if not 1 <= n <= NORM_N_MAX:
        raise ValueError(f"{name} vectors must have 1..{NORM_N_MAX} elements, not {n}")
    w = _int64(weight, f"{name} weight")
    b = _int64(bias, f"{name} bias")
    if w.shape != (n,) or b.shape != (n,):
        raise ValueError(f"{name} weight and bias must have shape ({n},), not "
                         f"{tuple(w.shape)} and {tuple(b.shape)}")
    wmax = (1 << (NORM_WEIGHT_BITS - 1)) - 1
    bmax = (1 << (NORM_BIAS_BITS - 1)) - 1
    _check_range(w, -wmax, wmax, f"{name} weight")
    _check_range(b, -bmax, bmax, f"{name} bias")
    if not (isinstance(eps, int) and 0 <= eps <= NORM_EPS_MAX):
        raise ValueError(f"{name} eps must be an integer in [0, 2^54), not {eps!r}")
    if not (isinstance(out_bits, int) and 2 <= out_bits <= 32):
        raise ValueError(f"{name} out_bits must be an integer in 2..32, not {out_bits!r}")

    W, RN, Z = NORM_ISQRT_BITS, NORM_RECIP_NUM_BITS, NORM_Y_PRE_SHIFT
    G = norm_frac_bits(out_bits)
    S1 = torch.zeros_like(xm[..., :1]) if rms else xm.sum(-1, keepdim=True)
    S2 = (xm * xm).sum(-1, keepdim=True)
    V = n * S2 - S1 * S1 + eps
    zero = V == 0
    Vs = torch.where(zero, torch.ones_like(V), V)       # V = 0 only if every d is 0
    bl = _bit_length(Vs, 56)
    k = torch.div(2 * W - bl, 2, rounding_mode="floor")  # in [-12, 15]
    kp, t = k.clamp(min=0), (-k).clamp(min=0)
    Vn = (Vs << (2 * kp)) >> (2 * t)                     # [2^30, 2^32); floor: isqrt commutes
    r = isqrt(Vn, 2 * W)
    num = (1 << RN) + (r >> 1)
    R = torch.div(num, r, rounding_mode="floor")
    d = n * xm - S1
    d1 = _rhu_var(d, t, _NORM_T_MAX)
    dR = d1 * R
    y = _rhu_var(dR << Z, RN + Z - G - kp, _NORM_Y_SHIFT_MAX)
    acc = w * y + b
    hi = (1 << (out_bits - 1)) - 1
    out = numerics.requantize(acc, m, s, -hi, hi)
    if trace is not None:
        trace.update({"S1": S1, "S2": S2, "N*S2": n * S2, "S1^2": S1 * S1, "V": V,
                      "k": k, "Vn": Vn, "r": r, "num": num, "R": R, "d": d, "d'": d1, "d'*R": dR,
                      "G": torch.tensor(G), "y": y, "acc": acc, "acc*m": acc * m, "out": out})
    return out.movedim(-1, dim)


def int_layernorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, m: int, s: int, *,
                  eps: int = 0, out_bits: int = 8, dim: int = -1,
                  trace: dict | None = None) -> torch.Tensor:
    """Integer LayerNorm: ``out = requantize(weight * y + bias, m, s)``, y = (x - mean)/std.

    For each vector ``x`` of N <= 4096 symmetric int16 values (widths ``OPS["norm"]``):

    1. pass 1: ``S1 = sum x`` (28 bits signed), ``S2 = sum x^2`` (42 bits unsigned);
    2. once a vector: ``V = N*S2 - S1^2 + eps`` = ``N^2 (var + eps/N^2)`` exactly (55 bits
       unsigned). If ``V = 0`` every ``d`` below is 0 and ``V`` is taken as 1: the output
       is ``requantize(bias)``, no division by zero;
    3. normalize: ``k = (32 - bitlen(V)) >> 1`` (in [-12, 15]), ``Vn = V << 2k`` or
       ``V >> -2k`` (floor), so ``Vn`` is in [2^30, 2^32);
    4. ``r = isqrt(Vn)`` (exact, 16 steps; ``r`` in [2^15, 2^16)) ~ ``sqrt(V) * 2^k``;
    5. the one division: ``R = (2^30 + (r >> 1)) // r`` in (2^14, 2^15] (16 bits unsigned);
    6. pass 2, per element: ``d = N*x - S1`` (29 bits signed, = N (x - mean) exactly),
       ``d' = rhu(d, max(-k, 0))`` (23 bits signed), ``y = rhu((d' * R) << 1, 31 - G -
       max(k, 0))`` with ``G = norm_frac_bits(out_bits)`` (8 for int8 outputs, 16 for
       int16): ``y ~ 2^G (x - mean) / sqrt(var + eps/N^2)``, |y| <= 64 * 2^G (1 + 2^-14)
       (16 bits signed at G = 8, 24 at G = 16; the ``<< 1`` keeps the shift >= 0 at
       G = 16, k = 15);
    7. ``acc = weight * y + bias`` (33 bits signed at G = 8, 39 at G = 16),
       ``out = numerics.requantize(acc, m, s)`` saturated to the symmetric ``out_bits``
       range.

    Parameters
    ----------
    x : integer tensor, any shape, |x| <= 32767 (int8 activations or int16 residuals)
    weight : (N,) integer, |w| <= 2^15 - 1 (gamma / weight_scale, see :func:`norm_params`)
    bias : (N,) integer, |b| <= 2^31 - 1, at the scale ``weight_scale * 2^-G``
    m, s : dyadic output multiplier ``weight_scale * 2^-G / out_scale`` (16-bit m)
    eps : int, added to ``N^2 var`` (eps / in_scale^2 * N^2, from :func:`norm_params`)
    out_bits : int, output width, symmetric (default int8 [-127, 127]); sets G
        (:func:`norm_frac_bits`), so ``bias``, ``m`` and ``s`` must be made for it
        (``norm_params(..., out_bits=...)``)
    dim : the normalized axis (length 1..4096)
    trace : optional dict; receives the intermediates named in ``OPS["norm"]``

    Returns
    -------
    int64 tensor, same shape as ``x``. Within 1 output LSB of :func:`layernorm_float` on
    the same integers (tested), small variances and outliers included. The normalized
    value is within about ``2^-(G+1) + 2^-14.4 |y|`` of the exact (x - mean)/std.

    Source: I-ViT, I-LayerNorm section; deviations 2 and 5 of the module docstring.

    Raises
    ------
    ValueError for non-integer or out-of-range inputs, weight/bias of the wrong shape or
    width, a bad eps or out_bits.
    """
    return _norm(x, weight, bias, m, s, eps, out_bits, dim, False, trace, "int_layernorm")


def int_rmsnorm(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, m: int, s: int, *,
                eps: int = 0, out_bits: int = 8, dim: int = -1,
                trace: dict | None = None) -> torch.Tensor:
    """Integer RMSNorm: :func:`int_layernorm`'s datapath with ``S1`` forced to 0.

    ``V = N*S2 + eps`` = ``N^2 (mean(x^2) + eps/N^2)``, ``d = N*x``, so
    ``y ~ 2^G x / sqrt(mean(x^2) + eps/N^2)``; everything else, the widths included, is
    as :func:`int_layernorm` (pass 1 only accumulates ``S2``). Pass ``bias`` zeros for the
    usual bias-free RMSNorm. Within 1 output LSB of :func:`rmsnorm_float` (tested).

    Source: Zhang & Sennrich 2019 (RMSNorm) on the I-LayerNorm datapath.
    """
    return _norm(x, weight, bias, m, s, eps, out_bits, dim, True, trace, "int_rmsnorm")


def layernorm_float(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, m: int, s: int,
                    *, eps: int = 0, rms: bool = False, dim: int = -1,
                    out_bits: int = 8) -> torch.Tensor:
    """Float counterpart of :func:`int_layernorm` / :func:`int_rmsnorm` on the same integers.

    ``(weight * 2^G * (x - mean) / sqrt(var + eps/N^2) + bias) * m / 2^s`` in float64 with
    ``G = norm_frac_bits(out_bits)`` (mean 0 and var = mean(x^2) when ``rms``), 0 for the
    normalized value when ``var + eps/N^2 = 0``. Returned unrounded and unsaturated, in
    output LSB.
    """
    xf = x.to(torch.float64).movedim(dim, -1)
    n = xf.shape[-1]
    mean = torch.zeros_like(xf[..., :1]) if rms else xf.mean(-1, keepdim=True)
    var = ((xf - mean) ** 2).mean(-1, keepdim=True) + float(eps) / n ** 2
    y = torch.where(var > 0, (xf - mean) / torch.sqrt(torch.where(var > 0, var, 1.0)), 0.0)
    out = (weight.to(torch.float64) * y * 2.0 ** norm_frac_bits(out_bits)
           + bias.to(torch.float64))
    return (out * (m / 2.0 ** s)).movedim(-1, dim)


def rmsnorm_float(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, m: int, s: int,
                  *, eps: int = 0, dim: int = -1, out_bits: int = 8) -> torch.Tensor:
    """Float counterpart of :func:`int_rmsnorm`: :func:`layernorm_float` with ``rms=True``."""
    return layernorm_float(x, weight, bias, m, s, eps=eps, rms=True, dim=dim, out_bits=out_bits)


@dataclasses.dataclass(frozen=True)
class NormParams:
    """Integer constants of one LayerNorm/RMSNorm (from :func:`norm_params`).

    weight : (N,) int64, |w| <= 2^15 - 1; bias : (N,) int64 at scale weight_scale * 2^-G;
    m, s : dyadic output multiplier; eps : int added to N^2 var; weight_scale : float;
    out_bits : the output width they were made for (G = norm_frac_bits(out_bits)).
    """
    weight: torch.Tensor
    bias: torch.Tensor
    m: int
    s: int
    eps: int
    weight_scale: float
    out_bits: int = 8

    def kwargs(self) -> dict:
        """Keyword arguments of :func:`int_layernorm` / :func:`int_rmsnorm` (``out_bits``
        included: the bias and (m, s) hold only for the G of that width)."""
        return {"weight": self.weight, "bias": self.bias, "m": self.m, "s": self.s,
                "eps": self.eps, "out_bits": self.out_bits}


def norm_params(weight: torch.Tensor, bias: torch.Tensor | None, in_scale: float,
                out_scale: float, eps: float = 1e-5, out_bits: int = 8) -> NormParams:
    """Offline: quantize a float LayerNorm/RMSNorm affine to the integers of the unit.

    With ``G = norm_frac_bits(out_bits)`` (8 for int8 outputs, 16 for int16):
    ``weight_scale = max|gamma| / (2^15 - 1)`` (symmetric absmax, 16 bits),
    ``weight = round(gamma / weight_scale)``, ``bias = round(beta / (weight_scale * 2^-G))``
    (saturated to 32 bits), ``(m, s) = numerics.dyadic(weight_scale * 2^-G / out_scale)``,
    ``eps_int = round(eps / in_scale^2 * N^2)`` (saturated below 2^54).

    Raises
    ------
    ValueError for non-finite values, bad scales or out_bits, or a multiplier ``dyadic``
    cannot hold.
    """
    g = torch.as_tensor(weight, dtype=torch.float64).flatten()
    n = g.numel()
    bt = torch.zeros(n, dtype=torch.float64) if bias is None else \
        torch.as_tensor(bias, dtype=torch.float64).flatten()
    if bt.numel() != n or not (torch.isfinite(g).all() and torch.isfinite(bt).all()):
        raise ValueError(f"norm weight and bias must be finite and of one length, not "
                         f"{n} and {bt.numel()} elements")
    in_scale = _check_scale(in_scale, "in_scale")
    out_scale = _check_scale(out_scale, "out_scale")
    gmax = float(g.abs().max()) if n else 0.0
    ws = gmax / ((1 << (NORM_WEIGHT_BITS - 1)) - 1) if gmax > 0 else 1.0
    w = torch.round(g / ws).to(torch.int64)
    acc_scale = ws * 2.0 ** -norm_frac_bits(out_bits)
    bmax = (1 << (NORM_BIAS_BITS - 1)) - 1
    b = torch.clamp(torch.round(bt / acc_scale), -bmax, bmax).to(torch.int64)
    m, s = numerics.dyadic(acc_scale / out_scale)
    eps_int = min(int(round(float(eps) / in_scale ** 2 * n * n)), NORM_EPS_MAX)
    return NormParams(w, b, m, s, max(eps_int, 0), ws, out_bits)


# ---------------------------------------------------------------------------------------
# The I-ViT released code, mirrored for comparison (float64, as in the reference PyTorch)
# ---------------------------------------------------------------------------------------

def _ivit_exp(x_int: torch.Tensor, scale: float, n: int) -> torch.Tensor:
    x_int = x_int + torch.floor(x_int / 2) - torch.floor(x_int / 2 ** 4)
    x0 = math.floor(-1.0 / scale)
    x_int = torch.maximum(x_int, torch.tensor(n * x0, dtype=torch.float64))
    q = torch.floor(x_int / x0)
    r = x_int - x0 * q
    e = r / 2 - x0
    return torch.clamp(torch.floor(e * 2.0 ** (n - q)), min=0)


def ivit_shiftmax(x: torch.Tensor, scale: float, out_bits: int = 8, dim: int = -1) -> torch.Tensor:
    """The released I-ViT ``IntSoftmax`` (n = 15), returning real probabilities (float64).

    Row max subtracted, ShiftExp with ``x0 = floor(-1/S)``, ``factor = floor((2^31-1)/sum)``,
    ``p = floor(e * factor / 2^(32 - out_bits))`` at scale ``2^-(out_bits - 1)``.
    For comparison only.
    """
    xf = x.to(torch.float64).movedim(dim, -1)
    xf = xf - xf.amax(-1, keepdim=True)
    e = _ivit_exp(xf, float(scale), 15)
    tot = torch.clamp(e.sum(-1, keepdim=True), max=2 ** 31 - 1)
    factor = torch.floor((2 ** 31 - 1) / tot)
    p = torch.floor(e * factor / 2 ** (31 - out_bits + 1))
    return (p * 2.0 ** -(out_bits - 1)).movedim(-1, dim)


def _ivit_gelu_sig(xf: torch.Tensor, scale: float, out_bits: int) -> torch.Tensor:
    s_sig = float(scale) * GELU_ALPHA
    xmax = xf.amax(-1, keepdim=True)
    e = _ivit_exp(xf - xmax, s_sig, 23)
    e_max = _ivit_exp(-xmax, s_sig, 23)
    tot = torch.clamp(e + e_max, max=2 ** 31 - 1)
    factor = torch.floor((2 ** 31 - 1) / tot)
    return torch.floor(e * factor / 2 ** (31 - out_bits + 1))


def ivit_gelu_sigmoid(x: torch.Tensor, scale: float, out_bits: int = 8,
                      dim: int = -1) -> torch.Tensor:
    """The sigmoid inside the released I-ViT ``IntGELU``: ``sigmoid(1.702 x S)`` as a real
    value (float64, scale ``2^-(out_bits - 1)``), row maximum subtracted. For comparison
    only (with :func:`sigmoid_q` at ``exp_gain(S, 1.702)``)."""
    xf = x.to(torch.float64).movedim(dim, -1)
    return (_ivit_gelu_sig(xf, scale, out_bits) * 2.0 ** -(out_bits - 1)).movedim(-1, dim)


def ivit_shift_gelu(x: torch.Tensor, scale: float, out_bits: int = 8, dim: int = -1) -> torch.Tensor:
    """The released I-ViT ``IntGELU`` (n = 23, row max subtracted), real outputs (float64).

    For comparison only: its sigmoid depends on the row maximum.
    """
    xf = x.to(torch.float64).movedim(dim, -1)
    sig = _ivit_gelu_sig(xf, scale, out_bits)
    return (xf * sig * float(scale) * 2.0 ** -(out_bits - 1)).movedim(-1, dim)


def ivit_isqrt(v: torch.Tensor) -> torch.Tensor:
    """The released I-ViT integer square root: 10 floor-Newton steps from 2^16 (float64)."""
    v = v.to(torch.float64)
    k = torch.full_like(v, 2.0 ** 16)
    for _ in range(10):
        k = torch.floor((k + torch.floor(v / k)) / 2)
    return k


def ivit_layernorm(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """The released I-ViT ``IntLayerNorm`` without affine: the normalized values (float64).

    ``mean`` rounded to an integer, ``std = ivit_isqrt(sum (x - mean)^2)``,
    ``y = floor((x - mean) * floor((2^31-1)/std) / 2)`` at scale ``sqrt(N) / 2^30``.
    For comparison only.
    """
    xf = x.to(torch.float64).movedim(dim, -1)
    n = xf.shape[-1]
    mean = torch.round(xf.mean(-1, keepdim=True))
    y = xf - mean
    std = ivit_isqrt((y * y).sum(-1, keepdim=True))
    factor = torch.floor((2 ** 31 - 1) / std)
    yi = torch.floor(y * factor / 2)
    return (yi * math.sqrt(n) / 2 ** 30).movedim(-1, dim)
