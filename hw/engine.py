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
    ``acc + (nz ? (neg ? ~x : x) : 0) + (nz AND neg)`` (two's complement negate with the
    carry-in). The first beat of a tile loads ``t[l] * x`` alone (``nz ? (neg ? -x : x) :
    0``, with ``-x`` shared by the lanes), so the accumulators never clear. A tile ends on a
    beat with ``last``; the next cycle (or later, see below) its sums are copied from the
    accumulators into an output shift register while the next tile's first beat enters, so
    accumulation never pauses at a tile edge. The first result of a tile leaves two cycles
    after its last beat (the accumulators, then the shift register).

    Accumulators are ``acc_bits`` wide; golden.numerics.acc_width(K) bits are exact for
    fan-in K (DESIGN.md numerics contract) and ``x`` in [-127, 127] (ACT_MIN..ACT_MAX;
    ``x = -128`` on a tile's first beat would be taken as ``-(-128)`` wrapped to 8 bits).

    Throughput: one beat (``lanes`` trit-MACs) a cycle. A tile's ``lanes`` results drain
    one a cycle; the engine stalls (``i.ready`` low) only while the accumulators hold a
    finished tile that the shift register cannot take yet: when a tile shorter than
    ``lanes`` beats ends while the previous tile is still draining, or while ``o`` is not
    ready; tiles of ``lanes`` beats or more stream without a bubble.

    Cost (iCE40 UP5K, Yosys + nextpnr, L = 32, 16-bit accumulators, out of context):
    1,299 LUT4, 1,032 FF, 1,444 logic cells incl. the wrapper, measured (was 1,288 LUT4,
    1,947 cells when the shift register loaded from the sum: the sum LUT then had two
    sinks and each accumulator flip-flop a cell of its own). A lane is ~40 LUT4 (the adder
    with the first-beat mux folded into each sum bit's LUT4, 8 operand LUTs, the shift
    register's load/shift mux), and every flip-flop but the last lane's shift register stage
    (fed by a flip-flop) packs with the LUT that feeds it; the accumulators and the shift
    register have no domain reset (see ``elaborate``).

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
        # which costs Yosys a LUT a bit on the iCE40. The accumulators need no clear either:
        # the first beat of a tile loads its term alone (``first``: set by the domain reset
        # and by every ``last`` beat), so what they held before (a finished tile, or
        # anything after a reset) never reaches a sum. The shift register's contents only
        # matter while ``pending`` (which is reset) says so. Power-on values are 0 (the
        # flip-flops' init).
        acc = [Signal(signed(W), name=f"acc{l}", reset_less=True) for l in range(L)]
        shreg = [Signal(signed(W), name=f"out{l}", reset_less=True) for l in range(L)]
        pending = Signal(range(L + 1))   # results still to drain from the shift register
        first = Signal(init=1)           # the next beat starts a tile
        held = Signal()                  # the accumulators hold a finished tile that the
                                         # shift register has not taken yet

        beat = self.i.payload
        # The shift register is free when empty or when its last result leaves this cycle.
        free = (pending == 0) | ((pending == 1) & self.o.ready)
        load = Signal()         # the finished tile goes from the accumulators to the shift register
        shift = Signal()        # lane 0's result leaves
        sh_en = Signal()
        m.d.comb += [load.eq(held & free), shift.eq(self.o.valid & self.o.ready),
                     sh_en.eq(load | shift)]
        # A beat overwrites the accumulators: while they hold a finished tile it waits for
        # the shift register to take that tile (in the same cycle at the earliest).
        m.d.comb += self.i.ready.eq(~held | free)
        fire = self.i.valid & self.i.ready
        with m.If(fire):
            m.d.sync += [first.eq(beat.last), held.eq(beat.last)]
        with m.Elif(load):
            m.d.sync += held.eq(0)

        # The operand of a lane is nz ? (neg ? v : x) : 0 with v shared by all lanes: ~x
        # within a tile (the carry-in nz AND neg completes -x), -x on a tile's first beat,
        # where the accumulator takes the operand alone (x is in [-127, 127], so -x fits
        # ACT_BITS bits; bits above are sign copies). Bit b of the operand is then one LUT4
        # (nz, neg, x[b], v[b]) a lane, as the plain ``(x AND nz) XOR neg`` was. As -x is
        # ~(x - 1), v = ~(x - first): one short borrow chain shared by the lanes.
        x = Signal(signed(ACT_BITS))
        v = Signal(signed(ACT_BITS))
        m.d.comb += [x.eq(beat.x), v.eq(~(x - first))]
        for l in range(L):
            nz, neg = beat.nz[l], beat.neg[l]
            operand = Signal(signed(W), name=f"op{l}")
            m.d.comb += operand.eq(Mux(nz, Mux(neg, v, x), 0))
            # acc + operand + (nz AND neg) as one carry chain: (2 acc + neg) + (2 operand
            # + nz) is 2 (acc + operand + (nz AND neg)) + (neg XOR nz), so the carry-in
            # rides in a low bit and the SB_CARRY of that bit computes it (written as two
            # additions, Yosys builds two chains in series, the second an incrementer).
            wide = Signal(W + 2, name=f"sum{l}_x2")
            m.d.comb += wide.eq(Cat(neg, acc[l]) + Cat(nz, operand))
            total = Signal(signed(W), name=f"sum{l}")
            m.d.comb += total.eq(wide[1:W + 1])
            # first ? operand : total is a function of (first, acc, operand, carry) a bit:
            # Yosys folds it into the sum bit's LUT4 (the SB_CARRY keeps acc and operand),
            # and that LUT drives only the accumulator flip-flop, so the two pack into one
            # logic cell (were the sum also the shift register's input, the flip-flop would
            # need a cell of its own).
            with m.If(fire):
                m.d.sync += acc[l].eq(Mux(first, operand, total))
            # The shift register loads the finished sums from the accumulators (the cycle
            # after the last beat, or later) or shifts towards lane 0: one shared enable, a
            # 2:1 mux a bit (the last lane only loads).
            with m.If(sh_en):
                m.d.sync += shreg[l].eq(acc[l] if l == L - 1
                                        else Mux(load, acc[l], shreg[l + 1]))

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
