"""Shared pieces of the vector units (Shiftmax, Activation, Norm, Eltwise).

* the stream layouts every vector unit has (:data:`VEC_IN`, :data:`VEC_OUT`), so the
  sequencer drives all of them the same way;
* :class:`Pipe`: registers that advance together on one clock enable ``ce`` (the
  Requantizer's stall-everything discipline, written once);
* :func:`rhu`, :func:`rhu_pipelined`: :func:`golden.numerics.round_half_up_shift` by a
  constant or a run-time shift, built from its two halves :func:`rhu_halve` (the barrel
  shifter) and :func:`rhu_round` (the incrementer), the one round-half-up of the RTL (the
  Requantizer's too); :func:`rhu_sat_tail`, :func:`saturate_sym`: the rounding
  shift and the saturation of ``golden.numerics.requantize`` / ``sat`` to the
  :func:`sym_range` bounds, with their tests written as bit reductions (no carry chain as
  wide as the product); :func:`priority_encode`;
* :func:`shift_exp`: the shift-exp core of :func:`golden.intops.shift_exp` (log2 e in the
  gain, a quadratic for 2^-f) as eight pipeline stages;
* :func:`pass_control`: the pass counter of a multi-pass unit (stream a pass, drain the
  pipeline, do the once-a-vector work, stream the next pass).

Nothing here states a numeric rule of its own: each function names the golden function it
implements, and its widths come from :mod:`golden.intops` / :mod:`golden.widths`.
"""
from amaranth.hdl import Cat, Const, Mux, Shape, Signal, Value, signed, unsigned
from amaranth.lib import data

from ternac.golden.widths import (EXP_ARG_FP_MAX, EXP_ARG_FRAC_BITS, EXP_FRAC_BITS, EXP_IN_BITS,
                                  EXP_QUAD_C, EXP_QUAD_FRAC_BITS)
from ternac.golden.widths import ACT_BITS, ACT_MAX, M_BITS, SCRATCH_BITS, WIDE_MAX

__all__ = ["VEC_IN", "VEC_OUT", "VEC_OUT_U", "OPERAND_BITS", "Pipe", "rhu_halve", "rhu_round",
           "rhu", "rhu_pipelined",
           "rhu_sat_tail", "sat_halved", "sat_tests", "priority_encode", "saturate_sym",
           "sym_range",
           "shift_exp", "exp_slope",
           "SHIFT_EXP_STAGES", "pass_control", "bits_for"]

#: Width of the operands ``a`` / ``b`` and of the result ``y`` of every vector unit: a
#: scratch word.
OPERAND_BITS = SCRATCH_BITS

#: One element of a vector: ``a`` the operand, ``b`` a second operand or a per-element
#: parameter (Norm weight, Eltwise second operand), ``last`` on the final element of a pass.
VEC_IN = data.StructLayout({"a": signed(OPERAND_BITS), "b": signed(OPERAND_BITS), "last": 1})
#: One result element (signed 16 bits).
VEC_OUT = data.StructLayout({"y": signed(OPERAND_BITS)})
#: One result element of Shiftmax (unsigned 16 bits: probabilities are never negative).
VEC_OUT_U = data.StructLayout({"y": unsigned(OPERAND_BITS)})


def bits_for(value: int) -> int:
    """Unsigned bits that hold every integer in [0, value]."""
    return max(int(value).bit_length(), 1)


