"""Running a model on a backend and building its report: what every front end calls.

* :func:`run_digits` -- the digits test split on one backend, compared with the integer
  golden model; returns the ``ternac run`` JSON report;
* :func:`generate` -- the MatMul-free LM generating text on one backend, compared token for
  token (and logit for logit) with the integer golden model; returns the ``ternac
  generate`` JSON report.

Backends (:data:`BACKENDS`): ``golden`` (the integer golden model itself), ``interp`` (the
ISA interpreter on the lowered program, :mod:`ternac.golden.interpreter`), ``verilator``
(the Accelerator RTL in Verilator, :mod:`ternac.sim.accel`), ``cosim`` (the board's core
in Verilator, driven through its UART by the host driver, :mod:`ternac.sim.board_cosim`)
and ``board`` (a real board on a serial port, :mod:`ternac.session`).

The command lines (``ternac/cli.py``, ``ternac/lm_cli.py``) only parse arguments, call these
and print; the report keys and the kinds of their figures are documented there. Errors a
user can cause are :data:`ternac.errors.USER_ERRORS` (one sentence, exit code 2 at the
command line); a failing RTL bench is :class:`RTLFailed` (exit code 1).
"""
from __future__ import annotations

import math
import os
import sys
import time

from ternac.errors import BackendError, CheckpointError, InputError, one_line

__all__ = ["BACKENDS", "MAX_TOKENS", "MAX_PROMPT", "SEED_MIN", "SEED_MAX", "TEMPERATURE_MIN",
           "TEMPERATURE_MAX", "RTLFailed", "check_temperature",
           "default_checkpoint", "accel_config", "run_digits", "run_compiled", "run_vit_digits",
           "check_corpus", "check_lfsr_seed", "check_prompt", "check_port", "check_link_baud",
           "load_lm", "generate"]

#: Every backend a model runs on.
BACKENDS = ("golden", "interp", "verilator", "cosim", "board")
#: Bounds on one generate call (each token is a program run; the RTL does ~1k a minute).
MAX_TOKENS = 10_000
MAX_PROMPT = 10_000
#: LFSR seeds of ``generate --seed`` (golden/sampler.py): the sampler's state is 32 bits and
#: a zero state never changes, so seeds 1 .. 2^32 - 1 are the ones that differ (a seed
#: outside would wrap onto one of them: 0 onto 1, 2^32 onto 1, 2^32 + 1 onto 1).
SEED_MIN, SEED_MAX = 1, (1 << 32) - 1
SEED_WHY = "the sampler's 32-bit LFSR state; a zero state never changes"
#: Sampling temperatures ``generate --temperature`` takes: ``p ~ exp(logit / T)`` is folded
#: into SHIFTMAX's exp gain (golden/lm_int.py sample_gain). For the committed LM every T
#: below ~4e-5 clamps the gain (only the top logit is drawn: greedy) and every T above
#: ~1.6e5 rounds every exponent argument to 0 (uniform; above ~1e19 the gain has no dyadic
#: at all), so the accepted range lies well inside where T changes the draws.
TEMPERATURE_MIN, TEMPERATURE_MAX = 0.001, 1000.0
TEMPERATURE_WHY = "p ~ exp(logit / T); for greedy decoding leave out --seed"
#: Prompts at least this long show a progress bar of the prompt's steps on stderr (the
#: golden model feeds ~20 tokens a second on this machine: 10,000 take ~9 minutes).
PROMPT_BAR_MIN = 256


class RTLFailed(Exception):
    """The RTL bench failed: not the user's input, so exit code 1."""


def default_checkpoint() -> str:
    """The shipped digits checkpoint (checkpoints/digits.safetensors)."""
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    return str(DEFAULT_CHECKPOINT)


def check_image_file(path) -> None:
    """Refuse a weight image path that exists but is not a regular file (``/dev/zero`` was
    read for ever, a FIFO hung); a missing path or a folder is left to
    :func:`ternac.golden.image.read_image`, which names it. Raises InputError."""
    import stat
    if path is None or not str(path).strip():
        return
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        raise InputError(f"the weight image {path} is not a file (a device, FIFO or socket); "
                         f"give the path of a .tnac file")


