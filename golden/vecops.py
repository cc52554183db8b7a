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
from .widths import ACT_MAX, ACT_MIN

__all__ = ["SCRATCH_MAX", "SHIFTMAX_OUT_BITS", "out_limit", "vector_op", "eltwise_add",
           "eltwise_mul", "m2s2", "sigmoid", "silu", "rmsnorm", "layernorm", "shiftmax", "add",
           "mul", "dot", "dott", "embed", "argmax"]

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


def _prep(a, b, p):
    a = torch.as_tensor(a).to(torch.int64)
    b = torch.as_tensor(b).to(torch.int64)
    if p.flags & Flag.NEG:
        a = -a
    return a, b, out_limit(p.flags)


def sigmoid(a, b, p):
    """SIGMOID: ``sat(requantize(sigmoid_q(a, m, s), m2, s2))`` (Q15 with m2, s2 = 1, 0)."""
    a, b, hi = _prep(a, b, p)
    return requantize(intops.sigmoid_q(a, p.m, p.s), p.m2, p.s2, -hi, hi)


def silu(a, b, p):
    """SILU / GELU: ``gated_q(a, m, s, m2, s2)``, 8- or 16-bit (OUT8) result."""
    a, b, hi = _prep(a, b, p)
    return intops.gated_q(a, p.m, p.s, p.m2, p.s2, 8 if hi == 127 else 16)


def _norm(fn, a, b, p):
    a, b, hi = _prep(a, b, p)
    w = b[0] if b.dim() > 1 else b
    return fn(a, w, torch.zeros(a.shape[-1], dtype=torch.int64), p.m, p.s, eps=0,
              out_bits=8 if hi == 127 else 16)


def rmsnorm(a, b, p):
    """RMSNORM: ``int_rmsnorm(a, weight=b, bias=0, m, s, eps=0)`` (the weight vector ``b``
    is the same for every batch row)."""
    return _norm(intops.int_rmsnorm, a, b, p)


def layernorm(a, b, p):
    """LAYERNORM: ``int_layernorm(a, weight=b, bias=0, m, s, eps=0)``."""
    return _norm(intops.int_layernorm, a, b, p)


def shiftmax(a, b, p):
    """SHIFTMAX: ``shiftmax_q(a, m, s, out_bits=15)``, unsigned Q15 probabilities."""
    a, b, hi = _prep(a, b, p)
    return intops.shiftmax_q(a, p.m, p.s, SHIFTMAX_OUT_BITS)


def add(a, b, p):
    """ADD: :func:`eltwise_add` with both dyadic pairs."""
    a, b, hi = _prep(a, b, p)
    return eltwise_add(a, b, p.m, p.s, p.m2, p.s2, hi)


def mul(a, b, p):
    """MUL: :func:`eltwise_mul` (Hadamard product)."""
    a, b, hi = _prep(a, b, p)
    return eltwise_mul(a, b, p.m, p.s, hi)


