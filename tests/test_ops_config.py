"""AccelConfig.ops (ternac/config.py): the operations a build's sequencer is made with. The
model configurations hold exactly the operations of the programs they run; a program using
an absent one is refused by ternac.lower.check_program in one sentence; and the RTL of a
specialized build (hw/sequencer.py, Amaranth's simulator through sim/pysim.py
run_program_pysim) halts with ``error`` on such an opcode, as on an unknown one, while the
full build runs it."""
import dataclasses

import pytest

from ternac.config import (LM_CONFIG, LM_OPS, LM_SAMPLE_CONFIG, LM_SAMPLE_OPS, LM_T3_CONFIG,
                           LM_ULX3S_CONFIG, VIT_CONFIG, VIT_OPS, AccelConfig)
from ternac.errors import CompileError
from ternac.golden.isa import Instr, Op, repeat_word
from ternac.lower import check_program


def _ops(prog):
    return {i.op.name for i in prog}


# ----------------------------------------------------------------------------- the field

def test_ops_default_all_and_normalized():
    assert AccelConfig().ops is None and AccelConfig().op_set == frozenset(Op)
    cfg = AccelConfig(ops=["EMBED", "MATVEC", "HALT", "EMBED"])
    assert cfg.ops == ("HALT", "MATVEC", "EMBED")           # opcode order, once each
    assert cfg.op_set == {Op.HALT, Op.MATVEC, Op.EMBED}
    assert AccelConfig(**cfg.to_dict()) == cfg              # to_dict round trip (JSON list)
    assert AccelConfig(**{**cfg.to_dict(), "ops": list(cfg.ops)}) == cfg


@pytest.mark.parametrize("ops, words", [
    (("HALT", "MATVEC", "FOO"), "unknown operation 'FOO'"),
    (("MATVEC",), "must include HALT"),
    (("HALT",), "must include MATVEC"),
    ("HALT", "tuple of operation names"),
    ((Op.HALT, Op.MATVEC), "tuple of operation names"),
])
def test_ops_bad_values_one_sentence(ops, words):
    with pytest.raises(ValueError, match=words) as e:
        AccelConfig(ops=ops)
    assert "\n" not in str(e.value) and str(e.value).count(". ") == 0


# ------------------------------------------------- the model configurations, derived

def test_lm_configs_hold_exactly_their_programs_ops():
    """LM_OPS is the greedy program's operations on every LM board configuration;
    LM_SAMPLE_OPS is the sampling program's plus ARGMAX (kept for the greedy program)."""
    from ternac.runner import load_lm
    intlm, greedy = load_lm()
    assert _ops(greedy.program) == set(LM_OPS)
    from ternac.lower import compile_lm
    for cfg in (LM_T3_CONFIG, LM_ULX3S_CONFIG):
        assert cfg.ops == LM_CONFIG.ops
        assert _ops(compile_lm(intlm, cfg).program) == set(LM_OPS)
    sample = compile_lm(intlm, LM_SAMPLE_CONFIG, sample=True, seed=1)
    assert _ops(sample.program) | {"ARGMAX"} == set(LM_SAMPLE_OPS)
    assert set(LM_SAMPLE_OPS) - set(LM_OPS) == {"SHIFTMAX", "SAMPLE"}


def test_vit_config_holds_exactly_its_programs_ops():
    from ternac.golden.vit import IntViT
    from ternac.lower import lower
    low = lower(IntViT.from_checkpoint(None).graph(), VIT_CONFIG)
    assert _ops(low.program) == set(VIT_OPS)


# ------------------------------------------------------------ the compiler's refusal

def test_program_with_an_absent_op_refused_in_one_sentence():
    prog = [Instr(Op.SAMPLE, aux=0, src=2, n=4), Instr(Op.HALT)]
    check_program(prog, LM_SAMPLE_CONFIG)                   # built with SAMPLE: accepted
    with pytest.raises(CompileError) as e:
        check_program(prog, LM_CONFIG)
    msg = str(e.value)
    assert msg.startswith("instruction 0 (SAMPLE) is an operation the accelerator is built "
                          "without (AccelConfig.ops: HALT, MATVEC, ARGMAX,")
    assert "\n" not in msg and msg.count(". ") == 0
    # REPEAT on the LM: refused before the program reaches the board.
    rep = [repeat_word(2, 1), Instr(Op.ARGMAX, n=1), Instr(Op.HALT)]
    check_program(rep, VIT_CONFIG)
    with pytest.raises(CompileError, match=r"instruction 0 \(REPEAT\) is an operation"):
        check_program(rep, LM_CONFIG)


