"""Activation: integer sigmoid, SiLU and ShiftGELU on the shared shift-exp core."""
from functools import partial

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import EXP_FRAC_BITS, SIG_FRAC_BITS
from ternac.golden.widths import M_BITS, S_BITS
from .divider import pipelined_divide
from .mulpool import borrow
from .vector import (OPERAND_BITS, SHIFT_EXP_STAGES, VEC_IN, VEC_OUT, Pipe, rhu_sat_tail,
                     shift_exp)

__all__ = ["ActMode", "Activation"]


class ActMode(enum.Enum, shape=2):
    """What :class:`Activation` computes. SiLU and GELU are the same datapath; they differ
    only in the exp gain ``m, s`` (GELU's has 1.702 folded in, golden.intops.exp_gain)."""
    SIGMOID = 0   #: golden.isa Op.SIGMOID: sat(requantize(sigmoid_q(x, m, s), m2, s2))
    SILU = 1      #: golden.isa Op.SILU: gated_q(x, m, s, m2, s2)
    GELU = 2      #: golden.isa Op.GELU: gated_q(x, m, s, m2, s2), 1.702 in (m, s)


class Activation(wiring.Component):
    """Elementwise integer sigmoid / SiLU / ShiftGELU, one element a cycle.

    Implements the vector instructions SIGMOID, SILU and GELU of :mod:`golden.vecops`
    (:func:`golden.intops.sigmoid_q` requantized, :func:`golden.intops.gated_q`; the same
    integers as :func:`~golden.intops.int_sigmoid`, :func:`~golden.intops.int_silu` and
    :func:`~golden.intops.shift_gelu` with ``out_scale``), per element:

    0. ``x = -a`` with ``neg`` (golden.isa Flag.NEG), else ``x = a`` (17 bits signed);
    1. ``e = shift_exp(|x|)`` (8 stages; exp gain ``m, s``);
    2. ``sig+ = (2^30 + (d >> 1)) // d`` with ``d = 2^15 + e``: a pipelined restoring
       divider, 16 quotient bits, ``steps_per_stage`` bits a stage (default 2: 8 stages);
    3. ``sig = sig+`` for ``x >= 0``, else ``2^15 - sig+``; in [0, 2^15];
    4. ``p = sig`` (SIGMOID) or ``p = x * sig`` (SILU, GELU; 33 bits signed);
       ``y = requantize(p, m2, s2)`` (``p * m2`` 49 bits) saturated to int8 [-127, 127],
       or with ``wide`` int16 [-32767, 32767] (golden ``out_bits`` 8 or 16; Flag.OUT8 is
       ``wide = 0``).

    Throughput one element a cycle (the whole pipeline stalls while ``o`` is not ready);
    latency ``14 + ceil(16 / steps_per_stage)`` cycles (22 with the default two steps a
    stage, 30 with one). No state
    across elements: ``passes = 1`` and ``last`` is ignored. Products (16 x 16 slots of
    :mod:`hw.mulpool`, one SB_MAC16 each): ``|x| * m``, the shift-exp core's ``r * S``
    (10 x 16), ``x * sig`` (16 x 16: ``x`` is kept in 16 bits, |x| <= 32767) and ``p * m2``
    (32 x 16: two), 5 slots; its three barrel shifts (the shift-exp core's two and the
    output tail's) on the pool's shared shifters (``mul.shift``).

    Parameters
    ----------
    steps_per_stage : int, 1..16   quotient bits a divider stage (fewer stages and flip-flops,
        a longer combinational path). Default 2: two chained 18-bit restoring steps a stage;
        against one step a stage, Yosys 0.70 synth_ice40 maps the LM's Activation to 132
        fewer LUT4 and about 470 fewer flip-flops (the divider's remainder, divisor and
        quotient registers and the delay of ``x`` through 8 fewer stages; measured 2026-12-01)
    pool : hw.mulpool.MulPool or None   the multiplier pool to borrow from (an accelerator's
        one, shared by every unit); None: a private pool (this unit's own SB_MAC16s)

    Members
    -------
    i : In(stream.Signature(VEC_IN))   ``a`` = x (|x| <= 32767, golden's range); ``b``,
        ``last`` unused
    o : Out(stream.Signature(VEC_OUT)) ``y`` signed 16 bits
    m : In(16), s : In(6)     exp gain: ``golden.intops.exp_gain(scale)`` (sigmoid, SiLU) or
        ``exp_gain(scale, GELU_ALPHA)`` (GELU)
    m2 : In(16), s2 : In(6)   output multiplier: ``golden.intops.act_out_multiplier(scale,
        out_scale)`` (SiLU, GELU); for SIGMOID the requantization of the Q15 sigmoid
        (``m2 = 1, s2 = 0`` keeps Q15, saturated at 32767)
    mode : In(ActMode)
    neg : In(1)               negate ``a`` first
    wide : In(1)              0: int8 output range, 1: int16

    Raises
    ------
    ValueError for a bad ``steps_per_stage``.
    """

    #: Times the sequencer streams each vector through ``i``.
    passes = 1
    #: This unit's client name in a shared hw.mulpool.MulPool.
    pool_client = "activation"

    def __init__(self, *, steps_per_stage: int = 2, pool=None):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        if not (isinstance(steps_per_stage, int) and 1 <= steps_per_stage <= SIG_FRAC_BITS + 1):
            raise ValueError(f"steps_per_stage must be an integer in 1..{SIG_FRAC_BITS + 1}, "
                             f"not {steps_per_stage!r}")
        self._sps = steps_per_stage
        super().__init__({
            "i": In(stream.Signature(VEC_IN)),
            "o": Out(stream.Signature(VEC_OUT)),
            "m": In(M_BITS), "s": In(S_BITS),
            "m2": In(M_BITS), "s2": In(S_BITS),
            "mode": In(ActMode),
            "neg": In(1),
            "wide": In(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from an accepted input to its output (no stalls)."""
        return 1 + SHIFT_EXP_STAGES + -(-(SIG_FRAC_BITS + 1) // self._sps) + 5

    def elaborate(self, platform):
        m = Module()
        K, B = EXP_FRAC_BITS, SIG_FRAC_BITS
        X = OPERAND_BITS + 1                       # x = +-a: 17 bits signed
        ce = Signal()
        m.d.comb += [ce.eq(~self.o.valid | self.o.ready), self.i.ready.eq(ce)]
        pipe = Pipe(m, ce, "act")

        # Five products on hw.mulpool slots: a * m and r * S of the shift-exp core (uu),
        # x * sig (su), p * m2 (uu + su), borrowed while a beat is offered or in the pipeline.
        valids = []
        active = Signal(name="act_active")
        mul = borrow(m, self.mulpool, self.pool_client, active)

        def vdelay(v, n):
            for _ in range(n):
                v = pipe.reg(v, name="v")
                valids.append(v)
            return v

        x_in = Signal(signed(X), name="act_x_in")
        m.d.comb += x_in.eq(Mux(self.neg, -self.i.payload.a, self.i.payload.a))
        v = vdelay(self.i.valid, 1)
        # x in 16 bits: |x| <= 32767 (the unit's contract), so x * sig is one 16 x 16 slot.
        x = pipe.reg(x_in, signed(OPERAND_BITS), name="x")
        a = pipe.reg(Mux(x_in < 0, -x_in, x_in), unsigned(OPERAND_BITS), name="a")
        e = shift_exp(m, pipe, a, self.m, self.s, mul=mul, valid=v)
        v = vdelay(v, SHIFT_EXP_STAGES)
        x = pipe.delay(x, SHIFT_EXP_STAGES, name="x")

        # sig+ = (2^30 + (d >> 1)) // d, d = 2^15 + e in [2^15, 2^16]: 16 quotient bits,
        # and (2^30 + (d >> 1)) >> 16 = 2^14 < d, the divider's precondition.
        d = Signal(unsigned(K + 2), name="act_d")
        num = Signal(unsigned(B + K + 1), name="act_num")
        m.d.comb += [d.eq((1 << K) + e), num.eq((1 << (B + K)) + (d >> 1))]
        sig_pos, stages = pipelined_divide(m, pipe, num, d, q_bits=B + 1,
                                           steps_per_stage=self._sps)
        v = vdelay(v, stages)
        x = pipe.delay(x, stages, name="x")

        sig = pipe.reg(Mux(x >= 0, sig_pos, (1 << B) - sig_pos), unsigned(B + 1), name="sig")
        v = vdelay(v, 1)
        x = pipe.reg(x, name="x")

        # requantize(p, m2, s2) with p = sig (SIGMOID) or x * sig (SILU, GELU).
        # |x sig| <= 2^15 2^15: p in 32 bits signed; |p m2| < 2^30 2^16: 47 bits
        p = pipe.reg(Mux(self.mode == ActMode.SIGMOID, sig, mul(x, sig, name="xsig")),
                     signed(2 * OPERAND_BITS), name="p")
        v = vdelay(v, 1)
        # p * m2 is 0 for a bubble (valid=): the tail's shift is a zero_idle one, ORed into
        # the pool's shared shifter without a gate.
        p_m = pipe.reg(mul(p, self.m2, name="pm2"), signed(2 * OPERAND_BITS + M_BITS - 1),
                       name="pm", valid=v)
        y = rhu_sat_tail(m, pipe, p_m, self.s2, out_bits=OPERAND_BITS, wide=self.wide,
                         name="act_out", halve=partial(mul.shift, zero_idle=True))
        v = vdelay(v, 2)
        m.d.comb += active.eq(Cat(self.i.valid, *valids).any())
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v), self.o.payload.y.eq(y)]
        return m
