"""hw/mulpool.py: pooled products are exact for every operand shape the units use, a slot
serves whichever client is enabled, concurrent clients get disjoint slots, and the pool
counts the SB_MAC16 the clients need (the most any one needs per slot type)."""
import random

import pytest
from amaranth.hdl import Elaboratable, Module, Signal, signed, unsigned
from amaranth.sim import Simulator

from ternac.hw.mulpool import MulPool

SEED = 11



def _quiet(*objs):
    """Pools and modules built only to count slots are never elaborated: say so, so that
    Amaranth's UnusedElaboratable warning stays quiet."""
    for o in objs:
        o._MustUse__silence = True
    return objs[0]

#: (a shape, b shape) of products the units and the sequencer pool: 16 x 16 of each
#: signedness, narrow operands (Dot's int8 b, the exp core's 10-bit r), and wide ones cut
#: into chunks (Norm's 40-bit acc * m and 24-bit y * w, Eltwise's 32-bit X * m, the
#: requantizer's 17/18-bit accumulators, SAMPLE's 28-bit total).
SHAPES = [
    (signed(16), signed(16)), (signed(16), unsigned(16)), (unsigned(16), unsigned(16)),
    (unsigned(16), signed(16)), (signed(16), signed(8)), (unsigned(10), unsigned(16)),
    (signed(40), unsigned(16)), (signed(24), signed(16)), (signed(32), unsigned(16)),
    (signed(17), unsigned(16)), (signed(18), unsigned(16)), (unsigned(28), unsigned(15)),
    (signed(30), unsigned(16)), (signed(35), unsigned(16)), (unsigned(13), signed(16)),
]


def _lim(shape):
    return (-(1 << (shape.width - 1)), (1 << (shape.width - 1)) - 1) if shape.signed else \
        (0, (1 << shape.width) - 1)


def _values(rng, shape, n):
    lo, hi = _lim(shape)
    return [lo, hi, 0, -1 if shape.signed else 1] + [rng.randint(lo, hi) for _ in range(n)]


class _Bench(Elaboratable):
    """Two clients on one pool, each asking for every product of SHAPES."""

    def __init__(self, pool=None):
        self.pool = pool or MulPool(name="tp")
        self.en = [Signal(name=f"en{c}") for c in range(2)]
        self.ops = [[(Signal(sa, name=f"a{c}_{i}"), Signal(sb, name=f"b{c}_{i}"))
                     for i, (sa, sb) in enumerate(SHAPES)] for c in range(2)]
        self.prods = [[None] * len(SHAPES) for _ in range(2)]

    def elaborate(self, platform):
        m = Module()
        for c in range(2):
            mul = self.pool.client(f"c{c}", en=self.en[c])
            for i, (a, b) in enumerate(self.ops[c]):
                p = Signal((a * b).shape(), name=f"p{c}_{i}")
                m.d.comb += p.eq(mul(a, b))
                self.prods[c][i] = p
        m.submodules.pool = self.pool    # named, but this module adds no other submodule
        return m


def test_pooled_products_are_exact_for_the_enabled_client():
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    dut = _Bench()
    sim = Simulator(dut)
    checked = [0]

    async def bench(ctx):
        for trial in range(60):
            on = trial % 2                    # the client whose operands count
            ctx.set(dut.en[on], 1)
            ctx.set(dut.en[1 - on], 0)
            want = []
            for c in range(2):
                for i, (a, b) in enumerate(dut.ops[c]):
                    va = rng.choice(_values(rng, a.shape(), 3))
                    vb = rng.choice(_values(rng, b.shape(), 3))
                    ctx.set(a, va)
                    ctx.set(b, vb)
                    if c == on:
                        want.append((i, va, vb))
            for i, va, vb in want:
                got = ctx.get(dut.prods[on][i])
                assert got == va * vb, (SHAPES[i], va, vb, got)
                checked[0] += 1
            assert ctx.get(dut.pool.conflict) == 0
        # Both enabled at once breaks the contract: the pool's conflict flag says so.
        ctx.set(dut.en[0], 1)
        ctx.set(dut.en[1], 1)
        assert ctx.get(dut.pool.conflict) == 1

    sim.add_testbench(bench)
    sim.run()
    assert checked[0] == 60 * len(SHAPES)
    # Both clients ask the same: the pool has what one of them needs, per slot type.
    one = dut.pool.usage()["c0"]
    assert dut.pool.n_slots == len(one) and sorted(one) == sorted(dut.pool.usage()["c1"])


