"""Model sessions over the host link, written once for a real board and for its
co-simulation.

A session is a generator that yields driver calls ``(method name, *args)`` of
:class:`ternac.hostdriver.HostDriver` and receives their results;
:meth:`HostDriver.run_session` runs it over any transport: pyserial on a real board
(:func:`run_digits_on_board`, :func:`run_lm_on_board`, here) or cocotbext-uart on the
simulated board's UART pins (the cocotb tests in :mod:`ternac.sim.board_cosim`). So
``--backend board`` and ``--backend cosim`` execute the very same steps.

* :func:`digits_session`: identify, weights, program, then for each input: write it, RUN,
  read the logits;
* :func:`lm_session`: identify, weights, program, scratch constants, then token by token.

Session inputs are plain JSON-able dicts (:func:`digits_session_inputs`,
:func:`lm_session_inputs`), so the cocotb side receives them through a file.

This module sits below the RTL, the simulators and the CLI (tests/test_layering.py): no
torch, no Amaranth, no cocotb, no import of ternac.hw, ternac.sim, the board tops or the
CLI; the board facts it reads (ternac.boards.facts) are pure data.
"""
from __future__ import annotations

import os
import sys

from ternac.boards.facts import board as board_facts
from ternac.protocol import (STATUS_ERROR_FLAGS, WORD_STRIDE, LinkError, Space,
                             board_config_hash)

__all__ = ["LM_WEIGHT_CHUNK", "READBACK_WORDS", "INFERENCE_ATTEMPTS", "digits_session_inputs",
           "digits_session",
           "lm_session_inputs", "lm_session", "run_digits_on_board", "run_lm_on_board"]

#: Weight words a load_weights call of a session (one progress line each).
LM_WEIGHT_CHUNK = 1024
#: Weight words read back and compared after loading (a check of the WEIGHTS path).
READBACK_WORDS = 8
#: Times a digits inference (input written, RUN, logits read) is tried when the link fails
#: in it: an inference is idempotent (the input is written again, and the program writes
#: everything else it reads), so a RUN whose response was lost is simply repeated.
INFERENCE_ATTEMPTS = 3


def _board_inputs(cfg, program_words, weight_words, board: str) -> dict:
    """The part of a session's inputs that every model shares. A board that keeps its
    weights in SPRAM (boards.facts: the bitstream cannot initialise it) has them loaded over
    the link. Raises ValueError for an unknown board."""
    weights_in = board_facts(board).weights
    return {
        "config_hash": board_config_hash(cfg, program_words, board),
        "word_bits": cfg.word_bits,
        "load_weights": weights_in == "spram",
        "weights": [int(w) for w in weight_words],
        "program": [int(w) for w in program_words],
        # the build's configuration, so a co-simulated board's driver checks the program and
        # the address limits against it as the real board's does (ternac.session._on_board)
        "config": cfg.to_dict(),
    }


def digits_session_inputs(compiled, inputs, board: str = "icebreaker") -> dict:
    """The plain (JSON-able) inputs of :func:`digits_session` for a
    :class:`ternac.lower.Compiled` model and its int8 input vectors on ``board``.

    Raises
    ------
    ValueError for an unknown board.
    """
    p = _board_inputs(compiled.cfg, compiled.program_words, compiled.weight_words, board)
    p.update(inputs=[[int(v) for v in x] for x in inputs], input_addr=int(compiled.input_addr),
             logits_addr=int(compiled.logits_addr), n_logits=int(compiled.n_logits))
    return p


def lm_session_inputs(cm, prompt_ids, n_new: int, board: str = "icebreaker") -> dict:
    """The plain (JSON-able) inputs of :func:`lm_session` for a
    :class:`ternac.lower.CompiledLM` on ``board``.

    Raises
    ------
    ValueError for an unknown board or n_new < 1, or an empty prompt.
    """
    p = _board_inputs(cm.cfg, cm.program_words, cm.weight_words, board)
    if not prompt_ids or n_new < 1:
        raise ValueError(f"an LM session needs a prompt and at least one new token, not "
                         f"{len(prompt_ids)} prompt tokens and {n_new} new")
    p.update({
        "constants": [[int(a), [int(v) for v in vals]]
                      for a, vals in sorted(cm.scratch_constants.items())],
        "token_addr": int(cm.token_addr), "logits_addr": int(cm.logits_addr),
        "n_logits": int(cm.n_logits),
        # Sampling programs keep their int16 logits in scratch (CompiledLM.logits_in_scratch).
        "logits_in_scratch": bool(getattr(cm, "logits_in_scratch", False)),
        "prompt": [int(t) for t in prompt_ids], "n_new": int(n_new),
    })
    return p


