"""Chains (golden/isa.py ``chain``; AccelConfig.op_chain; hw/sequencer.py CH_WAIT / CH_DEC):
a SIGMOID, SILU or GELU streams its results into the Eltwise unit as the ``a`` of the ADD or
MUL after it.

* the RTL (Accelerator in Amaranth's simulator) runs chains standalone and as a MATVEC's
  epilogue (one tile and several, partial tiles, behind a prologue, with a tee into a reuse
  RMSNORM, in place, L = 8, 16 and one at 128) to every word the interpreter computes, the
  interpreter equals the same program with the chain undone (the two ops one after the
  other, the first one's result written), and the RTL's cycle counter equals
  golden.cycles (chain_cycles, and chain_latency in matvec_cycles);
* the interpreter and check_program refuse what the ISA does not define, and on 300 random
  chains (hypothesis, derandomized) accept exactly the same programs, the result that of
  the two ops run apart;
* a pair's SIGMOID (the epilogue of a MATVEC of one tile) chains too: its twins are
  written, its first results stream on (RTL, interpreter and model as above);
* chains of three (behind a MATVEC of one tile: SILU / SIGMOID / GELU / a pair, then two
  ADD or MUL, the third's b through port a) on the RTL, L = 8, 16 and 128, as above;
* the LM on LM_ULX3S_CONFIG chains its MLGRU SILU -> MUL pairs (the first on into the
  state update's ADD) and each f gate's pair into ``f * h``, and its interpreter run equals
  IntLM (the whole LM on that RTL: ternac bench lm, tests/test_lm_rtl.py).
"""
import dataclasses
import random

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from ternac.config import AccelConfig, HostSpace
from ternac.errors import CompileError
from ternac.golden import cycles as C
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import PRO_MIN_K, Flag, Instr, Op
from ternac.golden.packing import tile_lanes

SEED = 2718
X, XN, B2, W2, OUT, TMP, TW, B3 = 40, 300, 600, 900, 1200, 1500, 1800, 700
DEPTH = 2048
VECTOR = ("activation", "eltwise", "norm")


def _first(rng, op, src, n, neg=False):
    flags = int(Flag.NEG) if neg else 0
    if op == "SIGMOID":
        return Instr(Op.SIGMOID, flags=flags, src=src, dst=TMP, n=n, m=rng.randint(30000, 60000),
                     s=16, wbase=1, k=0, chain=1)
    return Instr(Op[op], flags=flags, src=src, dst=TMP, n=n, k=rng.randint(14, 30),
                 wbase=rng.randint(30000, 45000), m=rng.randint(30000, 60000),
                 s=rng.randint(14, 18), chain=1)


def _second(rng, op, n, dst, tee=False):
    if op == "MUL":
        return Instr(Op.MUL, src=TMP, aux=B2, dst=dst, n=n, m=rng.randint(20000, 60000),
                     s=rng.randint(27, 31), tee=int(tee), tee8=int(tee))
    return Instr(Op.ADD, src=TMP, aux=B2, dst=dst, n=n, m=rng.randint(1, 3), s=2,
                 wbase=rng.randint(1, 3), k=rng.randint(0, 2), tee=int(tee), tee8=int(tee))