class _GateBench(Elaboratable):
    """Client c0's 16 x 16 and 40 x 16 products each behind a gate of its own (``en=``),
    client c1's behind its client enable, on shared slots."""

    def __init__(self):
        self.pool = MulPool(name="tg", share_above=0)
        self.en = [Signal(name=f"en{c}") for c in range(2)]
        self.gate = [Signal(name=f"g{i}") for i in range(2)]
        self.shapes = [(signed(16), signed(16)), (signed(40), unsigned(16))]
        self.ops = [[(Signal(sa, name=f"a{c}_{i}"), Signal(sb, name=f"b{c}_{i}"))
                     for i, (sa, sb) in enumerate(self.shapes)] for c in range(2)]
        self.prods = [[None, None] for _ in range(2)]

    def elaborate(self, platform):
        m = Module()
        for c in range(2):
            mul = self.pool.client(f"c{c}", en=self.en[c])
            for i, (a, b) in enumerate(self.ops[c]):
                p = Signal((a * b).shape(), name=f"p{c}_{i}")
                m.d.comb += p.eq(mul(a, b, en=self.gate[i]) if c == 0 else mul(a, b))
                self.prods[c][i] = p
        m.submodules.pool = self.pool
        return m


def test_a_product_gate_of_its_own_counts_and_is_checked():
    """A product's own gate (``mul(a, b, en=)``) passes its operands while it is 1 (exact)
    and not while it is 0 although its client is enabled (that chunk's slots see 0 from
    it); a gate open while its client's en is low raises the pool's conflict flag."""
    rng = random.Random(SEED + 1)
    print(f"seed={SEED + 1}")
    dut = _GateBench()
    sim = Simulator(dut)
    checked = [0]

    async def bench(ctx):
        for trial in range(40):
            vals = {}
            for c in range(2):
                for i, (a, b) in enumerate(dut.ops[c]):
                    va = rng.choice(_values(rng, a.shape(), 3))
                    vb = rng.choice(_values(rng, b.shape(), 3))
                    vb = vb or 1
                    va = va or 1
                    ctx.set(a, va)
                    ctx.set(b, vb)
                    vals[c, i] = va * vb
            on = trial % 2
            ctx.set(dut.en[0], 1)
            ctx.set(dut.en[1], 0)
            ctx.set(dut.gate[on], 1)
            ctx.set(dut.gate[1 - on], 0)
            assert ctx.get(dut.prods[0][on]) == vals[0, on]
            assert ctx.get(dut.pool.conflict) == 0
            # The closed product's slots see nothing of its operands (the other client
            # is idle): its product reads 0.
            assert ctx.get(dut.prods[0][1 - on]) == 0
            # Client 1 alone: its products are exact, c0's gates closed.
            ctx.set(dut.en[0], 0)
            ctx.set(dut.en[1], 1)
            ctx.set(dut.gate[on], 0)
            for i in range(2):
                assert ctx.get(dut.prods[1][i]) == vals[1, i]
            assert ctx.get(dut.pool.conflict) == 0
            # A gate open while its client is not enabled breaks the contract.
            ctx.set(dut.gate[on], 1)
            assert ctx.get(dut.pool.conflict) == 1
            ctx.set(dut.gate[on], 0)
            checked[0] += 1

    sim.add_testbench(bench)
    sim.run()
    assert checked[0] == 40


