"""MATVEC epilogues (golden/isa.py ``epi``): a MATVEC whose rows stream into the next
instruction's vector unit.

* the RTL (the Accelerator in Amaranth's simulator) equals the program interpreter on every
  result word, and its cycle counter equals the cycle model, for every epilogue op, tile
  shapes with k < L, k > L and a partial last tile, flags (RELU, NEG, OUT8) and an in-place
  b operand;
* the interpreter runs the pair exactly as the MATVEC followed by the op (the fused and the
  unfused program write the same result);
* the lowering fuses the LM's MATVECs with their one reader, and the fused LM program equals
  the graph evaluation (the unfused one too) on every logit;
* malformed pairs are refused by the interpreter, the cycle model and check_program.
"""
import dataclasses
import random

import pytest
import torch

from ternac.config import AccelConfig, HostSpace
from ternac.errors import CompileError
from ternac.golden import cycles as C
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.packing import tile_lanes

SEED = 90210
CFG = AccelConfig(lanes=8, vector=("activation", "eltwise"))
SRC, AUX, DST = 40, 400, 700


def _pysim(cfg, program, weight_words, scratch, read):
    """Run ``program`` on the Accelerator in Amaranth's simulator after writing ``scratch``
    ({addr: [words]}); returns (cycles, [scratch words in ``read`` = (addr, n)], raw 32-bit)
    (sim/pysim.py)."""
    from ternac.sim.pysim import run_program_pysim
    out = run_program_pysim(cfg, program, weight_words, scratch,
                            [(HostSpace.SCRATCH, *read)], max_cycles=50_000, signed=False)
    return out["cycles"], out["words"][0]


def _signed16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


def _case(rng, n, k, op, mv_flags, ep_flags, in_place):
    L = CFG.lanes
    t = torch.tensor([[rng.choice((-1, 0, 0, 1)) for _ in range(k)] for _ in range(n)])
    words = tile_lanes(t, L)
    x = [rng.randint(-127, 127) for _ in range(k)]
    b = [rng.randint(-3000, 3000) for _ in range(n)]
    dst = AUX if in_place else DST
    mv = Instr(Op.MATVEC, flags=int(mv_flags), src=SRC, n=n, k=k, m=rng.randint(1 << 14, 1 << 16 - 1),
               s=rng.randint(8, 12), epi=1)
    extra = {"SIGMOID": dict(m=30000, s=12, wbase=1, k=0), "SILU": dict(m=30000, s=14, wbase=40000, k=30),
             "GELU": dict(m=30000, s=13, wbase=40000, k=30), "ADD": dict(m=3, s=1, wbase=5, k=3),
             "MUL": dict(m=3000, s=14)}[op.name]
    ep = Instr(op, flags=int(ep_flags), src=SRC, aux=AUX, dst=dst, n=n, **extra)
    return words, {SRC: x, AUX: b}, mv, ep, dst


def _cases():
    out = []
    shapes = [(20, 16), (8, 3), (13, 24), (1, 5)]
    ops = [(Op.SILU, 0, 0), (Op.SIGMOID, Flag.WIDE, Flag.NEG), (Op.GELU, Flag.WIDE, Flag.OUT8),
           (Op.ADD, Flag.WIDE, 0), (Op.MUL, Flag.RELU | Flag.WIDE, Flag.OUT8)]
    for i, (op, mf, ef) in enumerate(ops):
        for j, (n, k) in enumerate(shapes):
            if (i + j) % 2 == 0 or (n, k) == (20, 16):
                out.append((op, n, k, mf, ef, False))
    out.append((Op.ADD, 20, 9, Flag.WIDE, 0, True))    # the residual add, in place
    return out


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"{c[0].name}-n{c[1]}-k{c[2]}-mv{int(c[3])}"
                         f"-ep{int(c[4])}" + ("-inplace" if c[5] else ""))