def _program(rng, lanes, case):
    """``case``: (kind, first op, second op, n, k, neg, tee, in place)."""
    kind, op1, op2, n, k, neg, tee, inplace = case
    words, head = [], []
    if kind == "standalone":
        src = X
        dst = X if inplace else OUT
        body = [_first(rng, op1, src, n, neg), _second(rng, op2, n, dst, tee)]
    else:
        t = torch.tensor([[rng.choice((-1, 0, 0, 1)) for _ in range(k)] for _ in range(n)])
        words = list(tile_lanes(t, lanes))
        src = X
        if kind == "prologue":
            head = [Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=XN, aux=W2, dst=XN + 300, n=k,
                          m=40000, s=33),
                    Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=XN, aux=W2, dst=X, n=k,
                          m=50000, s=33, reuse=1, pro=1)]
        mv = Instr(Op.MATVEC, flags=int(Flag.WIDE), src=src, n=n, k=k,
                   m=rng.randint(1 << 14, (1 << 16) - 1), s=9, epi=1)
        first = dataclasses.replace(_first(rng, "SIGMOID" if op1 == "PAIR" else op1, src, n,
                                           neg), dst=0)
        if kind == "pair" or op1 == "PAIR":     # a pair's SIGMOID: its twins written at TW
            first = dataclasses.replace(_first(rng, "SIGMOID", src, n), dst=0, flags=0,
                                        pair=1, aux=TW)
        if kind == "three":     # op2 "MIDDLE+THIRD": a chain of three, the third's b at B3
            o2, o3 = op2.split("+")
            mid = dataclasses.replace(_second(rng, o2, n, 0), src=src, chain=1)
            third = dataclasses.replace(_second(rng, o3, n, OUT), src=src, aux=B3)
            body = [mv, first, mid, third]
        else:
            body = [mv, first, dataclasses.replace(_second(rng, op2, n, OUT, tee), src=src)]
    tail = []
    if tee:     # the RMSNORM that reuses the tee's statistics
        tail = [Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=body[-1].dst, aux=W2,
                      dst=OUT + 300, n=n, m=45000, s=34, reuse=1)]
    prog = head + body + tail + [Instr(Op.HALT)]
    init = {X: [rng.randint(-127, 127) for _ in range(max(n, k))],
            XN: [rng.randint(-3000, 3000) for _ in range(max(k, 1))],
            B2: [rng.randint(-3000, 3000) for _ in range(n)],
            B3: [rng.randint(-3000, 3000) for _ in range(n)],
            W2: [rng.randint(-32512, 32512) for _ in range(max(n, k))]}
    return prog, words, init


def _unchained(prog):
    """The same program with every chain undone: each chained op writes its result (at
    TMP, the middle of a chain of three at TMP + 150; for an epilogue its MATVEC's rows'
    op), the next reads it as a."""
    out = []
    for i, ins in enumerate(prog):
        if i and prog[i - 1].chain:
            ins = dataclasses.replace(ins, src=out[-1].dst)
        if ins.chain:
            tmp = TMP + 150 if i and prog[i - 1].chain else TMP
            ins = dataclasses.replace(ins, chain=0, dst=tmp)
        out.append(ins)
    return out


def _cases():
    # (lanes, (kind, first, second, n, k, neg, tee, in place))
    fixed = [(8, ("standalone", "SILU", "MUL", 20, 0, False, False, False)),
             (8, ("standalone", "SIGMOID", "ADD", 9, 0, True, False, False)),
             (16, ("standalone", "GELU", "MUL", 33, 0, False, False, True)),
             (8, ("standalone", "SILU", "MUL", 24, 0, False, True, False)),
             (8, ("standalone", "SILU", "MUL", 1, 0, False, False, False)),
             (8, ("epilogue", "SILU", "MUL", 20, 32, False, False, False)),
             (8, ("epilogue", "SIGMOID", "ADD", 8, 12, False, False, False)),
             (16, ("epilogue", "SILU", "MUL", 40, 24, True, True, False)),
             (8, ("prologue", "SILU", "MUL", 13, 40, False, False, False)),
             (16, ("prologue", "SILU", "ADD", 17, 32, False, True, False)),
             (128, ("epilogue", "SILU", "MUL", 128, 128, False, False, False)),
             # a pair's SIGMOID chained (one tile): the twins written, f streamed on
             (8, ("pair", "SIGMOID", "MUL", 8, 20, False, False, False)),
             (16, ("pair", "SIGMOID", "ADD", 11, 40, False, True, False)),
             (8, ("pair", "SIGMOID", "MUL", 1, 9, False, False, False)),
             (16, ("pair", "SIGMOID", "MUL", 16, 24, False, False, True)),
             # chains of three (one tile): the third's b through port a
             (8, ("three", "SILU", "MUL+ADD", 8, 20, False, False, False)),
             (16, ("three", "SIGMOID", "ADD+MUL", 13, 33, True, False, False)),
             (8, ("three", "PAIR", "MUL+MUL", 7, 9, False, False, False)),
             (16, ("three", "GELU", "ADD+ADD", 1, 40, False, False, False)),
             (128, ("three", "SILU", "MUL+ADD", 128, 128, False, False, False))]
    rng = random.Random(SEED)
    for _ in range(8):
        lanes = rng.choice((8, 16))
        kind = rng.choice(("standalone", "epilogue", "prologue"))
        k = rng.randint(PRO_MIN_K if kind == "prologue" else 1, max(3 * lanes, PRO_MIN_K + 8))
        fixed.append((lanes, (kind, rng.choice(("SILU", "SIGMOID", "GELU")),
                              rng.choice(("ADD", "MUL")), rng.randint(1, 3 * lanes), k,
                              rng.random() < 0.3, rng.random() < 0.4, False)))
    return fixed


