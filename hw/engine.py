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
    previous tile is still draining.

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
        acc = [Signal(signed(W), name=f"acc{l}") for l in range(L)]
        shreg = [Signal(signed(W), name=f"out{l}") for l in range(L)]
        pending = Signal(range(L + 1))   # results still to drain from the shift register

        beat = self.i.payload
        # A finishing tile needs the shift register free (or freeing this very cycle).
        draining_done = (pending == 0) | ((pending == 1) & self.o.ready)
        m.d.comb += self.i.ready.eq(~beat.last | draining_done)
        fire = self.i.valid & self.i.ready

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
            with m.If(fire):
                m.d.sync += acc[l].eq(Mux(beat.last, 0, total))
                with m.If(beat.last):
                    m.d.sync += shreg[l].eq(total)

        # Output: shift register drains lane 0 first.
        m.d.comb += [
            self.o.valid.eq(pending != 0),
            self.o.payload.acc.eq(shreg[0]),
            self.o.payload.last.eq(pending == 1),
        ]
        with m.If(fire & beat.last):
            m.d.sync += pending.eq(L)
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += pending.eq(pending - 1)
            for l in range(L - 1):
                m.d.sync += shreg[l].eq(shreg[l + 1])
        return m
