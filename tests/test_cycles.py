"""The cycle model (ternac.golden.cycles) against the RTL's own cycle counter.

* single-op programs (one instruction and HALT) on the Accelerator in Amaranth's simulator
  (the same RTL that Verilator compiles; no build, so every op and edge shape is cheap):
  the prediction equals the counter exactly, data-dependent counts (the norms'
  normalization loop, SAMPLE's scan) taken from the data;
* the unit timings the model assumes equal the hw classes' own figures;
* whole programs in Verilator (ternac.sim.accel): the digits MLP at 8 and 32 lanes and the
  shakespeare LM (greedy, LM_CONFIG; and the sampling program), where the data-free
  prediction must be within 2% of the counter (the issue-8 bound), the counter must lie
  within the model's [min, max] bounds, and the prediction with the data-dependent counts
  (from the program interpreter, stepped one instruction at a time) must equal it exactly.
"""
import dataclasses
import random
import warnings

import pytest
import torch
from amaranth.hdl import UnusedElaboratable

from ternac.config import AccelConfig
from ternac.golden import cycles as C
from ternac.golden.interpreter import run_program
from ternac.golden.isa import Flag, Instr, Op, encode_program

SEED = 20240601
TOLERANCE = 0.02
ALL_UNITS = ("activation", "norm", "eltwise", "shiftmax")


# ----------------------------------------------------------------------------- compiler

def _compiled(model: str, lanes: int | None = None, *, sample: bool = False, seed: int = 1):
    """The one place this test touches a compiler: ``(cfg, program, weight_words, extra)``
    for the digits MLP at ``lanes`` or the shakespeare LM (LM_CONFIG; with ``sample`` the
    sampling program on LM_SAMPLE_CONFIG at seed ``seed``, temperature 1). ``extra`` is
    the compiler's own result (addresses, constants); for the LM ``(result, vocab)``."""
    if model == "digits":
        from ternac.lower import compile_checkpoint
        from ternac.golden.mlp import DEFAULT_CHECKPOINT
        c = compile_checkpoint(DEFAULT_CHECKPOINT, AccelConfig(lanes=lanes))
        return c.cfg, list(c.program), list(c.weight_words), c
    from ternac.lower import LM_CONFIG, LM_SAMPLE_CONFIG, compile_lm
    from ternac.golden.lm_int import IntLM
    intlm = IntLM.from_checkpoint(None)
    cm = (compile_lm(intlm, LM_SAMPLE_CONFIG, sample=True, seed=seed, temperature=1.0)
          if sample else compile_lm(intlm, LM_CONFIG))
    return cm.cfg, list(cm.program), list(cm.weight_words), (cm, intlm.vocab)


# ----------------------------------------------------------------------------- helpers

def _pysim_cycles(cfg, program, weight_words=(), scratch=None):
    """Run ``program`` once on the Accelerator in Amaranth's simulator; ``(cycles, result)``
    as the RTL reports them (its ``cycles`` and ``result`` outputs; sim/pysim.py)."""
    from ternac.sim.pysim import run_program_pysim
    out = run_program_pysim(cfg, program, weight_words, scratch)
    return out["cycles"], out["result"]