class Pipe:
    """Pipeline registers that all load on the same clock enable ``ce``.

    ``reg(v)`` is a register holding ``v`` one stage later; ``delay(v, n)`` is ``n`` stages
    later. Every stage of a unit advances together, so a stalled output stalls the whole
    pipeline and nothing is lost (valid bits travel through the same registers).
    """

    def __init__(self, m, ce, prefix: str):
        self._m, self._ce, self._prefix = m, ce, prefix
        self._count = 0

    @property
    def ce(self):
        """The clock enable every register of this pipeline loads on."""
        return self._ce

    def reg(self, value, shape=None, *, name: str | None = None, valid=None,
            reset_less: bool = False) -> Signal:
        """A register of ``value`` (of ``shape``, default its own) loaded on ``ce``; with
        ``valid`` (the valid bit of the beat ``value`` belongs to), loaded with 0 for a
        bubble, so it is 0 whenever its stage holds no beat (a hw.mulpool ``zero_idle``
        operand; the flip-flops' synchronous reset, no LUT).

        ``reset_less``: no domain reset (a data register whose value in a bubble nobody
        reads): Yosys's synth_ice40 -dsp folds a register straight from a product into the
        SB_MAC16's output register only without a synchronous reset (measured, Yosys 0.70),
        so it takes no logic cell."""
        value = Value.cast(value)
        shape = value.shape() if shape is None else Shape.cast(shape)
        if valid is not None:
            if reset_less:
                raise ValueError("a register cleared for a bubble (valid=) has a reset")
            value = Mux(valid, value, 0)
        self._count += 1
        sig = Signal(shape, name=f"{self._prefix}_{name or 'r'}{self._count}",
                     reset_less=reset_less)
        with self._m.If(self._ce):
            self._m.d.sync += sig.eq(value)
        return sig

    def delay(self, value, n: int, *, name: str = "d", shape=None) -> Value:
        v = Value.cast(value)
        for _ in range(n):
            v = self.reg(v, shape, name=name)
        return v


def rhu_halve(v, s) -> Value:
    """First half of :func:`rhu`: ``t = floor(2v / 2^s)``, the barrel shifter.

    ``s`` is an int >= 0 (then ``v >> (s - 1)``, no wider than ``v``, or ``2v`` for 0) or
    an unsigned run-time Value of any size (``(2v) >> s``: a shift past the width gives 0
    or -1).
    """
    v = Value.cast(v)
    if isinstance(s, int):
        if s < 0:
            raise ValueError(f"a rounding shift cannot be negative, not {s!r}")
        return v << 1 if s == 0 else v >> (s - 1)
    return (v << 1) >> s


def rhu_round(t) -> Value:
    """Second half of :func:`rhu`: ``(t + 1) >> 1``, the incrementer. With ``t`` from
    :func:`rhu_halve` this is ``floor((floor(v / 2^(s-1)) + 1) / 2) = (v + 2^(s-1)) >> s``
    for every s >= 0 (golden.numerics.round_half_up_shift), with no variable rounding
    constant."""
    return (Value.cast(t) + 1) >> 1


def rhu(m, v, s, *, name: str = "rhu") -> Signal:
    """:func:`golden.numerics.round_half_up_shift`: ``(v + 2^(s-1)) >> s``, ``v`` for s = 0.

    ``s`` is an int or an unsigned run-time Value (any size: a shift past the width of
    ``v`` gives 0, as the rule does). Written as :func:`rhu_round` of :func:`rhu_halve`,
    ``((2v >> s) + 1) >> 1``: one barrel shifter and one incrementer, combinational. The
    result keeps the shape of ``v`` (it is never wider than ``v``).
    """
    v = Value.cast(v)
    if isinstance(s, int) and s == 0:
        return v
    out = Signal(v.shape(), name=name)
    m.d.comb += out.eq(rhu_round(rhu_halve(v, s)))
    return out


def sym_range(wide) -> tuple[Value, Value]:
    """Symmetric saturation bounds: int8 [-127, 127], or with ``wide`` int16 [-32767, 32767].

    int8 is the activation contract (golden.widths.ACT_MAX); int16 the symmetric scratch
    word (golden.widths.WIDE_MAX), so ``-y`` never overflows either. golden.isa Flag.OUT8
    selects int8 (``wide = 0``).
    """
    hi = Mux(wide, Const(WIDE_MAX, signed(OPERAND_BITS + 1)),
             Const(ACT_MAX, signed(OPERAND_BITS + 1)))
    return -hi, hi


