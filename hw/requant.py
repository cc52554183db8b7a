"""Requantizer: dyadic requantization of accumulators to int8, with optional ReLU."""
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import M_BITS, S_BITS, SCRATCH_BITS

from .mulpool import borrow
from .vector import Pipe, rhu_halve, rhu_round, sat_tests, sym_range

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """``y = sat((acc * m + 2^(s-1)) >> s)``, then ``max(y, 0)`` if ``relu``.

    ``sat`` is to int8 [-127, 127], or to int16 [-32767, 32767] while ``wide`` is high
    (golden/isa.py Flag.WIDE); the output port is 16 bits either way.

    The rule is golden.numerics.requantize (round half up, arithmetic shift, saturation to
    [-127, 127]); the rounding shift is the RTL's one round-half-up, :func:`hw.vector.rhu_halve`
    then :func:`hw.vector.rhu_round`, with the saturation tests of
    :func:`hw.vector.rhu_sat_tail`. The product ``acc * m`` is ``acc_bits + M_BITS + 1``
    bits (signed x unsigned), on 16 x 16 slots of :mod:`hw.mulpool` (one SB_MAC16 /
    MULT18X18 each; one slot for ``acc_bits`` <= 16, two up to 32).
    A ``tag`` (e.g. the output index) travels with each element unchanged.

    Latency :attr:`LATENCY` = 4 cycles (the product; the barrel shift; the increment and the
    saturation tests; the selection); throughput one element a cycle; the whole pipeline
    stalls together while ``o`` is not ready.

    Parameters
    ----------
    acc_bits : int     signed accumulator width
    tag_bits : int     width of the side-band tag
    pool : hw.mulpool.MulPool or None   the multiplier pool to borrow from (an accelerator's
        one, shared by every unit); None: a private pool (this unit's own SB_MAC16s)

    Members
    -------
    i : In(stream.Signature({acc: signed(acc_bits), tag: tag_bits}))
    o : Out(stream.Signature({y: signed(SCRATCH_BITS), tag: tag_bits}))   a scratch word
    m : In(M_BITS)     dyadic multiplier, unsigned; hold constant while elements flow
    s : In(S_BITS)     dyadic shift
    relu : In(1)
    wide : In(1)       saturate to int16 instead of int8
    """

    #: Cycles from an accepted element to its result on ``o`` (no stalls).
    LATENCY = 4
    #: This unit's client name in a shared hw.mulpool.MulPool.
    pool_client = "requant"

    def __init__(self, *, acc_bits: int, tag_bits: int = 1, pool=None):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        self._acc_bits = acc_bits
        self._tag_bits = tag_bits
        super().__init__({
            "i": In(stream.Signature(data.StructLayout({"acc": signed(acc_bits), "tag": tag_bits}))),
            "o": Out(stream.Signature(data.StructLayout({"y": signed(SCRATCH_BITS),
                                                          "tag": tag_bits}))),
            "m": In(M_BITS),
            "s": In(S_BITS),
            "relu": In(1),
            "wide": In(1),
        })

    def elaborate(self, platform):
        m = Module()
        pw = self._acc_bits + M_BITS + 1
        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), self.i.ready.eq(ce)]

        # Stage 1: the product (on hw.mulpool slots: one "su" slot for acc_bits <= 16).
        mul = borrow(m, self.mulpool, self.pool_client, self.i.valid)
        v1 = Signal()
        prod = Signal(signed(pw))
        tag1 = Signal(self._tag_bits)
        with m.If(ce):
            m.d.sync += [
                v1.eq(self.i.valid),
                prod.eq(mul(self.i.payload.acc, self.m, name="accm")),
                tag1.eq(self.i.payload.tag),
            ]

        # Stage 2: the barrel shift of the round-half-up (hw.vector.rhu_halve). Stage 3: the
        # increment of the low bits (hw.vector.rhu_round) and the saturation tests on the
        # shifted word as bit reductions (no carry chain as wide as the product; a shift
        # past the product gives 0, as the rule does), ReLU folded into the lower bound.
        # Stage 4: the bound or the rounded value. The shift by the run-time s, the tests
        # and the selection in one cycle were the digits build's critical path on the UP5K
        # (65.6 ns); a stage each keeps every one under 10 logic levels.
        pipe = Pipe(m, ce, "rq")
        t = pipe.reg(rhu_halve(prod, self.s), name="t")
        v2, tag2 = pipe.reg(v1, name="valid"), pipe.reg(tag1, name="tag")
        over_c, under_c = sat_tests(t, self.wide)
        over = pipe.reg(over_c, name="over")
        under = pipe.reg(Mux(self.relu, t[-1], under_c), name="under")
        low = pipe.reg(rhu_round(t[:SCRATCH_BITS + 1]), signed(SCRATCH_BITS), name="low")
        v3, tag3 = pipe.reg(v2, name="valid"), pipe.reg(tag2, name="tag")
        lo, hi = sym_range(self.wide)
        y = Signal(signed(SCRATCH_BITS))
        m.d.comb += y.eq(Mux(over, hi, Mux(under, Mux(self.relu, 0, lo), low)))
        with m.If(ce):
            m.d.sync += [
                self.o.valid.eq(v3),
                self.o.payload.y.eq(y),
                self.o.payload.tag.eq(tag3),
            ]
        return m
