"""hw/divider.py pipelined_divide against floor division (Amaranth simulator).

The Activation's division ``(2^30 + (d >> 1)) // d`` for ``d = 2^15 + e``, ``e`` in
[0, 2^15] (every divisor its precondition allows, 32,769 of them), at one, two (the
Activation's default) and three quotient bits a stage, one division a cycle with random
clock-enable stalls (seed printed); then random dividends of a general divider (any
``num`` with ``num >> q_bits < den``) the same way.
"""
import random

import pytest
from amaranth.hdl import Module, Signal, unsigned
from amaranth.sim import Simulator

from ternac.hw.divider import pipelined_divide
from ternac.hw.vector import Pipe

SEED = 9


def _run(num_bits, den_bits, q_bits, sps, pairs, *, act_form, seed):
    """Feed ``pairs`` (num, den) through the divider, one a cycle when ce is high; return
    the quotients in order."""
    m = Module()
    ce = Signal()
    vin = Signal()
    num_in = Signal(num_bits)
    den_in = Signal(den_bits)
    pipe = Pipe(m, ce, "t")
    num = pipe.reg(num_in)
    den = pipe.reg(den_in)
    v = pipe.reg(vin)
    if act_form:                      # the Activation's dividend, formed from d
        num_f = Signal(num_bits)
        m.d.comb += num_f.eq((1 << 30) + (den >> 1))
        num = num_f
    q, stages = pipelined_divide(m, pipe, num, den, q_bits=q_bits, steps_per_stage=sps)
    assert stages == -(-q_bits // sps)
    v = pipe.delay(v, stages)
    rng = random.Random(seed)
    got = []

    async def bench(ctx):
        k = 0
        while len(got) < len(pairs):
            stall = rng.random() < 0.2
            ctx.set(ce, 0 if stall else 1)
            if k < len(pairs):
                ctx.set(num_in, pairs[k][0])
                ctx.set(den_in, pairs[k][1])
                ctx.set(vin, 1)
            else:
                ctx.set(vin, 0)
            if not stall and ctx.get(v):
                got.append(ctx.get(q))
            await ctx.tick()
            if not stall:
                k += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return got


@pytest.mark.parametrize("sps", [1, 2, 3])
def test_activation_division_every_divisor(sps):
    """Every d in [2^15, 2^16]: q == (2^30 + (d >> 1)) // d, bit-exact."""
    print(f"seed {SEED}")
    ds = [(1 << 15) + e for e in range((1 << 15) + 1)]
    pairs = [(0, d) for d in ds]
    got = _run(31, 17, 16, sps, pairs, act_form=True, seed=SEED + sps)
    want = [((1 << 30) + (d >> 1)) // d for d in ds]
    bad = [(d, g, w) for d, g, w in zip(ds, got, want) if g != w]
    assert len(got) == len(want) and not bad, f"{len(bad)} wrong, first {bad[:3]}"


@pytest.mark.parametrize("sps", [1, 2, 4])
def test_general_division_random(sps):
    """Random (num, den) meeting num >> 12 < den, 22-bit num, 10-bit den, 12 quotient bits."""
    print(f"seed {SEED}")
    rng = random.Random(SEED)
    pairs = []
    while len(pairs) < 3000:
        den = rng.randrange(1, 1 << 10)
        num = rng.randrange(0, den << 12)
        pairs.append((num, den))
    pairs += [(0, 1), ((1 << 12) - 1, 1), ((1023 << 12) - 1, 1023), (1023, 1023)]
    got = _run(22, 10, 12, sps, pairs, act_form=False, seed=SEED + sps)
    want = [n // d for n, d in pairs]
    bad = [(p, g, w) for p, g, w in zip(pairs, got, want) if g != w]
    assert len(got) == len(want) and not bad, f"{len(bad)} wrong, first {bad[:3]}"


@pytest.mark.parametrize("steps", [1, 2])
def test_sequential_divider_and_isqrt(steps):
    """SeqDivider and SeqIsqrt (the Norm unit's between-pass work) at one and two result
    bits a cycle: 150 random inputs each (the Norm's widths: a 31-bit dividend of a
    16-bit divisor, 16 quotient bits; the root of a 32-bit value; edge values included),
    every result the exact floor, ``busy`` for ``16 / steps`` cycles after ``start``."""
    import math
    from ternac.hw.divider import SeqDivider, SeqIsqrt
    seed = SEED + 40 + steps
    print(f"seed {seed}")
    rng = random.Random(seed)
    div = SeqDivider(num_bits=31, den_bits=16, q_bits=16, steps=steps)
    sq = SeqIsqrt(r_bits=16, steps=steps)
    m = Module()
    m.submodules.div, m.submodules.sq = div, sq
    cases = [(0, 1), ((1 << 31) - 1, 1 << 15 | 1), (5, 0xFFFF)]
    while len(cases) < 150:
        den = rng.randrange(1, 1 << 16)
        cases.append((rng.randrange(0, min(1 << 31, den << 16)), den))
    roots = [0, 1, (1 << 32) - 1, 1 << 30] + [rng.randrange(1 << 32) for _ in range(146)]
    got_q, got_r = [], []

    async def bench(ctx):
        for (num, den), v in zip(cases, roots):
            ctx.set(div.num, num)
            ctx.set(div.den, den)
            ctx.set(sq.v, v)
            ctx.set(div.start, 1)
            ctx.set(sq.start, 1)
            await ctx.tick()
            ctx.set(div.start, 0)
            ctx.set(sq.start, 0)
            busy = 0
            while ctx.get(div.busy) or ctx.get(sq.busy):
                busy += 1
                await ctx.tick()
            assert busy == 16 // steps
            got_q.append(ctx.get(div.q))
            got_r.append(ctx.get(sq.r))

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got_q == [num // den for num, den in cases]
    assert got_r == [math.isqrt(v) for v in roots]
    with pytest.raises(ValueError):
        SeqDivider(num_bits=31, den_bits=16, q_bits=15, steps=2)
