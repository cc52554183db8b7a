"""The language-model commands of the ``ternac`` CLI.

    ternac generate --prompt "ROMEO:" --tokens 64
                    --backend {golden,interp,verilator,cosim,board} [--port P] [--board B]
                    [--seed S [--temperature T]] [--checkpoint PATH] [--json FILE]
    ternac train shakespeare [--text PATH] [--steps N] [--device cpu|cuda] [--out PATH]

``generate`` prints the text and, for the RTL, the cycles per token; every backend is
compared token for token (and, for interp and verilator, logit for logit) with the integer
golden model (golden.lm_int.IntLM), and any difference is exit code 1. Without ``--seed``
decoding is greedy (ARGMAX of the raw int32 logits, which are compared); with ``--seed S``
the next token is drawn by the LFSR sampler (golden/sampler.py) from the Shiftmax of the
int16 logits at temperature T (the sampling program of ternac.compile_lm; the int16
logits are compared). Bad input (an empty
prompt, a character outside the model's vocabulary, a missing or corrupt checkpoint) is one
sentence and exit code 2.
"""
from __future__ import annotations

import os
import sys
import time

from ternac.errors import InputError

__all__ = ["add_lm_parsers", "generate_main", "generate"]

#: cosim: the simulated board core driven through its UART by the host driver; board: a
#: real board on --port, the same driver over pyserial (ternac.boards_cli.lm_session).
#: Bounds on one generate call (each token is a program run; the RTL does ~1k a minute).
MAX_TOKENS = 10_000
MAX_PROMPT = 10_000

LM_BACKENDS = ("golden", "interp", "verilator", "cosim", "board")


def add_lm_parsers(sub) -> None:
    """Add ``generate`` to an argparse subparsers object."""
    p = sub.add_parser("generate", help="generate text with the ternary MatMul-free LM")
    p.add_argument("--prompt", default="ROMEO:", help="prompt text (default ROMEO:)")
    p.add_argument("--tokens", type=int, default=64, help="characters to generate (default 64)")
    p.add_argument("--backend", choices=LM_BACKENDS, default="golden")
    p.add_argument("--seed", type=int, default=None,
                   help="sample with the LFSR sampler from this seed (default: greedy)")
    p.add_argument("--temperature", type=float, default=None,
                   help="sampling temperature, > 0 (default 1.0; needs --seed)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint (default checkpoints/shakespeare.safetensors)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")
    p.add_argument("--build-dir", default=None, help="root of the Verilator builds")
    p.add_argument("--port", default=None,
                   help="serial port of the board (backend board), e.g. /dev/ttyUSB1")
    p.add_argument("--board", choices=("icebreaker", "ulx3s"), default="icebreaker",
                   help="board of the cosim and board backends (default icebreaker)")
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=generate_main)