def _step_data(program, weight_words, cfg, scratch: torch.Tensor):
    """Step the program interpreter one instruction at a time from ``scratch`` ((1, depth)
    int64) and collect the data-dependent counts of the cycle model: ``norm_data`` of every
    RMSNORM/LAYERNORM input and ``sample_data`` of every SAMPLE. Returns ``(data, scratch
    after the run)``."""
    data = {}
    for pc, ins in enumerate(program):
        if ins.op == Op.HALT:
            break
        if pc and program[pc - 1].op == Op.MATVEC and program[pc - 1].epi:
            continue                     # an epilogue: ran with its MATVEC
        if ins.op in (Op.RMSNORM, Op.LAYERNORM):
            x = scratch[0, ins.src:ins.src + ins.n].tolist()
            data[pc] = C.norm_data(x, layernorm=ins.op == Op.LAYERNORM,
                                   neg=bool(ins.flags & Flag.NEG))
        p = scratch[0, ins.src:ins.src + ins.n].tolist()
        # a reuse RMSNORM alone: the same result without reuse (the interpreter checks the
        # reuse itself only where it runs the whole program)
        # (a tee, golden/isa.py, alone: without it; its RMSNORM runs as a reuse-free one)
        pair = ([ins, dataclasses.replace(program[pc + 1], tee=0, tee8=0)]
                if ins.op == Op.MATVEC and ins.epi
                else [dataclasses.replace(ins, reuse=0, tee=0, tee8=0, pro=0)])
        st = run_program(pair + [Instr(Op.HALT)], weight_words, lanes=cfg.lanes,
                         scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                         weight_depth=cfg.weight_depth, scratch_init=scratch)
        scratch = st.scratch
        if ins.op == Op.SAMPLE:
            data[pc] = C.sample_data(p, int(st.result[0]))
    return data, scratch


def _check(what, measured, model, exact=None):
    """Assert the 2% bound of the data-free prediction, the [min, max] bounds and, if given,
    the exact prediction; print all of them."""
    err = (model["total"] - measured) / measured
    line = (f"{what}: measured {measured} cycles (RTL counter), predicted {model['total']} "
            f"(modelled, data-free upper bound; min {model['total_min']}), error {err:+.3%}")
    if exact is not None:
        line += f"; with the data-dependent counts {exact['total']}"
    print(line)
    assert abs(err) <= TOLERANCE, line
    assert model["total_min"] <= measured <= model["total"], line
    if exact is not None:
        assert exact["exact"], "a data-dependent count is missing"
        assert exact["total"] == measured, line


# ----------------------------------------------------------------------------- unit checks

def test_unit_timing_equals_the_hw_units():
    """The passes and latencies the model assumes are the RTL units' own."""
    from ternac.hw.activation import Activation
    from ternac.hw.eltwise import Eltwise
    from ternac.hw.norm import Norm
    from ternac.hw.shiftmax import Shiftmax
    from ternac.hw.vector import SHIFT_EXP_STAGES
    with warnings.catch_warnings():         # the units are built only to read their figures
        warnings.simplefilter("ignore", UnusedElaboratable)
        act = Activation()
    assert C.UNIT_TIMING["activation"] == (Activation.passes, act.latency)
    assert C.UNIT_TIMING["eltwise"] == (Eltwise.passes, Eltwise.latency)
    assert C.UNIT_TIMING["norm"] == (Norm.passes, Norm.latency)
    # Shiftmax states no latency attribute: 2 registers, shift-exp, e*R, rounding, output.
    assert C.UNIT_TIMING["shiftmax"] == (Shiftmax.passes, 2 + SHIFT_EXP_STAGES + 3)
    assert set(C.CYCLES) == set(Op), "an opcode without a cycle formula"