def accel_config(lanes: int, weight_depth: int | None = None,
                 scratch_depth: int | None = None):
    """An :class:`ternac.config.AccelConfig` of ``lanes`` lanes, with the given memory depths
    (None: the defaults). Raises InputError (one sentence) for a value it rejects."""
    from ternac.config import AccelConfig
    kw = {"lanes": lanes}
    if weight_depth is not None:
        kw["weight_depth"] = weight_depth
    if scratch_depth is not None:
        kw["scratch_depth"] = scratch_depth
    try:
        return AccelConfig(**kw)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def model_config(base, lanes: int | None = None, weight_depth: int | None = None,
                 scratch_depth: int | None = None):
    """``base`` (a model's :class:`ternac.config.AccelConfig`, e.g. VIT_CONFIG or LM_CONFIG)
    with the given lanes and memory depths (None: the model's own). Raises InputError (one
    sentence) for a value the configuration rejects (``--lanes 7`` was a traceback)."""
    import dataclasses
    kw = {k: v for k, v in (("lanes", lanes), ("weight_depth", weight_depth),
                            ("scratch_depth", scratch_depth)) if v is not None}
    try:
        return dataclasses.replace(base, **kw)
    except ValueError as exc:
        raise InputError(str(exc)) from None


def _bench_failed(exc: Exception) -> bool:
    """sim.runner.BenchFailed (tested by name: sim is imported only when a bench runs)."""
    return type(exc).__name__ == "BenchFailed"


# ----------------------------------------------------------------------------- digits

def load_test_split(limit: int | None = None):
    """The digits test split as int8 pixels and labels, the first ``limit`` images:
    ``((n, 64) int64, (n,) int64)``. Raises InputError for ``limit`` < 1."""
    from ternac.golden.digits_data import load_split, quantize_pixels
    _, _, x_te, y_te = load_split()
    if limit is not None:
        if limit < 1:
            raise InputError(f"--limit must be at least 1, not {limit}")
        x_te, y_te = x_te[:limit], y_te[:limit]
    return quantize_pixels(x_te), y_te


def run_digits(backend: str, lanes: int | None = None, checkpoint: str | None = None,
               image: str | None = None, limit: int | None = None,
               build_dir: str | None = None, weight_depth: int | None = None,
               scratch_depth: int | None = None, progress: bool = True,
               port: str | None = None, board: str = "icebreaker",
               baud: int | None = None) -> dict:
    """Run the digits test split (360 images) on one backend and compare with golden.

    The reference is always the integer golden model (``golden.mlp.int_forward``) of the
    checkpoint. With ``image``, the backend runs the weight image file instead of the
    checkpoint's compiled weights (its program is rebuilt from the image's tensor table).

    Returns
    -------
    dict, the ``ternac run`` JSON report (keys in ``ternac/cli.py``'s docstring).

    Raises
    ------
    CheckpointError, ImageError, CompileError, InputError, BackendError (one sentence);
    RTLFailed if an RTL bench fails.
    """
    from ternac.golden import mlp
    from ternac.golden.vecops import argmax
    from ternac.lower import compile_image, compile_mlp, layers_from_image, load_model, \
        useful_macs

    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    check_link_baud(backend, baud)
    checkpoint = checkpoint or default_checkpoint()
    ckpt, layers = load_model(checkpoint)
    x, y_te = load_test_split(limit)
    if ckpt.dims[0] != x.shape[1]:
        raise CheckpointError(f"checkpoint {checkpoint} takes {ckpt.dims[0]} inputs, but a "
                              f"digits image has {x.shape[1]} pixels")
    if ckpt.dims[-1] != 10:
        raise CheckpointError(f"checkpoint {checkpoint} has {ckpt.dims[-1]} outputs, but "
                              f"digits has 10 classes")
    labels = y_te.tolist()
    golden_logits = mlp.int_forward(layers, x)
    float_logits = mlp.float_forward(ckpt, x)

    img = None
    if image is not None:
        from ternac.golden.image import read_image
        check_image_file(image)
        img = read_image(image)
        if lanes is None:
            lanes = img.lanes
    if lanes is None:
        lanes = 8
    cfg = accel_config(lanes, weight_depth, scratch_depth)
    if img is not None:
        compiled = compile_image(img, cfg)
    else:
        compiled = compile_mlp(layers, cfg, x.shape[1])
    if compiled.n_logits != golden_logits.shape[1]:
        raise InputError(f"the weight image gives {compiled.n_logits} logits, the checkpoint "
                         f"{golden_logits.shape[1]}")

    cycles = None
    t0 = time.perf_counter()
    if backend == "golden":
        run_layers = layers if img is None else layers_from_image(img)
        run_logits = mlp.int_forward(run_layers, x)
        logits, results = run_logits.tolist(), argmax(run_logits).tolist()
    else:
        logits, results, cycles = run_compiled(backend, compiled, x, build_dir=build_dir,
                                               progress=progress, port=port, board=board,
                                               baud=baud)
    seconds = time.perf_counter() - t0
    return _digits_report(backend, cfg, checkpoint, image, labels, golden_logits,
                          float_logits, logits, results, cycles, useful_macs(compiled.shapes),
                          seconds)