def _load(checkpoint, seed=None, temperature=1.0):
    from ternac.golden.lm_int import IntLM
    from ternac.compile_lm import LM_CONFIG, LM_SAMPLE_CONFIG, compile_lm
    if checkpoint is not None and not os.path.isfile(checkpoint):
        raise InputError(f"the checkpoint {checkpoint} does not exist or is not a file")
    try:
        intlm = IntLM.from_checkpoint(checkpoint)
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
             board: str = "icebreaker") -> dict:
    """Generate ``n`` characters after ``prompt`` on ``backend``; returns the JSON report.

    ``seed`` None decodes greedily; an int samples (LFSR seeded with it) at ``temperature``
    (default 1.0).

    Raises
    ------
    InputError for an empty prompt, n < 1, a character outside the vocabulary, a
    temperature without a seed or not positive and finite; the checkpoint loaders' errors
    for a bad checkpoint.
    """
    import math
    if backend not in LM_BACKENDS:
        raise InputError(f"unknown backend {backend!r}; choose one of {', '.join(LM_BACKENDS)}")
    if not prompt:
        raise InputError("the prompt is empty; give at least one character")
    if n < 1 or n > MAX_TOKENS:
        raise InputError(f"--tokens must be from 1 to {MAX_TOKENS}, not {n}")
    if len(prompt) > MAX_PROMPT:
        raise InputError(f"the prompt has {len(prompt)} characters; at most {MAX_PROMPT} "
                         f"are accepted")
    if backend == "board" and not port:
        raise InputError("the board backend needs --port (the board's serial port, "
                         "e.g. /dev/ttyUSB1)")
    if temperature is not None and seed is None:
        raise InputError("--temperature applies to sampling; give --seed too")
    if temperature is None:
        temperature = 1.0
    if not (temperature > 0 and math.isfinite(temperature)):
        raise InputError(f"--temperature must be positive and finite, not {temperature}")
    sample = seed is not None
    intlm, cm = _load(checkpoint, seed, temperature)
    vocab = intlm.vocab
    try:
        ids = [int(t) for t in vocab.encode(prompt).tolist()]
    except (KeyError, ValueError) as exc:
        raise InputError(f"the prompt holds a character the model has no token for ({exc})") from None

    t0 = time.perf_counter()
    # Golden logits of every step (raw int32 greedy, int16 sampling), compared element by
    # element with the backend's.
    golden_logits: list = []
    golden_new = intlm.generate(ids, n, greedy=not sample, seed=seed, temperature=temperature,
                                logits_out=golden_logits)
    t_golden = time.perf_counter() - t0
    cycles = None
    logit_mismatches = None
    t1 = time.perf_counter()
    if backend == "golden":
        new = golden_new
    elif backend in ("interp", "verilator", "cosim", "board"):
        if backend == "interp":
            from ternac.compile_lm import run_tokens
            toks, logits = list(ids), []
            scratch = None
            steps = len(ids) + n - 1
            for k in range(steps):
                (lg, nxt, scratch), = list(run_tokens(cm, [toks[k]], scratch))
                logits.append([int(v) for v in lg.tolist()])
                if k + 1 >= len(toks):
                    toks.append(nxt)
            new = toks[len(ids):]
        elif backend in ("cosim", "board"):
            # Through the (simulated) board's UART, by the host driver (ternac.hostdriver).
            from ternac.session import run_lm_on_board
            from ternac.sim.board_cosim import run_lm_cosim
            res = (run_lm_cosim(cm, ids, n, board=board, build_dir=build_dir, progress=progress)
                   if backend == "cosim" else
                   run_lm_on_board(cm, ids, n, port=port, board=board, progress=progress))
            logits, new, cycles = res["logits"], res["tokens"][len(ids):], res["cycles"]
        else:
            from ternac.sim.accel import run_lm
            res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants,
                         cm.token_addr, ids, n, logits_addr=cm.logits_addr,
                         n_logits=cm.n_logits, logits_in_scratch=cm.logits_in_scratch,
                         build_dir=build_dir, progress=progress)
            logits = res["logits"]
            new = res["tokens"][len(ids):]
            cycles = res["cycles"]
        logit_mismatches = sum(1 for a, b in zip(logits, golden_logits) if a != b)
        logit_mismatches += abs(len(logits) - len(golden_logits))
    t_backend = time.perf_counter() - t1
    text = vocab.decode(new)
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
        "text": text,
        "token_ids": new,
        "golden_text": vocab.decode(golden_new),
        "matches_golden": new == golden_new,
        "logit_mismatches": logit_mismatches,
        "steps": len(ids) + n - 1,
        "cycles_per_token": (sum(cycles) / len(cycles)) if cycles else None,
        "cycles_min": min(cycles) if cycles else None,
        "cycles_max": max(cycles) if cycles else None,
        "lanes": cm.cfg.lanes,
        "ternary_weights": int(intlm.config.n_ternary),
        "wall_seconds": round(t_backend + (t_golden if backend == "golden" else 0), 3),
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


def generate_main(args) -> int:
    from ternac.errors import check_output_file
    check_output_file(args.json, "JSON output", make_folder=True)
    r = generate(args.prompt, args.tokens, args.backend, args.checkpoint,
                 getattr(args, "build_dir", None), progress=not args.quiet,
                 seed=getattr(args, "seed", None), temperature=getattr(args, "temperature", None),
                 port=getattr(args, "port", None), board=getattr(args, "board", "icebreaker"))
    print(f"{r['prompt']}{r['text']}")
    how = ("greedy" if r["sampler"] == "greedy" else
           f"sampled (LFSR seed {r['seed']}, temperature {r['temperature']:g})")
    print(f"-- backend {r['backend']}: {r['tokens']} tokens {how}, "
          f"{'equal to' if r['matches_golden'] else 'DIFFERENT from'} the integer golden model"
          + (f", {r['logit_mismatches']} of {r['steps']} steps with a logit mismatch"
             if r["logit_mismatches"] is not None else ""))
    if r["cycles_per_token"] is not None:
        print(f"-- {r['cycles_per_token']:.0f} cycles per token (measured, RTL counter); "
              f"SPRAM bound {r['spram_bound_cycles']:.0f} cycles "
              f"({r['fraction_of_spram_bound']:.2f} of it, derived)")
    if args.json:
        from ternac.errors import write_json
        write_json(args.json, r)
        print(f"-- wrote {args.json}")
    if not r["matches_golden"] or r["logit_mismatches"]:
        print("ternac: the backend disagrees with the integer golden model", file=sys.stderr)
        return 1
    return 0
