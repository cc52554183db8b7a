"""Eltwise: elementwise add / multiply of two int16 vectors with dyadic rescaling."""
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import M_BITS, S_BITS
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
    the full int16 range, -32768 included (``-a`` is kept in 17 bits).

    Throughput one element a cycle; latency 7 cycles; no state across elements
    (``passes = 1``, ``last`` ignored). Multipliers (DSPs): ``a * b``, ``X * m`` with
    ``X = a * b`` (MUL) or ``a`` (ADD), ``b * m2``; one barrel shifter by ``s`` for both modes.

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
    #: Cycles from an accepted input to its output (no stalls).
    latency = 7

    def __init__(self):
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
        mul = self.mode == EltMode.MUL

        # Both modes are "X * m, rounded by s" plus (ADD only) "b * m2, rounded by s2", with
        # X = a * b (MUL) or a (ADD): one multiplier by m and one barrel shifter by s serve
        # both, and the sum of the two rounded terms is saturated once.
        v = pipe.reg(self.i.valid, name="v")
        a = pipe.reg(Mux(self.neg, -self.i.payload.a, self.i.payload.a), signed(W + 1), name="a")
        b = pipe.reg(self.i.payload.b, name="b")
        x = pipe.reg(Mux(mul, a * b, a), signed(2 * W + 2), name="x")
        y = pipe.reg(b * self.m2, signed(2 * W + 1), name="y")
        xm = pipe.reg(x * self.m, signed(2 * W + 2 + M_BITS + 1), name="xm")
        y = pipe.reg(y, name="y")
        rx = rhu_pipelined(m, pipe, xm, self.s, name="elt_rx")
        ry = rhu_pipelined(m, pipe, y, self.s2, name="elt_ry")
        total = pipe.reg(rx + Mux(mul, 0, ry), signed(len(xm) + 1), name="sum")
        v = pipe.delay(v, 5, name="v")
        out = saturate_sym(m, total, self.wide, name="elt_sat")
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v), self.o.payload.y.eq(out)]
        return m