def _digits_report(backend, cfg, checkpoint, image, labels, golden_logits, float_logits,
                   logits, results, cycles, macs, seconds, model: str = "digits") -> dict:
    """The ``ternac run`` report: accuracies, mismatches (every logit compared with the
    integer golden model), cycles and MAC utilization, with the kind of each figure."""
    from ternac.golden.vecops import argmax
    n = len(labels)
    ref = golden_logits.tolist()
    golden_pred = argmax(golden_logits).tolist()
    mismatches = sum(1 for a, b in zip(logits, ref) if a != b)
    argmax_mismatches = sum(1 for a, b in zip(results, golden_pred) if a != b)
    report = {
        "model": model,
        "backend": backend,
        "lanes": cfg.lanes,
        "samples": n,
        "checkpoint": str(checkpoint),
        "image": image,
        "accuracy": sum(int(p == y) for p, y in zip(results, labels)) / n,
        "golden_accuracy": sum(int(p == y) for p, y in zip(golden_pred, labels)) / n,
        "float_accuracy": sum(int(p == y) for p, y in
                              zip(argmax(float_logits).tolist(), labels)) / n,
        "mismatches": mismatches,
        "argmax_mismatches": argmax_mismatches,
        "cycles_per_inference": None,
        "cycles_min": None,
        "cycles_max": None,
        "useful_macs_per_inference": macs,
        "mac_utilization": None,
        "wall_seconds": round(seconds, 3),
    }
    if cycles is not None:
        mean = sum(cycles) / len(cycles)
        report["cycles_per_inference"] = int(mean) if mean == int(mean) else mean
        report["cycles_min"], report["cycles_max"] = min(cycles), max(cycles)
        report["mac_utilization"] = macs / (cfg.lanes * mean)
    kinds = {"accuracy": "measured", "golden_accuracy": "measured",
             "float_accuracy": "measured", "mismatches": "measured",
             "argmax_mismatches": "measured", "cycles_per_inference": "measured",
             "cycles_min": "measured", "cycles_max": "measured",
             "useful_macs_per_inference": "derived", "mac_utilization": "derived",
             "wall_seconds": "measured"}
    report["kinds"] = {k: v for k, v in kinds.items() if report[k] is not None}
    return report


def run_compiled(backend: str, compiled, x, *, build_dir=None, progress: bool = True,
                 port: str | None = None, board: str = "icebreaker", baud: int | None = None):
    """Run a lowered one-shot program (a classifier: input vectors in, logits out) on
    ``backend`` (any of :data:`BACKENDS` but golden) for every input.

    Parameters
    ----------
    compiled : ternac.lower.Lowered
        its ``input_addr`` (scratch word where an input vector is written), ``logits_addr``
        and ``n_logits`` (the logits in OUT) are used
    x : (B, n) integer tensor, the input vectors (int8 activations or 16-bit scratch words)
    baud : the board backend's host-link rate in bit/s (None: boards.facts.DEFAULT_BAUD,
        115200); it must be the one the board's bitstream was built with

    Returns
    -------
    (logits, results, cycles): lists per input: the int32 logits, the RUN result (ARGMAX),
    the RTL cycles start to done (None for interp).

    Raises
    ------
    InputError (board without ``port``), BackendError (one sentence), RTLFailed if an RTL
    bench fails.
    """
    cfg = compiled.cfg
    if backend == "interp":
        from ternac.golden.interpreter import run_program
        state = run_program(compiled.program_words, compiled.weight_words, lanes=cfg.lanes,
                            scratch_depth=cfg.scratch_depth, out_depth=cfg.out_depth,
                            weight_depth=cfg.weight_depth,
                            scratch_init={compiled.input_addr: x})
        a = compiled.logits_addr
        return state.out[:, a:a + compiled.n_logits].tolist(), state.result.tolist(), None
    if backend == "verilator":
        return _run_verilator(compiled, x.tolist(), build_dir, progress)
    if backend == "cosim":
        # The whole simulated board top, driven through its UART by the host driver.
        from ternac.sim.board_cosim import run_digits_cosim
        try:
            return run_digits_cosim(compiled, x.tolist(), board=board, build_dir=build_dir,
                                    progress=progress)
        except Exception as exc:
            if not _bench_failed(exc):
                raise
            raise RTLFailed(one_line(exc)) from None
    if backend == "board":
        check_port(port)
        from ternac.session import run_digits_on_board
        return run_digits_on_board(compiled, x.tolist(), port=port, board=board,
                                   baud=_link_baud(baud), progress=progress)
    raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS[1:])}")


def check_link_baud(backend: str, baud) -> None:
    """Refuse, before any work, a ``--baud`` outside the host-link rates
    (:func:`ternac.cliargs.check_baud`) or given to a backend without a serial link: only
    the board backend talks to a UART at a chosen rate (the co-simulated board's runs at a
    fixed clock / 4, sim/board_cosim.py). None (not given) passes. Raises InputError."""
    if baud is None:
        return
    from ternac.cliargs import check_baud
    try:
        check_baud(baud)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if backend != "board":
        why = ("its simulated UART runs at a fixed clock / 4" if backend == "cosim"
               else "it has no host link")
        raise InputError(f"--baud applies to the board backend only; the {backend} backend "
                         f"would ignore it ({why})")


