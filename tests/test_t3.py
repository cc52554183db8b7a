"""T3 weights end to end (issue 9 item 4): 5 trits a byte in the weight memory, decoded by
the streamer's ROMs, with ``AccelConfig(weight_format="t3")``.

* the facts the cycle model states (streamer and requantizer latencies) are the hw
  classes' own; the configuration's word width and lane rules;
* the program interpreter decodes T3 words (MATVEC equal to the golden ternary matvec and
  to the same matrix in I2; EMBED reads raw bytes, ``word_bits / 8`` a word);
* the lowering picks T3 per configuration (tile_lanes_t3, a format-1 weight image that
  round-trips) and the digits MLP compiled at T3 equals the integer golden model in the
  interpreter;
* single instructions on the Accelerator in Amaranth's simulator at 20 and 40 lanes: every
  result word equal to the interpreter, cycles equal to golden.cycles exactly (T3 MATVEC
  pays the ROM stage once: one cycle more than I2);
* on the Verilator RTL: the digits MLP at 40 lanes (every logit of every test digit equal
  to golden) and the shakespeare LM at 40 lanes, T3 (LM_T3_CONFIG; a few tokens, every
  logit equal to the integer golden model, cycles equal to the model with the
  data-dependent counts).
"""
from __future__ import annotations

import dataclasses
import random
import warnings

import pytest
import torch
from amaranth.hdl import UnusedElaboratable

from ternac.config import LM_T3_CONFIG, AccelConfig, HostSpace
from ternac.golden import cycles as C
from ternac.golden import numerics as nm
from ternac.golden.image import Format, decode_image, encode_image
from ternac.golden.interpreter import run_program
from ternac.golden.isa import Flag, Instr, Op
from ternac.golden.packing import embedding_words, tile_lanes, tile_lanes_t3

SEED = 5151


# ----------------------------------------------------------------------------- facts

def test_latencies_and_word_width_stated_once():
    """golden.cycles states the streamer's and the requantizer's latencies; they are the
    hw classes' figures. The Sequencer's weight port is the configuration's word."""
    from ternac.hw.requant import Requantizer
    from ternac.hw.sequencer import Sequencer
    from ternac.hw.streamer import PackedWeightStreamer
    assert C.STREAMER_LATENCY == PackedWeightStreamer.LATENCY
    assert C.REQUANT_LATENCY == Requantizer.LATENCY
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        for lanes, fmt in [(40, "t3"), (20, "t3"), (32, "i2"), (8, "i2")]:
            cfg = AccelConfig(lanes=lanes, weight_format=fmt)
            seq = Sequencer(lanes=lanes, acc_bits=cfg.acc_bits, prog_depth=8, scratch_depth=64,
                            out_depth=8, weight_depth=16, weight_format=fmt)
            assert seq.word_bits == cfg.word_bits == len(seq.w_rdata)
            assert cfg.word_bits == PackedWeightStreamer(lanes=lanes, depth=16,
                                                         fmt=fmt).word_bits


def test_config_weight_format():
    assert AccelConfig(lanes=40, weight_format="t3").word_bits == 64
    assert AccelConfig(lanes=40, weight_format="t3").word_bytes == 8
    assert AccelConfig(lanes=20, weight_format="t3").weight_slices == 1
    assert AccelConfig(lanes=80, weight_format="t3").word_bits == 128
    assert AccelConfig(lanes=32).word_bits == 64 and AccelConfig().weight_format == "i2"
    assert LM_T3_CONFIG.lanes == 40 and LM_T3_CONFIG.word_bits == 64
    with pytest.raises(ValueError, match="multiple of 5"):
        AccelConfig(lanes=32, weight_format="t3")
    with pytest.raises(ValueError, match="multiple of 4"):
        AccelConfig(lanes=30)
    with pytest.raises(ValueError, match="weight_format"):
        AccelConfig(lanes=40, weight_format="i3")