def test_epilogue_rtl_equals_interpreter_and_model(case):
    op, n, k, mf, ef, in_place = case
    seed = SEED + n * 1000 + k * 10 + int(op)
    print(f"seed {seed}")
    rng = random.Random(seed)
    words, scratch, mv, ep, dst = _case(rng, n, k, op, mf, ef, in_place)
    prog = [mv, ep, Instr(Op.HALT)]
    init = {a: v for a, v in scratch.items()}
    st = run_program(prog, words, lanes=CFG.lanes, scratch_depth=CFG.scratch_depth,
                     out_depth=CFG.out_depth, weight_depth=CFG.weight_depth, scratch_init=init)
    want = st.scratch[0, dst:dst + n].tolist()
    # the pair equals the MATVEC, then the op on its rows
    plain = [Instr(Op.MATVEC, flags=mv.flags, src=SRC, dst=900, n=n, k=k, m=mv.m, s=mv.s),
             Instr(op, flags=ep.flags, src=900, aux=AUX, dst=dst, n=n, m=ep.m, s=ep.s,
                   wbase=ep.wbase, k=ep.k), Instr(Op.HALT)]
    st2 = run_program(plain, words, lanes=CFG.lanes, scratch_depth=CFG.scratch_depth,
                      out_depth=CFG.out_depth, weight_depth=CFG.weight_depth, scratch_init=init)
    assert st2.scratch[0, dst:dst + n].tolist() == want
    cycles, got = _pysim(CFG, prog, words, scratch, (dst, n))
    got = [_signed16(v) for v in got]
    model = C.program_cycles(prog, CFG.lanes)
    print(f"{op.name} n={n} k={k}: measured {cycles} cycles, modelled {model['total']}; "
          f"unfused {C.program_cycles(plain, CFG.lanes)['total']}")
    assert got == want
    assert model["exact"] and model["total"] == cycles
    assert model["per_instr"][1] == 0
    assert model["issue"] == 2 * C.ISSUE_CYCLES + C.START_CYCLES    # the pair and HALT


def test_malformed_pairs_are_refused():
    words = tile_lanes(torch.ones(8, 4, dtype=torch.int64), 8)
    mv = Instr(Op.MATVEC, src=0, n=8, k=4, m=1, epi=1)
    kw = dict(lanes=8, scratch_depth=1024, out_depth=16, weight_depth=len(words))
    for nxt in (Instr(Op.HALT), Instr(Op.RMSNORM, dst=100, aux=200, n=8),
                Instr(Op.SILU, dst=100, n=7)):
        with pytest.raises(MachineError, match="epilogue"):
            run_program([mv, nxt, Instr(Op.HALT)], words, **kw)
    with pytest.raises(MachineError, match="RAW"):
        run_program([Instr(Op.MATVEC, flags=int(Flag.RAW), n=8, k=4, epi=1),
                     Instr(Op.SILU, dst=100, n=8), Instr(Op.HALT)], words, **kw)
    with pytest.raises(MachineError, match="over its MATVEC's input"):
        run_program([mv, Instr(Op.SILU, dst=2, n=8), Instr(Op.HALT)], words, **kw)
    with pytest.raises(ValueError, match="epilogue"):
        C.program_cycles([mv, Instr(Op.HALT)], 8)
    from ternac.lower import check_program
    with pytest.raises(CompileError, match="epilogue"):
        check_program([mv, Instr(Op.RMSNORM, dst=100, aux=200, n=8), Instr(Op.HALT)],
                      AccelConfig(lanes=8, vector=("norm",)))


def test_lm_fused_program_equals_graph():
    """The committed LM lowered with and without epilogues: both equal the graph's
    evaluation on every logit over a few tokens; the fused one is shorter in cycles."""
    from ternac.golden.lm_int import IntLM
    from ternac.lower import lm_config, lower, run_tokens
    im = IntLM.from_checkpoint()
    cfg = lm_config(im)
    g = im.graph()
    # (the unfused program is one instruction longer: no folded embedding)
    fused, plain = lower(g, cfg), lower(g, dataclasses.replace(cfg, prog_depth=256), fuse=False)
    n_epi = sum(i.epi for i in fused.program)
    assert n_epi >= 15 and not any(i.epi for i in plain.program)
    toks = [int(t) for t in im.vocab.encode("ROMEO:").tolist()]
    state = im.init_state()
    ref = []
    for t in toks:
        logits, state = im.step(t, state)
        ref.append(logits)
    for cm in (fused, plain):
        got = [lg for lg, _, _ in run_tokens(cm, toks)]
        for a, b in zip(got, ref):
            assert torch.equal(a, b)
    cf, cp = (C.program_cycles(c.program, cfg.lanes)["total"] for c in (fused, plain))
    print(f"LM cycles/token (modelled bound): fused {cf}, unfused {cp}, {n_epi} epilogues")
    assert cf < cp