def _cfg(lanes, **kw):
    return AccelConfig(lanes=lanes, vector=VECTOR, scratch_depth=DEPTH, weight_depth=1024,
                       op_chain=True, **kw)


@pytest.mark.parametrize("lanes,case", _cases(), ids=lambda c: "-".join(map(str, c))
                         if isinstance(c, tuple) else str(c))
def test_chain_rtl_equals_interpreter_and_model(lanes, case):
    from ternac.lower import check_program
    from ternac.sim.pysim import run_program_pysim
    seed = SEED + 7 * lanes + 5 * case[3] + 3 * case[4] + len(case[0]) + len(case[1])
    print(f"seed {seed}")
    rng = random.Random(seed)
    prog, words, init = _program(rng, lanes, case)
    cfg = _cfg(lanes)
    check_program(prog, cfg)
    kw = dict(lanes=lanes, scratch_depth=DEPTH, out_depth=cfg.out_depth,
              weight_depth=cfg.weight_depth, scratch_init=init)
    st = run_program(prog, words, **kw)
    ref = run_program(_unchained(prog), words, **kw)
    n, tee = case[3], case[6]
    dst = prog[-2 - int(tee)].dst
    want = st.scratch[0, dst:dst + n].tolist()
    assert want == ref.scratch[0, dst:dst + n].tolist()
    assert len(set(want)) > 1 or n == 1
    reads = [(HostSpace.SCRATCH, dst, n)]
    if case[0] == "pair" or case[1] == "PAIR":       # the twins
        reads.append((HostSpace.SCRATCH, TW, n))
        assert st.scratch[0, TW:TW + n].tolist() == ref.scratch[0, TW:TW + n].tolist()
    if tee:
        reads.append((HostSpace.SCRATCH, OUT + 300, n))
        assert st.scratch[0, OUT + 300:OUT + 300 + n].tolist() == \
            ref.scratch[0, OUT + 300:OUT + 300 + n].tolist()
    out = run_program_pysim(cfg, prog, words, init, reads, max_cycles=60_000)
    for (space, a, ln), w in zip(reads, out["words"]):
        assert [(v + 0x8000 & 0xFFFF) - 0x8000 for v in w] == st.scratch[0, a:a + ln].tolist(), a
    data = {}       # every RMSNORM's input is still in scratch at the end
    for i, ins in enumerate(prog):
        if ins.op == Op.RMSNORM:
            x = st.scratch[0, ins.src:ins.src + ins.n].tolist()
            data[i] = C.norm_data(x, layernorm=False)
    model = C.program_cycles(prog, lanes, data=data)
    plain = C.program_cycles(_unchained(prog), lanes, data=data)
    print(f"{lanes} {case}: measured {out['cycles']} cycles, modelled {model['total']} "
          f"(unchained {plain['total']})")
    assert model["exact"] and model["total"] == out["cycles"]
    assert model["total"] < plain["total"]


