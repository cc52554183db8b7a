"""Bit widths and ranges of the numerics contract, free of torch so that hw/ can size its
datapaths from the same numbers (golden.numerics re-exports them with the rules that use
them; the docstrings there give the sources)."""
from __future__ import annotations

import math

__all__ = ["ACT_BITS", "ACT_MAX", "ACT_MIN", "M_BITS", "S_BITS", "S_MAX", "SCRATCH_BITS",
           "WIDE_MAX",
           "acc_width", "SHIFTMAX_OUT_BITS", "DOT_A_MAX", "DOT_B_BITS", "DOT_PROD_BITS",
           "dot_acc_width",
           "EXP_ARG_FRAC_BITS", "EXP_ARG_FP_MAX", "EXP_FRAC_BITS", "EXP_Q_CLAMP",
           "EXP_QUAD_C", "EXP_QUAD_FRAC_BITS", "EXP_IN_BITS", "SIG_FRAC_BITS", "GELU_ALPHA",
           "SM_N_MAX", "SM_RECIP_FRAC_BITS", "SM_OUT_BITS_MAX", "shiftmax_min_out_bits",
           "NORM_N_MAX", "NORM_IN_MAX", "NORM_ISQRT_BITS", "NORM_RECIP_NUM_BITS",
           "NORM_Y_FRAC_BITS_MIN", "NORM_Y_FRAC_BITS_MAX", "NORM_Y_PRE_SHIFT", "norm_frac_bits",
           "NORM_WEIGHT_BITS", "NORM_BIAS_BITS", "NORM_EPS_MAX"]

#: Activations: symmetric int8 in [-127, 127] (-128 never produced, so -x never overflows).
ACT_BITS = 8
ACT_MAX = 127
ACT_MIN = -127
#: Dyadic requantization: m unsigned M_BITS, shift s of S_BITS.
M_BITS = 16
S_BITS = 6
S_MAX = (1 << S_BITS) - 1
#: Bits of a scratchpad word (signed): the interpreter's and the RTL's scratchpad, the
#: operands and results of every vector unit, the host driver's SCRATCH accesses.
SCRATCH_BITS = 16
#: Symmetric int16 saturation of scratch words (residual stream, state, WIDE outputs).
WIDE_MAX = (1 << (SCRATCH_BITS - 1)) - 1
#: The SHIFTMAX instruction writes unsigned Q15 probabilities (they fit a signed word).
SHIFTMAX_OUT_BITS = 15

# --- Integer nonlinear units (golden/intops.py; I-ViT, Li & Gu 2023) ---------------------
#: F: fraction bits of the exp argument in fixed point, in powers of two (log2 e folded
#: into the gain): u = a * S * alpha * log2(e) * 2^F, so e^-(a S alpha) = 2^-(u / 2^F).
EXP_ARG_FRAC_BITS = 10
#: The clamp of u (15 bits unsigned): 32 powers of two, far past the 17 beyond which every
#: result rounds to 0 (2^15 * 2^-17 < 1/2).
EXP_ARG_FP_MAX = (1 << 15) - 1
#: K: fraction bits of the exp output; e^0 = 2^15, so e fits 16 unsigned bits.
EXP_FRAC_BITS = 15
#: The power-of-two shift is clamped to K + 2 = 17, where every mantissa rounds to 0.
EXP_Q_CLAMP = EXP_FRAC_BITS + 2
#: The second-order mantissa 2^-f ~ 1 - f (1/2 + b (1 - f)) (f = r / 2^F): its curvature
#: is b = C * 2^(2F - K - P) = 11/64 (max relative error 0.30 %, the chord's 6.15 %), in
#: fixed point M = 2^(K+P) - r * (2^(K+P-F-1) + C (2^F - 1 - r)) with P extra fraction bits.
EXP_QUAD_C = 11
#: P: fraction bits of the mantissa M beyond K (M in (2^(K+P-1), 2^(K+P)]; 27 bits).
EXP_QUAD_FRAC_BITS = 11
#: Widest exp argument ``a`` (unsigned): |int16| or max - x of int16 logits.
EXP_IN_BITS = 16
#: B: fraction bits of the sigmoid output: sigmoid in [0, 2^15], 16 unsigned bits.
SIG_FRAC_BITS = 15
#: ShiftGELU: GELU(x) ~ x * sigmoid(1.702 x) (Hendrycks & Gimpel 2016); folded into m.
GELU_ALPHA = 1.702
#: Longest Shiftmax row (the ISA's 12-bit length field).
SM_N_MAX = 4096
#: P: the Shiftmax reciprocal R = round(2^(L+P) / T) lies in [2^(P-1), 2^P]: 16 unsigned bits.
SM_RECIP_FRAC_BITS = 15
#: Widest Shiftmax output (unsigned, out_bits fraction bits, saturated at 2^out_bits - 1).
SM_OUT_BITS_MAX = 16