def dot(a, b, p):
    """DOT: ``n`` rows of a ``k``-long dot product of two activation vectors, requantized.

    ``y[..., j] = requantize(sum_{i<k} a[..., i] * b[..., j*k + i], m, s)`` for ``j < n``,
    saturated to int8 [-127, 127] with ``OUT8``, else int16 [-32767, 32767]; ``a`` negated
    first with ``NEG``. The sum is exact in ``golden.widths.dot_acc_width(k)`` bits (at
    most 35 for the ISA's k < 4096); the product by ``m`` and the rounding are
    :func:`golden.numerics.requantize` (round half up, arithmetic shift). With ``b`` the
    ``n`` key rows of a head this is ``Q.K^T`` of one query (1/sqrt(d_head) folded into
    ``m, s``); with ``a`` the Q15 probabilities and ``b`` the rows of V^T, ``P.V``.

    Parameters
    ----------
    a : int tensor (..., k), 16-bit signed (int8 activations or Q15 probabilities)
    b : int tensor (..., n * k) or (n * k,), int8 values [-127, 127]
    p : VecParams with ``k`` the row length (>= 1), ``m``, ``s``, ``flags``

    Returns
    -------
    int64 tensor (..., n).

    Raises
    ------
    ValueError if ``k`` < 1, ``a`` does not have ``k`` elements, ``b``'s length is not a
    multiple of ``k``, or ``b`` holds a value outside the int8 range [-127, 127]; from
    ``requantize`` for an ``m`` or ``s`` out of range.
    """
    a, b, hi = _prep(a, b, p)
    k = int(p.k)
    if k < 1:
        raise ValueError(f"DOT needs a row length k >= 1, not {k}")
    if a.shape[-1] != k:
        raise ValueError(f"DOT's a operand has {a.shape[-1]} elements, but its rows are k={k} long")
    if b.shape[-1] % k:
        raise ValueError(f"DOT's b operand has {b.shape[-1]} elements, not a multiple of k={k}")
    if b.numel() and (int(b.min()) < ACT_MIN or int(b.max()) > ACT_MAX):
        bad = int(b.min()) if int(b.min()) < ACT_MIN else int(b.max())
        raise ValueError(f"DOT's b operand holds {bad}, outside the int8 activation range "
                         f"[{ACT_MIN}, {ACT_MAX}]")
    rows = b.reshape(*b.shape[:-1], b.shape[-1] // k, k)
    acc = (a.unsqueeze(-2) * rows).sum(dim=-1)
    return requantize(acc, p.m, p.s, -hi, hi)


def dott(a, b, p):
    """DOTT: :func:`dot` against the transpose of ``b``, a (k, n) row-major matrix:
    ``y[..., j] = requantize(sum_{i<k} a[..., i] * b[..., i*n + j], m, s)`` for ``j < n``
    (``n = len(b) / k``). With ``a`` the Q15 attention probabilities over k tokens and
    ``b`` a head's token-major V (k rows of d_head), ``P.V``. Same widths, flags, checks and
    errors as :func:`dot`.
    """
    b = torch.as_tensor(b).to(torch.int64)
    k = int(p.k)
    if k >= 1 and b.shape[-1] % k == 0:
        n = b.shape[-1] // k
        b = b.reshape(*b.shape[:-1], k, n).transpose(-1, -2).reshape(*b.shape[:-1], n * k)
    return dot(a, b, p)


def embed(table: torch.Tensor, token: torch.Tensor) -> torch.Tensor:
    """EMBED: the int8 rows ``table[token]`` of a (V, d) byte table, sign-extended to int64.

    Raises
    ------
    ValueError for a token id outside [0, V).
    """
    tok = torch.as_tensor(token, dtype=torch.int64)
    V = table.shape[0]
    if tok.numel() and (int(tok.min()) < 0 or int(tok.max()) >= V):
        bad = int(tok.max()) if int(tok.max()) >= V else int(tok.min())
        raise ValueError(f"token id {bad} is outside the vocabulary [0, {V})")
    return table.to(torch.int64)[tok]


def argmax(v: torch.Tensor) -> torch.Tensor:
    """ARGMAX: the smallest index of the maximum over the last axis (the ISA's tie rule,
    stated once: ties go to the smaller index). (..., n) -> (...) int64."""
    v = torch.as_tensor(v)
    n = v.shape[-1]
    idx = torch.arange(n, dtype=torch.int64).expand_as(v)
    hit = v == v.max(dim=-1, keepdim=True).values
    return torch.where(hit, idx, n).min(dim=-1).values


def vector_op(ins: Instr, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Result of the vector instruction ``ins`` on operand vectors ``a`` and ``b``: the
    golden function of its registry entry (:mod:`ternac.golden.ops`).

    Parameters
    ----------
    ins : Instr with a vector op (``ternac.golden.ops.vector_ops()``)
    a, b : int64 tensors (..., n), the 16-bit scratch words at ``src`` and ``aux`` (the
        registry's ``in_len`` and ``b_len`` elements: DOT's are ``k`` and ``n * k``)

    Returns
    -------
    int64 tensor (..., n) of 16-bit signed values (``out_rows`` elements).

    Raises
    ------
    ValueError for an op that is not a vector op, or from the intops functions (ranges).
    """
    from .ops import spec, vec_params

    s = spec(ins.op)
    if not s.vector:
        raise ValueError(f"{s.name} is not a vector operation")
    return s.fn()(a, b, vec_params(ins))