def test_no_matvec_chained_after_a_chain():
    """On a build with mv_chain too (LM_ULX3S_CONFIG's), a MATVEC after a chained epilogue's
    triple starts after it (the model does not chain it; hw/sequencer.py looks ahead only
    without ``ch``): RTL equal to the interpreter, its cycles to the model's."""
    from ternac.lower import check_program
    from ternac.sim.pysim import run_program_pysim
    rng = random.Random(SEED + 2)
    print(f"seed {SEED + 2}")
    lanes = 8
    prog, words, init = _program(rng, lanes, ("epilogue", "SILU", "MUL", 16, 24, False, False,
                                              False))
    t = torch.tensor([[rng.choice((-1, 0, 1)) for _ in range(16)] for _ in range(12)])
    mv2 = Instr(Op.MATVEC, flags=int(Flag.WIDE), src=X, dst=OUT + 100, n=12, k=16,
                wbase=len(words), m=40000, s=9)
    prog = prog[:-1] + [mv2, Instr(Op.HALT)]
    words = words + list(tile_lanes(t, lanes))
    cfg = _cfg(lanes, mv_chain=True)
    check_program(prog, cfg)
    st = run_program(prog, words, lanes=lanes, scratch_depth=DEPTH, out_depth=cfg.out_depth,
                     weight_depth=cfg.weight_depth, scratch_init=init)
    reads = [(HostSpace.SCRATCH, OUT, 16), (HostSpace.SCRATCH, OUT + 100, 12)]
    out = run_program_pysim(cfg, prog, words, init, reads, max_cycles=20_000)
    for (_, a, ln), w in zip(reads, out["words"]):
        assert [(v + 0x8000 & 0xFFFF) - 0x8000 for v in w] == st.scratch[0, a:a + ln].tolist()
    model = C.program_cycles(prog, lanes, mv_chain=True)
    print(f"measured {out['cycles']}, modelled {model['total']}")
    assert model["exact"] and model["total"] == out["cycles"]


def test_interpreter_and_check_program_refuse_what_the_isa_does_not_define():
    rng = random.Random(SEED + 1)
    cfg = _cfg(8)
    from ternac.lower import check_program
    prog, words, init = _program(rng, 8, ("standalone", "SILU", "MUL", 16, 0, False, False, False))
    kw = dict(lanes=8, scratch_depth=DEPTH, out_depth=cfg.out_depth, weight_depth=1024,
              scratch_init=init)
    run_program(prog, words, **kw)
    check_program(prog, cfg)
    bad = {
        "a pair's SIGMOID": [dataclasses.replace(prog[0], op=Op.SIGMOID, pair=1)] + prog[1:],
        "a MUL with wb": [prog[0], dataclasses.replace(prog[1], wb=1, aux=0)] + prog[2:],
        "a length that differs": [prog[0], dataclasses.replace(prog[1], n=15)] + prog[2:],
        "a chain into a chain": [prog[0], dataclasses.replace(prog[1], chain=1)] + prog[2:],
        "a chain into a SILU": [prog[0], dataclasses.replace(prog[1], op=Op.SILU, k=20)]
        + prog[2:],
        "a chain into HALT": [prog[0], prog[-1]],
        "a result over part of the input": [prog[0], dataclasses.replace(prog[1], dst=X + 3)]
        + prog[2:],
    }
    for what, p in bad.items():
        with pytest.raises(MachineError):
            run_program(p, words, **kw)
        with pytest.raises(CompileError):
            check_program(p, cfg)
        print(f"refused: {what}")
    # a chain on a build without op_chain; a REPEAT body ending with a chain's first op
    with pytest.raises(CompileError, match="op_chain"):
        check_program(prog, dataclasses.replace(cfg, op_chain=False))
    with pytest.raises(CompileError, match="chain"):
        check_program([Instr(Op.REPEAT, n=2, k=1), prog[0], prog[1], Instr(Op.HALT)], cfg)
    with pytest.raises(ValueError, match="op_chain needs"):
        AccelConfig(lanes=8, vector=("norm",), op_chain=True)


