"""Prologues (golden/isa.py ``pro``): a reuse RMSNORM whose results stream into the next
MATVEC's lanes as tile 0's activations (hw/sequencer.py PRO_DEC / PRO).

* the RTL (the Accelerator in Amaranth's simulator) equals the program interpreter on every
  word of the RMSNORM's result and of the MATVEC's (or its epilogue's) result, and its cycle
  counter equals the cycle model (golden.cycles.prologue_cycles), for statistics from a
  previous RMSNORM or from a tee (the RMSNORM's first beat waiting for the Norm unit's
  work), one tile, several tiles with k > L and a partial last tile, RAW, an epilogue;
* the program without ``pro`` computes the same and takes more cycles;
* malformed prologues are refused by the interpreter and check_program; the lowering sets
  ``pro`` only on an accelerator that runs it, and the LM program with prologues equals the
  one without on every logit.
"""
import dataclasses
import random

import pytest
import torch

from ternac.config import AccelConfig, HostSpace
from ternac.errors import CompileError
from ternac.golden import cycles as C
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import PRO_MIN_K, Flag, Instr, Op
from ternac.golden.packing import tile_lanes

SEED = 4242
X, W1, W2, N1, N2, AUX, OUT, Y = 40, 100, 160, 220, 280, 340, 480, 700


def _pysim(cfg, program, weight_words, scratch, reads):
    from ternac.sim.pysim import run_program_pysim
    out = run_program_pysim(cfg, program, weight_words, scratch, reads, max_cycles=50_000)
    return out["cycles"], out["words"]


def _cases():
    # (lanes, k = the norm's n, MATVEC rows, statistics from "norm" | "tee", mv flags,
    # epilogue; "MUL-tee": a MUL epilogue teeing into the Norm unit for a second RMSNORM)
    return [(8, 32, 20, "norm", Flag.WIDE, None), (8, 40, 8, "tee", 0, None),
            (8, 33, 13, "tee", Flag.WIDE, "SILU"), (32, 32, 40, "norm", Flag.RAW, None),
            (32, 48, 32, "tee", Flag.WIDE, "MUL"), (8, 32, 21, "tee", Flag.WIDE, "MUL-tee")]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: f"L{c[0]}-k{c[1]}-n{c[2]}-{c[3]}-"
                         f"f{int(c[4])}-{c[5] or 'none'}")
