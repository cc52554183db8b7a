"""DOTT, DOT against the transpose of b (P.V from a head's token-major V), through the
registry path: golden against a plain-Python reference, the interpreter, a lowered graph,
and the Accelerator RTL (Amaranth simulator) equal to the interpreter on every result word
with its cycle count equal to the cycle model."""
from __future__ import annotations

import random

import pytest
import torch

from ternac.config import AccelConfig
from ternac.golden import cycles as C
from ternac.golden.graph import Graph, Vec
from ternac.golden.interpreter import run_program
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.numerics import requantize
from ternac.golden.ops import VecParams, spec
from ternac.golden.vecops import dot, dott
from ternac.lower import lower

from test_dot import _pysim   # noqa: E402  (the Amaranth-simulator runner of the DOT tests)

SEED = 2468


def _ref(a, b, n, k, m, s, hi):
    out = []
    for j in range(n):
        acc = sum(a[i] * b[i * n + j] for i in range(k))
        out.append(int(requantize(torch.tensor(acc), m, s, -hi, hi)))
    return out


def test_golden_dott_is_dot_of_the_transpose():
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    for _ in range(20):
        k, n = rng.randint(1, 20), rng.randint(1, 17)
        a = [rng.randint(-32768, 32767) for _ in range(k)]
        b = [rng.randint(-127, 127) for _ in range(k * n)]
        m, s = rng.randint(1, 65535), rng.randint(10, 40)
        p = VecParams(m=m, s=s, k=k)
        got = dott(torch.tensor(a), torch.tensor(b), p).tolist()
        assert got == _ref(a, b, n, k, m, s, 32767)
        bt = torch.tensor(b).reshape(k, n).t().flatten()
        assert got == dot(torch.tensor(a), bt, p).tolist()
    with pytest.raises(ValueError, match="outside the int8"):
        dott(torch.tensor([1, 2]), torch.tensor([1, 200, 3, 4]), VecParams(m=1, k=2))
    s = spec(Op.DOTT)
    assert s.unit == "dot" and s.b_order == "col" and s.b_len(5, 3) == 15


def test_lowered_graph_and_rtl_equal_interpreter():
    """A head's P.V from token-major V (DOTT) beside DOT and Shiftmax: the lowered graph in
    the interpreter equals Graph.evaluate; the RTL equals the interpreter word for word, and
    its cycle counter equals the model."""
    rng = random.Random(SEED + 1)
    print(f"seed={SEED + 1}")
    T, dh = 7, 5
    g = Graph(name="dott")
    g.input("q", dh, bits=8)
    K = torch.tensor([rng.randint(-127, 127) for _ in range(T * dh)])
    V = torch.tensor([rng.randint(-127, 127) for _ in range(T * dh)])
    V[:dh] = 127
    g.const("K", K, bits=8)
    g.const("V", V, bits=8)
    g.add(Op.DOT, Vec("scores", T, 16), "q", "K", m=40000, s=22, k=dh)
    g.add(Op.SHIFTMAX, Vec("p", T, 15), "scores", m=30000, s=20)
    g.add(Op.DOTT, Vec("o", dh, 8), "p", "V", m=1, s=15, k=T, flags=int(Flag.OUT8))
    g.add(Op.DOTT, Vec("o16", dh, 16), "p", "V", m=3, s=13, k=T, flags=int(Flag.NEG))
    g.outputs = ["scores", "p", "o", "o16"]
    cfg = AccelConfig(lanes=4, weight_depth=16, scratch_depth=256, out_depth=4, prog_depth=16,
                      max_fan_in=16, vector=("shiftmax", "dot"), max_vector=64)
    lw = lower(g, cfg)
    q = torch.tensor([rng.randint(-127, 127) for _ in range(dh)])
    env = g.evaluate({"q": q})
    scr = {lw.inputs["q"][0]: q.tolist()}
    scr.update(lw.scratch_constants)
    st = run_program(lw.program, lw.weight_words, lanes=4, scratch_depth=256, out_depth=4,
                     scratch_init={a: torch.tensor(v) for a, v in scr.items()})
    for name, (sp, a, n) in lw.outputs.items():
        assert torch.equal(st.scratch[0, a:a + n], env[name]), name
    lo = min(a for _, a, _ in lw.outputs.values())
    hi = max(a + n for _, a, n in lw.outputs.values())
    res = _pysim(cfg, lw.program, scr, (lo, hi - lo))
    assert res["words"] == st.scratch[0, lo:hi].tolist()
    model = C.program_cycles(lw.program, 4)
    assert model["exact"] and res["cycles"] == model["total"], (res["cycles"], model)
    print(f"RTL == interpreter on {hi - lo} words; cycles {res['cycles']} (modelled)")


def test_rtl_dott_random_shapes_equal_interpreter():
    rng = random.Random(SEED + 2)
    print(f"seed={SEED + 2}")
    cfg = AccelConfig(lanes=4, weight_depth=16, scratch_depth=512, out_depth=4, prog_depth=16,
                      max_fan_in=16, vector=("eltwise", "dot"), max_vector=64)
    a = [rng.choice((32767, -32768, rng.randint(-32768, 32767))) for _ in range(64)]
    b = [rng.choice((127, -127, rng.randint(-127, 127))) for _ in range(256)]
    prog = [Instr(Op.DOTT, src=0, aux=64, dst=320, n=9, k=13, m=54321, s=28),
            Instr(Op.DOT, src=0, aux=64, dst=329, n=3, k=13, m=54321, s=28),
            Instr(Op.DOTT, flags=int(Flag.OUT8 | Flag.NEG), src=3, aux=70, dst=332, n=1, k=20,
                  m=65535, s=30),
            Instr(Op.DOTT, src=5, aux=80, dst=333, n=16, k=1, m=1, s=0),
            Instr(Op.ADD, src=320, aux=320, dst=349, n=4, m=1, s=1, wbase=1, k=1),
            Instr(Op.HALT)]
    res = _pysim(cfg, prog, {0: a, 64: b}, (320, 33))
    st = run_program(prog, [], lanes=4, scratch_depth=512, out_depth=4,
                     scratch_init={0: a, 64: b})
    assert res["words"] == st.scratch[0, 320:353].tolist()
    model = C.program_cycles(prog, 4)
    assert res["cycles"] == model["total"]