def saturate_sym(m, v, wide, *, out_bits: int = OPERAND_BITS, name: str = "sat") -> Signal:
    """:func:`golden.numerics.sat` of a signed ``v`` to the :func:`sym_range` bounds (int8,
    or int16 with ``wide``), with the tests written as AND/OR reductions of ``v``'s bits
    (``v > 2^(b-1) - 1`` iff non-negative with a bit set at b-1 or above; ``v < -(2^(b-1) -
    1)`` iff ``v <= -2^(b-1)``) instead of two carry chains as wide as ``v``."""
    v = Value.cast(v)
    lo, hi = sym_range(wide)

    def over(b):
        return ~v[-1] & v[b - 1:-1].any()

    b8, b16 = ACT_BITS, OPERAND_BITS
    out = Signal(signed(out_bits), name=name)
    m.d.comb += out.eq(Mux(Mux(wide, over(b16), over(b8)), hi,
                           Mux(Mux(wide, _le_minus_2k(v, b16 - 1), _le_minus_2k(v, b8 - 1)),
                               lo, v[:out_bits])))
    return out


def rhu_pipelined(m, pipe: Pipe, v, s, *, shape=None, name: str = "rhu",
                  halve=None) -> Signal:
    """:func:`rhu` by a run-time shift ``s`` in two pipeline stages (for Fmax on iCE40).

    Stage 1 registers ``t = floor(2v / 2^s)`` (the barrel shifter), stage 2 registers
    ``(t + 1) >> 1`` (the incrementer). Returns the stage-2 register, of ``shape`` (default
    the shape of ``v``; a narrower one where the caller knows the result fits).
    ``halve(v, s)``, if given, forms the barrel shift (a :mod:`hw.mulpool` client's
    ``shift``, a shifter shared with units that never run at once); default
    :func:`rhu_halve`.
    """
    v = Value.cast(v)
    shape = v.shape() if shape is None else Shape.cast(shape)
    if hasattr(halve, "reg"):
        # A pool shifter (hw.mulpool _Shifter): both stages on the slot's own registers.
        _, r = halve.reg(v, s, ce=pipe.ce, name=name, rounded=True)
        out = Signal(shape, name=name)
        m.d.comb += out.eq(r)
        return out
    t = pipe.reg((halve or rhu_halve)(v, s), name=f"{name}_t")
    return pipe.reg(rhu_round(t), shape, name=name)


def _shift_reg(pipe: Pipe, halve, v, s, name: str) -> Value:
    """``reg(halve(v, s))``: the barrel shift registered, on a pool shifter slot's own
    register when ``halve`` is a hw.mulpool shifter handle (``.reg``), else in ``pipe``."""
    if hasattr(halve, "reg"):
        return halve.reg(v, s, ce=pipe.ce, name=name)
    return pipe.reg((halve or rhu_halve)(v, s), name=name)


def _ge_2k_minus_1(t, k: int) -> Value:
    """``t >= 2^k - 1`` for a signed or unsigned ``t``: AND/OR reductions, no carry chain."""
    neg = t[-1] if t.shape().signed else Const(0, 1)
    upper = t[k:-1] if t.shape().signed else t[k:]
    return ~neg & (upper.any() | t[:k].all())


def _le_minus_2k(t, k: int) -> Value:
    """``t <= -2^k`` for a signed ``t``: negative, and either below -2^k or exactly -2^k."""
    return t[-1] & (~t[k:].all() | ~t[:k].any())