# ------------------------------------------------------------------------------ the RTL

SMALL = AccelConfig(lanes=4, weight_depth=16, scratch_depth=64, out_depth=8, prog_depth=8,
                    max_fan_in=16)


@pytest.mark.parametrize("ins", [
    Instr(Op.ARGMAX, src=0, n=3),
    Instr(Op.EMBED, src=0, dst=8, n=1, k=1),
    Instr(Op.SAMPLE, aux=0, src=4, n=3),
    repeat_word(2, 1),
], ids=lambda i: i.op.name)
def test_rtl_specialized_build_halts_with_error_on_absent_op(ins):
    """A MATVEC-only sequencer halts with ``error`` on each op it lacks; the full build runs
    the same program to ``done`` without it (the probabilities and token are in scratch)."""
    from ternac.sim.pysim import run_program_pysim
    prog = [ins, Instr(Op.ARGMAX, n=1)] if ins.op == Op.REPEAT else [ins]
    prog = prog + [Instr(Op.HALT)]
    scratch = {0: [1, 2, 3, 4, 100, 200, 300]}
    out = run_program_pysim(SMALL, prog, [0x34], scratch, max_cycles=200)
    assert out["cycles"] > 0
    bare = dataclasses.replace(SMALL, ops=("HALT", "MATVEC"))
    with pytest.raises(AssertionError, match="ended with the error flag set"):
        run_program_pysim(bare, prog, [0x34], scratch, max_cycles=200)


# ------------------------------------------- ARGMAX on out_bits-bit words (hw/sequencer.py)

def _argmax_rtl(cfg, values):
    """ARGMAX over ``values`` written to OUT by the host (their low ``cfg.out_bits`` bits
    kept, read back sign-extended) on hw.top.Accelerator(cfg), Amaranth's simulator; returns
    the result register."""
    from amaranth.sim import Simulator

    from ternac.config import HostSpace
    from ternac.golden.isa import encode_program
    from ternac.hw.top import Accelerator
    top = Accelerator(cfg, program_words=encode_program(
        [Instr(Op.ARGMAX, src=0, n=len(values)), Instr(Op.HALT)]))
    sim = Simulator(top)
    sim.add_clock(1e-8)
    out = {}

    async def bench(ctx):
        ctx.set(top.host_space, HostSpace.OUT)
        ctx.set(top.host_we, 1)
        for a, v in enumerate(values):
            ctx.set(top.host_addr, a)
            ctx.set(top.host_wdata, v & 0xFFFFFFFF)
            await ctx.tick()
        ctx.set(top.host_we, 0)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        for _ in range(4 * len(values) + 20):
            await ctx.tick()
            if ctx.get(top.done):
                break
        assert ctx.get(top.done) and not ctx.get(top.error)
        out["result"] = ctx.get(top.result)

    sim.add_testbench(bench)
    sim.run()
    return out["result"]


@pytest.mark.parametrize("out_bits", [16, 20, 32])
def test_rtl_argmax_on_narrow_out_words(out_bits):
    """The compare is out_bits wide: random words over the whole signed range of out_bits,
    the extremes and ties (the first index wins), equal to the argmax of the words as the
    host reads them back (sign-extended)."""
    import random
    seed = 5
    print("seed", seed)
    rng = random.Random(seed)
    lo, hi = -(1 << (out_bits - 1)), (1 << (out_bits - 1)) - 1
    cfg = AccelConfig(lanes=4, weight_depth=16, scratch_depth=64, out_depth=32, prog_depth=8,
                      max_fan_in=16, out_bits=out_bits, ops=("HALT", "MATVEC", "ARGMAX"))
    cases = [[lo, lo + 1, -1, 0], [hi - 1, lo, hi, hi, 0], [-5, -5, -7],
             [rng.randint(lo, hi) for _ in range(24)],
             [rng.choice((lo, -1, 0, 1, hi)) for _ in range(24)]]
    for vals in cases:
        want = max(range(len(vals)), key=lambda i: (vals[i], -i))
        assert _argmax_rtl(cfg, vals) == want, vals