def _link_baud(baud) -> int:
    from ternac.boards.facts import DEFAULT_BAUD
    return DEFAULT_BAUD if baud is None else baud


def check_port(port) -> None:
    """Refuse, before any work, a missing ``--port`` or a serial device path that does not
    exist (pyserial URLs such as ``socket://`` or ``loop://`` are left to pyserial).
    Raises InputError (one sentence)."""
    if not port:
        raise InputError("the board backend needs --port (the board's serial port, "
                         "e.g. /dev/ttyUSB1)")
    if "://" not in port and not os.path.exists(port):
        raise InputError(f"no board on the port {port}: it does not exist; is the board "
                         f"plugged in and is --port right?")


def _run_verilator(compiled, inputs, build_dir, progress):
    """The Accelerator RTL in Verilator on every input: (logits, results, cycles) lists.
    Raises BackendError if the simulator is not available, RTLFailed if the bench fails."""
    try:
        from ternac.sim.accel import run_batch
    except ImportError as exc:
        raise BackendError(f"the verilator backend is not available: {exc}") from None
    cfg = compiled.cfg
    try:
        res = run_batch(cfg, compiled.weight_words, compiled.program_words, inputs,
                        compiled.input_addr, compiled.logits_addr, compiled.n_logits,
                        build_dir=build_dir, progress=progress)
    except Exception as exc:
        # sim.runner.BenchFailed: the bench itself failed (e.g. the program never halted).
        if not _bench_failed(exc):
            raise
        raise RTLFailed(one_line(exc)) from None
    logits = [[int(v) for v in row] for row in res["logits"]]
    if len(logits) != len(inputs):
        raise RTLFailed(f"the RTL returned {len(logits)} logit vectors for {len(inputs)} inputs")
    return logits, [int(r) for r in res["results"]], [int(c) for c in res["cycles"]]


# ----------------------------------------------------------------------------- the ViT

def run_vit_digits(backend: str, checkpoint: str | None = None, limit: int | None = None,
                   build_dir: str | None = None, progress: bool = True,
                   port: str | None = None, board: str = "icebreaker",
                   lanes: int | None = None, weight_depth: int | None = None,
                   scratch_depth: int | None = None, baud: int | None = None) -> dict:
    """Run the ternary ViT (golden/vit.py) on the digits test split on one backend and
    compare every logit with its integer golden model (the evaluation of its graph).

    The lowered program's fixed scratch words (the 16 patch inputs, the position indices,
    the LayerNorm weights) are written for every image as one block from address 0.

    Returns
    -------
    dict, the ``ternac run`` JSON report (the keys of :func:`run_digits`; ``model`` is
    ``vit-digits``).

    Raises
    ------
    CheckpointError, CompileError, InputError, BackendError (one sentence); RTLFailed if an
    RTL bench fails.
    """
    import dataclasses

    import torch

    from ternac.config import VIT_CONFIG
    from ternac.golden.digits_data import dequantize_pixels
    from ternac.golden.vecops import argmax
    from ternac.golden.vit import DEFAULT_CHECKPOINT, IntViT, load_checkpoint
    from ternac.lower import lower

    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    check_link_baud(backend, baud)
    cfg = model_config(VIT_CONFIG, lanes, weight_depth, scratch_depth)
    try:
        model, _ = load_checkpoint(checkpoint)
    except ValueError as exc:
        raise CheckpointError(one_line(exc)) from None
    checkpoint = checkpoint or str(DEFAULT_CHECKPOINT)
    x, y_te = load_test_split(limit)
    im = IntViT.from_model(model)
    g = im.graph()
    feeds = im.feeds(x)
    golden_logits = g.evaluate(feeds)["logits"]
    with torch.no_grad():
        float_logits = model(dequantize_pixels(x))
    compiled = lower(g, cfg)
    fixed_end = compiled.scratch_map["work"][0]
    blocks = torch.zeros(x.shape[0], fixed_end, dtype=torch.int64)
    for a, v in compiled.scratch_constants.items():
        blocks[:, a:a + len(v)] = torch.tensor(v)
    for name, v in feeds.items():
        a, n = compiled.inputs[name]
        blocks[:, a:a + n] = v
    view = dataclasses.replace(compiled, inputs={"block": (0, fixed_end)})
    cycles = None
    t0 = time.perf_counter()
    if backend == "golden":
        logits, results = golden_logits.tolist(), argmax(golden_logits).tolist()
    else:
        logits, results, cycles = run_compiled(backend, view, blocks, build_dir=build_dir,
                                               progress=progress, port=port, board=board,
                                               baud=baud)
    seconds = time.perf_counter() - t0
    rep = _digits_report(backend, cfg, checkpoint, None, y_te.tolist(), golden_logits,
                         float_logits, logits, results, cycles, compiled.trit_macs, seconds,
                         model="vit-digits")
    rep["instructions"] = len(compiled.program)
    from ternac.golden.cycles import program_cycles
    pred = program_cycles(compiled.program, cfg.lanes, weight_format=cfg.weight_format,
                          mv_chain=cfg.mv_chain, norm_steps=cfg.norm_steps)
    attn = sum(v for k, v in pred["by_op"].items() if k in ("DOT", "DOTT", "SHIFTMAX"))
    rep["predicted_cycles"] = pred["total"]
    rep["predicted_cycles_min"] = pred["total_min"]
    rep["attention_cycle_share"] = attn / pred["total"]
    rep["kinds"].update(instructions="derived", predicted_cycles="modelled",
                        predicted_cycles_min="modelled", attention_cycle_share="modelled")
    return rep