def test_lm_ulx3s_chains_silu_and_mul():
    from ternac.config import LM_ULX3S_CONFIG
    from ternac.golden.lm_int import IntLM
    from ternac.lower import compile_lm, run_tokens
    cfg = LM_ULX3S_CONFIG
    assert cfg.op_chain and cfg.prog_word_bits == dataclasses.replace(
        cfg, op_chain=False).prog_word_bits + 1
    im = IntLM.from_checkpoint(None)
    cm = compile_lm(im, cfg)
    chains = [(i, ins) for i, ins in enumerate(cm.program) if ins.chain]
    # each MLGRU: two SILU -> MUL (the first on into + f h: a chain of three) and its f
    # gate's pair (SIGMOID, f streamed into f * h)
    layers = im.config.num_hidden_layers
    middles = [(i, ins) for i, ins in chains if ins.op in (Op.ADD, Op.MUL)]
    assert len(chains) == 4 * layers and len(middles) == layers
    assert all(ins.op == Op.MUL and cm.program[i + 1].op == Op.ADD for i, ins in middles)
    chains = [c for c in chains if c not in middles]
    assert all(cm.program[i + 1].op == Op.MUL for i, ins in chains)
    assert sum(ins.op == Op.SILU and not ins.pair for _, ins in chains) == 2 * layers
    assert sum(ins.op == Op.SIGMOID and ins.pair for _, ins in chains) == layers
    plain = compile_lm(im, dataclasses.replace(cfg, op_chain=False))
    on = C.program_cycles(cm.program, cfg.lanes, mv_chain=True)["total"]
    off = C.program_cycles(plain.program, cfg.lanes, mv_chain=True)["total"]
    print(f"LM L=128: {off} -> {on} modelled cycles a token (bound) with op_chain")
    assert on < off - 600
    state = im.init_state()
    toks = [5, 17, 40, 2]
    for t, (logits, _, _) in zip(toks, run_tokens(cm, toks)):
        ref, state = im.step(t, state)
        assert torch.equal(logits, ref)


@st.composite
def _chain_programs(draw, three=False):
    """A chain (standalone, or a MATVEC's epilogue, a SIGMOID's possibly a pair, possibly
    a chain of three) with addresses, lengths, flags and fields drawn over small ranges,
    overlaps included: most are legal, some not."""
    lanes = 8
    n = draw(st.integers(1, 8 if three else 12))
    op1 = draw(st.sampled_from(["SIGMOID", "SILU", "GELU"]))
    op2 = draw(st.sampled_from([Op.ADD, Op.MUL]))
    addr = st.integers(0, 40)
    src, aux2, dst2 = draw(addr), draw(addr), draw(addr)
    f1 = draw(st.sampled_from([0, int(Flag.NEG), int(Flag.OUT8)]))
    f2 = draw(st.sampled_from([0, int(Flag.NEG), int(Flag.OUT8)]))
    first = Instr(Op[op1], flags=f1, src=src, dst=draw(addr), n=n, k=draw(st.integers(0, 30)),
                  wbase=draw(st.integers(0, 65535)), m=draw(st.integers(0, 65535)),
                  s=draw(st.integers(0, 30)), chain=1)
    second = Instr(op2, flags=f2, src=draw(addr), aux=aux2, dst=dst2, n=n,
                   m=draw(st.integers(0, 65535)), s=draw(st.integers(0, 40)),
                   wbase=draw(st.integers(0, 65535)), k=draw(st.integers(0, 40)))
    words = []
    if three or draw(st.booleans()):
        k = draw(st.integers(1, 20))
        t = torch.tensor([[draw(st.sampled_from([-1, 0, 1])) for _ in range(k)]
                          for _ in range(n)])
        words = list(tile_lanes(t, lanes))
        mv = Instr(Op.MATVEC, flags=int(Flag.WIDE), src=draw(addr), n=n, k=k,
                   m=draw(st.integers(1, 65535)), s=draw(st.integers(0, 20)), epi=1)
        if op1 == "SIGMOID" and draw(st.booleans()):    # a pair (one tile: n <= 8 only)
            first = dataclasses.replace(first, pair=1, aux=draw(addr))
        body = [mv, first, second]
        if three or draw(st.booleans()):     # a chain of three (one tile: n <= 8 only)
            third = Instr(draw(st.sampled_from([Op.ADD, Op.MUL])),
                          flags=draw(st.sampled_from([0, int(Flag.NEG), int(Flag.OUT8)])),
                          src=draw(addr), aux=draw(addr), dst=draw(addr), n=n,
                          m=draw(st.integers(0, 65535)), s=draw(st.integers(0, 40)),
                          wbase=draw(st.integers(0, 65535)), k=draw(st.integers(0, 40)))
            body = [mv, first, dataclasses.replace(second, chain=1), third]
    else:
        body = [first, second]
    return body + [Instr(Op.HALT)], words, draw(st.integers(0, 2 ** 31))