def rhu_sat_tail(m, pipe: Pipe, v, s, *, out_bits: int, wide=None,
                 name: str = "out", halve=None, extra_stage: bool = False) -> Signal:
    """``sat(rhu(v, s))`` (golden.numerics ``requantize`` after its product, or Shiftmax's
    clamp): one pipeline stage, then combinational logic for the caller's output register.

    * ``wide`` given (a Value): ``v`` signed, saturated to the :func:`sym_range` bounds,
      int8 [-127, 127] or int16 [-32767, 32767]; the result is ``out_bits`` (16) signed;
    * ``wide`` None: ``v`` unsigned, clamped to [0, 2^out_bits - 1]; unsigned result.

    Stage 1 registers the barrel shift ``t = floor(2v / 2^s)``. Then, in parallel, the
    increment of only the low ``out_bits + 1`` bits of ``t`` (all the result needs when it
    is in range) and the saturation tests on ``t`` itself: ``(t + 1) >> 1 > 2^(b-1) - 1``
    iff ``t >= 2^b - 1``, ``< -(2^(b-1) - 1)`` iff ``t <= -2^b`` (b = 8 or 16; b =
    out_bits + 1 unsigned), written as AND/OR reductions, so no carry chain is as wide
    as ``v``.

    ``halve(v, s)``, if given, forms the barrel shift (a :mod:`hw.mulpool` client's
    ``shift``: the units' tails share one, as they never run at once); default
    :func:`rhu_halve`.

    ``extra_stage`` (signed ``wide`` form only): one stage more, between the tests and the
    final selection: the rounded value (a pool shifter slot's rounding register, with a
    pool shifter) and the two saturation tests are registered, and the result is their
    multiplexer, so the caller's output register packs with it (a 16-bit register of the
    result would be a flip-flop fed by a flip-flop).
    """
    v = Value.cast(v)
    if extra_stage:
        if wide is None:
            raise ValueError("extra_stage is for the signed (wide) tail")
        if hasattr(halve, "reg"):
            t, r = halve.reg(v, s, ce=pipe.ce, name=f"{name}_t", rounded=True)
        else:
            t = pipe.reg((halve or rhu_halve)(v, s), name=f"{name}_t")
            r = pipe.reg(rhu_round(t[:out_bits + 1]), name=f"{name}_r")
        lo, hi = sym_range(wide)
        over_c, under_c = sat_tests(t, wide)
        over = pipe.reg(over_c, name=f"{name}_over")
        under = pipe.reg(under_c, name=f"{name}_under")
        out = Signal(signed(out_bits), name=name)
        m.d.comb += out.eq(Mux(over, hi, Mux(under, lo, r[:out_bits])))
        return out
    t = _shift_reg(pipe, halve, v, s, f"{name}_t")
    low = Signal(out_bits, name=f"{name}_low")
    m.d.comb += low.eq(rhu_round(t[:out_bits + 1]))
    if wide is None:
        out = Signal(unsigned(out_bits), name=name)
        m.d.comb += out.eq(Mux(_ge_2k_minus_1(t, out_bits + 1), (1 << out_bits) - 1, low))
        return out
    return sat_halved(m, t, wide, out_bits=out_bits, name=name, low=low)


def sat_halved(m, t, wide, *, out_bits: int = OPERAND_BITS, name: str = "out",
               low=None) -> Signal:
    """The signed tail of :func:`rhu_sat_tail` after its barrel shift: ``sat((t + 1) >> 1)``
    to the :func:`sym_range` bounds (int8, or int16 with ``wide``) for ``t = floor(2v /
    2^s)`` (signed), the rounding on the low ``out_bits + 1`` bits only (``low``, if given,
    is that rounding already formed) and the saturation tests as AND/OR reductions of
    ``t``. Returns an ``out_bits`` signed Signal (combinational)."""
    if low is None:
        low = rhu_round(t[:out_bits + 1])[:out_bits]
    lo, hi = sym_range(wide)
    over, under = sat_tests(t, wide)
    out = Signal(signed(out_bits), name=name)
    m.d.comb += out.eq(Mux(over, hi, Mux(under, lo, low)))
    return out


def sat_tests(t, wide):
    """The saturation tests of a signed round-half-up tail on ``t = floor(2v / 2^s)``:
    ``(over, under)``, 1 bit each, ``(t + 1) >> 1`` above ``2^(b-1) - 1`` (iff ``t >= 2^b -
    1``) and below ``-(2^(b-1) - 1)`` (iff ``t <= -2^b``), ``b`` = 16 with ``wide`` (1 bit)
    else 8 (golden.numerics.requantize's int8 / int16 bounds), as AND/OR reductions of ``t``:
    no carry chain as wide as ``t``."""
    b8, b16 = ACT_BITS, OPERAND_BITS
    return (Mux(wide, _ge_2k_minus_1(t, b16), _ge_2k_minus_1(t, b8)),
            Mux(wide, _le_minus_2k(t, b16), _le_minus_2k(t, b8)))