def _single_op_cases():
    """(name, cfg, [instr], scratch, weights) for every opcode and the shapes that change
    a formula's branch (k < L, k = 1, n a multiple of L, RAW, n = 0)."""
    rng = random.Random(SEED)
    cases = []
    c8 = AccelConfig(lanes=8)
    for n, k in [(1, 1), (8, 2), (24, 24), (33, 7), (5, 100), (0, 4)]:
        for fl in (Flag.NONE, Flag.RAW, Flag.RELU | Flag.WIDE):
            cases.append((f"MATVEC n={n} k={k} flags={int(fl)} L=8", c8,
                          [Instr(Op.MATVEC, flags=int(fl), dst=300, n=n, k=k, m=1)], None))
    c32 = AccelConfig(lanes=32)
    for n, k in [(65, 128), (128, 16)]:
        cases.append((f"MATVEC n={n} k={k} L=32", c32,
                      [Instr(Op.MATVEC, dst=300, n=n, k=k, m=1)], None))
    for n in (0, 1, 10):
        cases.append((f"ARGMAX n={n}", c8, [Instr(Op.ARGMAX, n=n)], None))
    for cfg in (c8, c32):
        cases.append((f"EMBED k=3 L={cfg.lanes}", cfg,
                      [Instr(Op.EMBED, dst=300, n=20, k=3)], {0: [0]}))
        cases.append((f"EMBED WIDE k=3 L={cfg.lanes}", cfg,
                      [Instr(Op.EMBED, flags=int(Flag.WIDE), dst=300, n=3, k=3)], {0: [0]}))
    cv = AccelConfig(lanes=8, vector=ALL_UNITS)
    for op in (Op.SIGMOID, Op.SILU, Op.GELU, Op.ADD, Op.MUL, Op.SHIFTMAX):
        for n in (0, 1, 37):
            x = [rng.randint(-2000, 2000) for _ in range(n)]
            cases.append((f"{op.name} n={n}", cv,
                          [Instr(op, dst=300, aux=100, n=n, m=3000, s=12)], {0: x} if x else None))
    for op in (Op.RMSNORM, Op.LAYERNORM):
        for n, scale, off in [(1, 0, 0), (16, 3, 0), (40, 300, 150), (128, 32767, 0),
                              (20, 100, 20000)]:
            x = [max(-32767, min(32767, rng.randint(-scale, scale) + off)) for _ in range(n)]
            cases.append((f"{op.name} n={n} |x|<={scale}+{off}", cv,
                          [Instr(op, dst=300, aux=600, n=n, m=1000, s=10)], {0: x}))
            # the between-pass work two bits a cycle (AccelConfig.norm_steps)
            cases.append((f"{op.name} n={n} |x|<={scale}+{off} norm_steps=2",
                          dataclasses.replace(cv, norm_steps=2),
                          [Instr(op, dst=300, aux=600, n=n, m=1000, s=10)], {0: x}))
    for n, zero in [(1, False), (10, False), (65, False), (7, True)]:
        p = [0] * n if zero else [rng.randint(0, 3000) for _ in range(n)]
        lfsr = [rng.randint(0, 65535), rng.randint(1, 65535)]
        cases.append((f"SAMPLE n={n}" + (" all zero" if zero else ""), cv,
                      [Instr(Op.SAMPLE, aux=500, n=n)], {0: p, 500: lfsr}))
    return cases


@pytest.mark.parametrize("case", _single_op_cases(), ids=lambda c: c[0])
def test_single_op_equals_rtl_counter(case):
    """One instruction and HALT on the RTL (Amaranth simulator): the model is exact."""
    name, cfg, prog, scratch = case
    prog = prog + [Instr(Op.HALT)]
    measured, result = _pysim_cycles(cfg, prog, scratch=scratch)
    ins = prog[0]
    data = {}
    x = (scratch or {}).get(0, [0])
    if ins.op in (Op.RMSNORM, Op.LAYERNORM):
        data[0] = C.norm_data(x, layernorm=ins.op == Op.LAYERNORM)
    elif ins.op == Op.SAMPLE:
        data[0] = C.sample_data(x, result)
    model = C.program_cycles(prog, cfg.lanes, data=data, norm_steps=cfg.norm_steps)
    print(f"{name}: measured {measured}, predicted {model['total']}")
    assert model["exact"]
    assert model["total"] == measured, f"{name}: measured {measured}, predicted {model['total']}"
    bounds = C.program_cycles(prog, cfg.lanes, norm_steps=cfg.norm_steps)
    assert bounds["total_min"] <= measured <= bounds["total"]


