"""Semantics of the vector instructions of golden/isa.py, at the accelerator's integer
parameters. The program interpreter and the integer golden models call these; the RTL's
vector units are checked against them element by element.

Every function takes int64 tensors of shape (..., n) (a batch of vectors) and returns the
16-bit signed scratch words the instruction writes.
"""
from __future__ import annotations

import torch

from . import intops
from .isa import Flag, Instr, Op
from .numerics import requantize, round_half_up_shift, sat
from .widths import SHIFTMAX_OUT_BITS as _SHIFTMAX_OUT_BITS, WIDE_MAX

__all__ = ["SCRATCH_MAX", "SHIFTMAX_OUT_BITS", "out_limit", "vector_op", "eltwise_add",
           "eltwise_mul", "m2s2"]

#: Symmetric saturation of a 16-bit scratch word (so that -y never overflows).
SCRATCH_MAX = WIDE_MAX
#: Shiftmax writes unsigned probabilities with 15 fraction bits (golden.widths).
SHIFTMAX_OUT_BITS = _SHIFTMAX_OUT_BITS


def out_limit(flags: int) -> int:
    """Saturation bound of a vector op's result: 127 with ``OUT8``, else 32767."""
    return 127 if flags & Flag.OUT8 else SCRATCH_MAX


def m2s2(ins: Instr) -> tuple[int, int]:
    """The second dyadic pair of a vector instruction: ``(wbase[15:0], k[5:0])``."""
    return ins.wbase & 0xFFFF, ins.k & 0x3F


def eltwise_add(a, b, m, s, m2, s2, hi):
    """``sat(rhu(a*m, s) + rhu(b*m2, s2), -hi, hi)``: two operands brought to one scale
    (products up to 33 bits signed, the sum 34), then saturated."""
    return sat(round_half_up_shift(a * m, s) + round_half_up_shift(b * m2, s2), -hi, hi)


def eltwise_mul(a, b, m, s, hi):
    """``sat(rhu(a*b*m, s), -hi, hi)`` (a*b 31 bits signed, times m: 47 bits)."""
    return requantize(a * b, m, s, -hi, hi)


def vector_op(ins: Instr, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Result of the vector instruction ``ins`` on operand vectors ``a`` and ``b``.

    Parameters
    ----------
    ins : Instr with op in golden.isa.VECTOR_OPS
    a, b : int64 tensors (..., n), the 16-bit scratch words at ``src`` and ``aux``

    Returns
    -------
    int64 tensor (..., n) of 16-bit signed values.

    Raises
    ------
    ValueError for an op that is not a vector op, or from the intops functions (ranges).
    """
    a = a.to(torch.int64)
    b = b.to(torch.int64)
    if ins.flags & Flag.NEG:
        a = -a
    hi = out_limit(ins.flags)
    m2, s2 = m2s2(ins)
    op = Op(ins.op)
    if op == Op.SIGMOID:
        return requantize(intops.sigmoid_q(a, ins.m, ins.s), m2, s2, -hi, hi)
    if op in (Op.SILU, Op.GELU):
        return intops.gated_q(a, ins.m, ins.s, m2, s2, 8 if hi == 127 else 16)
    if op in (Op.RMSNORM, Op.LAYERNORM):
        fn = intops.int_rmsnorm if op == Op.RMSNORM else intops.int_layernorm
        return fn(a, b[0] if b.dim() > 1 else b, torch.zeros(a.shape[-1], dtype=torch.int64),
                  ins.m, ins.s, eps=0, out_bits=8 if hi == 127 else 16)
    if op == Op.SHIFTMAX:
        return intops.shiftmax_q(a, ins.m, ins.s, SHIFTMAX_OUT_BITS)
    if op == Op.ADD:
        return eltwise_add(a, b, ins.m, ins.s, m2, s2, hi)
    if op == Op.MUL:
        return eltwise_mul(a, b, ins.m, ins.s, hi)
    raise ValueError(f"{op.name} is not a vector operation")