def priority_encode(m, v, *, name: str = "msb") -> Signal:
    """Index of the most significant set bit of ``v`` (0 when ``v`` is 0): a balanced tree
    of 2:1 multiplexers, ``ceil(log2 len(v))`` levels (a chain of ``If`` would be as deep
    as ``v`` is wide)."""
    def enc(bits):
        if len(bits) == 1:
            return bits[0], Const(0, 0)
        half = 1 << ((len(bits) - 1).bit_length() - 1)
        lo_any, lo_idx = enc(bits[:half])
        hi_any, hi_idx = enc(bits[half:])
        width = (half - 1).bit_length()
        return lo_any | hi_any, Mux(hi_any, Cat(hi_idx, Const(0, width - len(hi_idx)), 1),
                                    Cat(lo_idx, Const(0, width - len(lo_idx)), 0))
    v = Value.cast(v)
    _, idx = enc([v[j] for j in range(len(v))])
    out = Signal(range(max(len(v), 2)), name=name)
    m.d.comb += out.eq(idx)
    return out


def exp_slope(r):
    """The slope ``S = 2^15 + 11 (1023 - r)`` of golden.intops.shift_exp's quadratic for
    2^-f, from the 10 fraction bits ``r`` of its argument (unsigned): ``1023 - r`` is
    ``~r`` and ``11 ~r`` two shift-adds, no multiplier. 16 bits unsigned, at most
    ``2^15 + 11 * 1023``."""
    F, K, P, C = EXP_ARG_FRAC_BITS, EXP_FRAC_BITS, EXP_QUAD_FRAC_BITS, EXP_QUAD_C
    assert C == 0b1011, "the shift-adds below are 11 * (1023 - r)"
    nr = ~r[:F]
    return (1 << (K - F - 1 + P)) + ((nr << 3) + (nr << 1) + nr)


#: Pipeline registers of :func:`shift_exp`, from its argument to its result.
SHIFT_EXP_STAGES = 8