def _load(p: dict, say):
    """Session steps shared by every model: IDENTIFY and check the configuration hash;
    STATUS; load the weights (SPRAM boards; ``LM_WEIGHT_CHUNK`` words a call, then the first
    ``READBACK_WORDS`` words read back and compared); load the program.

    Raises LinkError if a weight reads back wrong."""
    yield ("check_identity", p["config_hash"])
    # STATUS once: clears sticky link flags from before the session (the final STATUS
    # judges this session's link) and shows the driver the device's run tag, so a RUN
    # whose response is lost can be resolved (HostDriver.run).
    yield ("status",)
    weights = p["weights"]
    if p["load_weights"]:
        for base in range(0, len(weights), LM_WEIGHT_CHUNK):
            yield ("load_weights", weights[base:base + LM_WEIGHT_CHUNK], base)
            say(f"weights {min(base + LM_WEIGHT_CHUNK, len(weights))}/{len(weights)} words")
        n = min(READBACK_WORDS, len(weights))
        per = -(-p["word_bits"] // 32)
        back = yield ("read_mem", Space.WEIGHTS, 0, WORD_STRIDE * n)
        for i in range(n):
            word = sum(back[WORD_STRIDE * i + s] << (32 * s) for s in range(per))
            if word != weights[i]:
                raise LinkError(f"weight word {i} read back as {word:#x}, {weights[i]:#x} "
                                f"was written")
    yield ("load_program", p["program"])


def _final_status(tolerate_link_errors: bool = False):
    """STATUS at the end of a session: no rejected frame and no error flag, else LinkError.
    With ``tolerate_link_errors`` (a noisy line whose errors the driver's retries and CRCs
    dealt with) only the accelerator's ERROR flag fails the session. Returns the status as
    a dict."""
    from ternac.protocol import StatusFlag
    st = yield ("status",)
    bad = StatusFlag.ERROR if tolerate_link_errors else STATUS_ERROR_FLAGS
    if (st.rejected and not tolerate_link_errors) or st.flags & bad:
        raise LinkError(f"the link reported errors: {st.rejected} rejected frames, "
                        f"flags {int(st.flags):#04x}")
    return {"flags": int(st.flags), "rejected": st.rejected}


def digits_session(p: dict, say=None, tick=None):
    """The digits MLP over the host link (a session generator, see the module docstring).

    Steps: :func:`_load` (identify, weights, program), then for each input vector: write
    it into SCRATCH at ``input_addr``, RUN, read ``n_logits`` logits from OUT (the three
    tried again, up to :data:`INFERENCE_ATTEMPTS` times, when the link fails in them: a
    lost RUN response); finally STATUS must show no rejected frame and no error flag
    (with ``p["tolerate_link_errors"]``: no accelerator error).

    Parameters
    ----------
    p : dict from :func:`digits_session_inputs`
    say : callable(str) or None, progress lines
    tick : callable() or None, called after each input

    Returns (as the generator's value)
    -------
    dict with ``logits`` (a list of int32 a input), ``results`` (the RUN result, ARGMAX, a
    input), ``cycles`` (the RTL's cycle counter a input), ``status``, ``repeated`` (the
    inferences tried again after a link failure).

    Raises
    ------
    ternac.protocol.LinkError if a weight reads back wrong or the link reports errors.
    """
    say = say or (lambda msg: None)
    yield from _load(p, say)
    logits, results, cycles = [], [], []
    repeated = 0
    for i, x in enumerate(p["inputs"]):
        for attempt in range(INFERENCE_ATTEMPTS):
            try:
                yield ("write_scratch", p["input_addr"], x)
                res, cyc = yield ("run",)
                out = yield ("read_out", p["logits_addr"], p["n_logits"])
                break
            except LinkError as e:
                if attempt == INFERENCE_ATTEMPTS - 1:
                    raise
                repeated += 1
                say(f"input {i}: the link failed ({e}); the inference is repeated")
        logits.append(out)
        results.append(int(res))
        cycles.append(int(cyc))
        if tick is not None:
            tick()
    status = yield from _final_status(bool(p.get("tolerate_link_errors")))
    return {"logits": logits, "results": results, "cycles": cycles, "status": status,
            "repeated": repeated}


def lm_session(p: dict, say=None):
    """One generation over the host link (a session generator, see the module docstring).

    Steps: :func:`_load` (identify, weights, program); write the scratch constants (the
    zero state, the resident norm weights); then ``len(prompt) + n_new - 1`` times: write
    the token id, RUN, read the logits from OUT (from SCRATCH with ``logits_in_scratch``,
    the sampling programs); the RUN result (ARGMAX, or the SAMPLE draw) is the next token,
    fed back after the prompt (as ``sim/bench_lm.py`` does over the plain host port).
    Finally STATUS must show no rejected frame and no error flag.

    Parameters
    ----------
    p : dict from :func:`lm_session_inputs`
    say : callable(str) or None, progress lines

    Returns (as the generator's value)
    -------
    dict with ``tokens`` (prompt + new ids), ``logits`` (a list a step), ``results`` and
    ``cycles`` (a step each, the RTL's cycle counter), ``status`` (the final STATUS, as a
    dict).

    Raises
    ------
    ternac.protocol.LinkError if a weight reads back wrong or the link reports errors.
    """
    say = say or (lambda msg: None)
    yield from _load(p, say)
    for addr, vals in p["constants"]:
        yield ("write_scratch", addr, vals)
    say(f"program ({len(p['program'])} instructions) and "
        f"{sum(len(v) for _, v in p['constants'])} scratch constant words loaded")
    tokens = list(p["prompt"])
    steps = len(tokens) + p["n_new"] - 1
    logits, results, cycles = [], [], []
    for t in range(steps):
        yield ("write_scratch", p["token_addr"], [tokens[t]])
        res, cyc = yield ("run",)
        logits.append((yield ("read_scratch" if p.get("logits_in_scratch") else "read_out",
                              p["logits_addr"], p["n_logits"])))
        results.append(int(res))
        cycles.append(int(cyc))
        if t + 1 >= len(tokens):
            tokens.append(int(res))
        say(f"token {t + 1}/{steps}: {tokens[t]} -> {res} ({cyc} cycles)")
    status = yield from _final_status()
    return {"tokens": tokens, "logits": logits, "results": results, "cycles": cycles,
            "status": status}


# -- on a real board --------------------------------------------------------------------------

def _on_board(session, cfg, port: str, baud: int):
    """Open ``port``, run ``session`` on a :class:`HostDriver` over it, close the port.

    Raises
    ------
    ternac.errors.BackendError (one sentence) if the port does not exist or cannot be
    opened, the board runs another bitstream, or the link fails.
    """
    from ternac.errors import BackendError
    from ternac.hostdriver import HostDriver, SerialTransport
    if "://" not in port and not os.path.exists(port):
        raise BackendError(f"the serial port {port} does not exist; is the board plugged in "
                           f"and is --port right?")
    try:
        transport = SerialTransport(port, baud)
    except LinkError as e:
        raise BackendError(str(e)) from None
    try:
        return HostDriver(transport, cfg=cfg).run_session(session)
    except LinkError as e:
        raise BackendError(f"the board on {port} did not answer as expected: {e}") from None
    finally:
        transport.close()


def _say(progress: bool):
    return (lambda msg: print(f"[board] {msg}", file=sys.stderr, flush=True)) if progress else None


def run_digits_on_board(compiled, inputs, *, port: str, board: str = "icebreaker",
                        baud: int = 115200, progress: bool = True):
    """``ternac run digits --backend board --port P``: a compiled model on a real board
    whose bitstream was built for it (:func:`digits_session`).

    Returns
    -------
    (logits, results, cycles): lists per input, as the verilator backend.

    Raises
    ------
    ValueError for an unknown board; ternac.errors.BackendError (one sentence) if the port
    cannot be opened, the board runs another bitstream, or the link fails.
    """
    p = digits_session_inputs(compiled, inputs, board)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(p["inputs"]), desc=board, unit="input", leave=False)
    try:
        out = _on_board(digits_session(p, _say(progress), bar.update if bar else None),
                        compiled.cfg, port, baud)
    finally:
        if bar is not None:
            bar.close()
    return out["logits"], out["results"], out["cycles"]


def run_lm_on_board(cm, prompt_ids, n_new: int, *, port: str, board: str = "icebreaker",
                    baud: int = 115200, progress: bool = True) -> dict:
    """``ternac generate --backend board --port P``: a compiled LM on a real board whose
    bitstream was built for ``cm`` (its configuration hash is checked first).

    Returns
    -------
    dict as :func:`lm_session` (tokens, logits, results, cycles, status).

    Raises
    ------
    ValueError for an unknown board, an empty prompt or n_new < 1;
    ternac.errors.BackendError (one sentence) if the port cannot be opened, the board runs
    another bitstream, or the link fails.
    """
    p = lm_session_inputs(cm, prompt_ids, n_new, board)
    return _on_board(lm_session(p, _say(progress)), cm.cfg, port, baud)