# ----------------------------------------------------------------------------- the LM

def check_corpus(checkpoint=None, text=None) -> str | None:
    """Check that the corpus ``text`` (default golden.shakespeare_data.DEFAULT_TEXT) is the
    one the LM ``checkpoint`` (default the committed one) was trained on: the sha256 of its
    text equals the checkpoint's ``corpus_sha256`` metadata. The integer model is
    calibrated on this text, so another text makes another integer model, and a backend
    "equal to the integer golden model" would be equal to that other model.

    Returns the sha256 checked, or None when the checkpoint records none (an imported
    checkpoint: a ternac LM checkpoint without it gets a one-line warning on stderr that
    the corpus was not checked) or cannot be read or is another model's (its loader then
    names what is wrong).

    Raises
    ------
    InputError (one sentence) for a missing corpus or one whose sha256 differs.
    """
    import hashlib
    from pathlib import Path

    from ternac.golden.lm import CHECKPOINT_FORMAT, DEFAULT_CHECKPOINT
    from ternac.golden.shakespeare_data import DEFAULT_TEXT
    ckpt = str(DEFAULT_CHECKPOINT if checkpoint is None else checkpoint)
    try:
        from safetensors import safe_open
        with safe_open(ckpt, "pt") as f:
            meta = f.metadata() or {}
    except Exception:       # not a safetensors file (or missing): its loader says so
        return None
    want = meta.get("corpus_sha256")
    path = Path(DEFAULT_TEXT if text is None else text)
    if not want and meta.get("format") != CHECKPOINT_FORMAT:
        return None         # not an LM checkpoint of this format: its loader says what it is
    if not want:
        # Keep working (a checkpoint written before the hash was recorded), but say so.
        print(f"ternac: warning: the checkpoint {ckpt} records no corpus_sha256, so the "
              f"corpus {path} could not be checked against the text it was trained on",
              file=sys.stderr)
        return None
    if not path.is_file():
        raise InputError(f"the corpus {path} does not exist or is not a file; the LM is "
                         f"calibrated on it: pass --text PATH")
    try:
        # As golden.shakespeare_data.load_corpus hashes it (text mode, UTF-8).
        got = hashlib.sha256(path.read_text(encoding="utf-8").encode("utf-8")).hexdigest()
    except UnicodeDecodeError:
        raise InputError(f"the corpus {path} is not UTF-8 text") from None
    if got != want:
        raise InputError(f"the corpus {path} (sha256 {got[:12]}...) is not the one "
                         f"{ckpt} was trained on (sha256 {want[:12]}...); its integer model "
                         f"would be calibrated on other text: pass --text with the original "
                         f"corpus")
    return want


def check_prompt(checkpoint, prompt: str) -> None:
    """Refuse, before the model loads (seconds), a prompt holding a character the
    checkpoint's vocabulary (its ``vocab`` metadata) has no token for. A checkpoint without
    readable metadata is left to its loader. Raises InputError (one sentence)."""
    import json

    from ternac.golden.lm import DEFAULT_CHECKPOINT
    try:
        from safetensors import safe_open
        with safe_open(str(DEFAULT_CHECKPOINT if checkpoint is None else checkpoint), "pt") as f:
            chars = json.loads((f.metadata() or {}).get("vocab", "null"))
    except Exception:
        return
    if not isinstance(chars, str):
        return
    bad = sorted(set(prompt) - set(chars))
    if bad:
        raise InputError(f"the prompt holds {len(bad)} character(s) the model has no token for "
                         f"({', '.join(repr(c) for c in bad[:5])}); its {len(chars)} symbols "
                         f"are {chars!r}")