@settings(max_examples=300, derandomize=True, deadline=None)
@given(_chain_programs())
def test_chain_semantics_and_rules(case):
    """Hypothesis, derandomized (its seed is fixed): on random chains (about 190 of the 300
    legal), check_program accepts exactly what the interpreter runs, and the result is the
    two ops' run one after the other (the first one's result written to scratch words
    nobody reads, 64..)."""
    from ternac.lower import check_program
    prog, words, seed = case
    g = torch.Generator().manual_seed(seed)
    init = {0: torch.randint(-127, 128, (64,), generator=g).tolist()}
    cfg = AccelConfig(lanes=8, vector=VECTOR, scratch_depth=128, weight_depth=64,
                      op_chain=True)
    kw = dict(lanes=8, scratch_depth=128, out_depth=cfg.out_depth, weight_depth=64,
              scratch_init=init)
    try:
        check_program(prog, cfg)
        accepted = True
    except CompileError:
        accepted = False
    try:
        st_ = run_program(prog, words, **kw)
    except MachineError:
        assert not accepted, "check_program accepts a program the interpreter refuses"
        return
    assert accepted, "check_program refuses a program the interpreter runs"
    plain, tmp = [], 64
    for j, ins in enumerate(prog):      # each chained result written (64.., 96..)
        if j and prog[j - 1].chain:
            ins = dataclasses.replace(ins, src=plain[-1].dst)
        if ins.chain:
            ins = dataclasses.replace(ins, chain=0, dst=tmp)
            tmp += 32
        plain.append(ins)
    ref = run_program(plain, words, **kw)
    assert torch.equal(st_.scratch[:, :64], ref.scratch[:, :64]), prog


def _random_chain_on_the_rtl(case):
    from hypothesis import assume
    from ternac.lower import check_program
    from ternac.sim.pysim import run_program_pysim
    prog, words, seed = case
    g = torch.Generator().manual_seed(seed)
    init = {0: torch.randint(-127, 128, (64,), generator=g).tolist()}
    cfg = AccelConfig(lanes=8, vector=VECTOR, scratch_depth=128, weight_depth=64,
                      op_chain=True)
    try:
        check_program(prog, cfg)
    except CompileError:
        assume(False)
    st_ = run_program(prog, words, lanes=8, scratch_depth=128, out_depth=cfg.out_depth,
                      weight_depth=64, scratch_init=init)
    out = run_program_pysim(cfg, prog, words, init, [(HostSpace.SCRATCH, 0, 128)],
                            max_cycles=5_000)
    got = [(v + 0x8000 & 0xFFFF) - 0x8000 for v in out["words"][0]]
    assert got == st_.scratch[0].tolist(), prog
    print(f"seed {seed}: {len(prog) - 1} instructions, {out['cycles']} cycles")
    assert C.program_cycles(prog, 8)["total"] == out["cycles"], prog


