"""REPEAT (golden/isa.py): its semantics (expand_program, the interpreter), its cycle count
(golden/cycles.py), the lowering's compression post-pass (ternac.lower.compress_program) and
the RTL (hw/sequencer.py, Amaranth's simulator through sim/pysim.py run_program_pysim)."""
import dataclasses
import random

import pytest
import torch
from hypothesis import given, settings, strategies as st

from ternac.config import AccelConfig, HostSpace
from ternac.errors import CompileError
from ternac.golden import cycles as C
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import (Instr, Op, decode, encode, expand_program, repeat_word,
                               rsel_of, stride_field, stride_value)
from ternac.golden.packing import tile_lanes
from ternac.lower import check_program, compress_program

SEED = 11


def _unrolled(prog):
    return [i for _, i in expand_program(prog)]


# ----------------------------------------------------------------------------- the ISA

def test_stride_encoding_and_word_roundtrip():
    assert [stride_field(s) for s in (0, 1, 2047, -1, -2048)] == [0, 1, 2047, 4095, 2048]
    assert [stride_value(v) for v in (0, 1, 2047, 4095, 2048)] == [0, 1, 2047, -1, -2048]
    for bad in (2048, -2049):
        with pytest.raises(ValueError, match="outside"):
            stride_field(bad)
    r = repeat_word(5, 3, [48, -16])
    assert (r.op, r.n, r.k, r.src, r.dst, r.aux) == (Op.REPEAT, 5, 3, 48, 4096 - 16, 0)
    assert decode(encode(r)) == r
    b = Instr(Op.ADD, src=1, dst=2, aux=3, n=4, wbase=9,
              rsel=rsel_of({"src": 1, "dst": 2, "aux": 3, "wbase": 1}))
    assert b.rsel == 0b01_11_10_01 and decode(encode(b)) == b
    with pytest.raises(ValueError, match="at most 3"):
        repeat_word(2, 1, [1, 2, 3, 4])


def test_expand_advances_fields_modulo_their_width():
    """Iteration r: field + r * stride modulo 2^width (12 bits for scratch addresses, 20 for
    wbase); a negative stride is its two's complement; selector 0 leaves a field alone."""
    body = [Instr(Op.ADD, src=4090, dst=10, aux=7, n=2, wbase=5,
                  rsel=rsel_of({"src": 1, "dst": 2, "wbase": 3})),
            Instr(Op.ARGMAX, src=3, n=2, rsel=rsel_of({"src": 2}))]
    prog = [Instr(Op.EMBED, n=1, k=1), repeat_word(3, 2, [4, -1, 1000])] + body + [Instr(Op.HALT)]
    got = expand_program(prog)
    assert [pc for pc, _ in got] == [0, 2, 3, 2, 3, 2, 3, 4]
    adds = [i for _, i in got if i.op == Op.ADD]
    assert [(a.src, a.dst, a.aux, a.wbase, a.rsel) for a in adds] == [
        (4090, 10, 7, 5, 0), (4094, 9, 7, 1005, 0), (2, 8, 7, 2005, 0)]
    assert [i.src for _, i in got if i.op == Op.ARGMAX] == [3, 2, 1]
    # no REPEAT: the program as it is, up to HALT
    plain = [Instr(Op.ARGMAX, n=1), Instr(Op.HALT), Instr(Op.ARGMAX, n=3)]
    assert expand_program(plain) == [(0, plain[0]), (1, plain[1])]