# ----------------------------------------------------------------------------- interpreter

def _matrix(g, n, k):
    t = torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)
    t[0] = 1
    t[min(1, n - 1)] = -1
    return t


@pytest.mark.parametrize("lanes", [5, 20, 40])
def test_interpreter_t3_matvec_equals_golden_and_i2(lanes):
    """A MATVEC over T3 words equals golden.numerics.ternary_matvec (RAW) and the
    requantized rule, and equals the same matrix run from I2 words (I2 lanes: the next
    multiple of 4)."""
    g = torch.Generator().manual_seed(SEED + lanes)
    print(f"seed={SEED + lanes}")
    n, k = 2 * lanes + 3, 37
    t = _matrix(g, n, k)
    x = torch.randint(-127, 128, (6, k), generator=g)
    x[0], x[1] = 127, -127
    expect = nm.ternary_matvec(t, x)
    words = tile_lanes_t3(t, lanes)
    for flags, m, s in [(Flag.RAW, 0, 0), (Flag.RELU, 3000, 14), (Flag.WIDE, 40000, 9)]:
        prog = [Instr(Op.MATVEC, flags=int(flags), src=0, dst=64, n=n, k=k, m=m, s=s),
                Instr(Op.HALT)]
        st = run_program(prog, words, lanes=lanes, scratch_depth=256, out_depth=256,
                         scratch_init={0: x}, weight_format="t3")
        if flags == Flag.RAW:
            got = st.out[:, 64:64 + n]
            assert torch.equal(got, expect)
        else:
            got = st.scratch[:, 64:64 + n]
            assert torch.equal(got, nm.matvec_op(t, x, m, s, int(flags)))
        l2 = -(-lanes // 4) * 4
        st2 = run_program(prog, tile_lanes(t, l2), lanes=l2, scratch_depth=256,
                          out_depth=256, scratch_init={0: x})
        assert torch.equal(st2.out, st.out) and torch.equal(st2.scratch, st.scratch)


def test_interpreter_t3_rejects_bad_words_and_format():
    bad = [0xF3 << 8]                   # byte 1 = 243: not a T3 byte
    prog = [Instr(Op.MATVEC, flags=int(Flag.RAW), n=10, k=1), Instr(Op.HALT)]
    with pytest.raises(ValueError, match="invalid T3 byte 243"):
        run_program(prog, bad, lanes=10, scratch_depth=16, out_depth=16, weight_format="t3")
    with pytest.raises(ValueError, match="weight_format"):
        run_program(prog, [0], lanes=8, scratch_depth=16, out_depth=16, weight_format="T3x")


@pytest.mark.parametrize("lanes", [20, 40])
def test_interpreter_t3_embed_reads_word_bytes(lanes):
    """EMBED at T3 reads raw bytes, ``word_bits / 8 = lanes / 5`` a word (8 at 40 lanes)."""
    g = torch.Generator().manual_seed(SEED)
    cfg = AccelConfig(lanes=lanes, weight_format="t3")
    vocab, d = 7, 19
    table = torch.randint(-127, 128, (vocab, d), generator=g)
    rows, k = embedding_words(table, cfg.word_bits // 2)
    assert k == -(-d // cfg.word_bytes)
    assert all(0 <= w < (1 << cfg.word_bits) for w in rows)
    tokens = torch.arange(vocab).view(vocab, 1)
    prog = [Instr(Op.EMBED, src=0, dst=8, n=d, k=k, wbase=0), Instr(Op.HALT)]
    st = run_program(prog, rows, lanes=lanes, scratch_depth=64, out_depth=4,
                     scratch_init={0: tokens}, weight_format="t3")
    assert torch.equal(st.scratch[:, 8:8 + d], table)


def _digits(cfg):
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    from ternac.lower import compile_checkpoint
    return compile_checkpoint(DEFAULT_CHECKPOINT, cfg)


def test_lowering_picks_t3_and_digits_interpreter_equals_golden():
    """The lowering tiles with tile_lanes_t3 for a T3 configuration and writes a format-1
    weight image (it round-trips through the encoder and gives back the layers' trits);
    the digits MLP then runs in the interpreter equal to int_forward on every logit."""
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.mlp import DEFAULT_CHECKPOINT, int_forward, int_layers_from_checkpoint
    from ternac.lower import compile_image, layers_from_image
    cfg = AccelConfig(lanes=40, weight_format="t3")
    c = _digits(cfg)
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    assert c.image.format == Format.T3 and c.image.lanes == 40
    assert c.image.words == [w for l in layers for w in tile_lanes_t3(l.trits, 40)]
    back = decode_image(encode_image(c.image))
    assert back.format == Format.T3 and back.words == c.image.words
    for a, b in zip(layers_from_image(back), layers):
        assert torch.equal(a.trits, b.trits)
    assert compile_image(back, cfg).program_words == c.program_words
    from ternac.lower import CompileError
    with pytest.raises(CompileError, match="holds T3 weights, but the accelerator reads I2"):
        compile_image(back, dataclasses.replace(cfg, weight_format="i2"))
    _, _, x_te, _ = load_split()
    x = quantize_pixels(x_te)
    st = run_program(c.program, c.weight_words, lanes=40, scratch_depth=cfg.scratch_depth,
                     out_depth=cfg.out_depth, weight_depth=cfg.weight_depth,
                     scratch_init={c.input_addr: x}, weight_format="t3")
    got = st.out[:, c.logits_addr:c.logits_addr + c.n_logits]
    assert torch.equal(got, int_forward(layers, x))


# ----------------------------------------------------------------------------- RTL (Amaranth)

def _pysim(cfg, program, weights, scratch, reads):
    """Run ``program`` once on the Accelerator in Amaranth's simulator with the weight
    memory initialised to ``weights``; returns the RTL's cycle counter and the words of
    each ``(space, addr, n)`` in ``reads`` after the run (sim/pysim.py)."""
    from ternac.sim.pysim import run_program_pysim
    return run_program_pysim(cfg, program, weights, scratch, reads)


def _single_cases():
    """(name, cfg, program, weights, scratch, reads): MATVEC at the shapes that change a
    formula's branch (k < L, k = 1, n a multiple of L or one short of it, padding rows,
    RAW), and EMBED, at T3 on 20 and 40 lanes."""
    rng = random.Random(SEED)
    g = torch.Generator().manual_seed(SEED)
    cases = []
    for lanes in (20, 40):
        cfg = AccelConfig(lanes=lanes, weight_format="t3", weight_depth=1024,
                          scratch_depth=512, out_depth=256, prog_depth=8, max_fan_in=256)
        shapes = [(1, 1), (lanes, 3), (2 * lanes - 1, 30), (lanes + 7, 100), (3 * lanes, lanes),
                  (0, 4)]
        for n, k in shapes:
            for flags in (Flag.RAW, Flag.NONE, Flag.RELU | Flag.WIDE):
                t = _matrix(g, max(n, 1), k)[:n]
                words = tile_lanes_t3(t, lanes) if n else []
                x = [rng.randint(-127, 127) for _ in range(k)]
                raw = flags == Flag.RAW
                prog = [Instr(Op.MATVEC, flags=int(flags), src=0, dst=0 if raw else 300, n=n,
                              k=k, m=rng.randint(1, 60000), s=rng.randint(0, 20))]
                reads = [(HostSpace.OUT, 0, n)] if raw else [(HostSpace.SCRATCH, 300, n)]
                cases.append((f"MATVEC n={n} k={k} flags={int(flags)} L={lanes}", cfg, prog,
                              words, {0: x}, reads))
        table = torch.randint(-128, 128, (5, 2 * cfg.word_bytes + 3), generator=g)
        rows, k = embedding_words(table, cfg.word_bits // 2)
        for tok in (0, 4):
            prog = [Instr(Op.EMBED, src=0, dst=300, n=table.shape[1], k=k, wbase=0)]
            cases.append((f"EMBED token {tok} k={k} L={lanes}", cfg, prog, rows, {0: [tok]},
                          [(HostSpace.SCRATCH, 300, table.shape[1] + 2)]))
        prog = [Instr(Op.EMBED, src=0, dst=300, n=0, k=0)]
        cases.append((f"EMBED k=0 L={lanes}", cfg, prog, rows, {0: [1]}, []))
    return cases


@pytest.mark.parametrize("case", _single_cases(), ids=lambda c: c[0])
def test_t3_single_op_rtl_equals_interpreter_and_cycle_model(case):
    """One T3 instruction and HALT on the Accelerator (Amaranth simulator): every word
    read back equals the interpreter's, and the RTL's cycle counter equals golden.cycles
    exactly (``weight_format="t3"``)."""
    name, cfg, prog, words, scratch, reads = case
    prog = prog + [Instr(Op.HALT)]
    res = _pysim(cfg, prog, words, scratch, reads)
    init = torch.zeros(1, cfg.scratch_depth, dtype=torch.int64)
    for a, vals in scratch.items():
        init[0, a:a + len(vals)] = torch.tensor(vals)
    ins = prog[0]
    if ins.n:
        st = run_program(prog, words, lanes=cfg.lanes, scratch_depth=cfg.scratch_depth,
                         out_depth=cfg.out_depth, weight_depth=cfg.weight_depth,
                         scratch_init=init, weight_format="t3")
        for (space, a, n), got in zip(reads, res["words"]):
            mem = st.out if space == HostSpace.OUT else st.scratch
            assert got == mem[0, a:a + n].tolist(), name
    model = C.program_cycles(prog, cfg.lanes, weight_format="t3")
    print(f"{name}: measured {res['cycles']} cycles (RTL counter), predicted {model['total']}")
    assert model["exact"] and model["total"] == res["cycles"], name
    if ins.op == Op.MATVEC and ins.n:
        # The ROM stage costs one cycle an instruction, not one a tile.
        i2 = C.program_cycles(prog, cfg.lanes, weight_format="i2")["total"]
        assert model["total"] == i2 + C.STREAMER_LATENCY["t3"] - C.STREAMER_LATENCY["i2"]


# ----------------------------------------------------------------------------- Verilator

def test_verilator_digits_t3_every_logit_equals_golden():
    """The digits MLP compiled at 40 lanes, T3, on the Verilator RTL: every logit of every
    test digit equals the integer golden model, ARGMAX picks the first maximum, and each
    run's cycle counter equals the cycle model (T3) exactly."""
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.mlp import DEFAULT_CHECKPOINT, int_forward, int_layers_from_checkpoint
    from ternac.sim.accel import run_batch
    cfg = AccelConfig(lanes=40, weight_format="t3")
    c = _digits(cfg)
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    _, _, x_te, _ = load_split()
    x = quantize_pixels(x_te)
    golden = int_forward(layers, x)
    res = run_batch(cfg, c.weight_words, c.program_words, x.tolist(), c.input_addr,
                    c.logits_addr, c.n_logits, progress=False, chunk=180)
    rtl = torch.tensor(res["logits"])
    assert rtl.shape == golden.shape
    mism = (rtl != golden).any(dim=1).sum().item()
    assert mism == 0, f"{mism} of {len(x)} digits differ in at least one logit"
    first_max = [max(range(golden.shape[1]), key=lambda j: (row[j], -j))
                 for row in golden.tolist()]
    assert res["results"] == first_max
    model = C.program_cycles(c.program, cfg.lanes, weight_format="t3")
    print(f"digits L=40 T3: cycles/inference {res['cycles'][0]} (RTL counter), model "
          f"{model['total']}; I2 L=40 model "
          f"{C.program_cycles(c.program, 40, weight_format='i2')['total']}")
    assert set(res["cycles"]) == {model["total"]}


def _step_data(program, words, cfg, scratch):
    """The cycle model's data-dependent counts (norm_data, sample_data) of one run of the
    program from ``scratch`` ((1, depth) int64), stepping the interpreter an instruction at
    a time; returns ``(data, scratch after the run)``."""
    data = {}
    for pc, ins in enumerate(program):
        if ins.op == Op.HALT:
            break
        if pc and program[pc - 1].op == Op.MATVEC and program[pc - 1].epi:
            continue                     # an epilogue: ran with its MATVEC
        x = scratch[0, ins.src:ins.src + ins.n].tolist()
        if ins.op in (Op.RMSNORM, Op.LAYERNORM):
            data[pc] = C.norm_data(x, layernorm=ins.op == Op.LAYERNORM,
                                   neg=bool(ins.flags & Flag.NEG))
        # a MATVEC with its epilogue; a reuse RMSNORM alone as the same op without reuse
        # (a tee, golden/isa.py, alone: without it)
        step = ([ins, dataclasses.replace(program[pc + 1], tee=0, tee8=0)]
                if ins.op == Op.MATVEC and ins.epi
                else [dataclasses.replace(ins, reuse=0, tee=0, tee8=0, pro=0)])
        st = run_program(step + [Instr(Op.HALT)], words, lanes=cfg.lanes,
                         scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                         weight_depth=cfg.weight_depth, scratch_init=scratch,
                         weight_format=cfg.weight_format)
        scratch = st.scratch
        if ins.op == Op.SAMPLE:
            data[pc] = C.sample_data(x, int(st.result[0]))
    return data, scratch


def test_verilator_lm_t3_every_logit_equals_golden():
    """The shakespeare LM compiled for LM_T3_CONFIG (40 lanes, T3 weights from 64-bit
    words) on the Verilator RTL, greedy from a short prompt: every logit of every step
    equals the integer golden model (golden.lm_int), and each step's cycle counter equals
    the cycle model (T3) with the data-dependent counts exactly."""
    from ternac.golden.lm_int import IntLM
    from ternac.lower import compile_lm
    from ternac.sim.accel import run_lm
    intlm = IntLM.from_checkpoint(None)
    cm = compile_lm(intlm, LM_T3_CONFIG)
    cfg = cm.cfg
    assert cm.image.format == Format.T3
    prompt = intlm.vocab.encode("RO").tolist()
    n_new = 2
    golden_new = intlm.generate(prompt, n_new)
    res = run_lm(cfg, cm.weight_words, cm.program_words, cm.scratch_constants, cm.token_addr,
                 prompt, n_new, logits_addr=cm.logits_addr, n_logits=cm.n_logits,
                 logits_in_scratch=cm.logits_in_scratch, progress=False)
    assert res["tokens"][len(prompt):] == golden_new
    state = intlm.init_state()
    seq = prompt + golden_new
    for k, t in enumerate(seq[:-1]):
        logits, state = intlm.step(t, state)
        assert res["logits"][k] == logits.tolist(), f"step {k}: a logit differs"
    scratch = torch.zeros(1, cfg.scratch_depth, dtype=torch.int64)
    for a, vals in cm.scratch_constants.items():
        scratch[0, a:a + len(vals)] = torch.tensor(vals)
    model = C.program_cycles(cm.program, cfg.lanes, weight_format="t3")
    for step, cyc in enumerate(res["cycles"]):
        scratch[0, cm.token_addr] = seq[step]
        data, scratch = _step_data(cm.program, cm.weight_words, cfg, scratch)
        exact = C.program_cycles(cm.program, cfg.lanes, weight_format="t3", data=data)
        print(f"LM T3 L=40 step {step}: {cyc} cycles (RTL counter), model {exact['total']} "
              f"(data-free bound {model['total']})")
        assert exact["exact"] and exact["total"] == cyc