def test_slot_count_is_the_most_one_client_needs():
    pool, m = _quiet(MulPool()), _quiet(Module())
    uses = {"norm": [(signed(16), signed(16)), (signed(30), unsigned(16)),
                     (signed(24), signed(16)), (signed(40), unsigned(16))],
            "act": [(unsigned(16), unsigned(16)), (unsigned(10), unsigned(16)),
                    (signed(16), unsigned(16)), (signed(32), unsigned(16))]}
    for name, shapes in uses.items():
        mul = pool.client(name, en=1)
        for sa, sb in shapes:
            m.d.comb += Signal((Signal(sa) * Signal(sb)).shape()).eq(
                mul(Signal(sa), Signal(sb)))
    _quiet(pool.elaborate(None))
    # norm: ss (x*x) + uu,su (d*R) + su,ss (y*w) + uu,uu,su (acc*m) = 8; act: 5 of those
    assert pool.n_slots == 8
    assert sorted(pool.slot_kinds) == sorted(["ss", "ss", "su", "su", "su", "uu", "uu", "uu"])
    assert set(pool.usage()["act"]) <= set(pool.usage()["norm"])


def test_concurrent_clients_get_disjoint_slots():
    pool = _quiet(MulPool(share_above=0))          # share whatever can be shared
    pool.concurrent("requant", "act")
    for name in ("act", "requant", "embed"):
        mul = pool.client(name, en=1)
        mul(Signal(signed(16)), Signal(unsigned(16)))
    _quiet(pool.elaborate(None))
    u = pool.usage()
    assert not set(u["act"]) & set(u["requant"]) and pool.n_slots == 2
    assert set(u["embed"]) <= set(u["act"])        # embed is exclusive with both


def test_few_products_get_a_multiplier_each():
    """Up to SHARE_ABOVE (8, the UP5K's SB_MAC16s) chunk products: one slot each and no
    operand multiplexers (the digits accelerator: requantizer 2, EMBED 1, SAMPLE 2)."""
    from ternac.hw.mulpool import SHARE_ABOVE
    pool = _quiet(MulPool())
    for name, shapes in (("requant", [(signed(18), unsigned(16))]),
                         ("embed", [(unsigned(16), unsigned(12))]),
                         ("sample", [(unsigned(28), unsigned(15))])):
        mul = pool.client(name, en=1)
        for sa, sb in shapes:
            mul(Signal(sa), Signal(sb))
    _quiet(pool.elaborate(None))
    assert SHARE_ABOVE == 8 and pool.n_slots == 5
    assert sorted(i for v in pool.usage().values() for i in v) == list(range(5))


def test_a_client_after_the_pool_elaborated_is_refused():
    pool = _quiet(MulPool())
    _quiet(pool.elaborate(None))
    with pytest.raises(RuntimeError, match="after its clients"):
        pool.client("late", en=1)


def test_bad_operand_widths_are_refused():
    pool = _quiet(MulPool())
    mul = pool.client("x", en=1)
    with pytest.raises(ValueError, match="at most 16 bits"):
        mul(Signal(signed(20)), Signal(signed(17)))
    with pytest.raises(ValueError, match="at most 48"):
        mul(Signal(signed(49)), Signal(signed(16)))


def test_a_design_elaborated_twice_gets_the_same_pool():
    from amaranth.hdl import Fragment
    from ternac.config import LM_CONFIG
    from ternac.hw.sequencer import Sequencer
    from ternac.hw.vector_units import vector_units_for
    cfg = LM_CONFIG
    seq = Sequencer(lanes=cfg.lanes, acc_bits=cfg.acc_bits, prog_depth=cfg.prog_depth,
                    scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                    weight_depth=cfg.weight_depth, vector_units=vector_units_for(cfg))
    Fragment.get(seq, None)
    n, usage = seq.mulpool.n_slots, seq.mulpool.usage()
    shifts = seq.mulpool.shift_usage()
    Fragment.get(seq, None)
    # The LM's sequencer borrows every multiplier from one pool of 8 (= the UP5K's
    # SB_MAC16s): the Norm unit needs all 8 (its square on a client of its own where the
    # sequencer tees into it), the others fewer of the same slots.
    assert n == seq.mulpool.n_slots == 8 and seq.mulpool.usage() == usage
    norm = set(usage["norm"]) | set(usage.get("norm_sq", []))
    assert len(norm) == 8 and {"requant", "embed", "sample", "activation",
                               "eltwise"} <= set(usage)
    # Three shifters serve the Norm's three shifts and the other units' (their tails on
    # one, the widest first).
    assert seq.mulpool.shift_usage() == shifts and seq.mulpool.n_shift_slots == 3
    assert shifts["norm"] == [0, 1, 2] and shifts["activation"] == [0, 1, 2]
    assert shifts["eltwise"] == [0, 1]