@pytest.mark.parametrize("prog, match", [
    ([repeat_word(0, 1), Instr(Op.ARGMAX, n=1), Instr(Op.HALT)], "both must be >= 1"),
    ([repeat_word(2, 0), Instr(Op.HALT)], "both must be >= 1"),
    ([repeat_word(2, 3), Instr(Op.ARGMAX, n=1), Instr(Op.HALT)], "past the program's end"),
    ([repeat_word(2, 2), repeat_word(2, 1), Instr(Op.ARGMAX, n=1), Instr(Op.HALT)],
     "REPEAT inside"),
    ([repeat_word(2, 2), Instr(Op.ARGMAX, n=1), Instr(Op.HALT), Instr(Op.HALT)], "HALT inside"),
    ([repeat_word(2, 1), Instr(Op.MATVEC, n=8, k=8, epi=1), Instr(Op.ADD, n=8), Instr(Op.HALT)],
     "ends with a MATVEC with an epilogue"),
    ([Instr(Op.ARGMAX, n=1, rsel=1), Instr(Op.HALT)], "outside a REPEAT body"),
    ([dataclasses.replace(repeat_word(2, 1), m=3), Instr(Op.ARGMAX, n=1), Instr(Op.HALT)],
     "field m set"),
])
def test_refused_repeats(prog, match):
    """Each rule of the ISA: expand_program, the interpreter and check_program refuse it."""
    with pytest.raises(ValueError, match=match):
        expand_program(prog)
    with pytest.raises(MachineError, match=match):
        run_program(prog, [0], lanes=8, scratch_depth=64, out_depth=8)
    with pytest.raises(CompileError, match=match):
        check_program(prog, AccelConfig(lanes=8, prog_depth=16, vector=("eltwise",)))


# ------------------------------------------------------- a hand-made program, every level

CFG = AccelConfig(lanes=8, weight_depth=256, scratch_depth=512, out_depth=16, prog_depth=32,
                  max_fan_in=64, vector=("eltwise",))


def _case(seed=SEED):
    """Two loops: one (3 iterations) of a MATVEC and a MATVEC with an ADD epilogue, the
    body ending at the epilogue (the sequencer's EPI_DEC wrap), strides 8, 16, -1; one (4
    iterations) of an ADD whose body ends at a plain instruction (DECODE's wrap), with a
    negative and a wbase-free stride; then a count-1 REPEAT."""
    rng = random.Random(seed)
    print(f"seed {seed}")
    trits = torch.tensor([[rng.choice([-1, 0, 1]) for _ in range(8)] for _ in range(16)])
    words = tile_lanes(trits, 8)
    scratch = {0: [rng.randint(-100, 100) for _ in range(64)],
               190: [rng.randint(-2000, 2000) for _ in range(40)]}
    S = rsel_of
    prog = [
        repeat_word(3, 3, [8, 16, -1]),
        Instr(Op.MATVEC, src=0, dst=100, n=16, k=8, wbase=0, m=3, s=2,
              rsel=S({"src": 1, "dst": 2})),
        Instr(Op.MATVEC, src=0, n=16, k=8, wbase=0, m=5, s=3, epi=1, rsel=S({"src": 1})),
        Instr(Op.ADD, src=0, dst=300, aux=200, n=16, m=1, s=0, wbase=1, k=0,
              rsel=S({"src": 1, "dst": 2, "aux": 3})),
        repeat_word(4, 1, [-5, 6]),
        Instr(Op.ADD, src=230, dst=400, aux=100, n=6, m=3, s=1, wbase=1, k=0,
              rsel=S({"src": 1, "dst": 2})),
        repeat_word(1, 1, [7]),
        Instr(Op.ADD, src=0, dst=440, aux=8, n=4, m=1, s=0, wbase=1, k=0,
              rsel=S({"src": 1, "dst": 1})),
        Instr(Op.HALT),
    ]
    return prog, words, scratch


def _interp(prog, words, scratch):
    return run_program(prog, words, lanes=8, scratch_depth=CFG.scratch_depth,
                       out_depth=CFG.out_depth, scratch_init=scratch)