@pytest.mark.parametrize("lanes, wide", [(8, True), (16, True), (32, True), (8, False),
                                         (32, False), (128, True)])
def test_embed_rtl_equals_interpreter(lanes, wide):
    """EMBED (bytes) and EMBED WIDE (int16 halfwords: a staged constant, or a folded
    embedding table, in one instruction): every element of a row of random values, token 1
    of a 3-row table, a row that ends inside its last word, RTL == interpreter, cycles ==
    model. The shapes cover one element a word (WIDE at 8 lanes: a read a word), two (the
    next word addressed in the cycle of the first) and more."""
    from ternac.golden.packing import embedding_words
    rng = random.Random(SEED + lanes + wide)
    n = 21 if lanes < 128 else 45
    lim = 32767 if wide else 127
    rows = torch.tensor([[rng.randint(-lim, lim) for _ in range(n)] for _ in range(3)])
    if wide:
        pair = torch.stack([rows & 0xFF, (rows >> 8) & 0xFF], -1).flatten(1)
        words, k = embedding_words(torch.where(pair >= 128, pair - 256, pair), lanes)
    else:
        words, k = embedding_words(rows, lanes)
    cfg = AccelConfig(lanes=lanes)
    prog = [Instr(Op.EMBED, flags=int(Flag.WIDE) if wide else 0, src=5, dst=300, n=n, k=k),
            Instr(Op.HALT)]
    print(f"EMBED lanes={lanes} wide={wide}: k={k} words a row")
    st = run_program(prog, words, lanes=lanes, scratch_depth=cfg.scratch_depth,
                     out_depth=cfg.out_depth, weight_depth=cfg.weight_depth,
                     scratch_init={5: [1]})
    assert st.scratch[0, 300:300 + n].tolist() == rows[1].tolist()
    cycles, got = _pysim(cfg, prog, words, {5: [1]}, (300, n))
    assert [_signed16(v) for v in got] == rows[1].tolist()
    assert C.program_cycles(prog, lanes)["total"] == cycles


@pytest.mark.parametrize("n, scale, out8", [(37, 3000, True), (128, 200, True), (16, 20000, False)])
def test_norm_reuse_rtl_equals_interpreter(n, scale, out8):
    """RMSNORM, then RMSNORM ``reuse`` of the same a with another weight (the i/f/g
    projections' norms): both results, RTL == interpreter on every word, and the second
    costs one pass (cycles == model)."""
    rng = random.Random(SEED + n)
    cfg = AccelConfig(lanes=8, vector=("norm",))
    x = [rng.randint(-scale, scale) for _ in range(n)]
    w1 = [rng.randint(-32512, 32512) for _ in range(n)]
    w2 = [rng.randint(-32512, 32512) for _ in range(n)]
    fl = int(Flag.OUT8) if out8 else 0
    prog = [Instr(Op.RMSNORM, flags=fl, src=10, aux=300, dst=600, n=n, m=40000, s=33 if out8 else 40),
            Instr(Op.RMSNORM, flags=fl, src=10, aux=450, dst=800, n=n, m=50000, s=33 if out8 else 40,
                  reuse=1),
            Instr(Op.HALT)]
    init = {10: x, 300: w1, 450: w2}
    st = run_program(prog, [], lanes=8, scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                     weight_depth=cfg.weight_depth, scratch_init=init)
    plain = [prog[0], Instr(**{**prog[1].__dict__, "reuse": 0}), Instr(Op.HALT)]
    st2 = run_program(plain, [], lanes=8, scratch_depth=cfg.scratch_depth,
                      out_depth=cfg.out_depth, weight_depth=cfg.weight_depth, scratch_init=init)
    assert torch.equal(st.scratch, st2.scratch)          # reuse changes the cost only
    want = st.scratch[0, 600:600 + n].tolist() + st.scratch[0, 800:800 + n].tolist()
    c1, got1 = _pysim(cfg, prog, [], init, (600, n))
    _, got2 = _pysim(cfg, prog, [], init, (800, n))
    assert [_signed16(v) for v in got1 + got2] == want
    data = {0: C.norm_data(x, layernorm=False)}
    model = C.program_cycles(prog, 8, data=data)
    assert model["exact"] and model["total"] == c1
    assert model["per_instr"][1] == C.ISSUE_CYCLES + n + C.UNIT_TIMING["norm"][1]


