"""Seeded sampling: the integer golden model (IntLM.generate(greedy=False, seed)), the
sampling program (compile_lm(..., sample=True): MATVEC WIDE lm_head, SHIFTMAX, SAMPLE with
the LFSR of golden/sampler.py in two scratch words) in the interpreter, and one short run
on the RTL with the committed checkpoint, token for token and int16 logit for int16 logit.
"""
from __future__ import annotations

import dataclasses

import pytest
import torch

from ternac.golden import sampler
from ternac.golden.isa import Flag, Op
from ternac.golden.lm import DEFAULT_CHECKPOINT
from ternac.golden.lm_int import IntLM
from ternac.golden.widths import WIDE_MAX
from test_lm_int import TINY, TINY_CFG, _model
from ternac.lower import (LM_CONFIG, LM_SAMPLE_CONFIG, CompileError, compile_lm, lm_config,
                               run_tokens)

PROMPT_LEN = 3
N_NEW = 22
SEEDS = (1, 2, 0xBEEF)

@pytest.fixture(scope="module")
def tiny():
    m, ids = _model(TINY)
    return IntLM.from_model(m, ids[:300]), ids


def _run_program(cm, prompt: list[int], n: int):
    """Feed the prompt, then each result, through the interpreter; returns (new ids,
    int16 logits of every step, LFSR state after every step)."""
    toks, scratch, logits, lfsr = list(prompt), None, [], []
    for k in range(len(prompt) + n - 1):
        (lg, nxt, scratch), = run_tokens(cm, [toks[k]], scratch)
        logits.append(lg.tolist())
        lfsr.append(sampler.join_state(scratch[cm.sampler_addr], scratch[cm.sampler_addr + 1]))
        if k + 1 >= len(toks):
            toks.append(nxt)
    return toks[len(prompt):], logits, lfsr


def test_interpreter_sampling_equals_intlm(tiny):
    im, ids = tiny
    cm0 = compile_lm(im, TINY_CFG, sample=True, seed=SEEDS[0])
    prompt = ids[:PROMPT_LEN].tolist()
    texts = []
    for seed in SEEDS:
        cm = cm0.with_seed(seed)
        gl: list = []
        gen = im.generate(prompt, N_NEW, greedy=False, seed=seed, logits_out=gl)
        assert im.generate(prompt, N_NEW, greedy=False, seed=seed) == gen      # reproducible
        new, logits, lfsr = _run_program(cm, prompt, N_NEW)
        assert new == gen, f"seed {seed}: the program drew other tokens"
        assert logits == gl, f"seed {seed}: an int16 logit differs"
        # One LFSR leap (golden.sampler.STEPS_PER_DRAW steps) a token fed, prompt included.
        s = sampler.seed_state(seed)
        for k, got in enumerate(lfsr):
            s = sampler.lfsr_leap(s)
            assert got == s, f"seed {seed}: LFSR words after step {k}"
        texts.append(tuple(gen))
    assert len(set(texts)) == len(SEEDS), "different seeds gave the same text"


def test_interpreter_equals_intlm_at_a_temperature(tiny):
    im, ids = tiny
    prompt = ids[5:5 + PROMPT_LEN].tolist()
    cm = compile_lm(im, TINY_CFG, sample=True, seed=5, temperature=0.25)
    gl: list = []
    gen = im.generate(prompt, 12, greedy=False, seed=5, temperature=0.25, logits_out=gl)
    new, logits, _ = _run_program(cm, prompt, 12)
    assert new == gen and logits == gl
    assert im.generate(prompt, 12, greedy=False, seed=5) != gen       # T = 1 draws otherwise


def test_cold_sampling_is_greedy(tiny):
    """At a temperature near 0 (logit16_scale / T beyond 16 nats an LSB) the exp gain clamps: only the maximum keeps probability, so
    every draw is the ARGMAX (the int16 logits are a finer, monotone requantization of the
    raw ones here)."""
    im, ids = tiny
    assert im.lm_head_wide.m / 2 ** im.lm_head_wide.s > 1
    prompt = ids[:PROMPT_LEN].tolist()
    for seed in (9, 10, 11):
        gl: list = []
        gen = im.generate(prompt, 20, greedy=False, seed=seed, temperature=1e-7, logits_out=gl)
        for k, tok in enumerate(gen):
            row = [int(v) for v in gl[len(prompt) - 1 + k]]
            # Only the maxima keep probability (several where the int16 logits tie).
            assert row[tok] == max(row), f"seed {seed}, token {k}: not a maximum"


def test_probabilities_and_calibration(tiny):
    im, ids = tiny
    assert im.logit16_scale == pytest.approx(2 * im.absmax["logits"] / WIDE_MAX)
    tr: dict = {}
    logits, _ = im.step(int(ids[0]), im.init_state(), trace=tr)
    l16 = tr["logits16"][0]
    assert int(l16.abs().max()) < WIDE_MAX
    # The int16 logits are the raw ones at another scale (requantize error < 1 LSB + 2^-15).
    real = logits.double() * im.logit_scale
    assert torch.allclose(l16.double() * im.logit16_scale, real, atol=im.logit16_scale)
    p = im.probabilities(l16)
    assert int(p.min()) >= 0 and abs(int(p.sum()) - 2 ** 15) < len(p)
    ref = torch.softmax(real, -1) * 2 ** 15
    assert float((p.double() - ref).abs().max()) < 0.03 * 2 ** 15
    assert im.sample_gain(0.5) != im.sample_gain(1.0)


