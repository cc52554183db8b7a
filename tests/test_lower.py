"""The one lowering (ternac.lower): for every model graph, the interpreter running the lowered
program equals the graph's evaluation (the integer golden model) on every element of every
output, the result register and every state vector; the op registry is complete and
consistent; graphs reject malformed nodes."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ternac.config import AccelConfig
from ternac.golden import ops
from ternac.golden.graph import Graph, GraphError, Vec
from ternac.golden.interpreter import run_program
from ternac.golden.isa import Flag, Op
from ternac.golden.mlp import IntBitLinear, mlp_graph
from ternac.lower import compile_checkpoint, compile_lm, lower

from test_lm_int import TINY_CFG, _model, TINY   # noqa: E402  (shared tiny LM fixture)

SEED = 1234


def _interp(lw, scratch_init):
    cfg = lw.cfg
    return run_program(lw.program, lw.weight_words, lanes=cfg.lanes,
                       scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                       weight_depth=cfg.weight_depth, scratch_init=scratch_init)


def _read(lw, st, name):
    sp, a, n = lw.outputs[name]
    mem = st.scratch if sp == "scratch" else st.out
    return mem[:, a:a + n]


def test_registry_is_complete_and_consistent():
    assert set(ops.REGISTRY) == set(Op), "every opcode has one registry entry"
    for op, s in ops.REGISTRY.items():
        assert s.name == op.name and s.summary
        if s.golden is not None:
            assert callable(s.fn()), op
        assert s.unit in ops.VECTOR_UNITS + ops.FIXED_UNITS
        assert s.passes >= 1 and s.operands in (1, 2)
    assert ops.units_of([Op.RMSNORM, Op.SILU, Op.MATVEC]) == ("activation", "norm")
    with pytest.raises(KeyError, match="not in the op registry"):
        ops.spec(31)


def test_digits_graph_lowered_equals_evaluation():
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    x = quantize_pixels(load_split()[2])[:40].to(torch.int64)
    for lanes in (8, 32):
        lw = compile_checkpoint(DEFAULT_CHECKPOINT, AccelConfig(lanes=lanes))
        env = lw.graph.evaluate({"x": x})
        st = _interp(lw, {lw.inputs["x"][0]: x})
        assert torch.equal(_read(lw, st, "logits"), env["logits"])
        assert torch.equal(st.result, env["result"])


def test_random_mlps_lowered_equal_evaluation():
    g = torch.Generator().manual_seed(SEED)
    print(f"seed {SEED}")
    for trial in range(6):
        depth = int(torch.randint(1, 5, (1,), generator=g))
        dims = [int(v) for v in torch.randint(1, 70, (depth + 1,), generator=g)]
        layers = []
        for i, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
            t = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
            last = i == depth - 1
            layers.append(IntBitLinear(t, 0 if last else int(torch.randint(1, 65535, (1,), generator=g)),
                                       0 if last else int(torch.randint(8, 20, (1,), generator=g)),
                                       relu=not last and trial % 2 == 0, raw=last))
        gr = mlp_graph(layers)
        lw = lower(gr, AccelConfig(lanes=4 * (1 + trial % 3)))
        x = torch.randint(-127, 128, (8, dims[0]), generator=g)
        env = gr.evaluate({"x": x})
        st = _interp(lw, {lw.inputs["x"][0]: x})
        assert torch.equal(_read(lw, st, "logits"), env["logits"]), dims
        assert torch.equal(st.result, env["result"]), dims


@pytest.fixture(scope="module")
def tiny_lm():
    m, ids = _model(TINY)
    from ternac.golden.lm_int import IntLM
    return IntLM.from_model(m, ids[:300]), ids


@pytest.mark.parametrize("sample", [False, True])
@pytest.mark.parametrize("depth", [4096, 700])   # 700: some constants staged from weights
def test_lm_graph_lowered_equals_evaluation(tiny_lm, sample, depth):
    im, ids = tiny_lm
    cfg = dataclasses.replace(TINY_CFG, scratch_depth=depth)
    lw = compile_lm(im, cfg, sample=sample, seed=99, temperature=0.9)
    assert bool(lw.staged) == (depth < 4096)
    g = lw.graph
    state = {name: torch.tensor(lw.scratch_constants[a]) for name, (a, n) in lw.states.items()}
    scratch = None
    for t in ids[:6].tolist():
        env = g.evaluate({"token": torch.tensor([t])}, state)
        if scratch is None:
            init = lw.initial_scratch(t)
        else:
            init = scratch.clone().reshape(1, -1)
            init[0, lw.token_addr] = t
        st = _interp(lw, init)
        scratch = st.scratch[0]
        for name in lw.outputs:
            assert torch.equal(_read(lw, st, name)[0], env[name]), name
        assert int(st.result[0]) == int(env["result"])
        for name, (a, n) in lw.states.items():
            assert torch.equal(scratch[a:a + n], env[name]), name
        state = {name: env[name] for name in lw.states}


def test_graph_rejects_malformed_nodes():
    g = Graph()
    x = g.input("x", 4)
    g.weight("w", torch.zeros(3, 5, dtype=torch.int8))
    with pytest.raises(GraphError, match="weight w is 3x5 but the input has 4"):
        g.add(Op.MATVEC, Vec("y", 3), x, weight="w")
    with pytest.raises(GraphError, match="used before it is defined"):
        g.add(Op.ADD, Vec("z", 4), x, "nope")
    g.add(Op.ADD, Vec("z", 4), x, x, m=1, m2=1)
    with pytest.raises(GraphError, match="defined twice"):
        g.add(Op.ADD, Vec("z", 4), x, x)
    with pytest.raises(GraphError, match="may not write the input"):
        g.add(Op.ADD, "x", x, x)
    with pytest.raises(GraphError, match="operand x has 4 elements for an output of 2"):
        g.add(Op.MUL, Vec("q", 2), x, x)
    with pytest.raises(GraphError, match="is not fed"):
        g.evaluate({})


def test_compile_and_image_info_work_for_every_model(tmp_path):
    """`ternac compile` and `ternac image info` for the digits MLP and the LM."""
    import subprocess
    import sys
    for model in ("digits", "shakespeare"):
        out = tmp_path / model
        r = subprocess.run([sys.executable, "-m", "ternac.cli", "compile", model, "--lanes", "32",
                            "--out", str(out), "--json", str(out) + ".json"],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        files = sorted(p.name for p in out.iterdir())
        assert {"weights.tnac", "program.hex", "program.txt"} <= set(files)
        r = subprocess.run([sys.executable, "-m", "ternac.cli", "image", "info",
                            str(out / "weights.tnac")], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert "lanes 32" in r.stdout or "lanes=32" in r.stdout or "32 lanes" in r.stdout, r.stdout


def test_architecture_op_table_is_the_registry():
    from pathlib import Path
    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    assert ops.op_table_markdown() in doc, ("docs/architecture.md's op table differs from the "
                                            "registry: paste ternac.golden.ops.op_table_markdown()")


def test_views_rows_written_one_by_one_and_read_whole():
    """Graph views: MATVECs write the rows of a K matrix one token at a time, a DOT reads
    it whole; the lowered program in the interpreter equals Graph.evaluate."""
    g = torch.Generator().manual_seed(SEED)
    print(f"seed {SEED}")
    gr = Graph(name="views")
    T, d, dh = 5, 8, 4
    xs = [gr.input(f"x{t}", d, bits=8) for t in range(T)]
    gr.weight("wk", torch.randint(-1, 2, (dh, d), generator=g))
    gr.add(Op.MATVEC, Vec("q", dh, 8), xs[0], weight="wk", m=3000, s=14)
    gr.buffer("K", T * dh, 8)      # the parent, written only through its rows
    for t in range(T):
        gr.view(f"K[{t}]", "K", t * dh, dh)
        gr.add(Op.MATVEC, f"K[{t}]", xs[t], weight="wk", m=3000, s=14)
    gr.add(Op.DOT, Vec("scores", T, 16), "q", "K", m=1, s=0, k=dh)
    gr.outputs = ["scores"]
    with pytest.raises(GraphError, match="written twice"):
        gr.add(Op.MATVEC, "K[0]", xs[1], weight="wk", m=1, s=1)
    with pytest.raises(GraphError, match="outside"):
        gr.view("bad", "K", T * dh - 1, 2)
    lw = lower(gr, AccelConfig(lanes=4, vector=("dot",), max_vector=64))
    x = torch.randint(-127, 128, (3, T, d), generator=g)
    env = gr.evaluate({f"x{t}": x[:, t] for t in range(T)})
    st = _interp(lw, {lw.inputs[f"x{t}"][0]: x[:, t] for t in range(T)})
    assert torch.equal(_read(lw, st, "scores"), env["scores"])
    assert torch.equal(env["K[2]"], env["K"][:, 2 * dh:3 * dh])