def test_norm_reuse_of_other_values_is_refused():
    kw = dict(lanes=8, scratch_depth=1024, out_depth=16, weight_depth=1)
    a = Instr(Op.RMSNORM, src=10, aux=300, dst=600, n=8, m=1, s=20)
    for second in (Instr(Op.RMSNORM, src=11, aux=300, dst=700, n=8, m=1, s=20, reuse=1),
                   Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=10, aux=300, dst=700, n=8, m=1,
                         s=20, reuse=1),
                   Instr(Op.LAYERNORM, src=10, aux=300, dst=700, n=8, m=1, s=20, reuse=1)):
        with pytest.raises(MachineError, match="reuses the statistics"):
            run_program([a, second, Instr(Op.HALT)], [0], scratch_init={10: list(range(1, 12))}, **kw)
    with pytest.raises(MachineError, match="reuses the statistics"):
        run_program([Instr(Op.RMSNORM, src=10, aux=300, dst=600, n=8, m=1, s=20, reuse=1),
                     Instr(Op.HALT)], [0], **kw)


@pytest.mark.parametrize("lanes", [8, 32])
def test_folded_embedding_equals_graph(lanes):
    """A token's first elementwise op folded into its embedding table (the lowering's
    ``_fold_embeddings``): ``R = ADD(E, E)`` and ``S = SIGMOID(E2)`` become EMBED WIDE of
    int16 tables, ``E3``, read twice, stays a byte EMBED; the program equals the graph's
    evaluation on every element for every token, and is shorter in cycles than unfused."""
    from ternac.golden.graph import Graph, Vec
    from ternac.lower import lower
    rng = torch.Generator().manual_seed(SEED + lanes)
    print(f"seed {SEED + lanes}")
    V, d = 7, 37
    g = Graph("fold")
    tok = g.input("token", 1)
    for name in ("t1", "t2", "t3"):
        g.table(name, torch.randint(-127, 128, (V, d), generator=rng))
    c = g.const("c", torch.randint(-30000, 30000, (d,), generator=rng))
    E = g.add(Op.EMBED, Vec("E", d, 8), tok, weight="t1")
    R = g.add(Op.ADD, Vec("R", d, 16), E, E, m=43481, s=13, m2=0, s2=0)
    g.add(Op.MUL, Vec("Y", d, 16), R, c, m=35034, s=25)
    E2 = g.add(Op.EMBED, Vec("E2", d, 8), tok, weight="t2")
    g.add(Op.SIGMOID, Vec("S", d, 16), E2, m=52964, s=10, m2=1, s2=0)
    E3 = g.add(Op.EMBED, Vec("E3", d, 8), tok, weight="t3")
    g.add(Op.MUL, Vec("Z", d, 16), E3, E3, m=3000, s=12)
    g.add(Op.ADD, Vec("Z2", d, 16), E3, c, m=1, s=0, m2=1, s2=2)
    g.outputs += ["Y", "S", "Z", "Z2", "R"]
    cfg = AccelConfig(lanes=lanes, vector=("activation", "eltwise"))
    fused, plain = lower(g, cfg), lower(g, cfg, fuse=False)
    wide = [i for i in fused.program if i.op == Op.EMBED and i.flags & Flag.WIDE]
    assert len(wide) == 2 and len(fused.program) == len(plain.program) - 2
    assert sorted(fused.weight_map) == ["t1>R", "t2>S", "t3"]   # t1, t2 no longer stored
    env = g.evaluate({"token": torch.arange(V)[:, None]})
    for lw in (fused, plain):
        for t in range(V):
            init = {a: list(v) for a, v in lw.scratch_constants.items()}
            init[lw.token_addr] = [t]
            st = run_program(lw.program, lw.weight_words, lanes=lanes,
                             scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                             weight_depth=cfg.weight_depth, scratch_init=init)
            for name in g.outputs:
                sp, a, n = lw.outputs[name]
                assert st.scratch[0, a:a + n].tolist() == env[name][t].tolist(), (name, t)
    cf, cp = (C.program_cycles(x.program, lanes)["total"] for x in (fused, plain))
    print(f"lanes {lanes}: folded {cf} cycles, unfolded {cp}")
    assert cf < cp