#: (v shape, s shape) of the barrel shifts the units borrow: Norm's tail (57 bits), the
#: Activation's and Eltwise's (47), Norm's y (45), the shift-exp core's unsigned 32- and
#: 27-bit ones, Norm's d by its small t, Eltwise's b * m2 (33).
SHIFTS = [(signed(57), unsigned(6)), (signed(47), unsigned(6)), (signed(45), unsigned(6)),
          (unsigned(32), unsigned(6)), (unsigned(27), unsigned(5)), (signed(26), unsigned(3)),
          (signed(33), unsigned(6))]


class _ShiftBench(Elaboratable):
    """Three clients on one shared pool, each asking for a different subset of SHIFTS."""

    PICK = [[0, 3, 4], [1, 2, 5], [1, 6]]

    def __init__(self):
        self.pool = MulPool(name="ts", share_above=0)
        self.en = [Signal(name=f"en{c}") for c in range(3)]
        self.ops = [[(Signal(SHIFTS[i][0], name=f"v{c}_{i}"), Signal(SHIFTS[i][1],
                                                                    name=f"s{c}_{i}"))
                     for i in pick] for c, pick in enumerate(self.PICK)]
        self.outs = [[None] * len(p) for p in self.PICK]

    def elaborate(self, platform):
        m = Module()
        for c in range(3):
            cl = self.pool.client(f"c{c}", en=self.en[c])
            for j, (v, s) in enumerate(self.ops[c]):
                o = Signal((v << 1).shape(), name=f"o{c}_{j}")
                m.d.comb += o.eq(cl.shift(v, s))
                self.outs[c][j] = o
        m.submodules.pool = self.pool
        return m


def test_shared_shifts_are_exact_for_the_enabled_client():
    """Every shift of the enabled client equals (2v) >> s (Python's floor shift) while the
    other clients' operands change too; the three clients share three shifter slots."""
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    dut = _ShiftBench()
    sim = Simulator(dut)
    checked = [0]

    async def bench(ctx):
        for trial in range(90):
            on = trial % 3
            for c in range(3):
                ctx.set(dut.en[c], int(c == on))
            want = []
            for c in range(3):
                for j, (v, s) in enumerate(dut.ops[c]):
                    vv = rng.choice(_values(rng, v.shape(), 3))
                    sv = rng.randint(0, (1 << len(s)) - 1)
                    ctx.set(v, vv)
                    ctx.set(s, sv)
                    if c == on:
                        want.append((j, vv, sv))
            for j, vv, sv in want:
                got = ctx.get(dut.outs[on][j])
                assert got == (2 * vv) >> sv, (dut.PICK[on][j], vv, sv, got)
                checked[0] += 1

    sim.add_testbench(bench)
    sim.run()
    assert checked[0] == 30 * sum(len(p) for p in dut.PICK)
    # Widest first, first fit: the most shifts any client asks for.
    assert dut.pool.n_shift_slots == 3
    u = dut.pool.shift_usage()
    assert u["c0"] == [0, 1, 2] and u["c1"] == [0, 1, 2] and u["c2"] == [0, 1]


def test_concurrent_clients_get_their_own_shifters():
    pool = _quiet(MulPool(share_above=0))
    pool.concurrent("requant", "act")
    for name in ("act", "requant", "embed"):
        pool.client(name, en=1).shift(Signal(signed(40)), Signal(6))
    _quiet(pool.elaborate(None))
    u = pool.shift_usage()
    assert pool.n_shift_slots == 2 and u["act"] != u["requant"] and u["embed"] == u["act"]


