"""Activation: integer sigmoid, SiLU and ShiftGELU on the shared shift-exp core."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import EXP_FRAC_BITS, SIG_FRAC_BITS
from ternac.golden.widths import M_BITS, S_BITS
from .divider import pipelined_divide_carried
from .mulpool import borrow
from .vector import (OPERAND_BITS, SHIFT_EXP_STAGES, VEC_IN, VEC_OUT, Pipe, rhu_round,
                     rhu_sat_tail, shift_exp)

__all__ = ["ActMode", "Activation", "EBR_BLOCKS", "activation_signature", "delay_line",
           "sigmoid_division"]


#: Block RAMs the Activation takes by ``x_delay`` and FPGA family (boards/resources.py
#: counts them): "ram", a 16-bit-wide memory of at most 32 words (the divider's 1..16 steps
#: a stage), which Yosys maps on one iCE40 SB_RAM40_4K and on the ECP5's distributed RAM
#: (TRELLIS_DPR16X4, no DP16KD; measured, Yosys 0.70 synth_ecp5); "ff", none.
EBR_BLOCKS = {"ram": {"ice40": 1, "ecp5": 0}, "ff": {"ice40": 0, "ecp5": 0}}


class ActMode(enum.Enum, shape=2):
    """What :class:`Activation` computes. SiLU and GELU are the same datapath; they differ
    only in the exp gain ``m, s`` (GELU's has 1.702 folded in, golden.intops.exp_gain)."""
    SIGMOID = 0   #: golden.isa Op.SIGMOID: sat(requantize(sigmoid_q(x, m, s), m2, s2))
    SILU = 1      #: golden.isa Op.SILU: gated_q(x, m, s, m2, s2)
    GELU = 2      #: golden.isa Op.GELU: gated_q(x, m, s, m2, s2), 1.702 in (m, s)


def activation_signature() -> wiring.Signature:
    """The ports of an activation unit (:class:`Activation`, and
    hw.activation_serial.SerialActivation): ``i`` (VEC_IN), ``o`` (VEC_OUT), the exp gain
    ``m`` (16 bits) / ``s`` (6), the output multiplier ``m2`` / ``s2``, ``mode``
    (:class:`ActMode`), ``neg`` and ``wide`` (1 bit each); see :class:`Activation`."""
    return wiring.Signature({
        "i": In(stream.Signature(VEC_IN)),
        "o": Out(stream.Signature(VEC_OUT)),
        "m": In(M_BITS), "s": In(S_BITS),
        "m2": In(M_BITS), "s2": In(S_BITS),
        "mode": In(ActMode),
        "neg": In(1),
        "wide": In(1),
    })


class Activation(wiring.Component):
    """Elementwise integer sigmoid / SiLU / ShiftGELU, one element a cycle.

    Implements the vector instructions SIGMOID, SILU and GELU of :mod:`golden.vecops`
    (:func:`golden.intops.sigmoid_q` requantized, :func:`golden.intops.gated_q`; the same
    integers as :func:`~golden.intops.int_sigmoid`, :func:`~golden.intops.int_silu` and
    :func:`~golden.intops.shift_gelu` with ``out_scale``), per element:

    0. ``x = -a`` with ``neg`` (golden.isa Flag.NEG), else ``x = a`` (17 bits signed);
    1. ``e = shift_exp(|x|)`` (8 stages; exp gain ``m, s``);
    2. ``sig+ = (2^30 + (d >> 1)) // d`` with ``d = 2^15 + e``: 2^15 for ``e = 0``, else
       ``2^14 + q`` with ``q`` the 14 low quotient bits of a pipelined restoring divider
       (:func:`hw.divider.pipelined_divide_carried`: only ``e[14:0]`` travels, the
       dividend's low bits are bits of it), ``steps_per_stage`` bits a stage (default 2:
       7 stages);
    3. ``sig = sig+`` for ``x >= 0``, else ``2^15 - sig+``; in [0, 2^15];
    4. ``p = sig`` (SIGMOID) or ``p = x * sig`` (SILU, GELU; 33 bits signed);
       ``y = requantize(p, m2, s2)`` (``p * m2`` 49 bits) saturated to int8 [-127, 127],
       or with ``wide`` int16 [-32767, 32767] (golden ``out_bits`` 8 or 16; Flag.OUT8 is
       ``wide = 0``).

    Throughput one element a cycle (the whole pipeline stalls while ``o`` is not ready);
    latency ``14 + ceil(14 / steps_per_stage)`` cycles (21 with the default two steps a
    stage, 28 with one). No state
    across elements: ``passes = 1`` and ``last`` is ignored. Products (16 x 16 slots of
    :mod:`hw.mulpool`, one SB_MAC16 each): ``|x| * m``, the shift-exp core's ``r * S``
    (10 x 16), ``x * sig`` (16 x 16: ``x`` is kept in 16 bits, |x| <= 32767) and ``p * m2``
    (32 x 16: two), 5 slots; its three barrel shifts (the shift-exp core's two and the
    output tail's) on the pool's shared shifters (``mul.shift``).

    Parameters
    ----------
    steps_per_stage : int, 1..16   quotient bits a divider stage (fewer stages and flip-flops,
        a longer combinational path). Default 2: two chained 17-bit restoring steps a stage;
        against one step a stage, Yosys 0.70 synth_ice40 maps the LM's Activation to 132
        fewer LUT4 and about 470 fewer flip-flops (the divider's remainder, divisor and
        quotient registers and the delay of ``x`` through 8 fewer stages; measured 2026-12-01)
    x_delay : "ram" or "ff"   how ``x`` waits for its sigmoid (16 stages with the default
        divider): "ram" (default), a circular buffer in a memory (16 bits wide, the
        next power of two >= the delay deep: one iCE40 block RAM, :data:`EBR_BLOCKS`;
        :func:`delay_line`), written with ``x`` every
        time the pipeline advances and read ``delay - 1`` words behind the write pointer
        with the read port's enable on the same advance, so its output is the register
        chain's last stage (a word: the low 15 bits of x one beat behind and the sign of
        the beat entering, so the stage after the line needs one flip-flop of x, its
        sign, not 16); "ff", that chain of registers (16 x 16 flip-flops, each in a logic
        cell of its own on the iCE40: 256 of the LM's 8,494, measured)
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

    def __init__(self, *, steps_per_stage: int = 2, pool=None, x_delay: str = "ram"):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        if x_delay not in EBR_BLOCKS:
            raise ValueError(f"x_delay must be 'ram' or 'ff', not {x_delay!r}")
        self._x_delay = x_delay
        if not (isinstance(steps_per_stage, int) and 1 <= steps_per_stage <= SIG_FRAC_BITS + 1):
            raise ValueError(f"steps_per_stage must be an integer in 1..{SIG_FRAC_BITS + 1}, "
                             f"not {steps_per_stage!r}")
        self._sps = steps_per_stage
        super().__init__(activation_signature())

    def ebr_blocks(self, family: str) -> int:
        """Block RAMs this unit takes on ``family`` ("ice40", "ecp5"): :data:`EBR_BLOCKS`."""
        return EBR_BLOCKS[self._x_delay][family]

    @property
    def latency(self) -> int:
        """Cycles from an accepted input to its output (no stalls)."""
        return 1 + SHIFT_EXP_STAGES + -(-(SIG_FRAC_BITS - 1) // self._sps) + 5

    def elaborate(self, platform):
        m = Module()
        B = SIG_FRAC_BITS
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
        if self._x_delay == "ff":
            x = pipe.reg(x_in, signed(OPERAND_BITS), name="x")
        # |x_in| = |a| whatever neg says: the magnitude skips the negation's carry chain (two
        # in series were the ECP5 L=128 build's critical path from the scratch, bb4a2e0).
        pa = self.i.payload.a
        # |x| and, below, sig and p are 0 for a bubble (valid=: the flip-flops' reset), so
        # their products pass the pool's shared slots without a gate (zero_idle).
        a = pipe.reg(Mux(pa < 0, -pa, pa), unsigned(OPERAND_BITS), name="a",
                     valid=self.i.valid)
        # The shift-exp core's last stage (e = rhu_round(t)) is the division's first.
        t, e = shift_exp(m, pipe, a, self.m, self.s, mul=mul, valid=v, round_last=False,
                         a_zero=True)
        sig_pos, stages = sigmoid_division(m, pipe, t, e, steps_per_stage=self._sps)
        v = vdelay(v, SHIFT_EXP_STAGES - 1 + stages)
        if self._x_delay == "ff":
            x = pipe.delay(x, SHIFT_EXP_STAGES - 1 + stages, name="x")
            neg16 = x < 0
        else:
            # A word of the line: x's low 15 bits one beat behind (x1, a register packed
            # with x_in's logic) and the sign of the beat entering. Read 16 advances on, it
            # holds the sign the sigmoid's stage needs and the low bits of the beat one stage
            # further, whose sign is the previous word's: x there takes one flip-flop, not 16
            # (each fed by the block RAM, in a cell of its own).
            # The sign without the negation's carry chain (its path from the scratch's read
            # port to the line's write data was the ECP5 L=128 build's critical one, 18.22
            # ns): x_in[15] is a[15], or with neg: a != 0 and (a >= 0 or a = -2^15);
            # equal for every 16-bit a.
            pa = self.i.payload.a
            sign_in = Mux(self.neg, (pa != 0) & (~pa[OPERAND_BITS - 1]
                                                 | (pa[:OPERAND_BITS - 1] == 0)),
                          pa[OPERAND_BITS - 1])
            x1 = pipe.reg(x_in[:OPERAND_BITS - 1], name="x")
            word = delay_line(m, pipe.ce, Cat(x1, sign_in),
                              SHIFT_EXP_STAGES + stages, name="act_xline")
            neg16 = word[OPERAND_BITS - 1]

        sig = pipe.reg(Mux(neg16, (1 << B) - sig_pos, sig_pos), unsigned(B + 1), name="sig",
                       valid=v)
        v = vdelay(v, 1)
        if self._x_delay == "ff":
            x = pipe.reg(x, name="x")
        else:
            x = Cat(word[:OPERAND_BITS - 1], pipe.reg(neg16, name="x_sign")).as_signed()

        # requantize(p, m2, s2) with p = sig (SIGMOID) or x * sig (SILU, GELU).
        # |x sig| <= 2^15 2^15: p in 32 bits signed; |p m2| < 2^30 2^16: 47 bits
        p = pipe.reg(Mux(self.mode == ActMode.SIGMOID, sig,
                         mul(x, sig, name="xsig", en=v, zero_idle="b")),
                     signed(2 * OPERAND_BITS), name="p", valid=v)
        v = vdelay(v, 1)
        # p * m2 is 0 for a bubble (valid=): the tail's shift is a zero_idle one, ORed into
        # the pool's shared shifter without a gate.
        p_m = pipe.reg(mul(p, self.m2, name="pm2", en=v, zero_idle="a"),
                       signed(2 * OPERAND_BITS + M_BITS - 1), name="pm", valid=v)
        y = rhu_sat_tail(m, pipe, p_m, self.s2, out_bits=OPERAND_BITS, wide=self.wide,
                         name="act_out", halve=mul.shifter(zero_idle=True))
        v = vdelay(v, 2)
        m.d.comb += active.eq(Cat(self.i.valid, *valids).any())
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v), self.o.payload.y.eq(y)]
        return m


def sigmoid_division(m, pipe, t, e_reg=None, *, steps_per_stage: int = 2):
    """``sig+ = (2^30 + (d >> 1)) // d`` with ``d = 2^15 + e``, ``e = rhu_round(t)``
    (golden.intops._sigmoid_core, ``e`` in [0, 2^15]), pipelined.

    ``t`` is the shift-exp core's last register (hw.vector.shift_exp ``round_last=False``:
    ``e = (t + 1) >> 1``, 0 iff ``t`` is 0). The first stage forms ``e`` and registers what
    the division needs of it; then ``ceil(14 / steps_per_stage)`` stages of
    :func:`hw.divider.pipelined_divide_carried`. ``e_reg``, if given, is ``e`` already
    registered (a pool shifter slot's rounding register, one stage after ``t``): its low
    bits are then the divisor's and the remainder is formed from ``t`` with a carry chain
    of its own (no second incrementer on ``t``: one feeding two registers packs with
    neither).

    Returns
    -------
    (sig_pos, stages): ``sig+`` (16 bits unsigned, combinational after the last register)
    and the number of pipeline registers from ``t`` to it.
    """
    K, B = EXP_FRAC_BITS, SIG_FRAC_BITS
    # sig+ = N // d with N = 2^30 + (d >> 1), d = 2^15 + e (golden.intops._sigmoid_core).
    # e = 0: d = 2^15, sig+ = 2^15 (z below). Otherwise N / d is in [2^14, 2^15), so
    # sig+ = 2^14 + q with q = (N - 2^14 d) // d < 2^14: 14 quotient bits. The partial
    # remainder with those 14 bits to come is (N - 2^14 d) >> 14 = 2^16 + (d >> 15) - d
    # = 2^15 + 1 - e (< d: the precondition), and the dividend's low 14 bits are
    # (d >> 1)[0:14] = e[1:15]: bits of the divisor, which travels anyway. For e < 2^15
    # the divisor is 2^15 + e[14:0], so only e[14:0] travels; e = 2^15 (d = 2^16) gives
    # e[14:0] = 0, remainder 1 (mod 2^16): q = 0 and sig+ = 2^14, its right value.
    # tests/test_rtl_units.py runs every e in [0, 2^15] through this division.
    z = pipe.reg(t == 0, name="z")                         # e = 0
    if e_reg is None:
        e = Signal(unsigned(K + 1), name="act_e")
        m.d.comb += e.eq(rhu_round(t))
        den = pipe.reg(e[:K], unsigned(K), name="den")
        rem0 = pipe.reg(((1 << K) + 1 - e)[:K + 1], unsigned(K + 1), name="rem0")
    else:
        den = Signal(unsigned(K), name="act_den")
        m.d.comb += den.eq(e_reg[:K])
        # 2^15 + 1 - e with e = (t >> 1) + t[0]: ~(t >> 1) + 2^15 + 2 - t[0] (mod 2^16),
        # i.e. ~(t >> 1) + (2^15 + 1) with carry-in ~t[0].
        rem0 = pipe.reg((~(t >> 1)[:K + 1] + ((1 << K) + 1) + ~t[0])[:K + 1],
                        unsigned(K + 1), name="rem0")
    q, stages = pipelined_divide_carried(
        m, pipe, rem0, den, q_bits=B - 1, steps_per_stage=steps_per_stage,
        divisor=lambda dn: Cat(dn, Const(1, 1)),          # 2^15 + e[14:0]
        num_bit=lambda j, dn: dn[K - 1 - j])               # e[14 - j]
    z = pipe.delay(z, stages, name="z")
    sig_pos = Signal(unsigned(B + 1), name="act_sig_pos")
    m.d.comb += sig_pos.eq(Mux(z, 1 << B, Cat(q, Const(1, 1))))   # 2^15, or 2^14 + q
    return sig_pos, 1 + stages


def delay_line(m, ce, value, n: int, *, name: str = "xline"):
    """``value`` ``n`` clock enables later, as ``n`` registers loaded on ``ce`` would give
    it, from a block RAM used as a circular buffer: ``value`` is written at the write
    pointer on every ``ce`` (the pointer then steps), and the read port, enabled by the
    same ``ce`` (its output holds otherwise), reads the word written ``n - 1`` enables
    before, so after an enable it holds what the ``n``-th register of the chain would.
    The buffer is ``2^ceil(log2 n)`` words of ``len(value)`` bits; the read address is the
    write pointer plus a constant (``1 - n`` modulo the depth). The read never meets the
    write (``n >= 2``): the address written this cycle is read only ``n - 1`` enables later.

    Parameters
    ----------
    m : Module   where the memory and pointer go (the pointer's domain: sync)
    ce : Value   the pipeline's clock enable (1 bit)
    value : Value   what enters the chain (its shape is the output's)
    n : int, 2..256   stages of delay

    Returns
    -------
    Value: the delayed ``value`` (the memory's read data: registered, no logic behind it).

    Raises
    ------
    ValueError for ``n`` outside 2..256.
    """
    if not (isinstance(n, int) and 2 <= n <= 256):
        raise ValueError(f"a block-RAM delay line takes 2 to 256 stages, not {n!r}")
    bits = (n - 1).bit_length()
    depth = 1 << bits
    mem = Memory(shape=value.shape(), depth=depth, init=[])
    m.submodules[name] = mem
    wr, rd = mem.write_port(), mem.read_port()
    ptr = Signal(bits, name=f"{name}_ptr")
    with m.If(ce):
        m.d.sync += ptr.eq(ptr + 1)
    m.d.comb += [wr.addr.eq(ptr), wr.data.eq(value), wr.en.eq(ce),
                 rd.addr.eq((ptr + ((1 - n) % depth))[:bits]), rd.en.eq(ce)]
    return rd.data