def _tee_cases():
    # (lanes, fused with a MATVEC, instructions between the tee and its RMSNORM, out8, n, op):
    # two SIGMOIDs between: the unit's work is done before the RMSNORM starts (no wait)
    return [(8, False, 0, True, 37, "MUL"), (8, False, 1, False, 16, "MUL"),
            (8, True, 0, True, 13, "MUL"), (32, True, 0, True, 13, "MUL"),
            (8, True, 1, True, 24, "MUL"), (8, False, 2, True, 16, "ADD"),
            (8, True, 0, False, 20, "ADD"), (8, False, 0, True, 1, "MUL")]


@pytest.mark.parametrize("case", _tee_cases(), ids=lambda c: f"L{c[0]}-{'mv' if c[1] else 'vec'}"
                         f"-gap{c[2]}-{'out8' if c[3] else 'wide'}-n{c[4]}-{c[5]}")
def test_norm_tee_rtl_equals_interpreter_and_model(case):
    """A tee (golden/isa.py): MUL or ADD (standalone, or a MATVEC's epilogue, with padding
    lanes at 32 lanes) streaming its results into the Norm unit's pass 0, SIGMOIDs between
    or none, then the RMSNORM reusing those statistics and a second reuse of them: every
    result word RTL == interpreter == the program without the tee, cycles == model (the
    RMSNORM's wait for the unit's work included)."""
    lanes, fused, gap, out8, n, op = case
    seed = SEED + 7 * n + lanes + 2 * gap + fused
    print(f"seed {seed}")
    rng = random.Random(seed)
    cfg = AccelConfig(lanes=lanes, vector=("activation", "eltwise", "norm"))
    k = 19
    t = torch.tensor([[rng.choice((-1, 0, 0, 1)) for _ in range(k)] for _ in range(n)])
    words = tile_lanes(t, lanes) if fused else []
    x = [rng.randint(-127, 127) for _ in range(k)]
    a = [rng.randint(-3000, 3000) for _ in range(n)]
    b = [rng.randint(-3000, 3000) for _ in range(n)]
    w1 = [rng.randint(-32512, 32512) for _ in range(n)]
    w2 = [rng.randint(-32512, 32512) for _ in range(n)]
    fl = int(Flag.OUT8) if out8 else 0
    Y, N1, N2, S = 820, 870, 920, 970
    mul = Instr(Op[op], src=SRC, aux=AUX, dst=Y, n=n, tee=1, tee8=int(out8),
                **(dict(m=3000, s=9) if op == "MUL" else dict(m=3, s=1, wbase=5, k=3)))
    prog = ([Instr(Op.MATVEC, flags=int(Flag.WIDE), src=SRC, n=n, k=k, m=40000, s=9, epi=1)]
            if fused else [])
    prog += [dataclasses.replace(mul, src=SRC if fused else 100)]
    prog += [Instr(Op.SIGMOID, src=AUX, dst=S, n=n, m=30000, s=12, wbase=1)] * gap
    prog += [Instr(Op.RMSNORM, flags=fl, src=Y, aux=DST, dst=N1, n=n, m=40000,
                   s=33 if out8 else 40, reuse=1),
             Instr(Op.RMSNORM, flags=fl, src=Y, aux=DST + n, dst=N2, n=n, m=50000,
                   s=33 if out8 else 40, reuse=1),
             Instr(Op.HALT)]
    init = {SRC: x, 100: a, AUX: b, DST: w1 + w2}
    kw = dict(lanes=lanes, scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
              weight_depth=max(cfg.weight_depth, len(words)), scratch_init=init)
    st = run_program(prog, words, **kw)
    # the same without the tee (a full RMSNORM): the same results
    plain = [dataclasses.replace(i, tee=0, tee8=0) for i in prog]
    first = next(j for j, i in enumerate(plain) if i.op == Op.RMSNORM)
    plain[first] = dataclasses.replace(plain[first], reuse=0)
    st2 = run_program(plain, words, **kw)
    assert torch.equal(st.scratch, st2.scratch)
    want = [st.scratch[0, r:r + n].tolist() for r in (Y, N1, N2)]
    got = []
    for r in (Y, N1, N2):
        cycles, g = _pysim(cfg, prog, words, init, (r, n))
        got.append([_signed16(v) for v in g])
    assert got == want
    data = {first: C.norm_data(want[0], layernorm=False)}
    model = C.program_cycles(prog, lanes, data=data)
    unteed = C.program_cycles(plain, lanes, data=data)
    print(f"tee {case}: measured {cycles} cycles, modelled {model['total']}, without the tee "
          f"{unteed['total']}; RMSNORM {model['per_instr'][first]}")
    assert model["exact"] and model["total"] == cycles
    assert model["total"] < unteed["total"]


