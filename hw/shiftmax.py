"""Shiftmax: integer softmax over a streamed vector, :func:`golden.intops.shiftmax` bit for bit."""
from functools import partial

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import EXP_FRAC_BITS, SM_N_MAX, SM_OUT_BITS_MAX, SM_RECIP_FRAC_BITS
from ternac.golden.widths import M_BITS, S_BITS
from .divider import SeqDivider
from .mulpool import borrow
from .vector import (OPERAND_BITS, SHIFT_EXP_STAGES, VEC_IN, VEC_OUT_U, Pipe, bits_for,
                     pass_control, priority_encode, rhu_sat_tail, shift_exp)

__all__ = ["Shiftmax"]


class Shiftmax(wiring.Component):
    """Integer softmax (Shiftmax) of vectors of up to ``max_len`` logits, three passes.

    Implements the SHIFTMAX instruction of :mod:`golden.vecops` (``out_bits`` 15 there) and
    :func:`golden.intops.shiftmax_q` / :func:`~golden.intops.shiftmax` at any ``out_bits``
    (``m, s = golden.intops.exp_gain(scale)``):

    1. pass 0: ``x = ~a = -a - 1`` with ``neg`` (Flag.NEG: 16 bits, and every ``mx - x``
       below is that of ``-a``), else ``a`` (registered); ``mx = max x`` (nothing goes
       further down the pipeline);
    2. pass 1: ``e = shift_exp(mx - x)`` (8 stages), ``T += e`` (``bits(max_len * 2^15)``
       bits: 28 for 4096);
    3. between passes 1 and 2: ``L = floor(log2 T)`` (a priority encoder, registered) and
       the one division ``R = (2^(L+15) + (T >> 1)) // T`` (:class:`~hw.divider.SeqDivider`,
       16 quotient bits, 17 cycles);
    4. pass 2: ``e`` recomputed from ``x`` (the unit stores no vector), ``p = min(rhu(e * R,
       L + 15 - out_bits), 2^out_bits - 1)``: one output a beat, in order.

    Throughput one beat a cycle in each pass; ``i.ready`` is low between passes. A vector
    of N elements takes ``3 N + 45`` cycles without stalls (measured; the drains of passes
    0 and 1, 20 cycles of division, and the 13-cycle latency from a beat of pass 2 to its
    output). Three products on 16 x 16 slots of :mod:`hw.mulpool`
    (one SB_MAC16 each): ``a * m`` and ``r * S`` (the shift-exp core's quadratic, 10 x 16
    bits) and ``e * R``; its three barrel shifts (the shift-exp core's two and the output
    tail's by ``L + 15 - out_bits``) on the pool's shared shifters (``mul.shift``).

    Parameters
    ----------
    out_bits : int, 1..16   output fraction bits (15: the ISA; 8: a byte; 16: attention)
    max_len : int, 1..4096  longest vector (sizes the row sum ``T``)
    pool : hw.mulpool.MulPool or None   the multiplier pool to borrow from (an accelerator's
        one, shared by every unit); None: a private pool (this unit's own SB_MAC16s)

    Members
    -------
    i : In(stream.Signature(VEC_IN))   ``a`` the logit (int8, or int16 with |a| <= 32767),
        ``b`` unused, ``last`` on the final element of each of the 3 passes
    o : Out(stream.Signature(VEC_OUT_U))   ``y`` unsigned 16 bits: ``p`` in
        [0, 2^out_bits - 1], scale 2^-out_bits (with out_bits <= 15 it is also a
        non-negative signed 16-bit word)
    m : In(16), s : In(6)   the exp gain ``golden.intops.exp_gain(scale)``
    neg : In(1)             negate ``a`` first

    Config ports are held constant while a vector streams.

    Raises
    ------
    ValueError for ``out_bits`` or ``max_len`` out of range.
    """

    #: Times the sequencer streams each vector through ``i``.
    passes = 3
    #: This unit's client name in a shared hw.mulpool.MulPool.
    pool_client = "shiftmax"

    def __init__(self, *, out_bits: int = 16, max_len: int = SM_N_MAX, pool=None):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        if not (isinstance(out_bits, int) and 1 <= out_bits <= SM_OUT_BITS_MAX):
            raise ValueError(f"Shiftmax out_bits must be an integer in 1..{SM_OUT_BITS_MAX}, "
                             f"not {out_bits!r}")
        if not (isinstance(max_len, int) and 1 <= max_len <= SM_N_MAX):
            raise ValueError(f"Shiftmax max_len must be an integer in 1..{SM_N_MAX}, "
                             f"not {max_len!r}")
        self._out_bits = out_bits
        self._max_len = max_len
        super().__init__({
            "i": In(stream.Signature(VEC_IN)),
            "o": Out(stream.Signature(VEC_OUT_U)),
            "m": In(M_BITS),
            "s": In(S_BITS),
            "neg": In(1),
        })

    @property
    def out_bits(self) -> int:
        return self._out_bits

    @property
    def max_len(self) -> int:
        return self._max_len

    def elaborate(self, platform):
        m = Module()
        K, P, OB = EXP_FRAC_BITS, SM_RECIP_FRAC_BITS, self._out_bits
        t_bits = bits_for(self._max_len << K)       # T <= N * 2^15
        num_bits = (t_bits - 1) + P + 1             # 2^(L+15) + (T >> 1), L <= t_bits - 1
        r_bits = P + 1                              # R in [2^14, 2^15]
        m.submodules.div = div = SeqDivider(num_bits=num_bits, den_bits=t_bits, q_bits=r_bits)

        ce = Signal()
        m.d.comb += ce.eq(~self.o.valid | self.o.ready)
        pipe = Pipe(m, ce, "sm")

        mx = Signal(signed(OPERAND_BITS), init=-(1 << (OPERAND_BITS - 1)))
        T = Signal(t_bits)
        R = Signal(r_bits)
        shift = Signal(range(num_bits + 1))         # L + 15 - out_bits
        valids = []
        busy = Signal()
        work_running = Signal()
        work_done = Signal()

        # The three products (a * m and r * S of the shift-exp core, e * R) on hw.mulpool
        # slots ("uu" each), borrowed while a beat is offered or in the pipeline.
        active = Signal(name="sm_active")
        mul = borrow(m, self.mulpool, self.pool_client, active)
        pass_idx, accept, work_start, new_vector = pass_control(
            m, passes=self.passes, i=self.i, ce=ce, pipe_busy=busy, work_done=work_done)

        # Register x = a, or ~a = -a - 1 for NEG (no carry chain; the offset cancels in
        # mx - x), first; pass 0 takes the row maximum from that register (nothing goes
        # further down the pipeline), passes 1 and 2 compute a = mx - x in [0, 2^16 - 1].
        v_max = pipe.reg(accept & (pass_idx == 0), name="vmax")
        v = pipe.reg(accept & (pass_idx != 0), name="v")
        valids += [v_max, v]
        x = pipe.reg(Mux(self.neg, ~self.i.payload.a, self.i.payload.a),
                     signed(OPERAND_BITS), name="x")
        with m.If(ce & v_max & (x > mx)):
            m.d.sync += mx.eq(x)
        a = pipe.reg(mx - x, unsigned(OPERAND_BITS), name="a")
        v = pipe.reg(v, name="v")
        valids.append(v)
        # The shift-exp core's product and e * R are 0 for a bubble (valid=), so their barrel
        # shifts are zero_idle ones on the pool's shared shifters (ORed in without a gate).
        e = shift_exp(m, pipe, a, self.m, self.s, mul=mul, valid=v)
        for _ in range(SHIFT_EXP_STAGES):
            v = pipe.reg(v, name="v")
            valids.append(v)
        with m.If(ce & v & (pass_idx == 1)):
            m.d.sync += T.eq(T + e)

        # Pass 2: p = min(rhu(e * R, L + 15 - out_bits), 2^out_bits - 1).
        v2 = v & (pass_idx == 2)
        eR = pipe.reg(mul(e, R, name="eR"), unsigned(K + 1 + r_bits), name="eR", valid=v2)
        v = pipe.reg(v2, name="v")
        valids.append(v)
        p = rhu_sat_tail(m, pipe, eR, shift, out_bits=OB, name="p",
                         halve=partial(mul.shift, zero_idle=True))
        v = pipe.reg(v, name="v")
        valids.append(v)
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v), self.o.payload.y.eq(p)]
        m.d.comb += [busy.eq(Cat(*valids).any()), active.eq(busy | self.i.valid)]

        # Between passes 1 and 2: L = floor(log2 T) (registered), then the one division.
        L_c = priority_encode(m, T, name="L_c")
        L = Signal(range(t_bits))
        div_start = Signal()
        m.d.sync += div_start.eq(work_start & (pass_idx == 1))
        with m.If(work_start & (pass_idx == 1)):
            m.d.sync += [L.eq(L_c), work_running.eq(1)]
        with m.If(div_start):
            m.d.sync += shift.eq(L + P - OB)
        with m.Elif(work_running & ~div_start & ~div.busy):
            m.d.sync += work_running.eq(0)
        m.d.comb += [
            div.num.eq((Const(1, num_bits) << (L + P))[:num_bits] | (T >> 1)),
            div.den.eq(T),
            div.start.eq(div_start),
            R.eq(div.q),
        ]
        # After pass 0 there is nothing to do; after pass 1, the division.
        m.d.comb += work_done.eq((pass_idx == 0) | (work_running & ~div_start & ~div.busy))

        with m.If(new_vector):
            m.d.sync += [mx.eq(-(1 << (OPERAND_BITS - 1))), T.eq(0)]
        return m
