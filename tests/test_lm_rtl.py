"""The flagship on the RTL: the committed ternary MatMul-free LM (426k trits, 32 lanes, with
the Activation, Norm and Eltwise units) generates on the Verilator-simulated accelerator,
token for token and logit for logit equal to the integer golden model (golden.lm_int)."""
from ternac.golden.lm_int import IntLM
from ternac.sim.accel import run_lm
from ternac.lower import LM_CONFIG, compile_lm


def test_lm_greedy_generation_bit_exact_on_rtl():
    intlm = IntLM.from_checkpoint(None)
    cm = compile_lm(intlm, LM_CONFIG)
    prompt = intlm.vocab.encode("ROMEO:").tolist()
    n_new = 4
    golden_new = intlm.generate(prompt, n_new)
    res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants,
                 cm.token_addr, prompt, n_new, logits_addr=cm.logits_addr,
                 n_logits=cm.n_logits, progress=False)
    assert res["tokens"][len(prompt):] == golden_new
    state = intlm.init_state()
    seq = prompt + golden_new
    for k, t in enumerate(seq[:-1]):
        logits, state = intlm.step(t, state)
        assert res["logits"][k] == logits.tolist(), f"step {k}: a logit differs"
    print(f"'ROMEO:' -> {intlm.vocab.decode(golden_new)!r}; cycles/token {res['cycles']}")
    assert len(res["cycles"]) == len(seq) - 1


def test_lm_bit_exact_on_rtl_at_128_lanes():
    """The ULX3S configuration (LM_ULX3S_CONFIG: 128 lanes, 256-bit weight words): two
    tokens after "RO", every logit of every step equal to the integer golden model."""
    from ternac.config import LM_ULX3S_CONFIG
    intlm = IntLM.from_checkpoint(None)
    cm = compile_lm(intlm, LM_ULX3S_CONFIG)
    assert cm.cfg.lanes == 128 and cm.cfg.word_bits == 256
    prompt = intlm.vocab.encode("RO").tolist()
    golden_logits: list = []
    golden_new = intlm.generate(prompt, 2, logits_out=golden_logits)
    res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants,
                 cm.token_addr, prompt, 2, logits_addr=cm.logits_addr,
                 n_logits=cm.n_logits, logits_in_scratch=cm.logits_in_scratch, progress=False)
    assert res["tokens"][len(prompt):] == golden_new
    assert len(res["logits"]) == len(golden_logits) == 3
    for k, (got, want) in enumerate(zip(res["logits"], golden_logits)):
        assert [int(v) for v in got] == [int(v) for v in want], f"step {k}: a logit differs"
    print(f"L=128 cycles/token {res['cycles']}")
