"""The language model on the co-simulated iCEBreaker board, over its UART: the board core
(UART host link + Accelerator with its weights in four SB_SPRAM256KA models, 32 lanes,
the Activation/Norm/Eltwise units) in Verilator, driven by the same host-driver session
(ternac.boards_cli.lm_session) that ``ternac generate --backend board`` runs over pyserial.
Every token and every logit equals the integer golden model (IntLM.step).

Loading the committed checkpoint's 14,768 weight words through the simulated UART takes
minutes, so the test uses a tiny random calibrated MatMul-free LM compiled for the
smallest 32-lane configuration that holds it (ternac.lower.lm_config); the real
checkpoint goes through the same path with ``ternac generate --backend cosim``."""
from __future__ import annotations

import pytest
import torch

from ternac.golden.lm import LMConfig, MatMulFreeLM, calibrate
from ternac.golden.lm_int import IntLM
from ternac.lower import compile_lm, lm_config

TINY = LMConfig(vocab_size=23, hidden_size=32, num_hidden_layers=2, intermediate_size=48)


def _tiny_intlm(seed: int = 0) -> IntLM:
    """A random model (random norm weights, larger projections for more signal), its static
    scales calibrated on random ids; as tests/test_lm_int.py builds them."""
    torch.manual_seed(seed)
    m = MatMulFreeLM(TINY)
    with torch.no_grad():
        for n, p in m.named_parameters():
            if n.endswith("norm.weight"):
                p.uniform_(-1.5, 1.5)
            elif n.endswith("proj.weight"):
                p.mul_(3.0)
    ids = torch.randint(0, TINY.vocab_size, (2000,),
                        generator=torch.Generator().manual_seed(seed))
    calibrate(m, ids, n_batches=3, batch_size=4, seq_len=64)
    return IntLM.from_model(m, ids[:300])


def test_lm_over_the_uart_of_the_cosimulated_icebreaker_matches_golden():
    from ternac.sim.board_cosim import run_lm_cosim
    intlm = _tiny_intlm()
    cm = compile_lm(intlm, lm_config(intlm, lanes=32))
    assert cm.cfg.word_bits == 64
    prompt, n_new = [3, 17, 5], 3
    res = run_lm_cosim(cm, prompt, n_new, board="icebreaker", progress=False)

    state, tokens = intlm.init_state(), list(prompt)
    for k in range(len(prompt) + n_new - 1):
        ref, state = intlm.step(tokens[k], state)
        assert res["logits"][k] == ref.tolist(), f"step {k}: a logit differs"
        assert res["results"][k] == int(IntLM.argmax(ref))
        if k + 1 >= len(tokens):
            tokens.append(int(IntLM.argmax(ref)))
    assert res["tokens"] == tokens == prompt + intlm.generate(prompt, n_new)
    assert all(c > 0 for c in res["cycles"])
    # Everything went through the UART: the weights (4 slices a 64-bit word, 16 bytes).
    assert res["link"]["bytes_to_device"] > 16 * len(cm.weight_words)


def test_lm_board_backend_without_a_port_is_one_sentence(capsys):
    from ternac.cli import main
    assert main(["generate", "--backend", "board", "--port", "/dev/ternac-no-such-port",
                 "--tokens", "1", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("ternac: error: no board on the port /dev/ternac-no-such-port: "
                              "it does not exist")
    assert main(["generate", "--backend", "board", "--tokens", "1", "--quiet"]) == 2
    assert "needs --port" in capsys.readouterr().err