def test_prologue_rtl_equals_interpreter_and_model(case):
    lanes, k, n, stats, mvf, epi = case
    seed = SEED + lanes + 3 * k + 7 * n + (stats == "tee")
    print(f"seed {seed}")
    rng = random.Random(seed)
    cfg = AccelConfig(lanes=lanes, vector=("activation", "eltwise", "norm"))
    t = torch.tensor([[rng.choice((-1, 0, 0, 1)) for _ in range(k)] for _ in range(n)])
    words = tile_lanes(t, lanes)
    x = [rng.randint(-3000, 3000) for _ in range(k)]
    b = [rng.randint(-3000, 3000) for _ in range(k)]
    w1 = [rng.randint(-32512, 32512) for _ in range(k)]
    w2 = [rng.randint(-32512, 32512) for _ in range(k)]
    e = [rng.randint(-3000, 3000) for _ in range(n)]
    if stats == "norm":
        head = [Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=X, aux=W1, dst=N1, n=k, m=40000, s=33)]
        src = X
    else:       # a MUL teeing its result into the Norm unit, then the reuse RMSNORM waits
        head = [Instr(Op.MUL, src=X, aux=AUX, dst=Y, n=k, m=3000, s=9, tee=1, tee8=1)]
        src = Y
    norm = Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=src, aux=W2, dst=N2, n=k, m=50000, s=33,
                 reuse=1, pro=1)
    raw = bool(mvf & Flag.RAW)
    mv = Instr(Op.MATVEC, flags=int(mvf), src=N2, dst=0 if raw else OUT, n=n, k=k,
               m=rng.randint(1 << 14, (1 << 16) - 1), s=9 if mvf & Flag.WIDE else 12,
               epi=int(epi is not None))
    tail = []
    if epi == "SILU":
        tail = [Instr(Op.SILU, src=N2, dst=OUT, n=n, k=30, wbase=40000, m=30000, s=14)]
    elif epi == "MUL":
        tail = [Instr(Op.MUL, src=N2, aux=AUX + 64, dst=OUT, n=n, m=3000, s=14)]
    elif epi == "MUL-tee":      # the result's statistics teed, then a RMSNORM reusing them
        tail = [Instr(Op.MUL, src=N2, aux=AUX + 64, dst=OUT, n=n, m=3000, s=14, tee=1, tee8=1),
                Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=OUT, aux=W1, dst=Y + 64, n=n,
                      m=40000, s=33, reuse=1)]
    prog = head + [norm, mv] + tail + [Instr(Op.HALT)]
    init = {X: x, AUX: b, W1: w1, W2: w2, AUX + 64: e}
    kw = dict(lanes=lanes, scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
              weight_depth=max(cfg.weight_depth, len(words)), scratch_init=init)
    st = run_program(prog, words, **kw)
    plain = [dataclasses.replace(i, pro=0) for i in prog]
    st2 = run_program(plain, words, **kw)
    assert torch.equal(st.scratch, st2.scratch) and torch.equal(st.out, st2.out)
    want_norm = st.scratch[0, N2:N2 + k].tolist()
    want = (st.out[0, :n] if raw else st.scratch[0, OUT:OUT + n]).tolist()
    assert len(set(want)) > 1 and len(set(want_norm)) > 1
    space = HostSpace.OUT if raw else HostSpace.SCRATCH
    cycles, (got_norm, got) = _pysim(cfg, prog, words, init,
                                     [(HostSpace.SCRATCH, N2, k), (space, 0 if raw else OUT, n)])
    got_norm = [(v + 0x8000 & 0xFFFF) - 0x8000 for v in got_norm]
    if not raw:
        got = [(v + 0x8000 & 0xFFFF) - 0x8000 for v in got]
    assert got_norm == want_norm
    assert got == want
    data = {len(head): C.norm_data(st.scratch[0, src:src + k].tolist(), layernorm=False)}
    if stats == "norm":
        data[0] = data[len(head)]
    if epi == "MUL-tee":
        data[len(prog) - 2] = C.norm_data(want, layernorm=False)
        assert st.scratch[0, Y + 64:Y + 64 + n].tolist() == [
            (v + 0x8000 & 0xFFFF) - 0x8000 for v in _pysim(
                cfg, prog, words, init, [(HostSpace.SCRATCH, Y + 64, n)])[1][0]]
    model = C.program_cycles(prog, lanes, data=data)
    unfused = C.program_cycles(plain, lanes, data=data)
    print(f"prologue {case}: measured {cycles} cycles, modelled {model['total']}, without the "
          f"prologue {unfused['total']}")
    assert model["exact"] and model["total"] == cycles
    assert model["total"] < unfused["total"]


def test_malformed_prologues_are_refused():
    """The interpreter, check_program and the cycle model refuse a ``pro`` that is not a
    reuse OUT8 RMSNORM followed by a MATVEC of src = its dst, k = its n >= PRO_MIN_K."""
    from ternac.lower import check_program
    cfg = AccelConfig(lanes=8, vector=("norm",))
    k = PRO_MIN_K
    full = Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=X, aux=W1, dst=N1, n=k, m=40000, s=33)
    norm = dataclasses.replace(full, aux=W2, dst=N2, reuse=1, pro=1)
    mv = Instr(Op.MATVEC, src=N2, dst=OUT, n=8, k=k, m=40000, s=12)
    good = [full, norm, mv, Instr(Op.HALT)]
    kw = dict(lanes=8, scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
              weight_depth=cfg.weight_depth, scratch_init={X: list(range(1, k + 1))})
    run_program(good, [0] * k, **kw)
    check_program(good, cfg)
    bad = {
        "MATVEC src is not the norm's dst": [full, norm, dataclasses.replace(mv, src=N2 + 1)],
        "k is not the norm's n": [full, norm, dataclasses.replace(mv, k=k - 1)],
        "k below PRO_MIN_K": [dataclasses.replace(full, n=k - 1),
                              dataclasses.replace(norm, n=k - 1),
                              dataclasses.replace(mv, k=k - 1)],
        "not reuse": [full, dataclasses.replace(norm, reuse=0), mv],
        "not OUT8": [dataclasses.replace(full, flags=0), dataclasses.replace(norm, flags=0), mv],
        "next is not a MATVEC": [full, norm, Instr(Op.ARGMAX, n=4), mv],
        "pro on a MATVEC": [full, dataclasses.replace(norm, pro=0),
                            dataclasses.replace(mv, pro=1)],
    }
    for what, prog in bad.items():
        prog = prog + [Instr(Op.HALT)]
        with pytest.raises(MachineError, match="pro"):
            run_program(prog, [0] * k, **kw)
        with pytest.raises(CompileError, match="pro"):
            check_program(prog, cfg)
        print(f"refused: {what}")
    with pytest.raises(ValueError, match="not a MATVEC"):
        C.program_cycles([full, norm, Instr(Op.ARGMAX, n=4), Instr(Op.HALT)], 8)


