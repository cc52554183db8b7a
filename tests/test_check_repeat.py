"""check_program applies the address rules (a wb MUL's aux and weight words, a pair's second
result, a norm's weight against its result) to every REPEAT iteration as executed, with its
strides applied, as the interpreter does: a program the interpreter refuses in iteration 1
or later is refused by the compiler too (found by a tester, session 5: only the written
instructions were checked). A norm whose weight a stride moves onto part of its result is
defined by the interpreter but not run right by the RTL (it reads the weight late), so the
compiler alone refuses it, in every iteration."""
import dataclasses

import pytest
import torch

from ternac.config import AccelConfig
from ternac.errors import CompileError
from ternac.golden.interpreter import MachineError, run_program
from ternac.golden.isa import Instr, Op
from ternac.golden.packing import tile_lanes
from ternac.lower import check_program

CFG = AccelConfig(lanes=8, vector=("activation", "eltwise", "norm"))
WORDS = tile_lanes(torch.ones(8, 20, dtype=torch.int64), 8) + [5] * 8
MV = Instr(Op.MATVEC, src=0, n=8, k=20, m=1 << 15, s=8, epi=1)
SG = Instr(Op.SIGMOID, src=0, aux=300, dst=200, n=8, m=40000, s=16, wbase=1, pair=1)
NORM = Instr(Op.RMSNORM, src=0, dst=100, aux=140, n=16, m=1 << 15, s=16)


def _cases():
    # (name, program, what the compiler's sentence names, the interpreter refuses it too);
    # strides: src field = stride 1
    # (rsel 1 selects it), dst field = stride 2 (rsel 2), aux field = stride 3 (rsel 3).
    return [
        ("pair aux stride onto its first result",
         [Instr(Op.REPEAT, n=2, k=2, src=4096 - 100), MV, dataclasses.replace(SG, rsel=1 << 4),
          Instr(Op.HALT)], "second result", True),
        ("wb aux stride", [Instr(Op.REPEAT, n=2, k=1, src=5),
                           Instr(Op.MUL, src=0, dst=100, n=4, wbase=8, wb=1, rsel=1 << 4),
                           Instr(Op.HALT)], "aux", True),
        ("wb wbase stride past the weight memory",
         [Instr(Op.REPEAT, n=3, k=1, src=2047),
          Instr(Op.MUL, src=0, dst=100, n=4, wbase=8, wb=1, rsel=1 << 6), Instr(Op.HALT)],
         "weight_depth", True),
        ("norm weight stride onto part of its result",
         [Instr(Op.REPEAT, n=2, k=1, src=4096 - 30), dataclasses.replace(NORM, rsel=1 << 4),
          Instr(Op.HALT)], "over part of its weight", False),
    ]


@pytest.mark.parametrize("case", _cases(), ids=lambda c: c[0])
def test_an_iteration_the_interpreter_refuses_is_refused_by_the_compiler(case):
    name, prog, what, interp_refuses = case
    kw = dict(lanes=8, scratch_depth=CFG.scratch_depth, out_depth=CFG.out_depth,
              weight_depth=CFG.weight_depth)
    # Iteration 0 alone is legal: the program without its REPEAT passes both.
    body = [dataclasses.replace(i, rsel=0) for i in prog[1:]]
    check_program(body, CFG)
    run_program(body, WORDS, **kw)
    if interp_refuses:
        with pytest.raises(MachineError):
            run_program(prog, WORDS, **kw)
    with pytest.raises(CompileError, match=what):
        check_program(prog, CFG)
