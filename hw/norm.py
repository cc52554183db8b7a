"""Norm: integer LayerNorm / RMSNorm over a streamed vector, two passes."""
from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import enum, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.golden.widths import (ACT_BITS, NORM_BIAS_BITS, NORM_EPS_MAX, NORM_ISQRT_BITS,
                                  NORM_N_MAX, NORM_RECIP_NUM_BITS, NORM_WEIGHT_BITS,
                                  NORM_Y_FRAC_BITS_MAX, NORM_Y_PRE_SHIFT, norm_frac_bits)
from ternac.golden.widths import M_BITS, S_BITS
from .divider import SeqDivider, SeqIsqrt
from .mulpool import borrow
from .vector import (OPERAND_BITS, VEC_IN, VEC_OUT, Pipe, bits_for, pass_control,
                     rhu_pipelined, rhu_sat_tail)

__all__ = ["NormMode", "Norm"]


class NormMode(enum.Enum, shape=1):
    """What :class:`Norm` computes."""
    LAYERNORM = 0   #: golden.intops.int_layernorm
    RMSNORM = 1     #: golden.intops.int_rmsnorm (the mean forced to 0)


class Norm(wiring.Component):
    """Integer LayerNorm / RMSNorm of vectors of up to ``max_len`` int16 values, two passes.

    Implements the LAYERNORM and RMSNORM instructions of :mod:`golden.vecops` (bias 0,
    eps 0) and, beyond them, :func:`golden.intops.int_layernorm` /
    :func:`~golden.intops.int_rmsnorm` with a 32-bit bias and an integer eps (``out_bits``
    8, or 16 with ``wide``), with the widths of ``OPS["norm"]`` sized for ``max_len`` (and
    for |x| <= 2^15, so even a negated -32768 cannot overflow a sum):

    1. pass 0 (statistics): ``x = -a`` with ``neg`` (Flag.NEG), else ``a``;
       ``S1 = sum x``, ``S2 = sum x^2`` (one DSP), ``N`` = count;
    2. between the passes, sequentially (no multiplier):
       ``V = eps + N*S2 - S1^2`` by shift-and-add (one bit of ``N``, then of ``|S1|``, a
       cycle; ``S1`` is 0 for RMSNorm); ``V = 0`` is taken as 1 (every ``d`` below is then
       0: no division by zero); normalize ``V`` into [2^30, 2^32) by shifts of 2 bits,
       counting ``k`` (one step a cycle); ``r = isqrt(V)`` (:class:`~hw.divider.SeqIsqrt`,
       16 cycles, exact); ``R = (2^30 + (r >> 1)) // r`` (:class:`~hw.divider.SeqDivider`,
       16 cycles). At most ``bits(N) + bits(|S1|) + 15 + 40`` cycles (< 100 for 4096);
    3. pass 1 (normalize): ``d = N*x - S1`` (the same DSP), ``d' = rhu(d, max(-k, 0))``,
       ``y = rhu((d' * R) << 1, 31 - G - max(k, 0))`` with ``G =
       golden.widths.norm_frac_bits(8)`` = 8, or with ``wide`` ``norm_frac_bits(16)`` = 16
       (24 bits signed), ``acc = weight * y + bias``, ``out = requantize(acc, m, s)``
       saturated to int8 [-127, 127] or, with ``wide``, int16 [-32767, 32767]. Four
       products on 16 x 16 slots of :mod:`hw.mulpool` (one SB_MAC16 each): ``x*x`` /
       ``N*x`` (1; ``x`` in 16 bits, |x| <= 32767), ``d'*R`` (2), ``w*y`` (16 x 24: 2),
       ``acc*m`` (40 x 16: 3), 8 slots. The three barrel shifts (by ``t``, by the ``y``
       shift and the output tail's by ``s``) are on the pool's shared shifters.

    The affine bias (32 bits, golden ``NORM_BIAS_BITS``) does not fit the 16-bit ``b`` field,
    which carries the weight, so it has its own stream ``c``, read only while ``bias_en``
    is 1, one word a beat of pass 1, in step with ``i`` (the unit takes it 9 stages after
    the matching ``i`` beat; a missing ``c`` word stalls the pipeline). With ``bias_en``
    0 the bias is 0 (the ISA's form, RMSNorm, a LayerNorm without bias) and ``c`` is never
    read.

    Throughput one beat a cycle in each pass; a vector of N elements takes ``2 N + 70`` to
    ``2 N + 100`` cycles without stalls (measured); latency from a beat of pass 1 to its
    output: 13 cycles.

    Parameters
    ----------
    max_len : int, 1..4096   longest vector (sizes the sums and the count)
    pool : hw.mulpool.MulPool or None   the multiplier pool to borrow from (an accelerator's
        one, shared by every unit); None: a private pool (this unit's own SB_MAC16s)
    affine : bool   True (default): the bias stream ``c`` and the integer ``eps``, as above;
        False: only what the ISA's LAYERNORM / RMSNORM use (bias 0, eps 0: the sequencer
        ties ``bias_en`` and ``eps`` to 0): ``bias_en``, ``eps`` and ``c`` are ignored
        (``c.ready`` is 0), ``V`` is sized without ``NORM_EPS_MAX`` (47 bits instead of 55
        at ``max_len`` 256) and ``acc`` without the 32-bit bias. Same integers and cycles
        for every ISA input.
    layernorm : bool   True (default): both modes; False: RMSNorm alone (a build whose
        programs hold no LAYERNORM, ``AccelConfig.ops``: hw/vector_units.py): no ``S1``
        and none of its arithmetic (``mode`` is ignored and taken as RMSNORM); the same
        integers and cycles for every RMSNORM.
    work_steps : int, 1 (default) or 2   bits a cycle of the between-pass work: the
        shift-add products ``N S2`` and ``S1 S1``, the normalization of ``V`` (shifts of 2
        or 4 bits), the isqrt and the division (hw/divider.py ``steps``); 2 halves its
        cycles (golden.cycles.norm_work_cycles ``work_steps``) for two adders or
        subtractors in a row where there was one (the ULX3S LM, AccelConfig.norm_steps).

    Members
    -------
    i : In(stream.Signature(VEC_IN))   both passes: ``a`` = x, ``b`` = the weight
        (|w| <= 32767; read in pass 1 only); ``last`` on the final element of each pass;
        |x| <= 32767
    c : In(stream.Signature(signed(32)))   pass 1 with ``bias_en``: the bias, one a beat
    o : Out(stream.Signature(VEC_OUT))     pass 1: ``y`` signed 16 bits
    m : In(16), s : In(6)   output multiplier (``golden.intops.norm_params(...,
        out_bits).m, .s``, made for the G of the output width)
    eps : In(54)            integer eps added to N^2 var (``norm_params(...).eps``; 0 in
        the ISA)
    mode : In(NormMode)
    neg : In(1)             negate ``a`` first
    bias_en : In(1)
    wide : In(1)            0: int8 output range and G = 8, 1: int16 and G = 16
    reuse : In(1)           (RMSNorm) stream the vector once, as pass 1, with the
                            statistics (N, R, t, the output shift) of the previous vector;
                            steady while a vector streams (golden/isa.py ``reuse``)

    Config ports are held constant while a vector streams.

    Raises
    ------
    ValueError for ``max_len`` out of range or ``work_steps`` other than 1 or 2.
    """

    #: Times the sequencer streams each vector through ``i``.
    passes = 2
    #: This unit's client name in a shared hw.mulpool.MulPool.
    pool_client = "norm"
    #: The client of the square ``x*x`` / ``N*x`` alone (enabled with any beat, as
    #: ``pool_client`` is only with a final-pass beat): a sequencer that tees another unit's
    #: results into pass 0 declares it concurrent with that unit (hw/sequencer.py).
    pool_client_sq = "norm_sq"
    #: Cycles from an accepted beat of the final pass to its output (no stalls).
    latency = 13

    def __init__(self, *, max_len: int = NORM_N_MAX, pool=None, affine: bool = True,
                 layernorm: bool = True, work_steps: int = 1):
        self.mulpool = pool           #: the shared hw.mulpool.MulPool, or None (a private one)
        if work_steps not in (1, 2):
            raise ValueError(f"Norm work_steps must be 1 or 2, not {work_steps!r}")
        self._ws = work_steps
        if not (isinstance(max_len, int) and 1 <= max_len <= NORM_N_MAX):
            raise ValueError(f"Norm max_len must be an integer in 1..{NORM_N_MAX}, "
                             f"not {max_len!r}")
        self._max_len = max_len
        self._affine = bool(affine)
        self._layernorm = bool(layernorm)
        #: False (default): the weight is ``i.payload.b``, taken with its beat and delayed to
        #: the ``w * y`` stage. True (set by a sequencer before elaboration,
        #: hw/sequencer.py): the weight arrives late, on ``w_late``, in the cycle its beat
        #: is in the stage before ``w * y``, and is registered with the beat; ``w_next`` is
        #: 1 in the cycle before that (a pass-1 beat enters that stage at this edge: ``ce``
        #: and its valid), so a memory read addressed on ``w_next`` delivers it, provided
        #: the unit does not stall there (``ce`` 1 in the next cycle: the sequencer's Norm
        #: is never stalled). The register keeps the memory's read path out of the pooled
        #: product (on the ECP5 a shared slot's slowest operand path is every user's).
        #: ``i.payload.b`` is then unused.
        self.late_w = False
        super().__init__({
            "i": In(stream.Signature(VEC_IN)),
            "c": In(stream.Signature(signed(NORM_BIAS_BITS))),
            "o": Out(stream.Signature(VEC_OUT)),
            "m": In(M_BITS), "s": In(S_BITS),
            "eps": In(NORM_EPS_MAX.bit_length()),
            "mode": In(NormMode),
            "neg": In(1),
            "bias_en": In(1),
            "wide": In(1),
            "reuse": In(1),
            "w_late": In(NORM_WEIGHT_BITS), "w_next": Out(1),
        })

    @property
    def max_len(self) -> int:
        return self._max_len

    def elaborate(self, platform):
        m = Module()
        W, RN, Z = NORM_ISQRT_BITS, NORM_RECIP_NUM_BITS, NORM_Y_PRE_SHIFT
        # G from the output width, golden's one rule: int8 (OUT8) or int16 (wide).
        G8, G16 = norm_frac_bits(ACT_BITS), norm_frac_bits(OPERAND_BITS)
        X = 1 << (OPERAND_BITS - 1)                   # |x| <= 2^15
        NL = self._max_len
        n_bits = bits_for(NL)
        s1_bits = bits_for(NL * X) + 1                # signed
        s2_bits = bits_for(NL * X * X)
        affine = self._affine
        v_bits = bits_for(NL * NL * X * X + (NORM_EPS_MAX if affine else 0))
        k_min = (2 * W - v_bits) // 2                 # most negative normalization shift
        t_max = -min(k_min, 0)
        sq_bits = bits_for(max(X * X, NL * X)) + 1    # x*x (pass 0) or N*x (pass 1), signed
        d_bits = bits_for(2 * NL * X) + 1             # N*x - S1, signed
        r_bits = W                                    # R in (2^14, 2^15]
        # |y| <= 2^(G+6) (1 + 2^-14): 24 bits signed at G = 16 (golden OPS["norm"]["y"])
        y_bits = NORM_Y_FRAC_BITS_MAX + 8
        wy_bits = NORM_WEIGHT_BITS + y_bits - 1       # |w y| < 2^15 2^22 (1 + 2^-14)
        acc_bits = max(wy_bits, NORM_BIAS_BITS) + 1 if affine else wy_bits

        ws = self._ws
        m.submodules.isqrt = isqrt = SeqIsqrt(r_bits=W, steps=ws)
        # den_held: the divisor is isqrt.r, which holds from the isqrt's end to its next start
        m.submodules.div = div = SeqDivider(num_bits=RN + 1, den_bits=W, q_bits=r_bits,
                                            den_held=True, steps=ws)
        ln = self._layernorm                          # LayerNorm built (else RMSNorm alone)
        rms = (self.mode == NormMode.RMSNORM) if ln else Const(1)

        N = Signal(range(NL + 1))
        S1 = Signal(signed(s1_bits)) if ln else Const(0, signed(s1_bits))
        S2 = Signal(unsigned(s2_bits))
        k = Signal(signed(bits_for(max(t_max, W)) + 1))
        t = Signal(range(t_max + 1))                  # max(-k, 0)
        y_shift = Signal(range(RN + Z - G8 + 1))      # 30 + Z - G - max(k, 0), >= 0
        R = Signal(r_bits)
        m.d.comb += R.eq(div.q)

        busy = Signal()
        work_done = Signal()
        need_c = Signal()
        ce = Signal()
        m.d.comb += ce.eq((~self.o.valid | self.o.ready) & (~need_c | self.c.valid))
        pipe = Pipe(m, ce, "norm")
        # Eight 16 x 16 products on hw.mulpool slots (x*x or N*x: ss; d'*R: uu + su; w*y:
        # su + ss; acc*m: uu + uu + su), borrowed while a beat is offered or in the pipeline.
        active = Signal(name="norm_active")
        active_final = Signal(name="norm_active_final")   # only pass-1 beats use d'R, wy, acc m
        if self.mulpool is not None:
            self.mulpool.concurrent(self.pool_client, self.pool_client_sq)
        mul = borrow(m, self.mulpool, self.pool_client, active_final)
        mul_sq = borrow(m, self.mulpool, self.pool_client_sq, active)
        pass_idx, accept, work_start, new_vector = pass_control(
            m, passes=self.passes, i=self.i, ce=ce, pipe_busy=busy, work_done=work_done,
            skip=self.reuse)
        final = (pass_idx == 1) | self.reuse
        # N of the vector the statistics are of (N itself restarts with every vector).
        n_held = Signal(range(NL + 1))
        with m.If(work_start):
            m.d.sync += n_held.eq(N)

        # Stage 1: register the beat. Stage 2: x*x (pass 0) or N*x (pass 1), one multiplier.
        v1 = pipe.reg(accept, name="v")
        x_in = Mux(self.neg, -self.i.payload.a, self.i.payload.a)
        x1 = pipe.reg(x_in, signed(OPERAND_BITS + 1), name="x")
        late_w = self.late_w
        if not late_w:
            w1 = pipe.reg(self.i.payload.b, name="w")
        with m.If(accept & ~final):
            m.d.sync += N.eq(N + 1)
        # x in 16 bits for the product: |x| <= 32767 (the unit's contract); the sums keep 17.
        x16 = x1[:OPERAND_BITS].as_signed()
        # No reset (a bubble's product is never read): the register folds into the
        # SB_MAC16 where the slot is this client's alone (the LM's pool: measured).
        sq2 = pipe.reg(mul_sq(x16, Mux(final, n_held, x16), name="sq", en=v1), signed(sq_bits),
                       name="sq", reset_less=True)
        v2 = pipe.reg(v1, name="v")
        # S1 sums x at stage 1, S2 sums x^2 at stage 2: both are complete once the pass
        # has drained, and x needs no second register.
        if ln:
            with m.If(ce & v1 & ~final):
                m.d.sync += S1.eq(S1 + x1)
        with m.If(ce & v2 & ~final):
            m.d.sync += S2.eq(S2 + sq2)

        # Pass 1: d = N x - S1, d' = rhu(d, t), y = rhu((d' R) << Z, 30 + Z - G - max(k, 0)).
        valids = [v1, v2]

        def advance(v, n=1):
            for _ in range(n):
                v = pipe.reg(v, name="v")
                valids.append(v)
            return v

        s1_eff = Mux(rms, 0, S1) if ln else 0
        v = advance(v2 & final)
        d = pipe.reg(sq2 - s1_eff, signed(d_bits), name="d")
        d = rhu_pipelined(m, pipe, d, t, name="norm_d1", halve=mul.shifter())
        v = advance(v, 2)
        # d'R and acc*m are 0 for a bubble (valid=): their shifts are zero_idle ones, ORed
        # into the pool's shared shifters without a gate.
        shift0 = mul.shifter(zero_idle=True)
        # Each product's slot gate is its stage's valid bit (hw.mulpool ``en=``).
        dr = pipe.reg(mul(d, R, name="dR", en=v), signed(d_bits + r_bits + 1), name="dR",
                      valid=v)
        v = advance(v)
        v_dr = v                            # two stages before w * y
        y = rhu_pipelined(m, pipe, dr << Z, y_shift, shape=signed(y_bits), name="norm_y",
                          halve=shift0)
        v = advance(v)
        v_w = v                             # the valid bit of the beat entering w's stage
        v = advance(v)
        if late_w:
            m.d.comb += self.w_next.eq(ce & v_dr)
            # 0 for a bubble (valid=), as wy and acc below: their products pass the pool's
            # shared slots without a gate (hw.mulpool ``zero_idle``).
            w = pipe.reg(self.w_late.as_signed(), name="w_late", valid=v_w)
        else:
            w = pipe.delay(w1, len(valids) - 1, name="w")
        # acc = weight * y + bias (the bias word is taken from ``c`` as the sum is formed).
        wy = pipe.reg(mul(y, w, name="wy", en=v, zero_idle="b" if late_w else ""),
                      signed(wy_bits), name="wy", valid=v)
        v = advance(v)
        if affine:
            m.d.comb += [need_c.eq(v & self.bias_en),
                         self.c.ready.eq(need_c & (~self.o.valid | self.o.ready))]
            bias = Mux(self.bias_en, self.c.payload, 0)
            acc_e = pipe.reg(wy + bias, signed(acc_bits), name="acc", valid=v)
        else:                               # bias 0: c is never read (need_c stays 0)
            # acc = w y: no stage of its own; the stage goes to the output tail below
            # (the same latency), not to a 39-bit copy of w y.
            m.d.comb += self.c.ready.eq(0)
            acc_e = wy
        if affine:
            v = advance(v)
        am = pipe.reg(mul(acc_e, self.m, name="accm", en=v, zero_idle="a"),
                      signed(acc_bits + M_BITS + 1), name="accm", valid=v)
        v = advance(v)
        # affine=False: the tail's extra stage keeps the latency of the affine form.
        out = rhu_sat_tail(m, pipe, am, self.s, out_bits=OPERAND_BITS, wide=self.wide,
                           name="norm_out", halve=shift0, extra_stage=not affine)
        v = advance(v)
        if not affine:
            v = advance(v)
        with m.If(ce):
            m.d.sync += [self.o.valid.eq(v), self.o.payload.y.eq(out)]
        with m.Elif(self.o.ready):
            # Stalled by a missing bias word, not by the output: the output still drains.
            m.d.sync += self.o.valid.eq(0)
        m.d.comb += [busy.eq(Cat(*valids).any()), active.eq(busy | self.i.valid),
                     active_final.eq(active & final)]

        # Between the passes: V, its normalization, isqrt, the division (sequential).
        acc = Signal(unsigned(v_bits))                # V; the multiplications never overshoot
        mcand = Signal(unsigned(v_bits))
        mplier = Signal(unsigned(max(n_bits, s1_bits - 1) if ln else n_bits))
        s1_abs = Signal(unsigned(s1_bits - 1))
        if ln:
            m.d.comb += s1_abs.eq(Mux(S1 < 0, -S1, S1))
        with m.FSM(name="work"):
            with m.State("IDLE"):
                with m.If(work_start):
                    m.d.sync += [acc.eq(self.eps if affine else 0), mcand.eq(S2), mplier.eq(N)]
                    m.next = "MUL_N_S2"
            # The products a bit of the multiplier a cycle (ws = 1) or two (ws = 2: the
            # multiplicand and twice it, each where its bit is set, in one sum).
            part = mcand if ws == 1 else (Mux(mplier[0], mcand, 0)
                                          + Mux(mplier[1], mcand << 1, 0))
            with m.State("MUL_N_S2"):          # acc += N * S2
                with m.If(mplier == 0):
                    m.d.sync += [mcand.eq(s1_abs), mplier.eq(Mux(rms, 0, s1_abs) if ln else 0)]
                    m.next = "MUL_S1_S1"
                with m.Else():
                    if ws == 1:
                        with m.If(mplier[0]):
                            m.d.sync += acc.eq(acc + mcand)
                    else:
                        m.d.sync += acc.eq(acc + part)
                    m.d.sync += [mcand.eq(mcand << ws), mplier.eq(mplier >> ws)]
            with m.State("MUL_S1_S1"):         # acc -= S1 * S1 (LayerNorm)
                with m.If(mplier == 0):
                    m.d.sync += k.eq(0)
                    with m.If(~acc.any()):
                        m.d.sync += acc.eq(1)
                    m.next = "NORMALIZE"
                with m.Elif(ln):               # (RMSNorm alone: mplier is 0 here)
                    if ws == 1:
                        with m.If(mplier[0]):
                            m.d.sync += acc.eq(acc - mcand)
                    else:
                        m.d.sync += acc.eq(acc - part)
                    m.d.sync += [mcand.eq(mcand << ws), mplier.eq(mplier >> ws)]
            with m.State("NORMALIZE"):         # V into [2^30, 2^32), V >> 2 floors
                if ws == 2:
                    # Two steps where two are due (floor(floor(V / 4) / 4) = floor(V / 16)).
                    with m.If(acc[2 * W + 2:].any()):            # V >= 2^34
                        m.d.sync += [acc.eq(acc >> 4), k.eq(k - 2)]
                    with m.Elif(acc[2 * W:].any()):              # V >= 2^32
                        m.d.sync += [acc.eq(acc >> 2), k.eq(k - 1)]
                    with m.Elif(~acc[2 * W - 4:].any()):         # V < 2^28
                        m.d.sync += [acc.eq(acc << 4), k.eq(k + 2)]
                    with m.Elif(~acc[2 * W - 2:].any()):         # V < 2^30
                        m.d.sync += [acc.eq(acc << 2), k.eq(k + 1)]
                    with m.Else():
                        m.next = "ISQRT_START"
                else:
                    with m.If(acc[2 * W:].any()):                # V >= 2^32
                        m.d.sync += [acc.eq(acc >> 2), k.eq(k - 1)]
                    with m.Elif(~acc[2 * W - 2:].any()):         # V < 2^30
                        m.d.sync += [acc.eq(acc << 2), k.eq(k + 1)]
                    with m.Else():
                        m.next = "ISQRT_START"
            with m.State("ISQRT_START"):       # a state of its own: start is a short path
                m.d.comb += isqrt.start.eq(1)
                m.next = "ISQRT"
            with m.State("ISQRT"):
                with m.If(~isqrt.busy):
                    m.d.comb += div.start.eq(1)
                    m.next = "DIVIDE"
            with m.State("DIVIDE"):
                with m.If(~div.busy):
                    m.d.sync += [t.eq(Mux(k < 0, -k, 0)),
                                 y_shift.eq(RN + Z - Mux(self.wide, G16, G8)
                                            - Mux(k > 0, k, 0))]
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += work_done.eq(1)
                m.next = "IDLE"
        m.d.comb += [isqrt.v.eq(acc[:2 * W]),
                     div.num.eq((1 << RN) + (isqrt.r >> 1)),
                     div.den.eq(isqrt.r)]

        with m.If(new_vector):
            m.d.sync += [N.eq(0), S2.eq(0)]
            if ln:
                m.d.sync += S1.eq(0)
        return m
