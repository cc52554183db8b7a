"""Exact integer division and square root for the vector units.

* :class:`SeqDivider`: ``num // den``, restoring, one quotient bit a cycle (the one
  division a vector of Shiftmax and the norms);
* :func:`pipelined_divide`: the same restoring division unrolled into pipeline stages
  (one division an element); :func:`pipelined_divide_carried`, the same where the
  dividend's low bits are bits of the divisor, which travels anyway (the sigmoid family);
* :class:`SeqIsqrt`: ``floor(sqrt(v))`` digit by digit, one result bit a cycle
  (:func:`golden.intops.isqrt`).

Every result is the exact floor, so they equal golden's ``torch.div(..., rounding_mode=
"floor")`` and ``isqrt`` for every input that meets the stated preconditions.
"""
from amaranth.hdl import Cat, Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SeqDivider", "SeqIsqrt", "pipelined_divide", "pipelined_divide_carried"]


class SeqDivider(wiring.Component):
    """``q = num // den``, one quotient bit a cycle (restoring division).

    Precondition: the quotient fits ``q_bits``, i.e. ``num >> q_bits < den`` (the callers
    normalize so that it does; golden states it for each use). The remainder register is
    ``den_bits`` wide and the dividend's low ``q_bits`` bits shift out of the register the
    quotient bits shift into, so the unit is ``den_bits + q_bits`` flip-flops plus one
    ``den_bits + 1``-bit subtractor.

    Latency: ``ceil(q_bits / steps) + 1`` cycles from ``start`` to ``busy`` falling with
    ``q`` valid; ``q`` holds until the next ``start``.

    Parameters
    ----------
    num_bits, den_bits, q_bits : int  widths of the dividend, divisor and quotient (unsigned)
    den_held : bool   the caller holds ``den`` from ``start`` until ``busy`` falls (a
        register of its own, e.g. :class:`SeqIsqrt`'s ``r``): no copy is registered here
    steps : int   quotient bits a cycle, 1 (default) or 2 (two subtractors in a row); a
        divisor of ``q_bits``

    Members
    -------
    start : In(1)            loads ``num`` and ``den`` and starts (ignored while busy)
    num : In(num_bits)
    den : In(den_bits)
    busy : Out(1)
    q : Out(q_bits)
    """

    def __init__(self, *, num_bits: int, den_bits: int, q_bits: int, den_held: bool = False,
                 steps: int = 1):
        for name, v in (("num_bits", num_bits), ("den_bits", den_bits), ("q_bits", q_bits)):
            if not (isinstance(v, int) and v >= 1):
                raise ValueError(f"{name} must be a positive integer, not {v!r}")
        if steps not in (1, 2) or q_bits % steps:
            raise ValueError(f"steps must be 1 or 2 and divide q_bits={q_bits}, not {steps!r}")
        self._steps = steps
        if num_bits > den_bits + q_bits:
            raise ValueError(f"a {num_bits}-bit dividend cannot give a {q_bits}-bit quotient of "
                             f"a {den_bits}-bit divisor: need num_bits <= den_bits + q_bits")
        self._nb, self._db, self._qb = num_bits, den_bits, q_bits
        self._den_held = bool(den_held)
        super().__init__({"start": In(1), "num": In(num_bits), "den": In(den_bits),
                          "busy": Out(1), "q": Out(q_bits)})

    def elaborate(self, platform):
        m = Module()
        D, Q, S = self._db, self._qb, self._steps
        rem = Signal(D)
        lo = Signal(Q)            # dividend bits still to come (top), quotient bits (bottom)
        den = self.den if self._den_held else Signal(D)
        count = Signal(range(Q // S + 1))
        m.d.comb += [self.q.eq(lo), self.busy.eq(count != 0)]
        r, l = rem, lo
        for _ in range(S):        # one restoring step each: the remainder stays below den
            trial = Cat(l[Q - 1], r)[:D + 1]
            ge = trial >= den
            r = Mux(ge, trial - den, trial)[:D]
            l = Cat(ge, l[:Q - 1])
        with m.If(self.start & ~self.busy):
            m.d.sync += [rem.eq(self.num >> Q), lo.eq(self.num[:Q]), count.eq(Q // S)]
            if not self._den_held:
                m.d.sync += den.eq(self.den)
        with m.Elif(self.busy):
            m.d.sync += [rem.eq(r), lo.eq(l), count.eq(count - 1)]
        return m


class SeqIsqrt(wiring.Component):
    """``r = floor(sqrt(v))`` for a ``2 * r_bits``-bit ``v``, one result bit a cycle.

    The digit-by-digit (restoring) square root: each step brings down the next two bits
    of ``v`` into the remainder, and the trial subtrahend is ``4 r + 1``; an
    ``r_bits + 2``-bit remainder and subtractor, no multiplier, exact for every input (the
    same integer as :func:`golden.intops.isqrt`, which is also the exact floor).

    Latency: ``ceil(r_bits / steps) + 1`` cycles from ``start`` to ``busy`` falling with
    ``r`` valid (``steps``, 1 or 2 dividing ``r_bits``: result bits a cycle).

    Members
    -------
    start : In(1)
    v : In(2 * r_bits)
    busy : Out(1)
    r : Out(r_bits)
    """

    def __init__(self, *, r_bits: int, steps: int = 1):
        if not (isinstance(r_bits, int) and r_bits >= 1):
            raise ValueError(f"r_bits must be a positive integer, not {r_bits!r}")
        if steps not in (1, 2) or r_bits % steps:
            raise ValueError(f"steps must be 1 or 2 and divide r_bits={r_bits}, not {steps!r}")
        self._rb, self._steps = r_bits, steps
        super().__init__({"start": In(1), "v": In(2 * r_bits), "busy": Out(1),
                          "r": Out(r_bits)})

    def elaborate(self, platform):
        m = Module()
        W, S = self._rb, self._steps
        rem = Signal(W + 2)
        root = Signal(W)
        src = Signal(2 * W)        # bits of v still to come, two a step, MSB first
        count = Signal(range(W // S + 1))
        m.d.comb += [self.r.eq(root), self.busy.eq(count != 0)]
        r, q = rem, root
        for j in range(S):         # one digit each: bring down two bits, try 4 r + 1
            trial_rem = Cat(src[2 * W - 2 - 2 * j:2 * W - 2 * j], r)[:W + 2]
            trial_sub = Cat(1, 0, q)[:W + 2]
            ge = trial_rem >= trial_sub
            r = Mux(ge, trial_rem - trial_sub, trial_rem)[:W + 2]
            q = Cat(ge, q[:-1])
        with m.If(self.start & ~self.busy):
            m.d.sync += [rem.eq(0), root.eq(0), src.eq(self.v), count.eq(W // S)]
        with m.Elif(self.busy):
            m.d.sync += [rem.eq(r), root.eq(q), src.eq(src << (2 * S)), count.eq(count - 1)]
        return m


def pipelined_divide(m, pipe, num, den, *, q_bits: int, steps_per_stage: int = 1):
    """``num // den`` as ``ceil(q_bits / steps_per_stage)`` stages of restoring division.

    Same precondition and algorithm as :class:`SeqDivider` (quotient fits ``q_bits``),
    unrolled: each stage does ``steps_per_stage`` quotient bits (a subtractor each) and
    registers the remainder, the divisor and the dividend/quotient shift register through
    ``pipe`` (so it stalls with the rest of the unit). Throughput one division a cycle.

    Returns
    -------
    (q, stages): the quotient (a Signal of ``q_bits``, valid ``stages`` registers after
    ``num``/``den``) and the number of pipeline registers added.
    """
    Q = q_bits
    D = len(den)
    rem = Signal(D, name="div_rem0")      # num >> Q < den by the precondition
    m.d.comb += rem.eq(num >> Q)
    lo = num[:Q]
    d = den
    stages, done = 0, 0
    while done < Q:
        for _ in range(min(steps_per_stage, Q - done)):
            trial = Cat(lo[Q - 1], rem)[:D + 1]
            ge = trial >= d
            rem = Mux(ge, trial - d, trial)[:D]
            lo = Cat(ge, lo[:Q - 1])
            done += 1
        rem = pipe.reg(rem, unsigned(D), name="div_rem")
        lo = pipe.reg(lo, unsigned(Q), name="div_lo")
        if done < Q:
            d = pipe.reg(d, unsigned(D), name="div_den")
        stages += 1
    return lo, stages


def pipelined_divide_carried(m, pipe, rem, den, *, q_bits: int, divisor, num_bit,
                             steps_per_stage: int = 1):
    """A restoring division in ``ceil(q_bits / steps_per_stage)`` pipeline stages whose
    dividend's low bits are a function of the divisor (so they need no register of their
    own): the form of :class:`hw.activation.Activation`'s sigmoid division.

    The division is that of :func:`pipelined_divide` after its first step: ``rem`` (a
    Value, ``R`` bits unsigned) is the partial remainder with the dividend's low
    ``q_bits`` bits still to come, and step ``j`` (0 first) brings down the bit
    ``num_bit(j, den)``; ``divisor(den)`` is the divisor (``R`` bits at most) built from the
    carried bits ``den`` (registered through ``pipe`` while steps remain). Each step is the
    restoring one: ``trial = 2 rem + bit``, ``q_j = trial >= divisor``, ``rem = trial -
    divisor`` if ``q_j``, else ``trial``. Precondition (the caller's): ``rem < divisor``
    at the start, so every remainder stays below the divisor (``R`` bits) and the
    quotient fits ``q_bits``. Per stage, the registers are the remainder (``R`` bits),
    the quotient bits found so far (no dividend bits) and, while steps remain, ``den``.

    Returns
    -------
    (q, stages): the quotient (``q_bits`` unsigned, MSB the first step's), valid
    ``stages`` registers after ``rem``/``den``, and the number of pipeline registers added.
    """
    Q = q_bits
    R = len(rem)
    d = den
    q = None
    stages, done = 0, 0
    while done < Q:
        dv = divisor(d)
        for _ in range(min(steps_per_stage, Q - done)):
            trial = Cat(num_bit(done, d), rem)
            ge = trial >= dv
            rem = Mux(ge, trial - dv, trial)[:R]
            q = ge if q is None else Cat(ge, q)
            done += 1
        if done < Q:
            rem = pipe.reg(rem, unsigned(R), name="div_rem")
            d = pipe.reg(d, name="div_den")
        q = pipe.reg(q, unsigned(done), name="div_q")
        stages += 1
    return q, stages