def test_interpreter_equals_unrolled_program():
    prog, words, scratch = _case()
    st, flat = _interp(prog, words, scratch), _interp(_unrolled(prog), words, scratch)
    assert torch.equal(st.scratch, flat.scratch)
    assert st.executed == flat.executed + 3 == 3 * 3 + 4 + 1 + 1 + 3 - 3 + 3
    rp = C.program_cycles(prog, 8)
    fl = C.program_cycles(_unrolled(prog), 8)
    rc = C.ISSUE_CYCLES          # a REPEAT costs its issue cycles alone
    assert rp["total"] == fl["total"] + 3 * rc and rp["count"]["REPEAT"] == 3
    assert rp["by_op"]["REPEAT"] == 3 * rc and rp["issue"] == fl["issue"] + 3 * rc
    assert rp["per_instr"] == fl["per_instr"]


def test_rtl_runs_repeat_bit_exact_and_as_modelled():
    """The sequencer (Amaranth simulator): every scratch word the program writes equals the
    interpreter's, and the cycle counter equals golden.cycles exactly."""
    from ternac.sim.pysim import run_program_pysim
    prog, words, scratch = _case()
    st = _interp(prog, words, scratch)
    reads = [(HostSpace.SCRATCH, 100, 48), (HostSpace.SCRATCH, 300, 48),
             (HostSpace.SCRATCH, 380, 70)]
    out = run_program_pysim(CFG, prog, words, scratch, reads)
    for (_, a, n), got in zip(reads, out["words"]):
        assert got == st.scratch[0, a:a + n].tolist(), f"scratch[{a}:{a + n}]"
    assert out["cycles"] == C.program_cycles(prog, 8)["total"]


# --------------------------------------------------------------- the compression pass

def test_compress_finds_strided_runs():
    """A body of two (an epilogue pair kept whole) and a run of one with a negative stride;
    an instruction that breaks the pattern stays as it is; the result unrolls to the input."""
    pair = [Instr(Op.MATVEC, src=0, n=8, k=8, m=1, s=1, epi=1),
            Instr(Op.ADD, src=0, dst=100, aux=50, n=8, m=1, wbase=1)]
    prog = []
    for r in range(5):
        prog += [dataclasses.replace(pair[0], src=8 * r),
                 dataclasses.replace(pair[1], src=8 * r, dst=100 + 16 * r)]
    prog += [Instr(Op.ARGMAX, src=40 - 3 * r, n=2) for r in range(6)]
    prog += [Instr(Op.ARGMAX, src=7, n=3), Instr(Op.HALT)]
    out = compress_program(prog)
    assert [i.op for i in out] == [Op.REPEAT, Op.MATVEC, Op.ADD, Op.REPEAT, Op.ARGMAX,
                                   Op.ARGMAX, Op.HALT]
    assert (out[0].n, out[0].k) == (5, 2) and (out[3].n, out[3].k) == (6, 1)
    assert stride_value(out[3].src) == -3
    assert _unrolled(out) == prog


def test_compress_never_splits_a_pair_or_exceeds_three_strides():
    # copies of [ADD, MATVEC epi] would end a body at the epi MATVEC: the pass must not
    mv = Instr(Op.MATVEC, src=0, n=8, k=8, m=1, s=1, epi=1)
    add = Instr(Op.ADD, src=0, dst=100, aux=50, n=8, m=1, wbase=1)
    prog = [Instr(Op.ARGMAX, n=1)] + [mv, add] * 3 + [Instr(Op.HALT)]
    out = compress_program(prog)
    assert _unrolled(out) == prog
    for j, ins in enumerate(out):
        if ins.op == Op.REPEAT:
            assert not (out[j + ins.k].op == Op.MATVEC and out[j + ins.k].epi)
            assert not (j and out[j - 1].op == Op.MATVEC and out[j - 1].epi)
    # four distinct strides in one body: no REPEAT holds them
    four = [Instr(Op.ADD, src=r, dst=100 + 2 * r, aux=200 + 3 * r, n=1, wbase=1 + 4 * r)
            for r in range(6)] + [Instr(Op.HALT)]
    assert compress_program(four) == four


