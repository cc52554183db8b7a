"""End to end on the RTL: the compiled digits classifier on the Verilator-simulated
Accelerator, every logit of every test-split digit compared with the integer golden model
(and the program interpreter), for two lane counts; plus random MLPs with extreme values."""
import random

import pytest
import torch

from ternac.golden import numerics as nm
from ternac.golden.digits_data import load_split, quantize_pixels
from ternac.golden.interpreter import run_program
from ternac.golden.mlp import DEFAULT_CHECKPOINT, IntBitLinear, int_forward, int_layers_from_checkpoint
from ternac.sim.accel import run_batch
from ternac.lower import compile_mlp
from ternac.config import AccelConfig

SEED = 2026


@pytest.mark.parametrize("lanes", [8, 32])
def test_digits_all_logits_bit_exact(lanes):
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    cfg = AccelConfig(lanes=lanes)
    c = compile_mlp(layers, cfg)
    _, _, x_test, y_test = load_split()
    x = quantize_pixels(x_test)
    golden = int_forward(layers, x)
    res = run_batch(cfg, c.weight_words, c.program_words, x.tolist(), c.input_addr,
                    c.logits_addr, c.n_logits, progress=False, chunk=120)
    rtl = torch.tensor(res["logits"])
    assert rtl.shape == golden.shape == (360, 10)
    mism = (rtl != golden).any(dim=1).sum().item()
    assert mism == 0, f"{mism} of 360 digits differ in at least one logit"
    # ARGMAX on the RTL: the smallest index of the maximum, as the ISA states.
    first_max = [max(range(10), key=lambda j: (row[j], -j)) for row in golden.tolist()]
    assert res["results"] == first_max
    acc = (torch.tensor(res["results"]) == y_test).float().mean().item()
    print(f"L={lanes} RTL accuracy {acc:.4f}, cycles/inference {res['cycles'][0]}")
    assert acc >= 0.90
    assert len(set(res["cycles"])) == 1      # data-independent schedule


def _random_mlp(rng, dims):
    g = torch.Generator().manual_seed(rng.randrange(1 << 30))
    layers = []
    for li, (k, n) in enumerate(zip(dims[:-1], dims[1:])):
        t = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
        if li == 0:
            t[0] = 1          # extreme rows: all +1, all -1, all 0
            t[1 % n] = -1
            t[2 % n] = 0
        last = li == len(dims) - 2
        m, s = nm.dyadic(rng.uniform(0.002, 0.3))
        layers.append(IntBitLinear(trits=t, m=m, s=s, relu=not last and rng.random() < 0.7,
                                   raw=last))
    return layers


@pytest.mark.parametrize("lanes", [4, 8])
def test_random_mlps_rtl_equals_interpreter_and_golden(lanes):
    """Random shapes (tiles shorter than the lane count, padding rows, fan-in 1) and inputs
    at +-127; RTL == interpreter == integer golden model, element by element."""
    rng = random.Random(SEED + lanes)
    print(f"seed={SEED + lanes}")
    dims = [rng.choice([1, 3, 40]), rng.choice([2, 5, 9, 17]), rng.choice([1, 7, 12])]
    layers = _random_mlp(rng, dims)
    cfg = AccelConfig(lanes=lanes, max_fan_in=64)
    c = compile_mlp(layers, cfg)
    xs = torch.randint(-127, 128, (12, dims[0]), generator=torch.Generator().manual_seed(SEED))
    xs[0], xs[1] = 127, -127
    golden = int_forward(layers, xs)
    res = run_batch(cfg, c.weight_words, c.program_words, xs.tolist(), c.input_addr,
                    c.logits_addr, c.n_logits, progress=False)
    assert torch.equal(torch.tensor(res["logits"]), golden), f"dims={dims}"
    st = run_program(c.program, c.weight_words, lanes=lanes, weight_depth=cfg.weight_depth,
                     scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                     scratch_init={c.input_addr: xs})
    interp = st.out[:, c.logits_addr:c.logits_addr + c.n_logits]
    assert interp.tolist() == res["logits"]


