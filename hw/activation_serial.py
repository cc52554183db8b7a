"""SerialActivation: the Activation's integer sigmoid / SiLU / ShiftGELU at one element
every four cycles, on one barrel shifter and one four-step divider (the UP5K's slower,
smaller vector datapath; hw/activation.py is the one-element-a-cycle form)."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import wiring

from ternac.golden.widths import (EXP_ARG_FP_MAX, EXP_ARG_FRAC_BITS, EXP_FRAC_BITS,
                                  EXP_QUAD_C, EXP_QUAD_FRAC_BITS, M_BITS, S_BITS,
                                  SIG_FRAC_BITS)
from .activation import ActMode, activation_signature
from .mulpool import borrow
from .vector import OPERAND_BITS, bits_for, exp_slope, rhu_round, sat_halved

__all__ = ["SerialActivation", "INTERVAL"]

#: Cycles a frame: the unit takes an element every INTERVAL cycles (hw.activation
#: .Activation: every cycle).
INTERVAL = 4

#: Restoring division steps a cycle (a chain of four missed 24 MHz on the UP5K: 60 ns,
#: measured): D1 does 6 in its cycles 1..3, D2 8, the 14 quotient bits of
#: golden.intops._sigmoid_core (sig+ = 2^14 + q).
_STEPS_PER_CYCLE = 2
assert _STEPS_PER_CYCLE * (2 * INTERVAL - 1) == SIG_FRAC_BITS - 1


class SerialActivation(wiring.Component):
    """Elementwise integer sigmoid / SiLU / ShiftGELU, one element every :data:`INTERVAL`
    (4) cycles: the same integers as :class:`hw.activation.Activation` (golden.vecops
    SIGMOID, SILU, GELU: :func:`golden.intops.sigmoid_q` requantized,
    :func:`golden.intops.gated_q`), with the same ports, from far less logic.

    Four stages of one frame (four cycles) each hold an element and advance together at
    the frame's end; E and O share one barrel shifter (49 bits, 6-bit amount; a shifter
    slot of the pool, hw.mulpool ``shift``), used once a cycle:

    * E (shift-exp, golden.intops.shift_exp): cycle 0 ``a * m`` (``a = |x|``); cycle 1 the
      shifter: ``u = min(rhu(a m, s), 2^15 - 1)``; cycle 2 ``S = 2^15 + 11 ~r``,
      ``M = 2^26 - r S`` (``r = u & 1023``); cycle 3 the shifter: ``t = floor(2 (M >> 10)
      / 2^(q + 1))`` (``q = u >> 10``; ``e = (t + 1) >> 1``, as hw.vector.shift_exp).
    * D1, D2 (division, ``sig+ = (2^30 + (d >> 1)) // d``, ``d = 2^15 + e``, the
      restoring division of hw.activation.sigmoid_division, two steps a cycle on one
      chain a stage): D1's cycle 0 forms ``e``, the remainder ``2^15 + 1 - e`` and ``e =
      0``, its cycles 1..3 six quotient bits; D2 the other eight (14 in all).
    * O (output): cycle 0 ``sig`` (``2^15 - sig+`` for ``x < 0``) and ``p = sig``
      (SIGMOID) or ``x sig``; cycle 1 ``p m2``; cycle 2 the shifter, ``floor(2 p m2 /
      2^s2)``; cycle 3 the rounding and the saturation to int8 or (``wide``) int16.

    Handshake: ``i.ready`` is high at a frame's end (or while the unit is empty), so an
    element is taken at most every four cycles; the whole unit stalls while its output
    register holds a result ``o`` has not taken. Latency: :attr:`latency` cycles from a
    taken input to its result on ``o`` (17: four frames and the output register). Products
    (hw.mulpool slots, 16 x 16 each; ``pool`` None: a private pool): ``a m``, ``r S``,
    ``x sig``, ``p m2`` (32 x 16: two).

    Cost (iCE40 UP5K out of context, ``ternac.boards.build.build_unit`` at 24 MHz, Yosys
    0.70 / nextpnr, measured 2026-12-02, the OOC wrapper's ~102 FF included, a private
    pool): 1,315 logic cells, 1,019 LUT4, 522 FF, 5 DSP, no EBR, 24.89 MHz (critical path
    the phase register through D2's dividend-bit mux and its two steps, 40.2 ns); the same
    build of :class:`hw.activation.Activation` (private multipliers)
    1,681 cells, 1,294 LUT4, 782 FF, 5 DSP, 1 EBR, 32.74 MHz. The one shifter is 373 of the
    LUT4s. A chain of four division steps a cycle (fourteen subtractors in all) reached
    only 16.66 MHz, 60 ns through 70 levels.

    In context it saves little: the iCEBreaker LM build (L = 32) with this unit put in the
    Activation's place (an experiment, not run: the sequencer's epilogue pair and
    golden/cycles.py assume one element a cycle, so hw/vector_units.py builds
    :class:`hw.activation.Activation`) needed 8,088 logic cells (6,914 LUT4, 3,707 FF, 29
    EBR, 8 DSP) against 8,211 (6,950 LUT4, 3,837 FF, 30 EBR), measured 2026-12-03, with the
    shifter on a pool slot (8,268 with a private one, 2026-12-02). The saving is small
    because the pool keeps the shifters the Norm and Eltwise need (three slots, widest 56
    bits: the Activation's shifts rode on them) and slots of the Norm's eight SB_MAC16, so
    only the Activation's own pipeline goes; against that, a SILU outside an epilogue would
    take four cycles an element (about +1,150 cycles a token for the LM's three).

    Parameters
    ----------
    pool : hw.mulpool.MulPool or None   the multiplier pool to borrow from (None: private)

    Members
    -------
    i : In(stream.Signature(VEC_IN))   ``a`` = x (|x| <= 32767); ``b``, ``last`` unused
    o : Out(stream.Signature(VEC_OUT)) ``y`` signed 16 bits
    m, s, m2, s2, mode, neg, wide : as :class:`hw.activation.Activation` (held for a vector)
    """

    passes = 1
    pool_client = "activation"
    #: Cycles between elements taken (without stalls).
    interval = INTERVAL

    def __init__(self, *, pool=None):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        super().__init__(activation_signature())

    def ebr_blocks(self, family: str) -> int:
        """Block RAMs this unit takes: none."""
        return 0

    @property
    def latency(self) -> int:
        """Cycles from an accepted input to its output (no stalls): four frames."""
        return 4 * INTERVAL + 1

    def elaborate(self, platform):
        mod = Module()
        F, K, P, C = EXP_ARG_FRAC_BITS, EXP_FRAC_BITS, EXP_QUAD_FRAC_BITS, EXP_QUAD_C
        B = SIG_FRAC_BITS
        X = OPERAND_BITS + 1
        u_bits = bits_for(EXP_ARG_FP_MAX)                       # 15
        qmax = EXP_ARG_FP_MAX >> F                              # 31
        assert C == 0b1011

        go = Signal()
        ph = Signal(2)
        vE, vD, vD2, vO = Signal(), Signal(), Signal(), Signal()
        busy = Signal()
        mod.d.comb += busy.eq(vE | vD | vD2 | vO)
        # Four products on hw.mulpool slots (one SB_MAC16 a 16 x 16 slot, p m2 two),
        # borrowed while an element is in the unit.
        mul = borrow(mod, self.mulpool, self.pool_client, busy)
        edge = Signal()                 # the frame ends (or the unit is empty): stages advance
        mod.d.comb += [go.eq(~self.o.valid | self.o.ready),
                       edge.eq(go & (~busy | (ph == INTERVAL - 1))),
                       self.i.ready.eq(edge)]
        at = [go & (ph == c) for c in range(INTERVAL)]
        with mod.If(go):
            mod.d.sync += ph.eq(Mux(edge, 0, ph + 1))
        with mod.If(edge):
            mod.d.sync += [vE.eq(self.i.valid), vD.eq(vE), vD2.eq(vD), vO.eq(vD2)]

        # --- one barrel shifter: E's two shifts (cycles 1, 3), O's (cycle 2) -------------
        SH = 49
        sh_v = Signal(signed(SH))
        sh_s = Signal(S_BITS)
        sh_t = Signal(signed(SH + 1))
        # On a shifter slot of the pool (shared with units that never run beside this one;
        # a private pool: this unit's own shifter).
        mod.d.comb += sh_t.eq(mul.shift(sh_v, sh_s, name="act_sh"))

        # --- E: shift-exp ---------------------------------------------------------------
        pa = self.i.payload.a
        xE = Signal(signed(X))
        aE = Signal(unsigned(OPERAND_BITS))
        with mod.If(edge):
            mod.d.sync += [xE.eq(Mux(self.neg, -pa, pa)), aE.eq(Mux(pa < 0, -pa, pa))]
        p1 = Signal(unsigned(OPERAND_BITS + M_BITS))
        with mod.If(at[0]):
            mod.d.sync += p1.eq(mul(aE, self.m, name="am"))
        uE = Signal(unsigned(u_bits))
        over_u = sh_t[u_bits + 1:].any() | sh_t[:u_bits + 1].all()
        with mod.If(at[1]):
            mod.d.sync += uE.eq(Mux(over_u, EXP_ARG_FP_MAX, rhu_round(sh_t[:u_bits + 1])[:u_bits]))
        r, q = uE[:F], uE[F:]
        slope = exp_slope(r)
        mant = Signal(unsigned(K + P + 1))
        qs = Signal(unsigned(bits_for(qmax)))
        with mod.If(at[2]):
            mod.d.sync += [mant.eq((1 << (K + P)) - mul(r, slope, name="rs")),
                           qs.eq(Mux(q == qmax, qmax, q + 1))]

        # --- D1, D2: division (two restoring steps a cycle each, one chain a stage) ------
        tD = Signal(unsigned(K + 2))            # floor(2 (M >> 10) / 2^(q + 1)) <= 2^16
        xD = Signal(signed(X))
        with mod.If(edge):
            mod.d.sync += [tD.eq(sh_t[:K + 2]), xD.eq(xE)]
        e = Signal(unsigned(K + 1))
        mod.d.comb += e.eq(rhu_round(tD))

        def steps(rem_v, den_v, bit_of):
            """Two restoring steps (each one subtraction whose borrow is the comparison):
            ``bit_of(i)`` the dividend bit brought down by step ``i``. Returns the remainder
            and the two quotient bits (the first higher)."""
            dv = Cat(den_v, Const(1, 1))                       # 2^15 + e[14:0]
            bits = []
            for i in range(_STEPS_PER_CYCLE):
                trial = Cat(bit_of(i), rem_v)                  # K + 2 bits
                diff = Signal(K + 3, name=f"act_div_diff{len(bits)}")
                mod.d.comb += diff.eq(trial - dv)
                ge = ~diff[K + 2]
                rem_v = Mux(ge, diff[:K + 1], trial[:K + 1])
                bits.append(ge)
            return rem_v, Cat(*reversed(bits))

        def den_bit(den_v, j0):
            """``bit_of`` for the steps ``j0(ph) + i``: e's bit 14 - j (golden's dividend
            2^30 + (d >> 1), its low bits e[14:1])."""
            def bit_of(i):
                opts = {c: den_v[K - 1 - (j + i)] for c, j in j0.items()}
                v = Const(0, 1)
                for c, b in opts.items():
                    v = Mux(ph == c, b, v)
                return v
            return bit_of

        # D1: cycle 0 forms e, the partial remainder 2^15 + 1 - e (< d) and z (e = 0);
        # cycles 1..3 six quotient bits.
        den1, z1 = Signal(unsigned(K)), Signal()
        rem1 = Signal(unsigned(K + 1))
        q1 = Signal(unsigned(2 * (INTERVAL - 1)))
        j1 = {c: 2 * (c - 1) for c in range(1, INTERVAL)}
        rem1_n, bits1 = steps(rem1, den1, den_bit(den1, j1))
        with mod.If(at[0]):
            mod.d.sync += [den1.eq(e[:K]), z1.eq(tD == 0), rem1.eq(((1 << K) + 1 - e)[:K + 1]),
                           q1.eq(0)]
        for c in range(1, INTERVAL - 1):
            with mod.If(at[c]):
                mod.d.sync += [rem1.eq(rem1_n), q1.eq(Cat(bits1, q1))]
        # D2: the eight bits left, two a cycle.
        den2, z2 = Signal(unsigned(K)), Signal()
        rem2 = Signal(unsigned(K + 1))
        q2 = Signal(unsigned(B - 1))
        x2 = Signal(signed(X))
        j2 = {c: 2 * (INTERVAL - 1) + 2 * c for c in range(INTERVAL)}
        rem2_n, bits2 = steps(rem2, den2, den_bit(den2, j2))
        with mod.If(edge):
            mod.d.sync += [den2.eq(den1), z2.eq(z1), rem2.eq(rem1_n),
                           q2.eq(Cat(bits1, q1)), x2.eq(xD)]
        with mod.If(go & (ph != INTERVAL - 1)):
            mod.d.sync += [rem2.eq(rem2_n), q2.eq(Cat(bits2, q2))]
        q_last = Cat(bits2, q2)[:B - 1]
        sig_pos = Mux(z2, 1 << B, Cat(q_last, Const(1, 1)))      # 2^15, or 2^14 + q

        # --- O: output ------------------------------------------------------------------
        spO = Signal(unsigned(B + 1))
        xO = Signal(signed(X))
        with mod.If(edge):
            mod.d.sync += [spO.eq(sig_pos), xO.eq(x2)]
        sig = Mux(xO < 0, (1 << B) - spO, spO)[:B + 1]
        pO = Signal(signed(2 * OPERAND_BITS))
        with mod.If(at[0]):
            mod.d.sync += pO.eq(Mux(self.mode == ActMode.SIGMOID, sig,
                                    mul(xO[:OPERAND_BITS].as_signed(), sig, name="xsig")))
        pm = Signal(signed(2 * OPERAND_BITS + M_BITS))
        with mod.If(at[1]):
            mod.d.sync += pm.eq(mul(pO, self.m2, name="pm2"))
        t3 = Signal(signed(SH + 1))
        with mod.If(at[2]):
            mod.d.sync += t3.eq(sh_t)
        y = sat_halved(mod, t3, self.wide, name="act_y")

        # The shifter's operand by cycle: 1 E's a m by s, 2 O's p m2 by s2, 3 E's M by q + 1.
        with mod.Switch(ph):
            with mod.Case(1):
                mod.d.comb += [sh_v.eq(p1), sh_s.eq(self.s)]
            with mod.Case(2):
                mod.d.comb += [sh_v.eq(pm), sh_s.eq(self.s2)]
            with mod.Case(3):
                mod.d.comb += [sh_v.eq(mant[P - 1:]), sh_s.eq(qs)]

        with mod.If(edge):
            mod.d.sync += [self.o.valid.eq(vO), self.o.payload.y.eq(y)]
        with mod.Elif(self.o.ready):
            mod.d.sync += self.o.valid.eq(0)
        return mod