def check_lfsr_seed(seed) -> int | None:
    """``seed`` as the LFSR seed of sampling: None (greedy) or an int from SEED_MIN to
    SEED_MAX, each a distinct sampler state. Raises InputError (one sentence)."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not (isinstance(seed, int) and SEED_MIN <= seed <= SEED_MAX):
        from ternac.cliargs import range_message
        raise InputError(range_message("--seed", seed, SEED_MIN, SEED_MAX, why=SEED_WHY))
    return seed


def check_temperature(temperature) -> float:
    """``temperature`` as the sampling temperature: a finite number from TEMPERATURE_MIN to
    TEMPERATURE_MAX (None: 1.0). Raises InputError (one sentence naming the range; a
    temperature of 1e300 was blamed on a 'requantization scale')."""
    if temperature is None:
        return 1.0
    try:
        t = float(temperature)
    except (TypeError, ValueError):
        t = math.nan
    if not (math.isfinite(t) and TEMPERATURE_MIN <= t <= TEMPERATURE_MAX):
        from ternac.cliargs import range_message
        raise InputError(range_message("--temperature", temperature, TEMPERATURE_MIN,
                                       TEMPERATURE_MAX, noun="a number", why=TEMPERATURE_WHY))
    return t


def load_lm(checkpoint=None, seed=None, temperature=1.0, text=None):
    """The integer LM of ``checkpoint`` (default: the shipped one), calibrated on the
    corpus ``text`` (default golden.shakespeare_data.DEFAULT_TEXT; checked against the
    checkpoint's corpus hash, :func:`check_corpus`), and its lowered program: greedy
    (``seed`` None) or sampling with the LFSR seeded with ``seed`` at ``temperature``.
    Returns ``(IntLM, Lowered)``.

    Raises
    ------
    InputError (one sentence) for a missing or unreadable checkpoint, a missing corpus or
    another corpus than the checkpoint's, a seed outside SEED_MIN .. SEED_MAX.
    """
    from ternac.golden.lm_int import IntLM
    from ternac.lower import LM_CONFIG, LM_SAMPLE_CONFIG, compile_lm
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise InputError(f"the checkpoint {checkpoint} does not exist or is not a file")
    check_lfsr_seed(seed)
    check_corpus(checkpoint, text)
    try:
        intlm = IntLM.from_checkpoint(checkpoint, text_path=text)
    except (ValueError, KeyError, RuntimeError, OSError) as exc:
        # The loaders' messages are one sentence naming the file and what is wrong.
        raise InputError(" ".join(str(exc).split()) or type(exc).__name__) from None
    if seed is None:
        return intlm, compile_lm(intlm, LM_CONFIG)
    return intlm, compile_lm(intlm, LM_SAMPLE_CONFIG, sample=True, seed=seed,
                             temperature=temperature)


def generate(prompt: str, n: int, backend: str, checkpoint=None, build_dir=None,
             progress: bool = True, seed: int | None = None,
             temperature: float | None = None, port: str | None = None,
             board: str = "icebreaker", on_token=None, text=None,
             baud: int | None = None) -> dict:
    """Generate ``n`` characters after ``prompt`` on ``backend``; returns the ``ternac
    generate`` JSON report (keys in ``ternac/lm_cli.py``'s docstring).

    ``seed`` None decodes greedily; an int from SEED_MIN to SEED_MAX samples (LFSR seeded
    with it) at ``temperature`` (default 1.0). ``text``: the corpus the integer model is
    calibrated on (default golden.shakespeare_data.DEFAULT_TEXT), which must be the one
    the checkpoint was trained on (:func:`check_corpus`). The golden backend is the integer
    golden model itself: its report says ``"compared": false`` (nothing else ran); the
    other backends are compared with it (``"compared": true``). A prompt of at least
    PROMPT_BAR_MIN tokens shows a tqdm bar of its steps on stderr (with ``progress``).

    ``on_token``, if given, is called as ``on_token(token_id, text)`` for each generated
    token, in order, as soon as the backend has produced it: golden, interp and verilator
    (there from a thread that watches the simulator's progress file, about 0.1 s after the
    step) call it ``n`` times, with the report's ``token_ids`` and their characters; cosim
    and board do not call it (their sessions print their own progress). With
    ``progress``, each stage is a line on stderr as it begins (``[load]`` once the model
    is loaded and lowered, ``[build]``, ``[run]``, ``[check]``: the integer golden model,
    run after the backend so the first token comes sooner).

    Raises
    ------
    InputError for an empty prompt, n outside 1 .. MAX_TOKENS, a character outside the
    vocabulary, a temperature without a seed or outside TEMPERATURE_MIN .. TEMPERATURE_MAX
    (:func:`check_temperature`); the checkpoint loaders' errors
    for a bad checkpoint; BackendError (one sentence) from the board backend.
    """
    if backend not in BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    if not prompt:
        raise InputError("the prompt is empty; give at least one character")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1 or n > MAX_TOKENS:
        from ternac.cliargs import range_message
        raise InputError(range_message("--tokens", n, 1, MAX_TOKENS))
    if len(prompt) > MAX_PROMPT:
        raise InputError(f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT} "
                         f"are accepted")
    check_link_baud(backend, baud)
    if backend == "board":
        check_port(port)
    check_lfsr_seed(seed)
    check_prompt(checkpoint, prompt)
    if temperature is not None and seed is None:
        raise InputError("--temperature applies to sampling; give --seed too")
    temperature = check_temperature(temperature)
    sample = seed is not None
    import sys
    t_load = time.perf_counter()
    # On a terminal the load stage shows as it begins (torch, the checkpoint and its
    # calibration, the lowering: seconds), its line completed after; elsewhere (a log, a
    # test) only the completed line, so a bad checkpoint is the error's one sentence alone.
    live = progress and sys.stderr.isatty()
    ckpt_name = checkpoint or "the committed checkpoint"
    if live:
        print(f"[load] {ckpt_name} ...", end="", file=sys.stderr, flush=True)
    try:
        intlm, cm = load_lm(checkpoint, seed, temperature, text=text)
        vocab = intlm.vocab
        try:
            ids = [int(t) for t in vocab.encode(prompt).tolist()]
        except (KeyError, ValueError) as exc:
            raise InputError(f"the prompt holds a character the model has no token for "
                             f"({exc})") from None
    except BaseException:
        if live:
            print(file=sys.stderr, flush=True)
        raise
    say = _stage_printer(progress)
    steps = len(ids) + n - 1
    say(("\r" if live else "") + f"[load] {ckpt_name}: {int(intlm.config.n_ternary):,} trits, "
        f"lowered to {len(cm.program)} instructions for {cm.cfg.lanes} lanes "
        f"({time.perf_counter() - t_load:.1f} s)")
    emit = None
    if on_token is not None:
        def emit(tok: int) -> None:
            on_token(int(tok), vocab.decode([int(tok)]))

    # Golden logits of every step (raw int32 greedy, int16 sampling), compared element by
    # element with the backend's.
    golden_logits: list = []

    def run_golden(on_new=None, bar=None):
        # bar: (steps, label) of a progress bar shown for a long prompt.
        out = golden_logits
        if bar and progress and len(ids) >= PROMPT_BAR_MIN:
            out = _PromptBar(*bar)
        try:
            return intlm.generate(ids, n, greedy=not sample, seed=seed,
                                  temperature=temperature, logits_out=out, on_token=on_new)
        finally:
            if out is not golden_logits:
                out.close()
                golden_logits[:] = out

    cycles = None
    logit_mismatches = None
    what = (f"{steps} steps ({len(ids)} prompt tokens in, {n} generated out; a step feeds one "
            f"token and yields the next)")
    t1 = time.perf_counter()
    if backend == "golden":
        say(f"[run] the integer golden model: {what} ...")
        new = golden_new = run_golden(emit, bar=(len(ids) - 1, "[run] prompt"))
        t_golden, t_backend = time.perf_counter() - t1, 0.0
    else:
        if backend == "interp":
            say(f"[run] the ISA interpreter on the lowered program: {what} ...")
        elif backend == "verilator":
            say("[build] the accelerator's Verilog, then its Verilator build (the first time "
                "about 1-3 minutes on 2 cores; cached after, by a hash of the Verilog) ...")
        logits, new, cycles = _lm_backend(backend, cm, ids, n, build_dir=build_dir,
                                          progress=progress, port=port, board=board,
                                          on_token=emit, baud=baud)
        t_backend = time.perf_counter() - t1
        say(f"[check] the integer golden model, the same {steps} steps ...")
        golden_new = run_golden(bar=(steps, "[check] golden"))
        logit_mismatches = sum(1 for a, b in zip(logits, golden_logits) if a != b)
        logit_mismatches += abs(len(logits) - len(golden_logits))
        t_golden = 0.0
    report = {
        "model": "shakespeare",
        "backend": backend,
        "sampler": "lfsr" if sample else "greedy",
        "seed": seed,
        "temperature": temperature if sample else None,
        "compared_logits": ("int16 lm_head logits (MATVEC WIDE, scratch)" if sample
                            else "raw int32 lm_head accumulators (MATVEC RAW, out)"),
        "prompt": prompt,
        "tokens": n,
        "text": vocab.decode(new),
        "token_ids": new,
        "golden_text": vocab.decode(golden_new),
        "matches_golden": new == golden_new,
        "compared": backend != "golden",
        "logit_mismatches": logit_mismatches,
        "steps": len(ids) + n - 1,
        "cycles_per_token": (sum(cycles) / len(cycles)) if cycles else None,
        "cycles_min": min(cycles) if cycles else None,
        "cycles_max": max(cycles) if cycles else None,
        "lanes": cm.cfg.lanes,
        "ternary_weights": int(intlm.config.n_ternary),
        "wall_seconds": round(t_backend + t_golden, 3),
    }
    if cycles:
        report["spram_bound_cycles"] = report["ternary_weights"] / 32
        report["fraction_of_spram_bound"] = report["spram_bound_cycles"] / report["cycles_per_token"]
    kinds = {"text": "measured", "matches_golden": "measured", "logit_mismatches": "measured",
             "cycles_per_token": "measured", "cycles_min": "measured", "cycles_max": "measured",
             "ternary_weights": "measured", "wall_seconds": "measured",
             "spram_bound_cycles": "derived", "fraction_of_spram_bound": "derived"}
    report["kinds"] = {k: v for k, v in kinds.items() if report.get(k) is not None}
    return report


class _PromptBar(list):
    """The ``logits_out`` list of IntLM.generate that also advances a tqdm bar (stderr)
    over the prompt's ``total`` steps, closed when the prompt is fed (the tokens then
    stream on stdout)."""

    def __init__(self, total: int, desc: str):
        super().__init__()
        from tqdm import tqdm
        self.total = total
        # At most a redraw a second on a terminal; in a log, TQDM_MININTERVAL (ternac.cli).
        self.bar = tqdm(total=total, desc=desc, unit="step", leave=False,
                        mininterval=float(os.environ.get("TQDM_MININTERVAL", 1.0)))

    def append(self, item) -> None:
        super().append(item)
        if self.bar is not None:
            self.bar.update(1)
            if len(self) >= self.total:
                self.close()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _stage_printer(progress: bool):
    """A function printing one stage line on stderr (flushed), or doing nothing."""
    import sys

    def say(msg: str) -> None:
        if progress:
            print(msg, file=sys.stderr, flush=True)
    return say


def _lm_backend(backend, cm, ids, n, *, build_dir, progress, port, board, on_token=None,
                baud=None):
    """The lowered LM on ``backend`` (not golden) for ``len(ids) + n - 1`` steps, each
    result fed back after the prompt: (logits a step, the new token ids, cycles a step or
    None). ``on_token(id)`` is called with each new id as it comes (interp, verilator)."""
    if backend == "interp":
        from ternac.lower import run_tokens
        toks, logits = list(ids), []
        scratch = None
        bar = None
        if progress and len(ids) >= PROMPT_BAR_MIN:
            bar = _PromptBar(len(ids) - 1, "[run] prompt")
        for k in range(len(ids) + n - 1):
            (lg, nxt, scratch), = list(run_tokens(cm, [toks[k]], scratch))
            logits.append([int(v) for v in lg.tolist()])
            if bar is not None and k < len(ids) - 1:
                bar.append(None)
            if k + 1 >= len(toks):
                toks.append(nxt)
                if on_token is not None:
                    on_token(nxt)
        return logits, toks[len(ids):], None
    if backend in ("cosim", "board"):
        # Through the (simulated) board's UART, by the host driver (ternac.session).
        if backend == "cosim":
            from ternac.sim.board_cosim import run_lm_cosim
            res = run_lm_cosim(cm, ids, n, board=board, build_dir=build_dir, progress=progress)
        else:
            from ternac.session import run_lm_on_board
            res = run_lm_on_board(cm, ids, n, port=port, board=board, baud=_link_baud(baud),
                                  progress=progress)
        return res["logits"], res["tokens"][len(ids):], res["cycles"]
    from ternac.sim.accel import run_lm
    res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants,
                 cm.token_addr, ids, n, logits_addr=cm.logits_addr,
                 n_logits=cm.n_logits, logits_in_scratch=cm.logits_in_scratch,
                 build_dir=build_dir, progress=progress,
                 on_step=None if on_token is None else
                 (lambda rec: on_token(rec["result"]) if rec["step"] + 1 >= len(ids) else None))
    return res["logits"], res["tokens"][len(ids):], res["cycles"]


def model_inputs(model: str, checkpoint, text=None, image=None) -> list[tuple[str, str]]:
    """The files a command on ``model`` reads, as ``(what, path)`` for
    :func:`ternac.errors.check_distinct`: the checkpoint (the shipped one when None), the
    weight image, the LM's corpus (the default one when None)."""
    folder = os.path.dirname(default_checkpoint())
    default = {"digits": default_checkpoint(),
               "vit-digits": os.path.join(folder, "vit_digits.safetensors"),
               "shakespeare": os.path.join(folder, "shakespeare.safetensors")}[model]
    ins = [("checkpoint", checkpoint or default), ("weight image", image)]
    if model == "shakespeare":
        from ternac.golden.shakespeare_data import DEFAULT_TEXT
        ins.append(("corpus", text or str(DEFAULT_TEXT)))
    return ins