def test_program_cycles_breakdown_and_errors():
    prog = [Instr(Op.MATVEC, n=10, k=64), Instr(Op.ARGMAX, n=10), Instr(Op.HALT),
            Instr(Op.ARGMAX, n=99)]                          # after HALT: not executed
    r = C.program_cycles(prog, 8)
    # (the FETCH after start in the first instruction's count)
    I = C.ISSUE_CYCLES
    assert r["per_instr"] == [C.matvec_cycles(prog[0], lanes=8) + C.START_CYCLES, I + 11, I]
    assert r["by_op"] == {"MATVEC": r["per_instr"][0], "ARGMAX": I + 11, "HALT": I}
    assert sum(r["by_op"].values()) == r["total"] == r["total_min"] and r["exact"]
    assert r["count"] == {"MATVEC": 1, "ARGMAX": 1, "HALT": 1} and r["issue"] == 3 * I + C.START_CYCLES
    with pytest.raises(ValueError, match="no HALT"):
        C.program_cycles(prog[:2], 8)
    with pytest.raises(ValueError, match="never finishes"):
        C.matvec_cycles(Instr(Op.MATVEC, n=4, k=0), lanes=8)
    with pytest.raises(ValueError, match="outside"):
        C.sample_cycles(Instr(Op.SAMPLE, n=4), hit=4)
    with pytest.raises(ValueError, match="bound"):
        C.norm_cycles(Instr(Op.RMSNORM, n=4), bound="typical")
    assert C.norm_normalize_steps(0) == C.norm_normalize_steps(1) == 15
    assert C.norm_normalize_steps(1 << 30) == C.norm_normalize_steps((1 << 32) - 1) == 0
    assert C.norm_normalize_steps(1 << 32) == 1


# ----------------------------------------------------------------------------- programs

@pytest.mark.parametrize("lanes", [8, 32])
def test_digits_program_within_2_percent_of_rtl(lanes):
    """The digits MLP on the Verilator RTL (a few test digits): the model is exact (no op
    of this program depends on data), hence well within 2%."""
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.sim.accel import run_batch
    cfg, prog, words, c = _compiled("digits", lanes)
    _, _, x_te, _ = load_split()
    x = quantize_pixels(x_te[:3]).tolist()
    res = run_batch(cfg, words, encode_program(prog), x, c.input_addr, c.logits_addr,
                    c.n_logits, progress=False)
    model = C.program_cycles(prog, lanes)
    print(f"digits L={lanes} breakdown (modelled): {model['by_op']}")
    for cyc in res["cycles"]:
        _check(f"digits L={lanes}", cyc, model, exact=model)


def _lm_check(sample: bool):
    from ternac.sim.accel import run_lm
    cfg, prog, words, (cm, vocab) = _compiled("shakespeare", sample=sample)
    prompt = [int(t) for t in vocab.encode("R").tolist()]
    n_new = 2                                   # two runs of the program: tokens 1 and 2
    logits_kw = dict(logits_addr=cm.logits_addr, n_logits=cm.n_logits,
                     logits_in_scratch=cm.logits_in_scratch)
    res = run_lm(cfg, words, encode_program(prog), cm.scratch_constants, cm.token_addr,
                 prompt, n_new, progress=False, **logits_kw)
    model = C.program_cycles(prog, cfg.lanes)
    what = "LM " + ("sampling" if sample else "greedy")
    print(f"{what} breakdown (modelled, bound): {model['by_op']}")
    # The data-dependent counts, from the interpreter carrying the scratchpad over tokens.
    scratch = torch.zeros(1, cfg.scratch_depth, dtype=torch.int64)
    for a, vals in cm.scratch_constants.items():
        scratch[0, a:a + len(vals)] = torch.tensor(vals)
    for step, cyc in enumerate(res["cycles"]):
        scratch[0, cm.token_addr] = res["tokens"][step]
        data, scratch = _step_data(prog, words, cfg, scratch)
        exact = C.program_cycles(prog, cfg.lanes, data=data)
        _check(f"{what} token {step + 1}", cyc, model, exact=exact)


def test_lm_greedy_within_2_percent_of_rtl():
    """The shakespeare LM's greedy program (LM_CONFIG, 32 lanes) on the Verilator RTL."""
    _lm_check(sample=False)


def test_lm_sampling_within_2_percent_of_rtl():
    """The sampling program (LM_SAMPLE_CONFIG: MATVEC WIDE, SHIFTMAX, SAMPLE), seed 1."""
    _lm_check(sample=True)