def test_one_client_gets_a_shifter_a_shift():
    """A unit's private pool: its shifts run at once (different pipeline stages)."""
    pool = _quiet(MulPool())
    cl = pool.client("a", en=1)
    for w in (40, 20, 30):
        cl.shift(Signal(signed(w)), Signal(6))
    _quiet(pool.elaborate(None))
    assert pool.n_shift_slots == 3 and pool.shift_usage()["a"] == [0, 1, 2]


def test_zero_idle_shifts_are_exact_while_idle_operands_are_zero():
    """Three clients on one shifter, two of them zero_idle (their v is 0 while disabled, as
    the units' valid-cleared registers are), one gated: the enabled client's shift is exact
    whatever the gated one's operand is; an idle zero_idle operand that is not 0 would
    corrupt it (the contract the units keep)."""
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    pool = MulPool(name="tz", share_above=0)
    en = [Signal(name=f"en{c}") for c in range(3)]
    vs = [Signal(signed(w), name=f"v{c}") for c, w in enumerate((40, 33, 47))]
    ss = [Signal(6, name=f"s{c}") for c in range(3)]
    outs = []
    m = Module()
    for c in range(3):
        cl = pool.client(f"c{c}", en=en[c])
        o = Signal((vs[c] << 1).shape(), name=f"o{c}")
        m.d.comb += o.eq(cl.shift(vs[c], ss[c], zero_idle=c < 2))
        outs.append(o)
    m.submodules.pool = pool
    sim = Simulator(m)
    bad = [0]

    async def bench(ctx):
        for trial in range(150):
            on = trial % 3
            for c in range(3):
                ctx.set(en[c], int(c == on))
                vv = rng.choice(_values(rng, vs[c].shape(), 3))
                idle_zero = c != on and c < 2
                ctx.set(vs[c], 0 if idle_zero else vv)
                ctx.set(ss[c], rng.randint(0, 63))
            want = (2 * ctx.get(vs[on])) >> ctx.get(ss[on])
            assert ctx.get(outs[on]) == want, (on, ctx.get(vs[on]), ctx.get(ss[on]))
            assert ctx.get(pool.conflict) == 0
        # A zero_idle client that breaks its promise: the enabled one's result is wrong,
        # and the pool's conflict flag says so (the formal harnesses assert it is 0).
        ctx.set(en[2], 0)
        ctx.set(en[0], 1)
        ctx.set(en[1], 0)
        ctx.set(vs[0], 1 << 20)
        ctx.set(ss[0], 0)
        ctx.set(vs[1], 1)
        bad[0] = int(ctx.get(outs[0]) != 1 << 21)
        assert ctx.get(pool.conflict) == 1

    sim.add_testbench(bench)
    sim.run()
    assert pool.n_shift_slots == 1 and bad[0] == 1


# --- A unit's shifts on shared shifters, watched by a spy client -------------------------

class _Spy(Elaboratable):
    """A second client on every shifter slot of ``owner.unit``: enabled exactly while the
    unit is not (so the pair keeps the one-client-at-a-time contract), each of its shifts
    as wide as the slot it shares. Elaborated after the unit, before the pool."""

    def __init__(self, owner):
        self.owner = owner

    def elaborate(self, platform):
        m = Module()
        o = self.owner
        unit = next(c for c in o.pool._clients if c.name == o.unit.pool_client)
        m.d.comb += o.spy_en.eq(~unit.en.any())
        cl = o.pool.client("spy", en=o.spy_en)
        widths = sorted((o.pool._shift_width(v) for c, v, _, _ in o.pool._shifts
                         if c is unit), reverse=True)
        for k, w in enumerate(widths):
            v, s = Signal(signed(w), name=f"spy_v{k}"), Signal(6, name=f"spy_s{k}")
            o.spy.append((v, s, cl.shift(v, s, name=f"spy{k}")))
        return m


