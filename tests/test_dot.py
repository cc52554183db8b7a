"""DOT, the activation-by-activation product (issue 11 item 2), added through the op
registry path of issue 8 item 3: its golden function (golden.vecops.dot), one registry
entry (golden.ops), its RTL unit (hw/dot.py, registered in hw/vector_units.py) and the
sequencer's generic vector path.

* the golden function against a plain Python reference (exact integer sums, the one
  rounding rule of golden.numerics), extremes included, and its argument checks;
* the registry entry and the hw unit table built from the registry;
* the program interpreter on DOT instructions (batched), its range and overlap checks;
* a small attention graph (Q.K^T with DOT, Shiftmax, P.V with DOT) lowered by the one
  lowering and run in the interpreter == Graph.evaluate on every element;
* the full Accelerator in Amaranth's simulator: every DOT shape's result words equal the
  interpreter and its cycle count equals the cycle model (golden.cycles.dot_cycles);
* the lowered attention graph on the Verilator-built Accelerator, every element of its
  outputs equal to the interpreter, extremes (+-127 int8, Q15 and +-32767 int16) included.

The unit bench with random valid/ready stalls is in tests/test_rtl_vector.py.
"""
from __future__ import annotations

import dataclasses
import random
import warnings

import pytest
import torch
from amaranth.hdl import UnusedElaboratable

from ternac.config import AccelConfig, HostSpace
from ternac.golden import cycles as C
from ternac.golden import intops, ops, vecops
from ternac.golden.graph import Graph, GraphError, Vec
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.numerics import dyadic, round_half_up_shift
from ternac.golden.widths import dot_acc_width
from ternac.lower import lower

SEED = 1313
INT16 = (1 << 15) - 1