@settings(max_examples=20, derandomize=True, deadline=None)
@given(_chain_programs())
def test_random_chains_on_the_rtl(case):
    """Hypothesis, derandomized: 20 random chains that check_program accepts (standalone
    and behind a MATVEC) on the RTL, every scratch word of [0, 128) and the cycle count
    equal to the interpreter's and the model's."""
    _random_chain_on_the_rtl(case)


@settings(max_examples=12, derandomize=True, deadline=None,
          suppress_health_check=[HealthCheck.filter_too_much])
@given(_chain_programs(three=True))
def test_random_chains_of_three_on_the_rtl(case):
    """The same on 12 random chains of three that check_program accepts (about 4 in 10
    drawn are)."""
    _random_chain_on_the_rtl(case)


def test_repeat_compression_keeps_chains_whole_and_halt_refuses_chain():
    """Found by a review: compress_program must not start or end a REPEAT body inside a
    chain (three chains differing only in the first one's m compressed to SILU ; REPEAT
    [MUL, SILU] ; MUL), and a HALT with chain is refused as check_program refuses it."""
    from ternac.golden.isa import expand_program
    from ternac.lower import compress_program
    prog = []
    for j, m in enumerate((51000, 50000, 50000)):
        prog += [Instr(Op.SILU, src=40 + 4 * j, n=4, k=20, wbase=40000, m=m, s=16, chain=1),
                 Instr(Op.MUL, src=40 + 4 * j, aux=600, dst=1200 + 4 * j, n=4, m=40000, s=29)]
    prog.append(Instr(Op.HALT))
    out = compress_program(prog)
    assert [i for _, i in expand_program(out)] == prog
    with pytest.raises(MachineError, match="sets chain"):
        run_program([Instr(Op.HALT, chain=1)], [], lanes=8, scratch_depth=64, out_depth=8)


def test_chained_pair_refusals():
    """A chained pair over more than one tile, and a chained op writing or reading b over
    the pair's twins (written meanwhile): the interpreter and check_program refuse each; the
    same program with the twins elsewhere runs."""
    from ternac.lower import check_program
    rng = random.Random(SEED + 3)
    print(f"seed {SEED + 3}")
    prog, words, init = _program(rng, 8, ("pair", "SIGMOID", "MUL", 8, 20, False, False,
                                          False))
    cfg = _cfg(8)
    kw = dict(lanes=8, scratch_depth=DEPTH, out_depth=cfg.out_depth,
              weight_depth=cfg.weight_depth, scratch_init=init)
    check_program(prog, cfg)
    run_program(prog, words, **kw)
    mv, first, sec = prog[:3]
    t = torch.tensor([[rng.choice((-1, 0, 1)) for _ in range(20)] for _ in range(12)])
    words12 = list(tile_lanes(t, 8))
    bad = {
        "two tiles": ([dataclasses.replace(mv, n=12), dataclasses.replace(first, n=12),
                       dataclasses.replace(sec, n=12)] + prog[3:], words12),
        "the result over the twins": ([mv, first, dataclasses.replace(sec, dst=TW + 3)]
                                      + prog[3:], words),
        "b over the twins": ([mv, first, dataclasses.replace(sec, aux=TW - 2)] + prog[3:],
                             words),
    }
    for what, (p, w) in bad.items():
        with pytest.raises(MachineError):
            run_program(p, w, **kw)
        with pytest.raises(CompileError):
            check_program(p, cfg)
        print(f"refused: {what}")