class _Spied(Elaboratable):
    """``unit`` (built on ``pool``) with a :class:`_Spy` on each of its shifters."""

    def __init__(self, unit, pool):
        self.unit, self.pool = unit, pool
        self.spy_en = Signal()
        self.spy = []                                   # [(v, s, out)] once elaborated

    def elaborate(self, platform):
        m = Module()
        m.submodules.unit = self.unit
        m.submodules.spy = _Spy(self)
        m.submodules.pool = self.pool
        return m


def _dot_case(rng):
    """One DOT problem and its ports: (ports, beats [(a, b, last)], expected rows)."""
    import torch
    from ternac.golden import vecops
    from ternac.golden.isa import Flag, Instr, Op
    k, n = rng.choice([(1, 1), (7, 3), (16, 2), (3, 5)])
    big = rng.random() < 0.5
    a = [rng.choice([32767, -32768, rng.randint(-32768, 32767)]) if big
         else rng.randint(-127, 127) for _ in range(k)]
    b = [rng.randint(-127, 127) for _ in range(n * k)]
    flags = rng.choice([0, Flag.OUT8, Flag.NEG, Flag.NEG | Flag.OUT8])
    mm, ss = rng.choice([(1, 0), (65535, 0), (40000, 20), (65535, 63), (rng.randint(1, 65535),
                                                                         rng.randint(0, 40))])
    ins = Instr(op=Op.DOT, flags=int(flags), m=mm, s=ss, k=k)
    want = vecops.vector_op(ins, torch.tensor(a), torch.tensor(b)).tolist()
    beats = [(a[i], b[j * k + i], int(i == k - 1)) for j in range(n) for i in range(k)]
    ports = {"m": mm, "s": ss, "neg": int(bool(flags & Flag.NEG)),
             "wide": int(not flags & Flag.OUT8)}
    return ports, beats, want


def _shiftmax_case(rng, out_bits):
    import torch
    from ternac.golden import intops
    from ternac.hw.shiftmax import Shiftmax
    n = rng.choice([1, 2, 5, 12])
    xs = [rng.choice([127, -127, rng.randint(-127, 127), rng.randint(-3, 3)]) for _ in range(n)]
    neg = rng.randint(0, 1)
    mm, ss = intops.exp_gain(rng.choice([8 / 127, 1e-4, 20.0, 0.3]))
    want = intops.shiftmax_q(torch.tensor([-x for x in xs] if neg else xs), mm, ss,
                             out_bits).tolist()
    beats = [(x, 0, int(j == n - 1)) for _ in range(Shiftmax.passes) for j, x in enumerate(xs)]
    return {"m": mm, "s": ss, "neg": neg}, beats, want


def _activation_case(rng):
    """One SIGMOID / SILU / GELU vector (golden.vecops) and the Activation's ports."""
    import torch
    from ternac.golden import intops, vecops
    from ternac.golden.isa import Flag, Instr, Op
    from ternac.hw.activation import ActMode
    op = rng.choice([Op.SIGMOID, Op.SILU, Op.GELU])
    flags = rng.choice([0, Flag.OUT8, Flag.NEG, Flag.NEG | Flag.OUT8])
    scale = rng.choice([8 / 127, 64 / 32767, 30.0])
    mm, ss = intops.exp_gain(scale, intops.GELU_ALPHA if op == Op.GELU else 1.0)
    m2, s2 = intops.act_out_multiplier(scale, rng.choice([8 / 127, 1e-3, 1.0]))
    ins = Instr(op=op, flags=int(flags), m=mm, s=ss, wbase=m2, k=s2)
    lim = 127 if rng.random() < 0.5 else 32767
    xs = [rng.choice([lim, -lim, 0, rng.randint(-lim, lim)]) for _ in range(rng.randint(1, 9))]
    want = vecops.vector_op(ins, torch.tensor(xs), torch.zeros(len(xs), dtype=torch.int64))
    mode = {Op.SIGMOID: ActMode.SIGMOID, Op.SILU: ActMode.SILU, Op.GELU: ActMode.GELU}[op]
    ports = {"m": mm, "s": ss, "m2": m2, "s2": s2, "mode": mode.value,
             "neg": int(bool(flags & Flag.NEG)), "wide": int(not flags & Flag.OUT8)}
    return ports, [(x, 0, int(j == len(xs) - 1)) for j, x in enumerate(xs)], want.tolist()


