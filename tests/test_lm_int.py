"""The integer MatMul-free LM (golden.lm_int) and its compiled program (ternac.lower):
the interpreter running the program equals IntLM.step logit for logit, token after token,
with the MLGRU state carried in the scratchpad; the memory maps; one-sentence errors.

Tiny random calibrated models for speed (~20 s in all on one core); the committed
shakespeare checkpoint on a short slice (it and the corpus are part of the set-up: no skip).
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ternac.golden.isa import Flag, Op
from ternac.golden.lm import DEFAULT_CHECKPOINT, SHAKESPEARE_CONFIG, LMConfig, MatMulFreeLM, calibrate
from ternac.golden.lm_int import NORM_W_MAX, IntLM, calibration_absmax, compare_with_float
from ternac.golden.widths import WIDE_MAX
from ternac.lower import (LM_CONFIG, UP5K_SPRAM_WORDS, CompileError, compile_lm, lm_config,
                               run_tokens, split_bytes)
from ternac.config import AccelConfig

TINY = LMConfig(vocab_size=23, hidden_size=32, num_hidden_layers=2, intermediate_size=48,
                use_lower_bound=True)
TINY_CFG = AccelConfig(lanes=8, weight_depth=4096, scratch_depth=4096, out_depth=32,
                       prog_depth=128, max_fan_in=64,
                       vector=("activation", "norm", "eltwise", "shiftmax"))
N_TOKENS = 34


def _model(config: LMConfig, seed: int = 0) -> tuple[MatMulFreeLM, torch.Tensor]:
    """A random model with random (some negative) norm weights and lower bounds, its static
    scales calibrated on random ids; returns (model, ids)."""
    torch.manual_seed(seed)
    m = MatMulFreeLM(config)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("norm.weight"):
                p.uniform_(-1.5, 1.5)
            elif "lower_bounds" in n:
                p.normal_()
            elif n.endswith("proj.weight"):
                p.mul_(3.0)        # larger activations than the 0.02 init: more signal
    ids = torch.randint(0, config.vocab_size, (2000,), generator=torch.Generator().manual_seed(seed))
    calibrate(m, ids, n_batches=3, batch_size=4, seq_len=64)
    return m, ids


@pytest.fixture(scope="module")
def tiny():
    m, ids = _model(TINY)
    return m, IntLM.from_model(m, ids[:300]), ids


def _check_equal(im: IntLM, cm, tokens: list[int]) -> None:
    state = im.init_state()
    for t, (logits, nxt, scratch) in zip(tokens, run_tokens(cm, tokens)):
        ref, state = im.step(t, state)
        assert torch.equal(logits, ref), f"logits differ at token {t}"
        assert nxt == int(IntLM.argmax(ref))
        for a, h in zip(cm.state_addrs, state):
            assert torch.equal(scratch[a:a + h.numel()], h)


# --- bit-exactness ---------------------------------------------------------------------

def test_interpreter_equals_intlm_every_logit(tiny):
    _, im, ids = tiny
    cm = compile_lm(im, TINY_CFG)
    assert not cm.staged                              # every norm weight resident
    _check_equal(im, cm, ids[:N_TOKENS].tolist())


def test_interpreter_equals_intlm_with_staged_constants(tiny):
    _, im, ids = tiny
    cfg = dataclasses.replace(TINY_CFG, scratch_depth=600)
    cm = compile_lm(im, cfg)
    assert cm.staged and cm.scratch_words <= 600
    ops = cm.op_counts()
    # one EMBED WIDE a staged constant where a word holds an even number of bytes, else two
    assert ops["EMBED"] == 1 + (1 if cfg.word_bits % 16 == 0 else 2) * len(cm.staged)
    _check_equal(im, cm, ids[N_TOKENS:2 * N_TOKENS].tolist())


def test_interpreter_equals_intlm_when_saturating(tiny):
    m, _, ids = tiny
    im = IntLM.from_model(m, ids[:1])            # scales from one token: later ones saturate
    tokens = ids[1:21].tolist()
    state, saturated = im.init_state(), 0
    for t in tokens:
        tr: dict = {}
        _, state = im.step(t, state, trace=tr)
        saturated += sum(int((v.abs() >= WIDE_MAX).sum()) for v in tr.values())
    assert saturated > 0
    _check_equal(im, compile_lm(im, TINY_CFG), tokens)


def test_generate_equals_program_feedback(tiny):
    _, im, ids = tiny
    cm = compile_lm(im, TINY_CFG)
    prompt = ids[:3].tolist()
    gen = im.generate(prompt, 8)
    toks, scratch, out = list(prompt), None, []
    for i in range(len(prompt) + 7):
        (_, nxt, scratch), = run_tokens(cm, [toks[i]], scratch)
        if i >= len(prompt) - 1:
            out.append(nxt)
            toks.append(nxt)
    assert out == gen


def test_batched_step_equals_single(tiny):
    _, im, ids = tiny
    toks = ids[:12].view(3, 4)
    st_b, st = im.init_state(3), [im.init_state() for _ in range(3)]
    for j in range(4):
        lb, st_b = im.step(toks[:, j], st_b)
        for i in range(3):
            l1, st[i] = im.step(int(toks[i, j]), st[i])
            assert torch.equal(lb[i], l1)


# --- the integer model against the float model -----------------------------------------

def test_calibration_mirror_is_the_float_static_model(tiny):
    m, _, ids = tiny
    _, logits = calibration_absmax(m, ids[:50])
    ref, _ = m.eval().set_quant("static")(ids[None, :50])
    assert torch.equal(logits, ref[0])


def test_integer_logits_track_float(tiny):
    m, im, ids = tiny
    r = compare_with_float(im, m, ids[:40])
    assert r["logits_rel_rms_error"] < 0.2 and r["argmax_agreement"] >= 0.75
    first = r["intermediates"]
    assert first["layers.0.XW"]["rel_rms_error"] < 0.01       # R * attn_norm weight, int16
    assert first["layers.0.I_"]["rel_rms_error"] < 0.02       # int8 rounding flips only
    assert first["layers.0.SI"]["rel_rms_error"] < 0.05       # + the shift-exp SiLU
    assert all(v["saturated"] == 0 for v in first.values())


def test_constants_deterministic_and_in_range(tiny):
    m, im, ids = tiny
    im2 = IntLM.from_model(m, ids[:300])
    assert im2.scales == im.scales
    for a, b in zip(im.layers, im2.layers):
        assert torch.equal(a.attn_norm.weight, b.attn_norm.weight) and a.c_mul == b.c_mul
        for nm in (a.attn_norm, a.i_in, a.g_norm, a.down_in):
            assert int(nm.weight.abs().max()) == NORM_W_MAX
    assert int(im.emb_table.abs().max()) == 127


def test_split_bytes_roundtrip():
    w = torch.cat([torch.arange(-NORM_W_MAX, NORM_W_MAX + 1, 97), torch.tensor([NORM_W_MAX, -NORM_W_MAX, 0, 255, -129])])
    lo, hi = split_bytes(w)
    assert int(lo.min()) >= -128 and int(lo.max()) <= 127 and int(hi.abs().max()) <= 127
    assert torch.equal(hi * 256 + lo, w)
    with pytest.raises(CompileError, match="beyond the 32512"):
        split_bytes(torch.tensor([NORM_W_MAX + 1]))


# --- memory maps -----------------------------------------------------------------------

def test_no_instruction_overwrites_an_operand_and_maps(tiny):
    _, im, _ = tiny
    for depth in (4096, 600):
        cm = compile_lm(im, dataclasses.replace(TINY_CFG, scratch_depth=depth))
        for pc, ins in enumerate(cm.program):
            if ins.op in (Op.ARGMAX, Op.HALT) or (ins.op == Op.MATVEC and ins.flags & Flag.RAW):
                continue
            if ins.op == Op.MATVEC and ins.epi:
                continue          # writes nothing: its rows feed the next instruction
            prev = cm.program[pc - 1]
            if prev.op == Op.MATVEC and prev.epi:
                # an epilogue: its src names the MATVEC's input (k words), b only if binary
                reads = [(ins.src, prev.k)]
                if ins.op in (Op.ADD, Op.MUL) and ins.aux != ins.dst:
                    reads.append((ins.aux, ins.n))
            else:
                reads = [(ins.src, ins.k if ins.op == Op.MATVEC else (1 if ins.op == Op.EMBED else ins.n))]
            if ins.op not in (Op.MATVEC, Op.EMBED) and not (prev.op == Op.MATVEC and prev.epi):
                reads.append((ins.aux, ins.n))
            assert ins.dst + ins.n <= cm.scratch_words <= depth
            for a, n in reads:
                assert ins.dst >= a + n or a >= ins.dst + ins.n, str(ins)
        p = cm.program
        assert p[0].op == Op.EMBED and p[0].src == cm.token_addr
        assert [i.op for i in p[-3:]] == [Op.MATVEC, Op.ARGMAX, Op.HALT]
        assert p[-3].flags == Flag.RAW and (p[-2].src, p[-2].n) == (cm.logits_addr, 23)
        assert cm.scratch_constants[cm.state_addrs[1]] == [0] * TINY.attn_size
        # the embedding with R = ADD(E, E) folded in: int16 rows, 32 halfwords a row, one
        # a word at 8 lanes (the byte table is no longer stored)
        emb = cm.weight_map["embeddings>R"]
        assert emb[1] == 23 * 32 and "embeddings" not in cm.weight_map


def test_flagship_shape_fits_the_up5k():
    m, ids = _model(SHAKESPEARE_CONFIG)
    im = IntLM.from_model(m, ids[:100])
    cm = compile_lm(im, LM_CONFIG)
    assert len(cm.weight_words) <= UP5K_SPRAM_WORDS and cm.scratch_words <= 4096
    assert cm.trit_macs == SHAKESPEARE_CONFIG.n_ternary == 426_112
    assert len(cm.program) <= LM_CONFIG.prog_depth
    assert lm_config(im, scratch_depth=LM_CONFIG.scratch_depth,
                     scratch_a_depth=LM_CONFIG.scratch_a_depth).weight_depth == len(cm.weight_words)
    _check_equal(im, cm, ids[:3].tolist())


# --- errors ----------------------------------------------------------------------------

def test_errors_are_one_sentence_with_numbers(tiny):
    m, im, ids = tiny
    with pytest.raises(CompileError, match=r"needs \d+ weight words .* holds 1000 \(weight_depth\)"):
        compile_lm(im, dataclasses.replace(TINY_CFG, weight_depth=1000))
    with pytest.raises(CompileError, match=r"down_proj has fan-in 48, more than the 40"):
        compile_lm(im, dataclasses.replace(TINY_CFG, max_fan_in=40))
    with pytest.raises(CompileError, match=r"lm_head writes 23 raw outputs, more than the 16-word output buffer"):
        compile_lm(im, dataclasses.replace(TINY_CFG, out_depth=16))
    with pytest.raises(CompileError, match=r"program has \d+ instructions, more than the 40"):
        compile_lm(im, dataclasses.replace(TINY_CFG, prog_depth=40))
    with pytest.raises(CompileError, match=r"scratch map needs \d+ words .* holds 200 \(scratch_depth\)"):
        compile_lm(im, dataclasses.replace(TINY_CFG, scratch_depth=200))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        im.step(23, im.init_state())
    raw = MatMulFreeLM(TINY)
    with pytest.raises(ValueError, match="not calibrated"):
        IntLM.from_model(raw, ids[:10])


# --- the committed checkpoint ----------------------------------------------------------

def test_shakespeare_checkpoint_program_equals_golden():
    from ternac.golden.lm import evaluate_bpc, load_checkpoint
    from ternac.golden.shakespeare_data import load_corpus

    im = IntLM.from_checkpoint(DEFAULT_CHECKPOINT)
    cm = compile_lm(im, LM_CONFIG)
    ids = im.vocab.encode("ROMEO:\nWhat").tolist()
    _check_equal(im, cm, ids)
    val = load_corpus().val[:256]
    model, _, _ = load_checkpoint(DEFAULT_CHECKPOINT)
    f_static = evaluate_bpc(model, val, "static", n_streams=4)
    assert im.bpc(val, n_streams=4) < f_static + 0.05
