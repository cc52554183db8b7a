"""Epilogue pairs (golden/isa.py ``pair``): a MATVEC whose rows stream into a SIGMOID that
writes both ``sigmoid(y)`` at ``dst`` and ``sigmoid(-y)`` at ``aux``.

* the RTL (the Accelerator in Amaranth's simulator) equals the interpreter on every word of
  both results, and its cycle counter equals the cycle model, for one and several tiles, a
  partial last tile, int8 and int16 (WIDE) rows, k = 2L + 4 and more, one tile with any k;
* the interpreter's pair equals the MATVEC, then the SIGMOID and its NEG twin;
* the lowering pairs the LM's f-projection SIGMOIDs, and the program equals the integer
  golden model on every logit;
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

SEED = 2718
CFG = AccelConfig(lanes=8, vector=("activation", "eltwise"))
SRC, DST, DST2, RAW = 40, 400, 600, 800


def _signed16(v: int) -> int:
    v &= 0xFFFF
    return v - 0x10000 if v & 0x8000 else v


# several tiles with k >= 2L + 4 = 20 (last tiles of 1, 4, 5, 6, 8 rows: the engine-drain
# term and the write term of the model); one tile, n <= L, with any k
CASES = [(8, 16, Flag.WIDE), (13, 20, Flag.WIDE), (20, 24, 0), (24, 21, Flag.WIDE), (3, 40, 0),
         (17, 20, 0), (12, 20, Flag.WIDE), (14, 22, 0), (8, 5, Flag.WIDE), (5, 3, 0),
         (8, 1, Flag.WIDE)]
CASES = [(8,) + c for c in CASES]
# 32 lanes: a last tile of 1 or 3 rows, where the engine's drain (not the last write) ends
# the MATVEC; one tile of 2 rows
CASES += [(32, 33, 68, Flag.WIDE), (32, 35, 70, 0), (32, 2, 7, Flag.WIDE)]


@pytest.mark.parametrize("lanes,n,k,mf", CASES,
                         ids=[f"L{c[0]}-n{c[1]}-k{c[2]}-mv{int(c[3])}" for c in CASES])
def test_pair_rtl_equals_interpreter_and_model(lanes, n, k, mf):
    seed = SEED + lanes * 10000 + n * 100 + k
    print(f"seed {seed}")
    rng = random.Random(seed)
    cfg = dataclasses.replace(CFG, lanes=lanes)
    L = lanes
    t = torch.tensor([[rng.choice((-1, 0, 0, 1)) for _ in range(k)] for _ in range(n)])
    words = tile_lanes(t, L)
    x = [rng.randint(-127, 127) for _ in range(k)]
    mv = Instr(Op.MATVEC, flags=int(mf), src=SRC, n=n, k=k, m=rng.randint(1 << 14, 65535),
               s=rng.randint(6, 10), epi=1)
    sg = Instr(Op.SIGMOID, src=SRC, aux=DST2, dst=DST, n=n, m=rng.randint(30000, 60000),
               s=rng.randint(14, 18), wbase=1, k=0, pair=1)
    prog = [mv, sg, Instr(Op.HALT)]
    from ternac.lower import check_program
    check_program(prog, cfg)
    kw = dict(lanes=L, scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
              weight_depth=cfg.weight_depth)
    st = run_program(prog, words, scratch_init={SRC: x}, **kw)
    plain = [dataclasses.replace(mv, dst=RAW, epi=0),
             dataclasses.replace(sg, src=RAW, aux=RAW, pair=0),
             dataclasses.replace(sg, flags=int(Flag.NEG), src=RAW, aux=RAW, dst=DST2, pair=0),
             Instr(Op.HALT)]
    st2 = run_program(plain, words, scratch_init={SRC: x}, **kw)
    for a in (DST, DST2):
        assert st2.scratch[0, a:a + n].tolist() == st.scratch[0, a:a + n].tolist()
    from ternac.sim.pysim import run_program_pysim
    out = run_program_pysim(cfg, prog, words, {SRC: x},
                            [(HostSpace.SCRATCH, DST, n), (HostSpace.SCRATCH, DST2, n)],
                            max_cycles=20_000, signed=False)
    model = C.program_cycles(prog, L)
    print(f"pair L={L} n={n} k={k}: measured {out['cycles']} cycles, modelled {model['total']}; "
          f"unpaired {C.program_cycles(plain, L)['total']}")
    for a, got in zip((DST, DST2), out["words"]):
        assert [_signed16(v) for v in got] == st.scratch[0, a:a + n].tolist(), a
    assert model["exact"] and model["total"] == out["cycles"]


def test_malformed_pairs_are_refused():
    from ternac.lower import check_program
    words = tile_lanes(torch.ones(16, 20, dtype=torch.int64), 8)
    kw = dict(lanes=8, scratch_depth=1024, out_depth=16, weight_depth=len(words))
    mv = Instr(Op.MATVEC, src=0, n=8, k=16, m=1 << 15, s=8, epi=1)
    sg = Instr(Op.SIGMOID, src=0, aux=300, dst=200, n=8, m=40000, s=16, wbase=1, pair=1)
    bad = [
        [sg, Instr(Op.HALT)],                                              # not an epilogue
        [mv, dataclasses.replace(sg, flags=int(Flag.NEG)), Instr(Op.HALT)],   # NEG
        [dataclasses.replace(mv, k=19, n=9), dataclasses.replace(sg, n=9),
         Instr(Op.HALT)],                                                  # k < 2L + 4, 2 tiles
        [mv, dataclasses.replace(sg, aux=204), Instr(Op.HALT)],              # over dst
        [mv, dataclasses.replace(sg, aux=4), Instr(Op.HALT)],                # over the input
        [mv, Instr(Op.SILU, src=0, aux=300, dst=200, n=8, m=1, s=1, k=30, pair=1),
         Instr(Op.HALT)],                                                  # not a SIGMOID
    ]
    for prog in bad:
        with pytest.raises(MachineError, match="pair"):
            run_program(prog, words, **kw)
        with pytest.raises(CompileError, match="pair"):
            check_program(prog, CFG)
    with pytest.raises(ValueError, match="pair"):
        C.program_cycles(bad[2], 8)


def test_lm_f_projection_sigmoids_are_paired():
    """The LM's f-projection (k = 128 >= 2L at L = 32) runs with a pair: 3 pairs, no
    standalone SIGMOID; the program equals the integer golden model on every logit."""
    from ternac.config import LM_CONFIG
    from ternac.golden.lm_int import IntLM
    from ternac.lower import compile_lm, lower, run_tokens
    im = IntLM.from_checkpoint()
    low = compile_lm(im, LM_CONFIG)
    prog = low.unrolled
    pairs = [i for i in prog if i.pair]
    assert len(pairs) == 3 and all(i.op == Op.SIGMOID for i in pairs)
    assert not any(i.op == Op.SIGMOID and not i.pair for i in prog)
    toks = [int(t) for t in im.vocab.encode("ROMEO:").tolist()]
    state = im.init_state()
    got = [lg for lg, _, _ in run_tokens(low, toks)]
    assert len(got) == len(toks)
    for t, lg in zip(toks, got):
        want, state = im.step(t, state)
        assert torch.equal(lg, want)
    plain = lower(im.graph(), dataclasses.replace(LM_CONFIG, prog_depth=256), fuse=False)
    assert not any(i.pair for i in plain.program)
    cyc = C.program_cycles(low.program, LM_CONFIG.lanes)["total"]
    print(f"LM L=32: {len(pairs)} pairs, modelled bound {cyc} cycles/token")
    assert cyc <= 19_370       # 20,117 with the SIGMOIDs standalone