@pytest.mark.parametrize("which", ["dot", "shiftmax", "activation"])
def test_unit_shifts_on_shared_shifters_leave_them_clean_while_idle(which):
    """Dot / Shiftmax / Activation on a pool whose every shifter they share with a spy client
    enabled whenever the unit is not (random input gaps and output stalls, seeded): the
    unit's results equal golden (golden.vecops DOT, SIGMOID / SILU / GELU,
    golden.intops.shiftmax_q) through the shared shifters,
    and the spy's shifts are exact in every cycle it is enabled, so the unit's zero_idle
    operands (registers cleared for a bubble) are 0 whenever it is idle."""
    from ternac.hw.dot import Dot
    from ternac.hw.shiftmax import Shiftmax
    seed = SEED + (7 if which == "dot" else 8)
    rng = random.Random(seed)
    print(f"seed={seed}")
    pool = MulPool(name="sp")
    if which == "dot":
        unit = Dot(max_len=16, pool=pool)
        cases = [_dot_case(rng) for _ in range(14)]
    elif which == "activation":
        from ternac.hw.activation import Activation
        unit = Activation(pool=pool)
        cases = [_activation_case(rng) for _ in range(12)]
    else:
        unit = Shiftmax(out_bits=15, max_len=16, pool=pool)
        cases = [_shiftmax_case(rng, 15) for _ in range(10)]
    dut = _Spied(unit, pool)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    got, spied = [], [0]

    async def bench(ctx):
        for ports, beats, want in cases:
            for name, val in ports.items():
                ctx.set(getattr(unit, name), val)
            outs, j, offer = [], 0, False
            idle = rng.choice([0, 3, 25])               # a gap before the vector
            while len(outs) < len(want):
                for v, s, _ in dut.spy:
                    lo, hi = _lim(v.shape())
                    ctx.set(v, rng.choice([lo, hi, -1, rng.randint(lo, hi)]))
                    ctx.set(s, rng.randint(0, 63))
                if not offer and j < len(beats) and idle <= 0:
                    offer = rng.random() < 0.7           # valid held once raised
                idle -= 1
                if offer:
                    a, b, last = beats[j]
                    ctx.set(unit.i.payload.a, a)
                    ctx.set(unit.i.payload.b, b)
                    ctx.set(unit.i.payload.last, last)
                ctx.set(unit.i.valid, int(offer))
                ctx.set(unit.o.ready, int(rng.random() < 0.7))
                if ctx.get(dut.spy_en):
                    spied[0] += 1
                    for v, s, out in dut.spy:
                        vv, sv = ctx.get(v), ctx.get(s)
                        assert ctx.get(out) == (2 * vv) >> sv, (vv, sv, ctx.get(out))
                if offer and ctx.get(unit.i.ready):
                    j, offer = j + 1, False
                if ctx.get(unit.o.valid) and ctx.get(unit.o.ready):
                    y = ctx.get(unit.o.payload.y)
                    outs.append(y - (1 << 16) if which != "shiftmax" and y >= 1 << 15 else y)
                await ctx.tick()
            ctx.set(unit.i.valid, 0)
            got.append((outs, want))

    sim.add_testbench(bench)
    sim.run()
    u = pool.shift_usage()
    assert u["spy"] == u[unit.pool_client] and len(u["spy"]) == (1 if which == "dot" else 3)
    assert set(pool._zero_idle) == {id(o) for c, _, _, o in pool._shifts
                                    if c.name == unit.pool_client}     # every one of them
    for outs, want in got:
        assert outs == want
    assert spied[0] > 50, spied[0]