def test_sampling_program_layout(tiny):
    im, _ = tiny
    greedy = compile_lm(im, TINY_CFG)
    cm = compile_lm(im, TINY_CFG, sample=True, seed=0x12345678, temperature=0.7)
    assert cm.weight_words == greedy.weight_words       # lm_head WIDE reads the same trits
    p = cm.program
    assert [i.op for i in p[-4:]] == [Op.MATVEC, Op.SHIFTMAX, Op.SAMPLE, Op.HALT]
    mv, sm, smp = p[-4:-1]
    assert mv.flags == Flag.WIDE and (mv.dst, mv.n) == (cm.logits_addr, TINY.vocab_size)
    assert (mv.m, mv.s) == (im.lm_head_wide.m, im.lm_head_wide.s)
    assert sm.src == mv.dst and (sm.m, sm.s) == im.sample_gain(0.7) and smp.src == sm.dst
    assert (smp.aux, smp.n) == (cm.sampler_addr, TINY.vocab_size) and smp.src == cm.probs_addr
    assert Op.ARGMAX not in [i.op for i in p] and cm.logits_in_scratch and cm.sample
    assert cm.scratch_constants[cm.sampler_addr] == [0x5678, 0x1234]
    assert cm.with_seed(0).scratch_constants[cm.sampler_addr] == [1, 0]       # 0 -> 1
    # Nothing writes over the int16 logits after the MATVEC that writes them.
    end = cm.logits_addr + cm.n_logits
    for ins in p[-3:]:
        if ins.op == Op.SHIFTMAX:
            assert ins.dst >= end or ins.dst + ins.n <= cm.logits_addr
    assert cm.sampler_addr + 2 <= min(a for a in cm.scratch_constants if a > cm.sampler_addr)
    assert lm_config(im, sample=True).vector[-1] == "shiftmax"
    assert "shiftmax" not in lm_config(im).vector


def test_sampling_errors(tiny):
    im, ids = tiny
    no_sm = dataclasses.replace(TINY_CFG, vector=("activation", "norm", "eltwise"))
    with pytest.raises(CompileError, match=r"SHIFTMAX\) needs the 'shiftmax' vector unit"):
        compile_lm(im, no_sm, sample=True)
    with pytest.raises(CompileError, match="temperature must be positive"):
        compile_lm(im, TINY_CFG, sample=True, temperature=0.0)
    with pytest.raises(CompileError, match=r"RMSNORM\) runs over 32 elements, more than the 16"):
        compile_lm(im, dataclasses.replace(TINY_CFG, max_vector=16))
    with pytest.raises(ValueError, match="needs a seed"):
        im.generate([1], 3, greedy=False)
    with pytest.raises(ValueError, match="temperature must be positive"):
        im.generate([1], 3, greedy=False, seed=1, temperature=float("nan"))
    with pytest.raises(ValueError, match="greedy program has no sampler"):
        compile_lm(im, TINY_CFG).with_seed(3)
    assert LM_SAMPLE_CONFIG.vector == LM_CONFIG.vector + ("shiftmax",)


def test_cli_sampling_interp_equals_golden():
    from ternac.errors import InputError
    from ternac.lm_cli import generate
    r = generate("RO", 4, "interp", seed=3, temperature=0.8, progress=False)
    assert r["matches_golden"] and r["logit_mismatches"] == 0
    assert (r["sampler"], r["seed"], r["temperature"]) == ("lfsr", 3, 0.8)
    with pytest.raises(InputError, match="give --seed"):
        generate("RO", 4, "golden", temperature=0.8)


def test_rtl_sampling_equals_golden():
    """The committed checkpoint on the Verilator-simulated accelerator (LM_SAMPLE_CONFIG):
    prompt "RO", 3 sampled tokens with seed 7; every token and every int16 logit equal."""
    from ternac.sim.accel import run_lm
    im = IntLM.from_checkpoint(DEFAULT_CHECKPOINT)
    cm = compile_lm(im, LM_SAMPLE_CONFIG, sample=True, seed=7)
    prompt = im.vocab.encode("RO").tolist()
    gl: list = []
    gen = im.generate(prompt, 3, greedy=False, seed=7, logits_out=gl)
    res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants, cm.token_addr,
                 prompt, 3, logits_addr=cm.logits_addr, n_logits=cm.n_logits,
                 logits_in_scratch=True, progress=False)
    assert res["tokens"][len(prompt):] == gen
    assert len(res["logits"]) == len(gl) == len(prompt) + 2
    for k, (a, b) in enumerate(zip(res["logits"], gl)):
        assert a == b, f"step {k}: an int16 logit differs"
    print(f"'RO' -> {im.vocab.decode(gen)!r} (seed 7); cycles/token {res['cycles']}")