def test_chain_of_three_refusals():
    """What a chain of three may not be: standalone, behind two tiles, started by an ADD or
    MUL epilogue, four long, with a tee, its result over the middle's b or the MATVEC's
    input; the interpreter and check_program refuse each, and check_program a third's b
    outside port a's window (the interpreter has no window)."""
    from ternac.lower import check_program
    rng = random.Random(SEED + 4)
    print(f"seed {SEED + 4}")
    prog, words, init = _program(rng, 8, ("three", "SILU", "MUL+ADD", 8, 20, False, False,
                                          False))
    cfg = _cfg(8)
    kw = dict(lanes=8, scratch_depth=DEPTH, out_depth=cfg.out_depth,
              weight_depth=cfg.weight_depth, scratch_init=init)
    check_program(prog, cfg)
    run_program(prog, words, **kw)
    mv, first, mid, third = prog[:4]
    halt = prog[4:]
    t = torch.tensor([[rng.choice((-1, 0, 1)) for _ in range(20)] for _ in range(12)])
    words12 = list(tile_lanes(t, 8))
    std_first = dataclasses.replace(first, src=X)
    bad = {
        "standalone": ([std_first, mid, third] + halt, words),
        "two tiles": ([dataclasses.replace(i, n=12) for i in (mv, first, mid, third)] + halt,
                      words12),
        "an ADD epilogue starting it": ([mv, dataclasses.replace(mid, src=X), third] + halt,
                                        words),
        "four long": ([mv, first, mid, dataclasses.replace(third, chain=1),
                       dataclasses.replace(third, dst=OUT + 50)] + halt, words),
        "a tee on the third": ([mv, first, mid, dataclasses.replace(third, tee=1)]
                               + [Instr(Op.RMSNORM, src=OUT, aux=W2, dst=OUT + 300, n=8,
                                        m=45000, s=34, reuse=1)] + halt, words),
        "the result over part of the middle's b": (
            [mv, first, mid, dataclasses.replace(third, dst=B2 + 2)] + halt, words),
        "the result over the MATVEC's input": (
            [mv, first, mid, dataclasses.replace(third, dst=X + 4)] + halt, words),
    }
    for what, (p, w) in bad.items():
        with pytest.raises(MachineError):
            run_program(p, w, **kw)
        with pytest.raises(CompileError):
            check_program(p, cfg)
        print(f"refused: {what}")
    # the same words as the middle's b are fine (read before written)
    ok = [mv, first, mid, dataclasses.replace(third, dst=B2)] + halt
    check_program(ok, cfg)
    run_program(ok, words, **kw)
    with pytest.raises(CompileError, match="port a"):
        check_program(prog, dataclasses.replace(cfg, scratch_a_depth=B3))


def test_stray_fields_on_an_epilogue_refused_by_both():
    """Found by a review: reuse, pro or epi on a MATVEC's epilogue word (plain or a chain's
    first op), or reuse on the MATVEC: check_program refused them and the interpreter ran
    them; both refuse now."""
    from ternac.lower import check_program
    cfg = AccelConfig(lanes=8, vector=VECTOR, scratch_depth=256, weight_depth=64,
                      op_chain=True)
    mv = Instr(Op.MATVEC, flags=int(Flag.WIDE), src=0, n=4, k=4, m=30000, s=9, epi=1)
    ep = Instr(Op.SILU, src=0, dst=100, n=4, k=20, wbase=40000, m=40000, s=16)
    mul = Instr(Op.MUL, src=0, aux=120, dst=140, n=4, m=30000, s=28)
    kw = dict(lanes=8, scratch_depth=256, out_depth=cfg.out_depth, weight_depth=64,
              scratch_init={0: [1, 2, 3, 4]})
    halt = [Instr(Op.HALT)]
    run_program([mv, ep] + halt, [0] * 4, **kw)
    check_program([mv, ep] + halt, cfg)
    cases = [[mv, dataclasses.replace(ep, **{f: 1})] for f in ("reuse", "pro", "epi")]
    cases += [[dataclasses.replace(mv, reuse=1), ep]]
    cases += [[mv, dataclasses.replace(ep, dst=0, chain=1, **{f: 1}), mul]
              for f in ("reuse", "pro", "epi")]
    for p in cases:
        with pytest.raises(MachineError):
            run_program(p + halt, [0] * 4, **kw)
        with pytest.raises(CompileError):
            check_program(p + halt, cfg)