def _ref_dot(a, b, k, m, s, flags):
    """Plain-Python DOT: exact integer rows, ``(x + 2^(s-1)) >> s``, symmetric saturation."""
    hi = 127 if flags & Flag.OUT8 else INT16
    sign = -1 if flags & Flag.NEG else 1
    out = []
    for j in range(len(b) // k):
        acc = sum(sign * a[i] * b[j * k + i] for i in range(k))
        v = acc * m
        r = v if s == 0 else (v + (1 << (s - 1))) >> s
        out.append(max(-hi, min(hi, r)))
    return out


def _params(k, m, s, flags=0):
    return ops.VecParams(m=m, s=s, flags=int(flags), k=k)


# ----------------------------------------------------------------------------- golden

def test_golden_dot_equals_python_reference():
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    cases = 0
    for k in (1, 2, 7, 16, 64, 255):
        for n in (1, 3, 17):
            for flags in (0, Flag.OUT8, Flag.NEG, Flag.OUT8 | Flag.NEG):
                kind = rng.randrange(4)
                if kind == 0:      # int8 x int8 (Q.K^T)
                    a = [rng.randint(-127, 127) for _ in range(k)]
                elif kind == 1:    # Q15 probabilities x int8 (P.V)
                    a = [rng.randint(0, 32767) for _ in range(k)]
                elif kind == 2:    # extremes of the 16-bit word
                    a = [rng.choice((-32768, -INT16, INT16)) for _ in range(k)]
                else:
                    a = [rng.randint(-32768, INT16) for _ in range(k)]
                b = [rng.choice((-127, 127, rng.randint(-127, 127))) for _ in range(n * k)]
                m, s = rng.choice([(1, 0), (65535, 0), (65535, 63), (40000, 30),
                                   (rng.randint(1, 65535), rng.randint(0, 40))])
                got = vecops.dot(torch.tensor(a), torch.tensor(b), _params(k, m, s, flags))
                assert got.tolist() == _ref_dot(a, b, k, m, s, flags), (k, n, flags, m, s)
                cases += 1
    # The worst row at the ISA's largest k is exact in dot_acc_width(k) bits.
    k = 4095
    a, b = torch.full((k,), -32768), torch.full((k,), -127)
    acc = int((a * b).sum())
    assert acc < 1 << (dot_acc_width(k) - 1) and -acc >= -(1 << (dot_acc_width(k) - 1))
    assert acc >= 1 << (dot_acc_width(k) - 2)     # and the width is not oversized
    got = vecops.dot(a, b, _params(k, 1, 40))
    assert got.tolist() == [int(round_half_up_shift(torch.tensor(acc), 40))]
    print(f"{cases} random DOT instructions equal the Python reference")


def test_golden_dot_batches_and_broadcasts():
    g = torch.Generator().manual_seed(SEED)
    a = torch.randint(-127, 128, (5, 8), generator=g)
    b = torch.randint(-127, 128, (3 * 8,), generator=g)    # a constant b, shared by the batch
    p = _params(8, 999, 12, Flag.OUT8)
    y = vecops.dot(a, b, p)
    assert y.shape == (5, 3)
    for r in range(5):
        assert y[r].tolist() == _ref_dot(a[r].tolist(), b.tolist(), 8, 999, 12, Flag.OUT8)


@pytest.mark.parametrize("a, b, k, match", [
    ([1, 2], [1, 2, 3, 4], 0, "row length k >= 1"),
    ([1, 2, 3], [1, 2, 3, 4], 2, "a operand has 3 elements"),
    ([1, 2], [1, 2, 3], 2, "not a multiple of k=2"),
    ([1, 2], [1, 128], 2, "holds 128, outside the int8"),
    ([1, 2], [-128, 0], 2, "holds -128, outside the int8"),
])
def test_golden_dot_rejects_bad_operands(a, b, k, match):
    with pytest.raises(ValueError, match=match):
        vecops.dot(torch.tensor(a), torch.tensor(b), _params(k, 1, 0))


# ----------------------------------------------------------------------------- registry

def test_registry_entry_and_unit_table():
    from ternac.hw import vector_units as vu
    from ternac.hw.dot import Dot
    s = ops.spec(Op.DOT)
    assert s.fn() is vecops.dot and s.unit == "dot" and s.operands == 2 and s.passes == 1
    assert (s.in_len(17, 16), s.b_len(17, 16), s.out_rows(17, 16), s.stream_len(17, 16)) == \
        (16, 272, 17, 272)
    assert not s.uses_m2 and s.sums and "dot" in ops.VECTOR_UNITS
    # Elementwise ops keep one segment of n: b_len = in_len = out_rows = n.
    for op in ops.vector_ops() - {Op.DOT, Op.DOTT}:
        sp = ops.spec(op)
        assert sp.b_len(9, 3) == sp.in_len(9, 3) == sp.out_rows(9, 3) == 9, op
    assert set(vu.VECTOR_UNIT_NAMES) == set(ops.VECTOR_UNITS)
    assert vu.unit_ops("dot") == [Op.DOT, Op.DOTT]
    import gc
    with warnings.catch_warnings():   # units built only to be inspected
        warnings.simplefilter("ignore", UnusedElaboratable)
        (unit, modes), = vu.vector_units_for(AccelConfig(vector=("dot",), max_vector=64))
        assert isinstance(unit, Dot) and modes == {Op.DOT: None, Op.DOTT: None}
        assert unit.acc_bits == dot_acc_width(64) == 29
        assert (C.UNIT_TIMING["dot"]) == (Dot.passes, Dot.latency)
        # A registry op whose unit has no mode in the hw table is refused, naming both.
        factory, modes = vu.UNIT_TABLE["eltwise"]
        vu.UNIT_TABLE["eltwise"] = (factory, {Op.ADD: modes[Op.ADD]})
        try:
            with pytest.raises(ValueError, match="runs MUL on the 'eltwise' unit"):
                vu.vector_units_for(AccelConfig(vector=("eltwise",)))
        finally:
            vu.UNIT_TABLE["eltwise"] = (factory, modes)
        for bad in (0, 4096, 3.0):
            with pytest.raises(ValueError, match="max_len"):
                Dot(max_len=bad)
        del unit
        gc.collect()


# ----------------------------------------------------------------------------- interpreter

def _scratch(depth, blocks, batch=1):
    s = torch.zeros(batch, depth, dtype=torch.int64)
    for addr, v in blocks.items():
        v = torch.as_tensor(v)
        s[:, addr:addr + v.shape[-1]] = v
    return s


def test_interpreter_runs_dot_from_scratch():
    print(f"seed={SEED + 1}")
    g = torch.Generator().manual_seed(SEED + 1)
    B, n, k = 4, 6, 9
    a = torch.randint(-32768, 32768, (B, k), generator=g)
    a[0] = INT16
    b = torch.randint(-127, 128, (B, n * k), generator=g)
    b[0, :k] = 127
    prog = [Instr(Op.DOT, flags=int(Flag.NEG), src=0, aux=20, dst=100, n=n, k=k, m=321, s=22),
            Instr(Op.DOT, flags=int(Flag.OUT8), src=0, aux=20, dst=110, n=n, k=k, m=65535, s=0),
            Instr(Op.HALT)]
    st = run_program(prog, [], lanes=4, scratch_depth=128, out_depth=4,
                     scratch_init=_scratch(128, {0: a, 20: b}, B))
    for r in range(B):
        assert st.scratch[r, 100:100 + n].tolist() == _ref_dot(
            a[r].tolist(), b[r].tolist(), k, 321, 22, Flag.NEG)
        assert st.scratch[r, 110:110 + n].tolist() == _ref_dot(
            a[r].tolist(), b[r].tolist(), k, 65535, 0, Flag.OUT8)
    assert {abs(v) for v in st.scratch[:, 110:110 + n].flatten().tolist()} <= set(range(128))
    assert 127 in st.scratch[:, 110:110 + n].abs().flatten().tolist()   # saturation hit


@pytest.mark.parametrize("ins, match", [
    (Instr(Op.DOT, src=0, aux=8, dst=40, n=2, k=0, m=1), "over 0 elements"),
    (Instr(Op.DOT, src=0, aux=8, dst=40, n=30, k=4, m=1), "reads scratch words 8..127"),
    (Instr(Op.DOT, src=0, aux=8, dst=2, n=2, k=4, m=1), "over its operand a"),
    (Instr(Op.DOT, src=0, aux=8, dst=12, n=2, k=4, m=1), "over its operand b"),
])
def test_interpreter_rejects_bad_dot(ins, match):
    with pytest.raises(MachineError, match=match):
        run_program([ins, Instr(Op.HALT)], [], lanes=4, scratch_depth=64, out_depth=4)


def test_interpreter_rejects_non_int8_b():
    ins = Instr(Op.DOT, src=0, aux=8, dst=40, n=1, k=2, m=1)
    with pytest.raises(ValueError, match="outside the int8"):
        run_program([ins, Instr(Op.HALT)], [], lanes=4, scratch_depth=64, out_depth=4,
                    scratch_init={0: [1, 1], 8: [3, 200]})


# ----------------------------------------------------------------------------- graph

def attention_graph(seed: int, T: int = 9, d: int = 8, *, wide_in: bool = False) -> Graph:
    """One attention head for one query: ``scores = Q.K^T`` (DOT, int16, 1/sqrt(d) folded
    into its dyadic pair), ``p = Shiftmax(scores)`` (Q15), ``o = P.V`` (DOT with the rows of
    V^T, int8), and ``r = x.V^T`` straight from an int16 input (``wide_in``) so the 16-bit
    extremes reach a DOT too. K and V^T are int8 constants (+-127 rows included)."""
    g = torch.Generator().manual_seed(seed)
    gr = Graph(name="dot-attention")
    gr.input("q", d, bits=8, scale=1 / 32)
    K = torch.randint(-127, 128, (T, d), generator=g)
    K[0], K[1] = 127, -127
    Vt = torch.randint(-127, 128, (d, T), generator=g)
    Vt[0] = 127
    gr.const("K", K.flatten(), bits=8)
    gr.const("Vt", Vt.flatten(), bits=8)
    m1, s1 = dyadic((1 / 32) * (1 / 32) / d ** 0.5 / (8 / INT16))   # scores at 8/32767 an LSB
    gr.add(Op.DOT, Vec("scores", T, 16, 8 / INT16), "q", "K", m=m1, s=s1, k=d)
    gm, gs = intops.exp_gain(8 / INT16)
    gr.add(Op.SHIFTMAX, Vec("p", T, 15, 2 ** -15), "scores", m=gm, s=gs)
    m2, s2 = dyadic(2 ** -15 * (1 / 32) / (1 / 32))
    gr.add(Op.DOT, Vec("o", d, 8, 1 / 32), "p", "Vt", m=m2, s=s2, k=T, flags=int(Flag.OUT8))
    outs = ["scores", "p", "o"]
    if wide_in:
        gr.input("x", T, bits=16)
        gr.add(Op.DOT, Vec("r", d, 16), "x", "Vt", m=1, s=7, k=T)
        outs.append("r")
    gr.outputs = outs
    return gr


def _feeds(gr, seed, batch):
    g = torch.Generator().manual_seed(seed)
    q = torch.randint(-127, 128, (batch, gr.vecs["q"].n), generator=g)
    q[0], q[1] = 127, -127
    feeds = {"q": q}
    if "x" in gr.vecs:
        x = torch.randint(-32768, 32768, (batch, gr.vecs["x"].n), generator=g)
        x[0], x[1] = INT16, -32768
        feeds["x"] = x
    return feeds


ATTN_CFG = AccelConfig(lanes=4, weight_depth=64, scratch_depth=512, out_depth=8,
                       prog_depth=16, max_fan_in=16, vector=("shiftmax", "dot"), max_vector=64)


def _interp(lw, feeds):
    scr = {lw.inputs[name][0]: v for name, v in feeds.items()}
    scr.update({a: torch.tensor(v) for a, v in lw.scratch_constants.items()})
    cfg = lw.cfg
    return run_program(lw.program, lw.weight_words, lanes=cfg.lanes,
                       scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                       weight_depth=cfg.weight_depth, scratch_init=scr)


def _outputs(lw, st):
    return {name: st.scratch[:, a:a + n] for name, (sp, a, n) in lw.outputs.items()}


def test_attention_graph_lowered_equals_evaluation():
    gr = attention_graph(SEED, wide_in=True)
    feeds = _feeds(gr, SEED, 16)
    env = gr.evaluate(feeds)
    lw = lower(gr, ATTN_CFG)
    assert [Op(i.op).name for i in lw.program].count("DOT") == 3
    got = _outputs(lw, _interp(lw, feeds))
    for name in gr.outputs:
        assert torch.equal(got[name], env[name]), name
    # The graph is not trivial: the probabilities spread and the outputs are not all 0.
    assert int(env["p"].max()) > int(env["p"].min()) and env["o"].abs().sum() > 0
    assert int(env["r"].abs().max()) == INT16      # the int16 row saturates somewhere
    print(f"seed={SEED}: attention graph, {len(lw.program)} instructions, "
          f"{lw.vector_elements()} vector elements")


def test_graph_rejects_bad_dot_shapes():
    gr = Graph()
    gr.input("q", 4)
    gr.const("K", torch.zeros(12, dtype=torch.int64), bits=8)
    with pytest.raises(GraphError, match="operand q has 4 elements"):
        gr.add(Op.DOT, Vec("s", 3, 16), "q", "K", k=5)
    with pytest.raises(GraphError, match="needs 16"):
        gr.add(Op.DOT, Vec("s", 4, 16), "q", "K", k=4)
    assert gr.add(Op.DOT, Vec("s", 3, 16), "q", "K", k=4, m=1) == "s"


def test_lowering_checks_dot_row_length_against_max_vector():
    from ternac.errors import CompileError
    gr = attention_graph(SEED, T=6, d=12)
    with pytest.raises(CompileError, match=r"\(DOT\) runs over 12 elements, more than the 8"):
        lower(gr, dataclasses.replace(ATTN_CFG, max_vector=8))
    with pytest.raises(CompileError, match="needs the 'dot' vector unit"):
        lower(gr, dataclasses.replace(ATTN_CFG, vector=("shiftmax",)))


# ----------------------------------------------------------------------------- RTL (Amaranth)

def _pysim(cfg, program, scratch, read):
    """Run ``program`` once on the Accelerator in Amaranth's simulator: scratch words
    ``read = (addr, n)`` and the RTL's cycle counter after the run (sim/pysim.py)."""
    from ternac.sim.pysim import run_program_pysim
    out = run_program_pysim(cfg, program, (), scratch, [(HostSpace.SCRATCH, *read)],
                            max_cycles=50_000)
    return {"cycles": out["cycles"], "words": out["words"][0]}


def test_accelerator_dot_equals_interpreter_and_cycle_model():
    """DOT next to elementwise ops on one Accelerator (Amaranth simulator): each result
    word equals the interpreter and the cycle count equals golden.cycles exactly."""
    rng = random.Random(SEED + 2)
    print(f"seed={SEED + 2}")
    cfg = AccelConfig(lanes=4, weight_depth=16, scratch_depth=512, out_depth=4, prog_depth=16,
                      max_fan_in=16, vector=("eltwise", "dot"), max_vector=64)
    k1, n1 = 16, 9
    a = [rng.choice((INT16, -32768, rng.randint(-32768, INT16))) for _ in range(64)]
    a[40:48] = [rng.randint(-20, 20) for _ in range(8)]   # small: every bit of a NEG sum shows
    b = [rng.choice((127, -127, rng.randint(-127, 127))) for _ in range(256)]
    prog = [  # results at 300.. in order, so one read covers them
        Instr(Op.DOT, src=0, aux=64, dst=300, n=n1, k=k1, m=12345, s=30),             # 300..308
        Instr(Op.DOT, flags=int(Flag.OUT8 | Flag.NEG), src=0, aux=64, dst=309, n=3, k=64,
              m=65535, s=20),                                                          # 309..311
        Instr(Op.DOT, src=5, aux=70, dst=312, n=1, k=1, m=1, s=0),                     # 312
        Instr(Op.ADD, src=300, aux=300, dst=313, n=12, m=1, s=1, wbase=1, k=1),        # 313..324
        Instr(Op.DOT, src=0, aux=64, dst=325, n=4, k=2, m=65535, s=0),                 # saturates
        Instr(Op.DOT, flags=int(Flag.NEG), src=40, aux=64, dst=329, n=2, k=8, m=1, s=0),  # exact
        Instr(Op.HALT)]
    res = _pysim(cfg, prog, {0: a, 64: b}, (300, 31))
    st = run_program(prog, [], lanes=4, scratch_depth=512, out_depth=4,
                     scratch_init={0: a, 64: b})
    want = st.scratch[0, 300:331].tolist()
    assert res["words"] == want, [(j, g, w) for j, (g, w) in enumerate(zip(res["words"], want))
                                  if g != w][:5]
    assert {127, -127} & set(want[9:12]) and {INT16, -INT16} & set(want[25:29])
    model = C.program_cycles(prog, cfg.lanes)
    assert model["exact"] and res["cycles"] == model["total"], (res["cycles"], model)
    print(f"RTL cycles {res['cycles']} = modelled {model['total']} ({model['by_op']})")
    # n = 0 (which the interpreter refuses) streams nothing and writes nothing on the RTL.
    empty = [Instr(Op.DOT, src=0, aux=64, dst=300, n=0, k=7, m=1, s=0), Instr(Op.HALT)]
    res = _pysim(cfg, empty, {300: [111]}, (300, 1))
    assert res["words"] == [111] and res["cycles"] == C.program_cycles(empty, 4)["total"] == 6


def test_elementwise_timing_unchanged_in_a_build_with_dot():
    """A segmented build (DOT beside elementwise units) keeps every elementwise op's
    count: the model (and tests/test_cycles.py's builds without DOT) still hold."""
    cfg = AccelConfig(lanes=4, weight_depth=16, scratch_depth=256, out_depth=4, prog_depth=8,
                      max_fan_in=16, vector=("eltwise", "dot", "shiftmax"), max_vector=64)
    x = [(37 * j) % 251 - 125 for j in range(37)]
    prog = [Instr(Op.MUL, src=0, aux=0, dst=100, n=37, m=3000, s=12),
            Instr(Op.SHIFTMAX, src=0, dst=140, n=37, m=3000, s=12), Instr(Op.HALT)]
    res = _pysim(cfg, prog, {0: x}, (100, 77))
    st = run_program(prog, [], lanes=4, scratch_depth=256, out_depth=4, scratch_init={0: x})
    assert res["words"] == st.scratch[0, 100:177].tolist()
    assert res["cycles"] == C.program_cycles(prog, cfg.lanes)["total"]


def test_dot_cycle_formula():
    assert C.dot_cycles(Instr(Op.DOT, n=0, k=5)) == C.ISSUE_CYCLES + 1
    assert C.dot_cycles(Instr(Op.DOT, n=17, k=16)) == C.ISSUE_CYCLES + 272 + 6
    with pytest.raises(ValueError, match="k=0 never finishes"):
        C.dot_cycles(Instr(Op.DOT, n=2, k=0))


# ----------------------------------------------------------------------------- RTL (Verilator)

def test_attention_graph_on_verilator_equals_interpreter():
    """The lowered attention graph on the Verilator-built Accelerator: every element of
    scores, p, o and r equals the interpreter (and so Graph.evaluate) for 12 queries."""
    from ternac.sim.accel import run_batch
    gr = attention_graph(SEED + 3, wide_in=True)
    feeds = _feeds(gr, SEED + 3, 12)
    lw = lower(gr, ATTN_CFG)
    st = _interp(lw, feeds)
    # The host writes the fixed words (inputs, constants) as one block from address 0.
    fixed_end = lw.scratch_map["work"][0]
    block = st.scratch.new_zeros(12, fixed_end)
    for a, v in lw.scratch_constants.items():
        block[:, a:a + len(v)] = torch.tensor(v)
    for name, v in feeds.items():
        a, n = lw.inputs[name]
        block[:, a:a + n] = v
    spans = [(a, n) for sp, a, n in lw.outputs.values()]
    lo, hi = min(a for a, _ in spans), max(a + n for a, n in spans)
    res = run_batch(lw.cfg, lw.weight_words, lw.program_words, block.tolist(), 0, 0, 1,
                    progress=False, scratch_readback=(lo, hi - lo))
    rtl = torch.tensor(res["scratch"])
    env = gr.evaluate(feeds)
    for name, (sp, a, n) in lw.outputs.items():
        got = rtl[:, a - lo:a - lo + n]
        assert torch.equal(got, st.scratch[:, a:a + n]), name
        assert torch.equal(got, env[name]), name
    assert len(set(res["cycles"])) == 1
    model = C.program_cycles(lw.program, lw.cfg.lanes)
    assert res["cycles"][0] == model["total"], (res["cycles"][0], model["total"])
    print(f"seed={SEED + 3}: 12 queries, every element equal; RTL cycles {res['cycles'][0]} "
          f"(modelled {model['total']}: {model['by_op']})")