def test_repeat_keeps_a_prologue_whole():
    """A REPEAT body may not end with a prologue RMSNORM (its MATVEC must be the next word)
    and compress_program never splits the pair."""
    from ternac.golden.isa import expand_program, repeat_word
    from ternac.lower import compress_program
    k = PRO_MIN_K
    norm = Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=X, aux=W2, dst=N2, n=k, m=1, s=1,
                 reuse=1, pro=1)
    mv = Instr(Op.MATVEC, src=N2, dst=OUT, n=8, k=k, m=1, s=1)
    with pytest.raises(ValueError, match="prologue"):
        expand_program([repeat_word(2, 1), norm, mv, Instr(Op.HALT)])
    with pytest.raises(ValueError, match="prologue"):
        expand_program([norm, repeat_word(2, 1), mv, Instr(Op.HALT)])
    # copies of (ARGMAX, RMSNORM pro, MATVEC): a body may hold the pair, never split it
    body = [Instr(Op.ARGMAX, n=4), norm, mv]
    prog = body * 3 + [Instr(Op.HALT)]
    out = compress_program(prog)
    assert [i for _, i in expand_program(out)] == prog
    for j, ins in enumerate(out):
        if ins.op == Op.REPEAT:
            last = out[j + ins.k]
            assert not (last.op == Op.RMSNORM and last.pro)


def test_lm_prologues_equal_the_plain_program():
    """The lowering sets ``pro`` on the LM's RMSNORMs that feed a MATVEC (not with
    fuse=False): the program with
    prologues computes the same logits as the one without them (interpreter, two tokens)
    and the cycle model counts fewer cycles."""
    from ternac.golden.lm_int import IntLM
    from ternac.lower import LM_CONFIG, compile_lm
    im = IntLM.from_checkpoint(None)
    cm = compile_lm(im, LM_CONFIG)
    prog = list(cm.program)
    pro = [i for i in prog if i.pro]
    print(f"{len(pro)} prologues of {sum(i.op == Op.RMSNORM for i in prog)} RMSNORMs")
    assert len(pro) >= 15
    plain = [dataclasses.replace(i, pro=0) for i in prog]
    cfg = cm.cfg
    init = {a: list(v) for a, v in cm.scratch_constants.items()}
    for tok in (3, 17):
        init[cm.token_addr] = [tok]
        kw = dict(lanes=cfg.lanes, scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                  weight_depth=cfg.weight_depth, scratch_init=init)
        a = run_program(prog, cm.weight_words, **kw)
        b = run_program(plain, cm.weight_words, **kw)
        assert torch.equal(a.out, b.out) and torch.equal(a.scratch, b.scratch)
    with_pro = C.program_cycles(prog, cfg.lanes)["total"]
    without = C.program_cycles(plain, cfg.lanes)["total"]
    print(f"LM L={cfg.lanes}: {with_pro} cycles a token with prologues, {without} without "
          f"(modelled bound)")
    assert with_pro < without - 100 * len(pro)
    from ternac.lower import lower
    unfused = lower(im.graph(), cfg, fuse=False)
    assert not any(i.pro for i in unfused.program)


def test_check_program_refuses_a_norm_writing_over_part_of_its_weight():
    """The sequencer reads a norm's weight late (24e8e2e): a result that overlaps part of
    the weight would be read back as weight, so check_program refuses it (disjoint or the
    same words pass)."""
    from ternac.config import AccelConfig
    from ternac.errors import CompileError
    from ternac.golden.isa import Instr, Op
    from ternac.lower import check_program
    cfg = AccelConfig(lanes=8, vector=("norm",))
    for dst, aux, ok in ((100, 200, True), (100, 100, True), (100, 108, True), (108, 100, True),
                         (100, 107, False), (107, 100, False), (100, 95, False), (100, 92, True)):
        prog = [Instr(Op.RMSNORM, dst=dst, aux=aux, n=8), Instr(Op.HALT)]
        if ok:
            check_program(prog, cfg)
        else:
            with pytest.raises(CompileError, match="over part of its weight"):
                check_program(prog, cfg)
