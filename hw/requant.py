"""Requantizer: dyadic requantization of accumulators to int8, with optional ReLU."""
from amaranth.hdl import Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import ACT_MAX, M_BITS, S_BITS, SCRATCH_BITS, WIDE_MAX

from .vector import rhu

__all__ = ["Requantizer"]


class Requantizer(wiring.Component):
    """``y = sat((acc * m + 2^(s-1)) >> s)``, then ``max(y, 0)`` if ``relu``.

    ``sat`` is to int8 [-127, 127], or to int16 [-32767, 32767] while ``wide`` is high
    (golden/isa.py Flag.WIDE); the output port is 16 bits either way.

    The rule is golden.numerics.requantize (round half up, arithmetic shift, saturation to
    [-127, 127]); the rounding shift is :func:`hw.vector.rhu`, the RTL's one round-half-up. The product ``acc * m`` is ``acc_bits + M_BITS + 1``
    bits (signed x unsigned) and maps onto DSP multipliers (SB_MAC16 / MULT18X18).
    A ``tag`` (e.g. the output index) travels with each element unchanged.

    Latency 2 cycles; throughput one element a cycle; the whole pipeline stalls together
    while ``o`` is not ready.

    Parameters
    ----------
    acc_bits : int     signed accumulator width
    tag_bits : int     width of the side-band tag

    Members
    -------
    i : In(stream.Signature({acc: signed(acc_bits), tag: tag_bits}))
    o : Out(stream.Signature({y: signed(SCRATCH_BITS), tag: tag_bits}))   a scratch word
    m : In(M_BITS)     dyadic multiplier, unsigned; hold constant while elements flow
    s : In(S_BITS)     dyadic shift
    relu : In(1)
    wide : In(1)       saturate to int16 instead of int8
    """

    def __init__(self, *, acc_bits: int, tag_bits: int = 1):
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

        # Stage 1: the product (a DSP).
        v1 = Signal()
        prod = Signal(signed(pw))
        tag1 = Signal(self._tag_bits)
        with m.If(ce):
            m.d.sync += [
                v1.eq(self.i.valid),
                prod.eq(self.i.payload.acc * self.m),
                tag1.eq(self.i.payload.tag),
            ]

        # Stage 2: round half up, arithmetic shift (0 for s >= pw, as the rule gives),
        # saturate, ReLU.
        shifted = rhu(m, prod, self.s, name="shifted")
        y = Signal(signed(SCRATCH_BITS))
        hi = Signal(signed(SCRATCH_BITS + 1))
        m.d.comb += hi.eq(Mux(self.wide, WIDE_MAX, ACT_MAX))
        with m.If(shifted > hi):
            m.d.comb += y.eq(hi)
        with m.Elif(shifted < Mux(self.relu, 0, -hi)):
            m.d.comb += y.eq(Mux(self.relu, 0, -hi))
        with m.Else():
            m.d.comb += y.eq(shifted)
        with m.If(ce):
            m.d.sync += [
                self.o.valid.eq(v1),
                self.o.payload.y.eq(y),
                self.o.payload.tag.eq(tag1),
            ]
        return m