def test_norm_tee_misuse_is_refused():
    kw = dict(lanes=8, scratch_depth=1024, out_depth=16, weight_depth=1,
              scratch_init={10: list(range(1, 12))})
    mul = Instr(Op.MUL, src=10, aux=10, dst=100, n=8, m=1, s=4, tee=1, tee8=1)
    rms = Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=100, aux=300, dst=600, n=8, m=1, s=20,
                reuse=1)
    run_program([mul, rms, Instr(Op.HALT)], [0], **kw)          # the well-formed pair
    bad = {
        "halts": [mul, Instr(Op.HALT)],
        "full RMSNORM": [mul, dataclasses.replace(rms, reuse=0), Instr(Op.HALT)],
        "two tees": [mul, dataclasses.replace(mul, dst=200), rms, Instr(Op.HALT)],
        "tee on SIGMOID": [Instr(Op.SIGMOID, src=10, dst=100, n=8, tee=1), rms, Instr(Op.HALT)],
        "flags": [dataclasses.replace(mul, tee8=0), rms, Instr(Op.HALT)],
        "values": [mul, Instr(Op.ADD, src=10, aux=10, dst=100, n=8, m=1, wbase=1), rms,
                   Instr(Op.HALT)],
    }
    for what, prog in bad.items():
        with pytest.raises(MachineError):
            run_program(prog, [0], **kw)
            print(f"not refused: {what}")
    from ternac.lower import check_program
    with pytest.raises(CompileError, match="tee"):
        check_program([Instr(Op.SIGMOID, dst=100, n=8, tee=1), Instr(Op.HALT)],
                      AccelConfig(lanes=8, vector=("activation", "norm")))


def test_lm_tees_every_full_norm():
    """The committed LM: every RMSNORM reuses statistics (none streams its own pass 0), 13
    of them from a tee of the MUL that writes their input."""
    from ternac.golden.lm_int import IntLM
    from ternac.lower import compile_lm
    cm = compile_lm(IntLM.from_checkpoint(None))
    norms = [i for i in cm.program if i.op == Op.RMSNORM]
    tees = [i for i in cm.program if i.tee]
    assert all(i.reuse for i in norms) and len(tees) == 13
    assert all(i.op == Op.MUL and i.tee8 for i in tees)
