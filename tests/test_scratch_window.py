"""The scratchpad's port-a window and the output buffer's word width (AccelConfig
scratch_a_depth, out_bits; hw/top.py): port a (the operand fetcher's ``a``) reads a copy of
only ``[0, scratch_a_depth)``, port b and the host the full copy; ternac.lower places what
port a reads inside the window and check_program refuses a program that reads outside it,
in one sentence; the RTL with small windows (Amaranth's simulator, sim/pysim.py) gives the
interpreter's results on every word; the LM's configurations compile inside their windows
with the logits of the unwindowed layout."""
import dataclasses
import random

import pytest
import torch

from ternac.config import LM_CONFIG, LM_CONFIGS, LM_SAMPLE_CONFIG, AccelConfig, HostSpace
from ternac.errors import CompileError
from ternac.golden.interpreter import run_program
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.packing import tile_lanes
from ternac.lower import check_program, port_a_reads

SEED = 20261201

SMALL = AccelConfig(lanes=4, weight_depth=64, scratch_depth=96, scratch_a_depth=32,
                    out_depth=8, out_bits=16, prog_depth=16, max_fan_in=16,
                    vector=("activation", "norm", "eltwise"), max_vector=64)


def _one_sentence(msg: str) -> None:
    assert "\n" not in msg and msg.count(". ") == 0


# ----------------------------------------------------------------------------- the fields

def test_defaults_keep_one_memory_and_32_bit_words():
    cfg = AccelConfig()
    assert cfg.scratch_a_depth is None and cfg.scratch_a_window == cfg.scratch_depth
    assert cfg.out_bits == 32
    assert SMALL.scratch_a_window == 32
    assert AccelConfig(**SMALL.to_dict()) == SMALL


@pytest.mark.parametrize("kw, words", [
    (dict(scratch_a_depth=0), "scratch_a_depth must be None or an integer from 1 to "
                              "scratch_depth"),
    (dict(scratch_a_depth=2048), "scratch_a_depth must be None"),
    (dict(scratch_a_depth=True), "scratch_a_depth must be None"),
    (dict(out_bits=8), "out_bits must be an integer from 16 to 32"),
    (dict(out_bits=33), "out_bits must be an integer from 16 to 32"),
])
def test_bad_fields_one_sentence(kw, words):
    with pytest.raises(ValueError, match=words) as e:
        AccelConfig(scratch_depth=1024, **kw)
    _one_sentence(str(e.value))


# ------------------------------------------------------------------- the compiler's check

def test_port_a_reads_by_operation():
    assert port_a_reads(Instr(Op.ADD, src=5, aux=90, dst=40, n=3)) == [(5, 8)]
    assert port_a_reads(Instr(Op.MATVEC, src=2, n=4, k=6)) == [(2, 8)]
    assert port_a_reads(Instr(Op.EMBED, src=7, dst=9, n=4, k=1)) == [(7, 8)]
    assert port_a_reads(Instr(Op.SAMPLE, src=10, aux=3, n=5)) == [(3, 4), (10, 15)]
    assert port_a_reads(Instr(Op.ARGMAX, src=200, n=4)) == []
    # An epilogue's src is not read (its a is the MATVEC's rows).
    assert port_a_reads(Instr(Op.ADD, src=90, aux=1, dst=40, n=4),
                        Instr(Op.MATVEC, src=0, n=4, k=4, epi=1)) == []


