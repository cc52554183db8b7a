"""TernaryEngine: L lanes of add / subtract / skip, one input activation a cycle."""
from amaranth.hdl import Cat, Const, Module, Signal, signed, Mux
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import ACT_BITS

__all__ = ["TernaryEngine", "engine_in_layout", "engine_out_layout"]


def engine_in_layout(lanes: int) -> data.StructLayout:
    """One beat: an int8 activation ``x`` broadcast to all lanes, the decoded trits of every
    lane (``nz``, ``neg``), and ``last`` closing a tile (a dot product of fan-in K)."""
    return data.StructLayout({"x": signed(ACT_BITS), "nz": lanes, "neg": lanes, "last": 1})


def engine_out_layout(acc_bits: int) -> data.StructLayout:
    """One finished accumulator; lanes come out in order 0..L-1, ``last`` on lane L-1."""
    return data.StructLayout({"acc": signed(acc_bits), "last": 1})


class TernaryEngine(wiring.Component):
    """``lanes`` ternary multiply-accumulate lanes.

    Each beat, lane ``l`` computes ``acc[l] += t[l] * x`` with ``t`` in {-1, 0, +1}: one adder
    ``acc + (x XOR neg) + neg`` (two's complement negate with the carry-in), the operand
    gated to zero by ``nz``. A tile ends on a beat with ``last``: the lanes' sums are copied
    into an output shift register (so accumulation of the next tile starts the next cycle)
    and the accumulators restart from zero.

    Accumulators are ``acc_bits`` wide; golden.numerics.acc_width(K) bits are exact for
    fan-in K (DESIGN.md numerics contract).

    Throughput: one beat (``lanes`` trit-MACs) a cycle. A tile's ``lanes`` results drain
    one a cycle; the engine stalls only if a tile shorter than ``lanes`` beats ends while the
    previous tile is still draining, and in the first cycle after a reset (``i.ready`` low
    while the accumulators clear).

    Cost (iCE40 UP5K, Yosys, L = 8, 18-bit accumulators): 351 LUT4, 293 FF, ~43 LUT4 a lane
    (the adder, the operand gating, the shift register's load/shift mux), measured; the
    accumulators and the shift register have no domain reset (see ``elaborate``).

    Parameters
    ----------
    lanes : int        L
    acc_bits : int     accumulator width (bits, signed)

    Members
    -------
    i : In(stream.Signature(engine_in_layout(lanes)))
    o : Out(stream.Signature(engine_out_layout(acc_bits)))

    Raises
    ------
    ValueError if ``acc_bits`` is narrower than an activation plus one bit.
    """

    def __init__(self, *, lanes: int, acc_bits: int):
        if lanes < 1:
            raise ValueError(f"lanes must be positive, not {lanes!r}")
        if acc_bits < ACT_BITS + 1:
            raise ValueError(f"acc_bits must be at least {ACT_BITS + 1}, not {acc_bits!r}")
        self._lanes = lanes
        self._acc_bits = acc_bits
        super().__init__({
            "i": In(stream.Signature(engine_in_layout(lanes))),
            "o": Out(stream.Signature(engine_out_layout(acc_bits))),
        })

    def elaborate(self, platform):
        m = Module()
        L, W = self._lanes, self._acc_bits
        # The accumulators and the output shift register carry no domain reset: a reset
        # would sit in front of the enable (SB_DFFESR's reset acts only with its enable),
        # which costs Yosys a LUT a bit (18 LUT4 a lane at 18 bits on the iCE40). The
        # accumulators clear instead through one shared synchronous clear (``last``, or
        # ``dirty``: set by the domain reset, it clears them in the first cycle after the
        # reset, while ``i`` is not ready) under one shared enable, the flip-flop's own
        # reset and enable pins: no LUT a bit. The shift register's contents only matter
        # while ``pending`` (which is reset) says so. Power-on values are 0 (the
        # flip-flops' init).
        acc = [Signal(signed(W), name=f"acc{l}", reset_less=True) for l in range(L)]
        shreg = [Signal(signed(W), name=f"out{l}", reset_less=True) for l in range(L)]
        pending = Signal(range(L + 1))   # results still to drain from the shift register

        dirty = Signal(init=1)           # the accumulators may hold a sum from before a reset
        m.d.sync += dirty.eq(0)

        beat = self.i.payload
        # A finishing tile needs the shift register free (or freeing this very cycle).
        draining_done = (pending == 0) | ((pending == 1) & self.o.ready)
        m.d.comb += self.i.ready.eq(~dirty & (~beat.last | draining_done))
        fire = self.i.valid & self.i.ready

        acc_en = Signal()       # shared enable and clear of every accumulator
        acc_clr = Signal()
        m.d.comb += [acc_en.eq(fire | dirty), acc_clr.eq(beat.last | dirty)]

        load = Signal()         # a tile's sums go to the shift register
        shift = Signal()        # lane 0's result leaves
        sh_en = Signal()
        m.d.comb += [load.eq(fire & beat.last), shift.eq(self.o.valid & self.o.ready),
                     sh_en.eq(load | shift)]

        x = Signal(signed(W))
        m.d.comb += x.eq(beat.x)
        for l in range(L):
            nz, neg = beat.nz[l], beat.neg[l]
            operand = Signal(signed(W), name=f"op{l}")
            # Gate x by nz, then conditionally invert; the +neg carry completes the negation.
            m.d.comb += operand.eq(Mux(nz, x, 0) ^ Mux(neg, Const(-1, signed(W)), 0))
            # acc + operand + neg as one carry chain: (2 acc + neg) + (2 operand + neg) is
            # 2 (acc + operand + neg), so the carry-in rides in a low bit (written as two
            # additions, Yosys builds two chains in series, the second an incrementer).
            wide = Signal(W + 2, name=f"sum{l}_x2")
            m.d.comb += wide.eq(Cat(neg, acc[l]) + Cat(neg, operand))
            total = Signal(signed(W), name=f"sum{l}")
            m.d.comb += total.eq(wide[1:W + 1])
            with m.If(acc_en):
                m.d.sync += acc[l].eq(Mux(acc_clr, 0, total))
            # The shift register loads the finished sums or shifts towards lane 0: one
            # shared enable, a 2:1 mux a bit (the last lane only loads).
            with m.If(sh_en):
                m.d.sync += shreg[l].eq(total if l == L - 1 else Mux(load, total, shreg[l + 1]))

        # Output: shift register drains lane 0 first.
        m.d.comb += [
            self.o.valid.eq(pending != 0),
            self.o.payload.acc.eq(shreg[0]),
            self.o.payload.last.eq(pending == 1),
        ]
        with m.If(load):
            m.d.sync += pending.eq(L)
        with m.Elif(shift):
            m.d.sync += pending.eq(pending - 1)
        return m
