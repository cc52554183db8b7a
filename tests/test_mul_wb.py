"""MUL with its ``b`` operand from the weight memory (golden/isa.py ``wb``).

* the RTL (the Accelerator in Amaranth's simulator) equals the interpreter on every result
  word, and its cycle counter equals the cycle model, for words of 1, 2, 4 and 16 halfwords
  (I2 at 8, 16, 32 lanes, T3 at 20 and 40), lengths that end inside a word, flags (OUT8,
  NEG), and a MATVEC and an EMBED around it on the same weight port;
* the interpreter's ``wb`` MUL equals the MUL of the same row loaded into scratch;
* the lowering keeps the LM's MUL-only norm weights in the weight memory (no scratch, no
  EMBED) and the program still equals the graph on every logit;
* malformed uses are refused by the interpreter and by check_program.
"""
import random

import pytest
import torch

from ternac.config import AccelConfig, HostSpace
from ternac.errors import CompileError
from ternac.golden import cycles as C
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.packing import embedding_words, tile_lanes, tile_lanes_t3

SEED = 4711
SRC, DST, DST2, MVX, MVD, EMB = 40, 300, 500, 700, 800, 900


def _row_words(vals, cfg):
    """An int16 row as weight words of little-endian halfwords (the lowering's layout)."""
    v = torch.tensor(vals, dtype=torch.int64)
    pair = torch.stack([v & 0xFF, (v >> 8) & 0xFF], -1).flatten()
    rows, k = embedding_words(torch.where(pair >= 128, pair - 256, pair)[None],
                              cfg.word_bits // 2)
    return [int(w) for w in rows], k


def _signed16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


CASES = [(8, "i2", 13), (16, "i2", 7), (32, "i2", 21), (32, "i2", 4), (20, "t3", 9),
         (40, "t3", 30), (128, "i2", 37)]


@pytest.mark.parametrize("lanes,fmt,n", CASES, ids=[f"L{c[0]}-{c[1]}-n{c[2]}" for c in CASES])
def test_mul_wb_rtl_equals_interpreter_and_model(lanes, fmt, n):
    seed = SEED + lanes * 100 + n
    print(f"seed {seed}")
    rng = random.Random(seed)
    cfg = AccelConfig(lanes=lanes, weight_format=fmt, vector=("eltwise",))
    # weights: a MATVEC's tile(s), then two constant rows, then a one-row EMBED table
    k = 6
    t = torch.tensor([[rng.choice((-1, 0, 1)) for _ in range(k)] for _ in range(lanes)])
    words = [int(w) for w in (tile_lanes_t3 if fmt == "t3" else tile_lanes)(t, lanes)]
    c1 = [rng.randint(-32767, 32767) for _ in range(n)]
    c2 = [rng.randint(-3000, 3000) for _ in range(n)]
    r1, _ = _row_words(c1, cfg)
    w1 = len(words)
    words += r1
    r2, _ = _row_words(c2, cfg)
    w2 = len(words)
    words += r2
    we = len(words)
    er, ek = _row_words([rng.randint(-32767, 32767) for _ in range(n)], cfg)
    words += er
    a = [rng.randint(-32767, 32767) for _ in range(n)]
    x = [rng.randint(-127, 127) for _ in range(k)]
    prog = [
        Instr(Op.MUL, src=SRC, dst=DST, n=n, m=rng.randint(1, 65535), s=rng.randint(14, 20),
              wbase=w1, wb=1),
        Instr(Op.MATVEC, src=MVX, dst=MVD, n=lanes, k=k, m=rng.randint(1 << 14, 65535), s=9),
        Instr(Op.MUL, flags=int(Flag.OUT8 | Flag.NEG), src=DST, dst=DST2, n=n,
              m=rng.randint(1, 65535), s=rng.randint(12, 16), wbase=w2, wb=1),
        Instr(Op.EMBED, flags=int(Flag.WIDE), src=1, dst=EMB, n=n, k=ek, wbase=we),
        Instr(Op.HALT)]
    scratch = {0: [0, 0], SRC: a, MVX: x}
    from ternac.lower import check_program
    check_program(prog, cfg)
    st = run_program(prog, words, lanes=lanes, scratch_depth=cfg.scratch_depth,
                     out_depth=cfg.out_depth, weight_depth=cfg.weight_depth,
                     scratch_init=scratch, weight_format=fmt)
    # the wb MUL equals the MUL of the row loaded into scratch
    plain = [Instr(Op.MUL, src=SRC, aux=960, dst=DST, n=n, m=prog[0].m, s=prog[0].s),
             Instr(Op.HALT)]
    st2 = run_program(plain, words, lanes=lanes, scratch_depth=cfg.scratch_depth,
                      out_depth=cfg.out_depth, weight_depth=cfg.weight_depth,
                      scratch_init={**scratch, 960: c1}, weight_format=fmt)
    assert st2.scratch[0, DST:DST + n].tolist() == st.scratch[0, DST:DST + n].tolist()
    from ternac.sim.pysim import run_program_pysim
    reads = [(DST, n), (DST2, n), (MVD, lanes), (EMB, n)]
    out = run_program_pysim(cfg, prog, words, scratch,
                            [(HostSpace.SCRATCH, ad, ln) for ad, ln in reads],
                            max_cycles=20_000, signed=False)
    model = C.program_cycles(prog, lanes, weight_format=fmt)
    print(f"L={lanes} {fmt} n={n}: measured {out['cycles']} cycles, modelled {model['total']}")
    for (ad, ln), got in zip(reads, out["words"]):
        assert [_signed16(v) for v in got] == st.scratch[0, ad:ad + ln].tolist(), ad
    assert model["exact"] and model["total"] == out["cycles"]


def test_malformed_wb_is_refused():
    cfg = AccelConfig(lanes=8, vector=("eltwise", "activation"))
    words = tile_lanes(torch.ones(8, 4, dtype=torch.int64), 8) + [5] * 8
    kw = dict(lanes=8, scratch_depth=1024, out_depth=16, weight_depth=len(words))
    from ternac.lower import check_program
    bad = [
        [Instr(Op.ADD, src=0, dst=100, n=4, wbase=8, wb=1), Instr(Op.HALT)],
        [Instr(Op.MUL, src=0, aux=3, dst=100, n=4, wbase=8, wb=1), Instr(Op.HALT)],
        [Instr(Op.MATVEC, src=0, n=8, k=4, m=1, epi=1),
         Instr(Op.MUL, src=0, dst=100, n=8, wbase=8, wb=1), Instr(Op.HALT)],
    ]
    for prog in bad:
        with pytest.raises(MachineError, match="wb"):
            run_program(prog, words, **kw)
        with pytest.raises(CompileError, match="wb"):
            check_program(prog, cfg)
    past = [Instr(Op.MUL, src=0, dst=100, n=40, wbase=8, wb=1), Instr(Op.HALT)]
    with pytest.raises(MachineError, match="weight"):
        run_program(past, words, **kw)
    import dataclasses
    with pytest.raises(CompileError, match="weight_depth"):
        check_program(past, dataclasses.replace(cfg, weight_depth=20))
    # words of an odd number of bytes (T3 at 5 lanes: one byte) have no halfwords
    with pytest.raises(CompileError, match="wb"):
        check_program([Instr(Op.MUL, src=0, dst=100, n=4, wbase=0, wb=1), Instr(Op.HALT)],
                      AccelConfig(lanes=5, weight_format="t3", vector=("eltwise",)))


def test_lm_mul_constants_live_in_the_weight_memory():
    """The LM's MUL-only norm weights (attn_norm, mlp_norm, the final norm) are wb rows:
    no scratch words, no EMBED; the program equals the graph on every logit."""
    from ternac.golden.lm_int import IntLM
    from ternac.config import LM_CONFIG
    from ternac.lower import compile_lm, run_tokens
    im = IntLM.from_checkpoint()
    cfg = LM_CONFIG                   # the iCEBreaker's L = 32 I2 (scratch for 11 of 20)
    low = compile_lm(im, cfg)
    prog = low.unrolled
    wbs = [i for i in prog if i.wb]
    assert len(wbs) == 2 * 3 + 1 and all(i.op == Op.MUL and i.aux == 0 for i in wbs)
    assert not any(k.startswith("const ") and k.endswith(("attn_norm", "mlp_norm"))
                   for k in low.scratch_map)
    assert sum(i.op == Op.EMBED for i in prog) < 11
    toks = [int(t) for t in im.vocab.encode("ROMEO:").tolist()]
    state = im.init_state()
    got = [lg for lg, _, _ in run_tokens(low, toks)]
    assert len(got) == len(toks)
    for t, lg in zip(toks, got):
        want, state = im.step(t, state)
        assert torch.equal(lg, want)
    cyc = C.program_cycles(low.program, cfg.lanes)["total"]
    print(f"LM L={cfg.lanes}: {len(wbs)} wb MULs, {sum(i.op == Op.EMBED for i in prog)} EMBEDs, "
          f"modelled bound {cyc} cycles/token")
    assert cyc <= 20_117              # 21,117 at 632ab44, with 11 staged constants