@pytest.mark.parametrize("ins, head", [
    (Instr(Op.ADD, src=30, aux=0, dst=40, n=4, m=1, wbase=1),
     "instruction 0 (ADD) reads scratch [30, 34) through port a, outside its window [0, 32) "
     "(scratch_a_depth)"),
    (Instr(Op.MATVEC, src=28, dst=40, n=4, k=8, m=1),
     "instruction 0 (MATVEC) reads scratch [28, 36) through port a"),
    (Instr(Op.RMSNORM, src=40, aux=0, dst=0, n=4, m=1),
     "instruction 0 (RMSNORM) reads scratch [40, 44) through port a"),
])
def test_port_a_outside_window_refused_in_one_sentence(ins, head):
    prog = [ins, Instr(Op.HALT)]
    check_program(prog, dataclasses.replace(SMALL, scratch_a_depth=None))   # no window: fine
    with pytest.raises(CompileError) as e:
        check_program(prog, SMALL)
    assert str(e.value).startswith(head)
    _one_sentence(str(e.value))


def test_port_b_and_epilogue_src_outside_window_accepted():
    check_program([Instr(Op.ADD, src=0, aux=80, dst=88, n=4, m=1, wbase=1),
                   Instr(Op.RMSNORM, src=0, aux=60, dst=70, n=4, m=1),
                   Instr(Op.MATVEC, src=0, n=4, k=4, m=1, epi=1),
                   Instr(Op.ADD, src=50, aux=84, dst=40, n=4, m=1, wbase=1),
                   Instr(Op.HALT)], SMALL)


def test_raw_matvec_wider_than_out_bits_refused():
    cfg = dataclasses.replace(SMALL, max_fan_in=1024, scratch_depth=1024, scratch_a_depth=None,
                              weight_depth=1024)
    check_program([Instr(Op.MATVEC, flags=int(Flag.RAW), src=0, n=4, k=258),
                   Instr(Op.HALT)], cfg)                       # acc_width(258) = 16 bits
    with pytest.raises(CompileError) as e:
        check_program([Instr(Op.MATVEC, flags=int(Flag.RAW), src=0, n=4, k=259),
                       Instr(Op.HALT)], cfg)
    assert str(e.value) == ("instruction 0 (MATVEC RAW) writes accumulators of fan-in 259 "
                            "(17 bits), wider than the 16-bit words of the output buffer "
                            "(out_bits)")


# ------------------------------------------------------------------------------ the RTL