def test_vit_program_fits_and_unrolls_to_the_straight_line_one():
    """The committed ViT: its lowered program fits VIT_CONFIG's program memory and unrolls
    to exactly the program the lowering emits without the pass."""
    from ternac.config import VIT_CONFIG
    from ternac.golden.vit import IntViT
    from ternac.lower import lower
    g = IntViT.from_checkpoint().graph()
    rep = lower(g, VIT_CONFIG)
    flat = lower(g, dataclasses.replace(VIT_CONFIG, prog_depth=1024), repeat=False)
    print(f"ViT program: {len(flat.program)} instructions unrolled, {len(rep.program)} with "
          f"REPEAT (prog_depth {VIT_CONFIG.prog_depth})")
    assert len(rep.program) <= VIT_CONFIG.prog_depth < len(flat.program)
    assert rep.unrolled == flat.program
    assert rep.op_counts()["REPEAT"] == sum(i.op == Op.REPEAT for i in rep.program)


# -- found by the tester (session 3) -----------------------------------------------------

_SMALL = AccelConfig(lanes=4, weight_depth=64, scratch_depth=512, out_depth=16, prog_depth=32,
                     max_fan_in=16, vector=("eltwise",), max_vector=64)


def test_repeat_right_after_an_epilogue_matvec_is_refused():
    """The sequencer decodes the word after an epilogue MATVEC as its epilogue, so a REPEAT
    there is refused (it hung the RTL while the interpreter paired it in unrolled order)."""
    prog = [Instr(Op.MATVEC, src=0, n=8, k=8, m=3, s=2, epi=1), repeat_word(1, 1),
            Instr(Op.ADD, src=0, dst=300, aux=200, n=8, m=1, wbase=1), Instr(Op.HALT)]
    with pytest.raises(ValueError, match="right after a MATVEC with an epilogue"):
        expand_program(prog)
    with pytest.raises(CompileError, match="right after a MATVEC with an epilogue"):
        check_program(prog, _SMALL)


def test_compress_splits_runs_longer_than_the_count_field():
    """A run longer than a REPEAT's count may be is split (the count is capped at the n
    field's 4,095 by default: 5,000 copies came out as one REPEAT of 5,000, which does not
    encode); shown with a cap of 3 on 10 copies, and the default cap checked on 4,097."""
    prog = [Instr(Op.ARGMAX, n=1)] * 10 + [Instr(Op.HALT)]
    out = compress_program(prog, max_count=3)
    reps = [i for i in out if i.op == Op.REPEAT]
    assert reps and max(i.n for i in reps) == 3
    assert [i for _, i in expand_program(out)] == prog
    check_program(out, dataclasses.replace(_SMALL, vector=(), ops=None))
    long = [Instr(Op.ARGMAX, n=1)] * 4097 + [Instr(Op.HALT)]
    out = compress_program(long, max_body=1)
    assert max(i.n for i in out if i.op == Op.REPEAT) == 4095
    assert [i for _, i in expand_program(out)] == long