def shift_exp(m, pipe: Pipe, a, gain_m, gain_s, *, mul=None, valid=None,
              round_last: bool = True, a_zero: bool = False) -> Signal:
    """:func:`golden.intops.shift_exp` in :data:`SHIFT_EXP_STAGES` = 8 pipeline stages.

    ``a`` (16 bits unsigned, registered by the caller) -> ``a*m`` (32 bits, a DSP) ->
    ``u = min(rhu(a*m, s), 2^15 - 1)`` (barrel shift, then round and clamp; log2 e is in
    ``m``) -> the slope ``S = 2^15 + 11 (1023 - r)`` of the quadratic for 2^-f (``r = u &
    1023``; ``1023 - r`` is ``~r``, and ``11 ~r`` two shift-adds) -> ``r * S`` (26 bits, the
    second DSP) -> ``M = 2^26 - r*S`` (27 bits) -> ``e = rhu(M, q + 11)`` with ``q = u >>
    10`` (barrel shift, round): 16 bits unsigned in [0, 2^15]. Widths from
    ``golden.intops.OPS["shift_exp"]``; a register every carry chain or multiplier, for Fmax
    on iCE40.

    ``mul(x, y)``, if given, forms the two products (a :mod:`hw.mulpool` client; its
    ``shift`` then forms the two barrel shifts, on the pool's shared shifters); default
    ``x * y`` and :func:`rhu_halve`. ``valid``, if given, is the valid bit of ``a``'s beat:
    the product register and the mantissa ``M`` are then 0 for a bubble and both barrel
    shifts ``zero_idle`` ones.

    ``a_zero``: ``a`` is 0 whenever ``valid`` is 0 (the caller's register cleared for a
    bubble): with a pool and ``valid``, ``a * m`` and ``r * S`` then pass their shared
    slots without a gate on ``a``, ``r`` and ``S`` (hw.mulpool ``zero_idle``; ``r`` and
    ``S`` are cleared for a bubble here).

    ``round_last`` False: the last stage is left to the caller, who gets ``(t, e)``:
    the register before it, ``t = floor(2M / 2^(q + 11))`` (7 stages; ``rhu_round(t)`` is
    the result, 0 iff ``t`` is 0), and with a pool, ``e``, that rounding registered on the
    shifter slot (8 stages; None without a pool), to form what it needs of ``e`` in one
    stage of its own.

    The golden function clamps the power-of-two shift ``q`` at 17; here the unclamped
    ``q = u >> 10`` (at most 31) is used, which gives the same integer: ``M <= 2^26``, so
    any shift ``q + 11`` of 28 or more rounds it to 0.
    """
    F, K, P, C = EXP_ARG_FRAC_BITS, EXP_FRAC_BITS, EXP_QUAD_FRAC_BITS, EXP_QUAD_C
    u_bits = bits_for(EXP_ARG_FP_MAX)                                 # 15
    pooled = hasattr(mul, "shifter")
    halve = mul.shifter(zero_idle=valid is not None) if pooled else rhu_halve
    gated = pooled and valid is not None
    # A pool client's products are gated by their stage's valid bit (hw.mulpool ``en=``).
    if gated:
        v_ops = [valid]                        # the valid bit of a's stage, then 4 more
        for _ in range(4):                     # prod, t, u, slope: r1 and slope's stage
            v_ops.append(pipe.reg(v_ops[-1], name="exp_v"))
    if not pooled:
        mul = mul or (lambda x, y: x * y)
        mul_at = lambda x, y, k: mul(x, y)                               # noqa: E731
    elif gated:
        mul_at = lambda x, y, k, z="": mul(x, y, en=v_ops[k], zero_idle=z)  # noqa: E731
    else:
        mul_at = lambda x, y, k: mul(x, y)                               # noqa: E731
    zero = gated and a_zero
    prod = pipe.reg(mul_at(a, gain_m, 0, "a") if zero else mul_at(a, gain_m, 0),
                    unsigned(EXP_IN_BITS + M_BITS), name="exp_prod", valid=valid)
    # min((t + 1) >> 1, 2^15 - 1): the clamp exactly when t >= 2^16 - 1.
    if pooled:
        # The rounding (t + 1) >> 1 registered on the shifter slot (its one incrementer, no
        # second copy for the clamp: one incrementer feeding two registers packs with
        # neither), the clamp test registered here: u is those two registers' mux.
        t, t_round = halve.reg(prod, gain_s, ce=pipe.ce, name="exp_t", rounded=True)
        over = pipe.reg(t[u_bits + 1:].any() | t[:u_bits + 1].all(), name="exp_over")
        u = Signal(unsigned(u_bits), name="exp_u")
        m.d.comb += u.eq(Mux(over, EXP_ARG_FP_MAX, t_round[:u_bits]))
    else:
        t = pipe.reg(halve(prod, gain_s), name="exp_t")
        over = t[u_bits + 1:].any() | t[:u_bits + 1].all()
        u = pipe.reg(Mux(over, EXP_ARG_FP_MAX, (t[:u_bits + 1] + 1) >> 1), unsigned(u_bits),
                     name="exp_u")
    r, q = u[:F], u[F:]
    s_max = (1 << (K - F - 1 + P)) + C * ((1 << F) - 1)
    # (With a_zero: r and S cleared for a bubble, so r * S needs no gate on its slot.)
    slope = pipe.reg(exp_slope(r),
                     unsigned(bits_for(s_max)), name="exp_slope",
                     valid=v_ops[3] if zero else None)
    r1 = pipe.reg(r, name="exp_r", valid=v_ops[3] if zero else None)
    q1 = pipe.reg(q, name="exp_q")
    rs = pipe.reg(mul_at(r1, slope, 4, "ab") if zero else mul_at(r1, slope, 4),
                  unsigned(F + bits_for(s_max)), name="exp_rs")
    q2 = pipe.reg(q1, name="exp_q")
    if valid is not None and pooled:
        # The valid bit of rs's beat (registers that repeat the caller's delay of ``valid``:
        # Yosys merges the equal flip-flops): mant is 0 for a bubble, a zero_idle shift.
        v_rs = pipe.reg(v_ops[4], name="exp_v")          # prod, t, u, slope, rs
        mant = pipe.reg((1 << (K + P)) - rs, unsigned(K + P + 1), name="exp_mant", valid=v_rs)
    else:
        mant = pipe.reg((1 << (K + P)) - rs, unsigned(K + P + 1), name="exp_mant")
    # rhu(M, q + 11) needs floor(2M / 2^(q + 11)) = floor(2 (M >> 10) / 2^(q + 1)): the
    # barrel shift of M >> 10 (17 bits, M <= 2^26) by q + 1, and by 31 for q = 31 (both 0:
    # 2 (M >> 10) <= 2^17), so the shift amount has 5 bits (a shifter level fewer).
    qmax = EXP_ARG_FP_MAX >> F                                         # 31
    pre = P - 1
    assert bits_for(qmax) == 5 and (1 << (K + P)) >> pre < 1 << 17
    mant_hi = mant[pre:]
    qs = pipe.reg(Mux(q2 == qmax, qmax, q2 + 1), unsigned(bits_for(qmax)), name="exp_qs")
    if not round_last:
        if pooled:
            return halve.reg(mant_hi, qs, ce=pipe.ce, name="exp_e_t", rounded=True)
        return pipe.reg(halve(mant_hi, qs), name="exp_e_t"), None
    return rhu_pipelined(m, pipe, mant_hi, qs, shape=unsigned(K + 1), name="exp_e",
                         halve=halve)