@pytest.mark.parametrize("depth, hi", [(96, 64), (1100, 1040)], ids=["one-bank", "two-banks"])
def test_rtl_small_window_equals_interpreter(depth, hi):
    """MATVEC, ADD, RMSNORM, MUL, a MATVEC with an ADD epilogue, a RAW MATVEC into 16-bit
    out words and ARGMAX on a scratchpad whose port a sees 32 words (96 words; and 1,100,
    whose full copy is two banks of hw/top.py's SCRATCH_BANK = 1024, with the b operands in
    the second): every b operand and the RMSNORM weight above the window (written by the
    host, by the program, or by both), every a inside; every scratch word, every out word
    and the result equal the interpreter's."""
    from ternac.hw.top import SCRATCH_BANK
    from ternac.sim.pysim import run_program_pysim
    assert (depth > SCRATCH_BANK) == (hi > SCRATCH_BANK)
    cfg = dataclasses.replace(SMALL, scratch_depth=depth)
    rng = random.Random(SEED)
    print("seed", SEED)
    n, k = 8, 8
    t1 = torch.tensor([[rng.choice((-1, 0, 1)) for _ in range(k)] for _ in range(n)])
    t2 = torch.tensor([[rng.choice((-1, 0, 1)) for _ in range(k)] for _ in range(n)])
    t3 = torch.tensor([[rng.choice((-1, 1)) for _ in range(k)] for _ in range(n)])
    w1, w2, w3 = (tile_lanes(t, SMALL.lanes) for t in (t1, t2, t3))
    words = list(w1) + list(w2) + list(w3)
    b1, b2, b3 = 0, len(w1), len(w1) + len(w2)
    prog = [
        Instr(Op.MATVEC, src=0, dst=8, n=n, k=k, wbase=b1, m=40000, s=16),
        Instr(Op.ADD, src=8, aux=hi, dst=16, n=n, m=1, wbase=1),
        Instr(Op.RMSNORM, flags=int(Flag.OUT8), src=16, aux=hi + 8, dst=hi + 16, n=n,
              m=40000, s=21),
        Instr(Op.MUL, src=8, aux=hi + 16, dst=hi + 24, n=n, m=40000, s=16),
        Instr(Op.MATVEC, src=0, n=n, k=k, wbase=b2, m=50000, s=16, epi=1),
        Instr(Op.ADD, src=0, aux=hi + 24, dst=24, n=n, m=1, wbase=1),
        Instr(Op.MUL, src=24, aux=24, dst=40, n=n, m=40000, s=29),   # the window's top words
        Instr(Op.MATVEC, flags=int(Flag.RAW), src=0, dst=0, n=n, k=k, wbase=b3),
        Instr(Op.ARGMAX, src=0, n=n),
        Instr(Op.HALT),
    ]
    check_program(prog, cfg)
    x = [rng.randint(-127, 127) for _ in range(n)]
    bvec = [rng.randint(-3000, 3000) for _ in range(n)]
    wnorm = [rng.randint(1, 120) for _ in range(n)]
    scratch = {0: x, hi: bvec, hi + 8: wnorm}
    st = run_program(prog, words, lanes=SMALL.lanes, scratch_depth=depth,
                     out_depth=SMALL.out_depth, scratch_init=scratch)
    out = run_program_pysim(cfg, prog, words, scratch,
                            [(HostSpace.SCRATCH, 0, depth),
                             (HostSpace.OUT, 0, n)], max_cycles=5_000)
    want_scr = [int(v) for v in st.scratch.flatten()[:depth]]
    assert out["words"][0] == want_scr
    want_out = [int(v) for v in st.out.flatten()[:n]]
    assert out["words"][1] == want_out
    assert max(abs(v) for v in want_out) > 0
    assert out["result"] == int(st.result.flatten()[0])
    # The results above the window are not all zero (else b from the full copy is untested).
    assert any(want_scr[hi + 16:hi + 32])


# ------------------------------------------------------------------------ the LM's layout

@pytest.fixture(scope="module")
def intlm():
    from ternac.golden.lm_int import IntLM
    return IntLM.from_checkpoint(None)


@pytest.mark.parametrize("cfg, sample", [(LM_CONFIG, False), (LM_SAMPLE_CONFIG, True),
                                         (LM_CONFIGS[40], False), (LM_CONFIGS[128], False)],
                         ids=["greedy", "sample", "t3", "l128"])
def test_lm_programs_fit_their_windows(intlm, cfg, sample):
    from ternac.golden.isa import expand_program
    from ternac.lower import compile_lm
    cm = compile_lm(intlm, cfg, sample, seed=1)
    assert cfg.scratch_a_window < cfg.scratch_depth
    prev, top = None, 0
    for _, ins in expand_program(cm.program):
        for lo, hi in port_a_reads(ins, prev):
            top = max(top, hi)
        prev = ins
    assert 0 < top <= cfg.scratch_a_window
    assert cm.scratch_words <= cfg.scratch_depth
    assert len(cm.program) <= cfg.prog_depth


def test_lm_windowed_layout_gives_the_same_logits(intlm):
    """The greedy program on LM_CONFIG (window, 3,840 words) and on the unwindowed 4,096-word
    layout: equal logits and tokens for 3 tokens in the interpreter."""
    from ternac.lower import compile_lm, run_tokens
    flat = dataclasses.replace(LM_CONFIG, scratch_depth=4096, scratch_a_depth=None,
                               out_bits=32)
    a, b = compile_lm(intlm, LM_CONFIG), compile_lm(intlm, flat)
    assert a.scratch_map != b.scratch_map
    toks = [1, 17, 40]
    ra, rb = run_tokens(a, toks), run_tokens(b, toks)
    for (la, na, _), (lb, nb, _) in zip(ra, rb):
        assert la.tolist() == lb.tolist() and na == nb
