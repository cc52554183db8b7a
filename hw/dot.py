"""Dot: rows of an activation-by-activation dot product with a dyadic requant (DOT)."""
from functools import partial

from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.isa import FIELDS
from ternac.golden.widths import DOT_B_BITS, DOT_PROD_BITS, M_BITS, S_BITS, dot_acc_width
from .mulpool import borrow
from .vector import OPERAND_BITS, VEC_IN, VEC_OUT, Pipe, rhu_sat_tail

__all__ = ["Dot", "K_MAX"]

#: Largest row length k of a DOT (the ISA's 12-bit ``k`` field): 4095.
K_MAX = (1 << dict(FIELDS)["k"]) - 1


class Dot(wiring.Component):
    """``y = sat(rhu(sum_{i<k} a_i b_i * m, s))`` a row: the DOT instruction of
    :func:`golden.vecops.dot` (golden/isa.py), one element a cycle.

    Every beat carries ``a_i`` (16-bit signed: int8 activations or Q15 probabilities) and
    ``b_i`` (a 16-bit word holding an int8 value: only its low ``DOT_B_BITS = 8`` bits are
    multiplied); ``last`` ends a row. After a row's last beat the unit emits one result:
    the exact sum (``golden.widths.dot_acc_width(max_len)`` bits, the sign of each product
    flipped with ``neg``), times ``m`` (unsigned 16 bits), rounded half up and shifted by
    ``s`` (golden.numerics.requantize), saturated to int8 [-127, 127], or with ``wide``
    int16 [-32767, 32767]. The sequencer streams ``a`` at ``src + i`` and ``b`` at ``aux +
    j k + i`` (``n`` rows of ``k``), so one instruction is ``Q.K^T`` of a query or ``P.V``.

    Pipeline (registers on one clock enable, so a stalled output stalls everything and no
    beat is lost): input register; the product ``a * b`` (24 bits, a 16x8 product: one
    16 x 16 slot of :mod:`hw.mulpool`, an SB_MAC16 / MULT18X18); the accumulator (one adder, ``acc + (p ^ neg) + neg``, cleared
    by the first beat of a row); ``acc * m`` (``acc_bits + 17`` bits, two or three
    slots for ``acc_bits`` up to 32 / 35, used once a row; 0 between rows); the rounding
    shift by ``s`` (its barrel shifter one of the pool's shared ones, ``mul.shift``); the
    saturating output register. Throughput one beat a cycle, rows back to back with no bubble; latency 6
    cycles from a row's last beat to its result; ``passes = 1``.

    Parameters
    ----------
    max_len : int
        Longest row ``k`` (1 .. 4095); sizes the accumulator,
        ``dot_acc_width(max_len)`` bits (31 for 256; 35 for 4095). Longer rows overflow it.
    pool : hw.mulpool.MulPool or None   the multiplier pool to borrow from (an accelerator's
        one, shared by every unit); None: a private pool (this unit's own SB_MAC16s)

    Members
    -------
    i : In(stream.Signature(VEC_IN))   ``a``, ``b`` (int16; ``b`` an int8 value); ``last``
                                       on the final beat of a row
    o : Out(stream.Signature(VEC_OUT)) ``y`` signed 16 bits, one a row
    m : In(16), s : In(6)              the dyadic pair; hold constant while a row flows
    neg : In(1)                        negate ``a`` (Flag.NEG)
    wide : In(1)                       0: int8 output range, 1: int16

    Raises
    ------
    ValueError for a ``max_len`` outside [1, 4095].
    """

    #: Times the sequencer streams each vector through ``i``.
    passes = 1
    #: This unit's client name in a shared hw.mulpool.MulPool.
    pool_client = "dot"
    #: Cycles from a row's last accepted beat to its output (no stalls).
    latency = 6

    def __init__(self, *, max_len: int = 256, pool=None):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        if not isinstance(max_len, int) or not 1 <= max_len <= K_MAX:
            raise ValueError(f"max_len must be an integer in [1, {K_MAX}], not {max_len!r}")
        self._max_len = max_len
        self.acc_bits = dot_acc_width(max_len)
        super().__init__({
            "i": In(stream.Signature(VEC_IN)),
            "o": Out(stream.Signature(VEC_OUT)),
            "m": In(M_BITS), "s": In(S_BITS),
            "neg": In(1),
            "wide": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        A = self.acc_bits
        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), self.i.ready.eq(ce)]
        pipe = Pipe(m, ce, "dot")

        active = Signal(name="dot_active")
        mul = borrow(m, self.mulpool, self.pool_client, active)
        v1 = pipe.reg(self.i.valid, name="v")
        last1 = pipe.reg(self.i.payload.last, name="last")
        a1 = pipe.reg(self.i.payload.a, signed(OPERAND_BITS), name="a")
        b1 = pipe.reg(self.i.payload.b[:DOT_B_BITS].as_signed(), signed(DOT_B_BITS), name="b")

        # The product on its own stage, so it maps onto a DSP with registered output.
        v2 = pipe.reg(v1, name="v")
        last2 = pipe.reg(last1, name="last")
        p2 = pipe.reg(mul(a1, b1, name="ab"), signed(DOT_PROD_BITS), name="p")

        # Accumulate: -p = ~p + 1, so NEG costs the carry-in of the one adder. ``first``
        # clears the sum on the first beat of each row (set again by a row's last beat).
        first = Signal(init=1)
        acc = Signal(signed(A))
        term = Signal(signed(DOT_PROD_BITS))
        m.d.comb += term.eq(Mux(self.neg, ~p2, p2))
        with m.If(ce & v2):
            m.d.sync += [acc.eq(Mux(first, 0, acc) + term + self.neg), first.eq(last2)]
        v3 = pipe.reg(v2 & last2, name="v")

        # Requantize the finished row (acc holds it while v3): acc * m, round, saturate.
        # xm is 0 unless it holds a row's product (valid=), so its barrel shift is a
        # zero_idle one on the pool's shared shifters (ORed in without a gate).
        xm = pipe.reg(mul(acc, self.m, name="accm"), signed(A + M_BITS + 1), name="xm",
                      valid=v3)
        v4 = pipe.reg(v3, name="v")
        out = rhu_sat_tail(m, pipe, xm, self.s, out_bits=OPERAND_BITS, wide=self.wide,
                           name="dot_out", halve=partial(mul.shift, zero_idle=True))
        v5 = pipe.reg(v4, name="v")
        m.d.comb += active.eq(Cat(self.i.valid, v1, v2, v3, v4, v5).any())
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v5), self.o.payload.y.eq(out)]
        return m