def _fewest_words(prog, cap):
    """The fewest words of a program made of REPEATs and single words that unrolls to
    ``prog`` (no epilogue pairs in it), by exhaustive dynamic programming straight from
    golden/isa.py's REPEAT: ``c`` copies (2 <= c <= cap) of a body of ``p`` words, every
    field but src/dst/aux/wbase equal, each of those ``x_0 + r * stride`` modulo its width
    with at most 3 distinct non-zero strides, a stride in [-2048, 2047]."""
    from ternac.golden.isa import FIELDS, REPEAT_STRIDES
    width = dict(FIELDS)
    addr = ("src", "dst", "aux", "wbase")
    n = len(prog) - 1                    # the HALT stays a word of its own

    def is_run(i, p, c):
        strides = set()
        for j in range(p):
            x0 = prog[i + j]
            for r in range(1, c):
                x = prog[i + r * p + j]
                if any(getattr(x, f) != getattr(x0, f) for f, _ in FIELDS if f not in addr):
                    return False
                for f in addr:
                    m = 1 << width[f]
                    d = (getattr(prog[i + p + j], f) - getattr(x0, f)) % m
                    d = d - m if d >= m // 2 else d
                    if not -2048 <= d < 2048 or getattr(x, f) != (getattr(x0, f) + r * d) % m:
                        return False
                    strides |= {d} - {0}
        return len(strides) <= REPEAT_STRIDES

    best = [0] * (n + 1)
    for i in range(n - 1, -1, -1):
        best[i] = best[i + 1] + 1
        for p in range(1, (n - i) // 2 + 1):
            for c in range(2, min(cap, (n - i) // p) + 1):
                if is_run(i, p, c):
                    best[i] = min(best[i], 1 + p + best[i + c * p])
    return best[0] + 1


@settings(max_examples=150, derandomize=True, deadline=None)
@given(p=st.integers(1, 3), c=st.integers(1, 12), cap=st.integers(2, 14),
       strides=st.lists(st.integers(-40, 40), min_size=3, max_size=3),
       head=st.integers(0, 2), tail=st.integers(0, 2))
def test_compress_finds_the_fewest_words(p, c, cap, strides, head, tail):
    """``head`` lone instructions, ``c`` copies of a body of ``p`` distinct instructions
    whose src/dst/aux move by fixed strides a copy (all 0 allowed; modulo the 12-bit
    fields), ``tail`` lone ones, the REPEAT count capped at ``cap``: compress_program's
    result unrolls to the program and is exactly as short as an exhaustive search over
    every run (:func:`_fewest_words`). Hypothesis, derandomized (its seed is fixed); the
    new pass builds each run from its successor's (compress_program's ``runs``), which
    long and capped runs check."""
    lone = [Instr(Op.ADD, n=100 + j, src=7 * j) for j in range(head)]
    body = [Instr(Op.MUL, n=1 + j, src=50 + j, dst=600 + j, aux=1200 + j) for j in range(p)]
    w = 1 << 12                       # src, dst, aux: 12-bit fields, strides wrap
    copies = [dataclasses.replace(b, src=(b.src + r * strides[0]) % w,
                                  dst=(b.dst + r * strides[1]) % w,
                                  aux=(b.aux + r * strides[2]) % w)
              for r in range(c) for b in body]
    after = [Instr(Op.ARGMAX, n=1 + j) for j in range(tail)]
    prog = lone + copies + after + [Instr(Op.HALT)]
    out = compress_program(prog, max_count=cap)
    assert _unrolled(out) == prog
    assert len(out) == _fewest_words(prog, cap)
    if 2 <= c <= cap:
        assert len(out) == head + 1 + p + tail + 1


def test_compress_refuses_a_program_that_already_loops():
    prog = compress_program([Instr(Op.ARGMAX, n=1)] * 3 + [Instr(Op.HALT)])
    with pytest.raises(ValueError, match="straight-line"):
        compress_program(prog)


def test_check_program_refuses_a_program_without_halt():
    with pytest.raises(CompileError, match="never reaches a HALT"):
        check_program([Instr(Op.ARGMAX, n=1), Instr(Op.ARGMAX, n=1)],
                      dataclasses.replace(_SMALL, prog_depth=2))


def test_lowering_without_repeat_in_the_build_does_not_loop():
    """A build without REPEAT (AccelConfig.ops) gets the unrolled program, not a refusal of
    the lowering's own output."""
    from ternac.config import VIT_CONFIG, VIT_OPS
    from ternac.golden.vit import IntViT
    from ternac.lower import lower
    cfg = dataclasses.replace(VIT_CONFIG, ops=tuple(o for o in VIT_OPS if o != "REPEAT"),
                              prog_depth=1024)
    low = lower(IntViT.from_checkpoint().graph(), cfg)
    assert all(i.op != Op.REPEAT for i in low.program)
