"""Eltwise: elementwise add / multiply of two int16 vectors with dyadic rescaling."""
from amaranth.hdl import Cat, Module, Mux, Signal, signed
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import M_BITS, S_BITS
from .mulpool import borrow
from .vector import OPERAND_BITS, VEC_IN, VEC_OUT, Pipe, rhu_pipelined, saturate_sym

__all__ = ["EltMode", "Eltwise"]


class EltMode(enum.Enum, shape=1):
    """What :class:`Eltwise` computes (golden.vecops)."""
    ADD = 0   #: golden.isa Op.ADD: eltwise_add, sat(rhu(a*m, s) + rhu(b*m2, s2))
    MUL = 1   #: golden.isa Op.MUL: eltwise_mul, requantize(a*b, m, s) (Hadamard product)


class Eltwise(wiring.Component):
    """Elementwise ``a + b`` or ``a * b`` of int16 vectors, one element a cycle.

    Implements the vector instructions ADD and MUL of :mod:`golden.vecops`
    (``eltwise_add``, ``eltwise_mul``), with ``a`` negated first when ``neg`` (Flag.NEG):

    * ADD: ``y = sat(rhu(a * m, s) + rhu(b * m2, s2))``: each operand brought to the
      output scale by its own dyadic multiplier (products 34 bits signed, the sum 35);
    * MUL: ``y = requantize(a * b, m, s)``: the product (34 bits signed), times ``m``
      (51 bits), round half up, arithmetic shift by ``s``, saturate.

    The result is saturated to int8 [-127, 127], or with ``wide`` int16 [-32767, 32767]
    (symmetric, so a negated output never overflows; Flag.OUT8 is ``wide = 0``). Inputs:
    the full int16 range, -32768 included (NEG negates the product ``X``, so ``-a`` never has
    to fit a 16-bit operand).

    Throughput one element a cycle; latency 7 cycles; no state across elements
    (``passes = 1``, ``last`` ignored). Products on 16 x 16 slots of :mod:`hw.mulpool`
    (one SB_MAC16 each): ``a * b`` (1), ``X * m`` with ``X = +-(a * b)`` (MUL) or ``+-a``
    (ADD), 32 x 16 (2), ``b * m2`` (1), 4 slots; one barrel shifter by ``s`` for both modes
    and one by ``s2``, both on the pool's shared shifters (``mul.shift``).

    Parameters
    ----------
    pool : hw.mulpool.MulPool or None   the multiplier pool to borrow from (an accelerator's
        one, shared by every unit); None: a private pool (this unit's own SB_MAC16s)

    Members
    -------
    i : In(stream.Signature(VEC_IN))   ``a``, ``b`` the operands (int16); ``last`` unused
    o : Out(stream.Signature(VEC_OUT)) ``y`` signed 16 bits
    m : In(16), s : In(6)              ADD: ``a``'s multiplier; MUL: the product's
    m2 : In(16), s2 : In(6)            ADD: ``b``'s multiplier (unused by MUL)
    mode : In(EltMode)
    neg : In(1)                        negate ``a`` first
    wide : In(1)                       0: int8 output range, 1: int16
    """

    #: Times the sequencer streams each vector through ``i``.
    passes = 1
    #: This unit's client name in a shared hw.mulpool.MulPool.
    pool_client = "eltwise"
    #: Cycles from an accepted input to its output (no stalls).
    latency = 7

    def __init__(self, *, pool=None):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        super().__init__({
            "i": In(stream.Signature(VEC_IN)),
            "o": Out(stream.Signature(VEC_OUT)),
            "m": In(M_BITS), "s": In(S_BITS),
            "m2": In(M_BITS), "s2": In(S_BITS),
            "mode": In(EltMode),
            "neg": In(1),
            "wide": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        W = OPERAND_BITS
        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), self.i.ready.eq(ce)]
        pipe = Pipe(m, ce, "elt")
        mul_mode = self.mode == EltMode.MUL

        # Both modes are "X * m, rounded by s" plus (ADD only) "b * m2, rounded by s2", with
        # X = a * b (MUL) or a (ADD): one multiplier by m and one barrel shifter by s serve
        # both, and the sum of the two rounded terms is saturated once. NEG negates X (the
        # product, not a: -(-32768) does not fit a 16-bit slot operand), as (X ^ n) + n.
        # Products on hw.mulpool slots: a * b (ss), b * m2 (su), X * m (uu + su).
        valids = []
        active = Signal(name="elt_active")
        mul = borrow(m, self.mulpool, self.pool_client, active)
        v = pipe.reg(self.i.valid, name="v")
        valids.append(v)
        # a, b and X are 0 for a bubble (valid=: the flip-flops' reset), so their products
        # pass the pool's shared slots without a gate (hw.mulpool ``zero_idle``).
        a = pipe.reg(self.i.payload.a, signed(W), name="a", valid=self.i.valid)
        b = pipe.reg(self.i.payload.b, name="b", valid=self.i.valid)
        xs = Signal(signed(2 * W), name="elt_xs")            # |a b| <= 2^30
        # Each product's slot gate is its stage's valid bit (hw.mulpool ``en=``).
        m.d.comb += xs.eq(Mux(mul_mode, mul(a, b, name="ab", en=v, zero_idle="ab"), a))
        xn = Signal(signed(2 * W), name="elt_xn")
        m.d.comb += xn.eq(xs ^ self.neg.replicate(2 * W))
        x = pipe.reg(xn + self.neg, signed(2 * W), name="x", valid=v)  # |X| <= 2^30
        # The two shifted terms are 0 for a bubble (valid=): zero_idle shifts, ORed into
        # the pool's shared shifters without a gate.
        y = pipe.reg(mul(b, self.m2, name="bm2", en=v, zero_idle="a"), signed(2 * W + 1),
                     name="y", valid=v)
        v = pipe.reg(v, name="v")
        valids.append(v)
        # |X m| < 2^30 2^16: 47 bits signed
        xm = pipe.reg(mul(x, self.m, name="xm", en=v, zero_idle="a"),
                      signed(2 * W + M_BITS - 1), name="xm", valid=v)
        y = pipe.reg(y, name="y")
        shift0 = mul.shifter(zero_idle=True)
        rx = rhu_pipelined(m, pipe, xm, self.s, name="elt_rx", halve=shift0)
        ry = rhu_pipelined(m, pipe, y, self.s2, name="elt_ry", halve=shift0)
        total = pipe.reg(rx + Mux(mul_mode, 0, ry), signed(len(xm) + 1), name="sum")
        for _ in range(4):
            v = pipe.reg(v, name="v")
            valids.append(v)
        m.d.comb += active.eq(Cat(self.i.valid, *valids).any())
        out = saturate_sym(m, total, self.wide, name="elt_sat")
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v), self.o.payload.y.eq(out)]
        return m