def pass_control(m, *, passes: int, i, ce, pipe_busy, work_done, extra_ready=1, skip=0):
    """The pass counter of a multi-pass unit: stream, drain, work, next pass.

    ``skip`` (a config bit, steady for a vector): the vector is streamed once, as its final
    pass, with the statistics of the previous vector (the Norm unit's ``reuse``); the
    caller treats pass 0 as the final one while ``skip`` is high.

    * STREAM: ``i.ready = ce & extra_ready``; the beat with ``last`` ends the pass;
    * DRAIN: ``i.ready`` low until ``pipe_busy`` falls (every beat of the pass has left the
      pipeline stages, so statistics are complete and no stage still uses the pass index);
      then, after the final pass, back to pass 0 (a new vector); otherwise
    * WORK: ``work_start`` pulses once; when ``work_done`` is high, the next pass streams.

    Returns
    -------
    (pass_idx, accept, work_start, new_vector): the current pass (Signal of
    ``range(passes)``), the input handshake, a one-cycle pulse that starts the work after
    pass ``pass_idx`` (not after the final one), and a one-cycle pulse when a vector ends
    (clear the per-vector accumulators).
    """
    pass_idx = Signal(range(max(passes, 2)), name="pass_idx")
    accept = Signal(name="accept")
    work_start = Signal(name="work_start")
    new_vector = Signal(name="new_vector")
    with m.FSM(name="pass_fsm"):
        with m.State("STREAM"):
            m.d.comb += i.ready.eq(ce & extra_ready)
            with m.If(i.valid & i.ready & i.payload.last):
                m.next = "DRAIN"
        with m.State("DRAIN"):
            with m.If(~pipe_busy):
                with m.If((pass_idx == passes - 1) | skip):
                    m.d.comb += new_vector.eq(1)
                    m.d.sync += pass_idx.eq(0)
                    m.next = "STREAM"
                with m.Else():
                    m.d.comb += work_start.eq(1)
                    m.next = "WORK"
        with m.State("WORK"):
            with m.If(work_done):
                m.d.sync += pass_idx.eq(pass_idx + 1)
                m.next = "STREAM"
    m.d.comb += accept.eq(i.valid & i.ready)
    return pass_idx, accept, work_start, new_vector