@pytest.mark.parametrize("lanes", [8])
def test_embed_then_matvec_rtl_equals_interpreter(lanes):
    """EMBED reads a token's int8 row from the weight memory (raw bytes next to I2 trits);
    RTL == interpreter for every token id, including the first and the last row."""
    from ternac.golden.isa import Flag, Instr, Op, encode_program
    from ternac.golden.packing import embedding_words, tile_lanes
    g = torch.Generator().manual_seed(SEED)
    vocab, d, n = 11, 13, 6
    table = torch.randint(-128, 128, (vocab, d), generator=g)
    table[0] = 127
    table[1] = -128
    t = torch.randint(-1, 2, (n, d), generator=g).to(torch.int8)
    mat = tile_lanes(t, lanes)
    emb, k = embedding_words(table.clamp(-127, 127), lanes)
    words = mat + emb
    prog = [Instr(Op.EMBED, src=0, dst=16, n=d, k=k, wbase=len(mat)),
            Instr(Op.MATVEC, flags=int(Flag.RAW), src=16, dst=0, n=n, k=d, wbase=0),
            Instr(Op.ARGMAX, src=0, n=n), Instr(Op.HALT)]
    cfg = AccelConfig(lanes=lanes, weight_depth=256, scratch_depth=64, out_depth=16,
                      prog_depth=8, max_fan_in=64)
    tokens = [[tok] for tok in range(vocab)]
    res = run_batch(cfg, words, encode_program(prog), tokens, 0, 0, n, progress=False)
    st = run_program(prog, words, lanes=lanes, weight_depth=cfg.weight_depth,
                     scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                     scratch_init={0: torch.tensor(tokens)})
    assert st.out[:, :n].tolist() == res["logits"]
    expect = nm.ternary_matvec(t, table.clamp(-127, 127))
    assert res["logits"] == expect.tolist()


def test_sample_rtl_equals_golden_sampler():
    """SAMPLE on the RTL draws the same index and leaves the same LFSR state as
    golden/sampler.py, for many seeds, skewed and flat distributions, zeros and n = 1."""
    from ternac.golden.isa import Instr, Op, encode_program
    from ternac.golden.sampler import join_state, sample_index, seed_state, split_state
    rng = random.Random(SEED)
    print(f"seed={SEED}")
    n = 9
    cases = []
    for k in range(40):
        kind = k % 4
        if kind == 0:
            p = [rng.randint(0, 32767) for _ in range(n)]
        elif kind == 1:
            p = [0] * n
            p[rng.randrange(n)] = 32767
        elif kind == 2:
            p = [3641] * n
        else:
            p = [rng.choice([0, 0, 1, 20000]) for _ in range(n)]
        st = seed_state(rng.getrandbits(32))
        cases.append((p, st))
    # Two draws in one run: the second uses the LFSR state the first wrote back.
    prog = [Instr(Op.SAMPLE, src=0, aux=n, n=n), Instr(Op.SAMPLE, src=0, aux=n, n=n),
            Instr(Op.HALT)]
    cfg = AccelConfig(lanes=4, weight_depth=16, scratch_depth=32, out_depth=4, prog_depth=4,
                      max_fan_in=16)
    inputs = [p + list(split_state(st)) for p, st in cases]
    res = run_batch(cfg, [], encode_program(prog), inputs, 0, 0, 1, progress=False,
                    scratch_readback=(n, 2))
    interp = run_program(prog, [], lanes=4, scratch_depth=32, out_depth=4,
                         scratch_init={0: torch.tensor(inputs)})
    seconds = []
    for (p, st), got, words, fin in zip(cases, res["results"], res["scratch"],
                                        interp.scratch.tolist()):
        _, st1 = sample_index(p, st)
        idx2, st2 = sample_index(p, st1)
        seconds.append(idx2)
        assert got == idx2
        assert join_state(*words) == st2 == join_state(fin[n], fin[n + 1])
    assert interp.result.tolist() == seconds
    assert len(set(seconds)) > 3
