"""The lowering refuses a Shiftmax whose declared output width cannot hold its rows
(issue 11 item 4): below ``golden.widths.shiftmax_min_out_bits(n)`` bits a constant row of
``n`` logits rounds to all zeros. One sentence, naming the width that works."""
from __future__ import annotations

import pytest
import torch

from ternac.config import AccelConfig
from ternac.errors import CompileError
from ternac.golden import intops
from ternac.golden.graph import Graph, Vec
from ternac.golden.interpreter import run_program
from ternac.golden.isa import Op
from ternac.lower import lower

CFG = AccelConfig(lanes=4, vector=("shiftmax",), max_vector=2048, scratch_depth=4096)


def _graph(n: int, bits: int) -> Graph:
    g = Graph(name="softmax")
    g.input("x", n, bits=8, scale=0.1)
    m, s = intops.exp_gain(0.1)
    g.add(Op.SHIFTMAX, Vec("p", n, bits, 2.0 ** -bits), "x", m=m, s=s)
    g.outputs = ["p"]
    return g


def test_8_bit_shiftmax_over_513_is_refused_in_one_sentence():
    # the golden unit at 8 bits: a constant row of 513 is all zero, of 512 is not
    assert int(intops.shiftmax(torch.full((1, 513), 3), 0.1, 8).max()) == 0
    with pytest.raises(CompileError) as exc:
        lower(_graph(513, 8), CFG)
    msg = str(exc.value)
    assert "'p'" in msg and "513" in msg and "at least 9 bits" in msg, msg
    assert "\n" not in msg and msg.count(". ") == 0, msg
    with pytest.raises(CompileError, match="at least 10 bits"):
        lower(_graph(1025, 9), CFG)


@pytest.mark.parametrize("n,bits", [(512, 8), (513, 9), (513, 15), (1024, 9)])
def test_wide_enough_shiftmax_lowers_and_runs(n, bits):
    g = _graph(n, bits)
    lw = lower(g, CFG)
    x = torch.randint(-127, 128, (2, n), generator=torch.Generator().manual_seed(n))
    x[1] = 5                                                    # a constant row
    env = g.evaluate({"x": x})
    st = run_program(lw.program, lw.weight_words, lanes=CFG.lanes,
                     scratch_depth=CFG.scratch_depth, out_depth=CFG.out_depth,
                     weight_depth=CFG.weight_depth, scratch_init={lw.inputs["x"][0]: x})
    sp, a, k = lw.outputs["p"]
    assert torch.equal(st.scratch[:, a:a + k], env["p"])
    assert bool((env["p"][1] >= 1).all())                      # the ISA writes Q15