def shiftmax_min_out_bits(n: int) -> int:
    """Fewest Shiftmax output bits for which no row of ``n`` logits comes out all zero.

    The largest probability of a row of ``n`` is at least ``1/n`` (equality for a constant
    row), and ``p = 1/n`` at ``B`` fraction bits rounds (half up) to a non-zero output iff
    ``2^B / n >= 1/2``, i.e. ``n <= 2^(B+1)``. So ``B = max(1, ceil(log2 n) - 1)``: 8 bits
    hold rows of up to 512, 15 (the ISA's SHIFTMAX) rows of up to 65536, so every row of
    up to 4096. Source: golden.intops.shiftmax (``p = rhu(e R, L + 15 - B)``; tested on
    constant rows at the bound and one bit below).

    Raises
    ------
    ValueError if ``n`` < 1.
    """
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"a Shiftmax row must have at least 1 element, not {n!r}")
    return max(1, (n - 1).bit_length() - 1)
#: Longest LayerNorm/RMSNorm vector.
NORM_N_MAX = 4096
#: LayerNorm/RMSNorm inputs are symmetric int16: |x| <= 32767.
NORM_IN_MAX = (1 << 15) - 1
#: W: the variance is normalized to 2W = 32 bits, so r = isqrt(.) has W = 16 bits (W steps).
NORM_ISQRT_BITS = 16
#: The norm reciprocal R = round(2^30 / r) lies in (2^14, 2^15]: 16 unsigned bits.
NORM_RECIP_NUM_BITS = 30
#: G: fraction bits of the normalized value y = (x - mean) / std (|y| < sqrt(N) <= 64),
#: from the output width by :func:`norm_frac_bits`: 8 for int8 outputs, up to 16.
NORM_Y_FRAC_BITS_MIN = 8
NORM_Y_FRAC_BITS_MAX = 16
#: Z: y = rhu((d' R) << Z, 30 + Z - G - max(k, 0)); Z = G_max + k_max - 30 = 1 keeps the
#: shift non-negative for G = 16 and k = 15 (rhu(v << 1, s + 1) = rhu(v, s): no other change).
NORM_Y_PRE_SHIFT = NORM_Y_FRAC_BITS_MAX + (NORM_ISQRT_BITS - 1) - NORM_RECIP_NUM_BITS


def norm_frac_bits(out_bits: int) -> int:
    """G, the fraction bits of LayerNorm/RMSNorm's normalized value, for an output of
    ``out_bits`` (symmetric) bits: ``min(max(out_bits, 8), 16)``.

    y's rounding (2^-(G+1) of a standard deviation) then stays well below an output LSB
    (at least 2^-(out_bits-2) standard deviations for any output range of 4 std or more):
    int8 outputs keep G = 8 (the ISA's OUT8), int16 outputs G = 16. The one rule for
    golden.intops (the unit), its constants (``norm_params``, golden.lm_int.norm_consts)
    and hw/norm.py (``wide`` selects 16).

    Raises
    ------
    ValueError if ``out_bits`` is not an integer in 2..32.
    """
    if not (isinstance(out_bits, int) and 2 <= out_bits <= 32):
        raise ValueError(f"norm out_bits must be an integer in 2..32, not {out_bits!r}")
    return min(max(out_bits, NORM_Y_FRAC_BITS_MIN), NORM_Y_FRAC_BITS_MAX)
#: Affine weight (signed) and bias (signed, at the scale weight_scale * 2^-G) widths.
NORM_WEIGHT_BITS = 16
NORM_BIAS_BITS = 32
#: The integer eps (added to N^2 var, in LSB^2 units of the input) is below 2^54.
NORM_EPS_MAX = (1 << 54) - 1



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


#: DOT (golden.vecops.dot): ``|a| <= 2^15``, any 16-bit scratch word (int8 activations or
#: Q15 probabilities; -32768 included, so also its negation with Flag.NEG).
DOT_A_MAX = 1 << 15
#: DOT's ``b`` operand is an int8 activation [-127, 127]: the RTL multiplies 8 bits of it.
DOT_B_BITS = ACT_BITS
#: Bits of the signed product of a 16-bit and an 8-bit word, DOT's ``a * b`` (24; a valid
#: ``|a b| <= 2^15 * 127`` needs 23).
DOT_PROD_BITS = DOT_A_MAX.bit_length() + DOT_B_BITS


def dot_acc_width(fan_in: int) -> int:
    """Bits of a signed accumulator that holds any DOT row ``sum_{i<k} a_i b_i`` of
    ``fan_in = k`` terms with ``|a_i| <= DOT_A_MAX = 2^15`` and ``|b_i| <= ACT_MAX = 127``.

    ``acc_width(fan_in, DOT_A_MAX * ACT_MAX)``, i.e. ``ceil(log2(k * 2^15 * 127 + 1)) + 1``:
    k = 1: 23 bits; 64: 29; 256: 31; 4095 (the ISA's largest k): 35.

    Raises
    ------
    ValueError if ``fan_in`` < 1.
    """
    return acc_width(fan_in, DOT_A_MAX * ACT_MAX)
