"""The language-model commands of the ``ternac`` CLI.

    ternac generate --prompt "ROMEO:" --tokens 64
                    --backend {golden,interp,verilator,cosim,board} [--port P] [--baud B]
                    [--board B]
                    [--seed S [--temperature T]] [--checkpoint PATH] [--text PATH]
                    [--json FILE]
    ternac train shakespeare [--text PATH] [--steps N] [--device cpu|cuda] [--out PATH]

``generate`` prints the prompt and then each character as the backend produces it (golden,
interp, verilator; cosim and board print the text when done), each stage of the run as a
line on stderr (``[load]``, ``[build]``, ``[run]``, ``[check]``; not with ``--quiet``), and,
for the RTL, the cycles per token; every backend is
compared token for token (and, for interp and verilator, logit for logit) with the integer
golden model (golden.lm_int.IntLM), and any difference is exit code 1. Without ``--seed``
decoding is greedy (ARGMAX of the raw int32 logits, which are compared); with ``--seed S``
the next token is drawn by the LFSR sampler (golden/sampler.py) from the Shiftmax of the
int16 logits at temperature T (the sampling program of ternac.lower; the int16
logits are compared). Bad input (an empty
prompt, a character outside the model's vocabulary, a missing or corrupt checkpoint) is one
sentence and exit code 2.
"""
from __future__ import annotations

import sys

from ternac.cliargs import number, whole
from ternac.runner import BACKENDS as LM_BACKENDS
from ternac.runner import (MAX_TOKENS, SEED_MAX, SEED_MIN, SEED_WHY, TEMPERATURE_MAX,
                           TEMPERATURE_MIN, TEMPERATURE_WHY, generate)

__all__ = ["add_lm_parsers", "add_board_args", "generate_main", "generate", "TokenPrinter"]

# The backends (cosim: the simulated board core driven through its UART by the host driver;
# board: a real board on --port, the same driver over pyserial, ternac.session), the
# dispatch and the report: ternac.runner.generate.


def add_lm_parsers(sub) -> None:
    """Add ``generate`` to an argparse subparsers object."""
    p = sub.add_parser("generate", help="generate text with the ternary MatMul-free LM")
    p.add_argument("--prompt", default="ROMEO:", help="prompt text (default ROMEO:)")
    p.add_argument("--tokens", type=whole("--tokens", 1, MAX_TOKENS), default=64,
                   help=f"characters to generate, 1 to {MAX_TOKENS} (default 64)")
    p.add_argument("--backend", choices=LM_BACKENDS, default="golden")
    p.add_argument("--seed", type=whole("--seed", SEED_MIN, SEED_MAX, why=SEED_WHY),
                   default=None, help="sample with the LFSR sampler from this seed, 1 to "
                                      "2^32 - 1 (default: greedy)")
    p.add_argument("--temperature", default=None,
                   type=number("--temperature", TEMPERATURE_MIN, TEMPERATURE_MAX,
                               why=TEMPERATURE_WHY),
                   help=f"sampling temperature, {TEMPERATURE_MIN:g} to {TEMPERATURE_MAX:g} "
                        f"(default 1.0; needs --seed)")
    p.add_argument("--checkpoint", default=None,
                   help="checkpoint (default checkpoints/shakespeare.safetensors)")
    p.add_argument("--text", default=None, metavar="PATH",
                   help="the corpus the integer model is calibrated on (default "
                        "../shared/data/tinyshakespeare.txt; must be the one the checkpoint "
                        "was trained on: its sha256 is checked)")
    p.add_argument("--json", default=None, metavar="FILE", help="write the report as JSON")
    p.add_argument("--build-dir", default=None, help="root of the Verilator builds")
    add_board_args(p)
    p.add_argument("--quiet", action="store_true", help="no progress output")
    p.set_defaults(func=generate_main)


def add_board_args(p) -> None:
    """``--port``, ``--baud`` and ``--board``, where the cosim and board backends run
    (``ternac run`` and ``ternac generate``); the boards are those of ternac.boards.facts,
    ``--baud`` takes what ``ternac build --baud`` takes (ternac.cliargs.baud)."""
    from ternac.boards.facts import BOARDS, DEFAULT_BAUD
    from ternac.cliargs import BAUD_MAX, BAUD_MIN
    from ternac.cliargs import baud as baud_type
    p.add_argument("--port", default=None,
                   help="serial port of the board (backend board), e.g. /dev/ttyUSB1")
    p.add_argument("--baud", type=baud_type, default=None,
                   help=f"backend board: the host link's baud rate, {BAUD_MIN} to {BAUD_MAX}, "
                        f"the one the bitstream was built with (ternac build --baud; default "
                        f"{DEFAULT_BAUD}); the cosim backend's UART runs at a fixed clock / 4")
    p.add_argument("--board", choices=tuple(BOARDS), default="icebreaker",
                   help="board of the cosim and board backends (default icebreaker)")


class TokenPrinter:
    """Prints the prompt, then each generated character as it arrives (stdout, flushed),
    then the end of the line after the last of ``n``: the ``on_token`` of
    :func:`ternac.runner.generate`. ``text`` is what was printed after the prompt;
    :meth:`finish` ends the line if a run stopped early, and returns whether anything
    was printed. Thread-safe (the verilator backend calls it from a watcher thread)."""

    def __init__(self, prompt: str, n: int, out=None):
        import threading
        self.prompt, self.n, self.out = prompt, n, out
        self.text, self.count, self.open = "", 0, False
        self.lock = threading.Lock()

    def __call__(self, token_id: int, char: str) -> None:
        out = self.out or sys.stdout
        with self.lock:
            if self.count == 0:
                out.write(self.prompt)
                self.open = True
            out.write(char)
            self.text += char
            self.count += 1
            if self.count == self.n:
                out.write("\n")
                self.open = False
            out.flush()

    def finish(self) -> bool:
        with self.lock:
            if self.open:
                (self.out or sys.stdout).write("\n")
                (self.out or sys.stdout).flush()
                self.open = False
            return self.count > 0


def generate_main(args) -> int:
    from ternac.errors import check_distinct, check_output_file
    check_output_file(args.json, "JSON output", make_folder=True)
    from ternac.runner import model_inputs as _model_inputs
    check_distinct([("JSON output", args.json)],
                   _model_inputs("shakespeare", args.checkpoint,
                                 text=getattr(args, "text", None)))
    stream = TokenPrinter(args.prompt, args.tokens)
    try:
        r = generate(args.prompt, args.tokens, args.backend, args.checkpoint,
                     getattr(args, "build_dir", None), progress=not args.quiet,
                     seed=getattr(args, "seed", None),
                     temperature=getattr(args, "temperature", None),
                     port=getattr(args, "port", None),
                     board=getattr(args, "board", "icebreaker"), on_token=stream,
                     text=getattr(args, "text", None), baud=getattr(args, "baud", None))
    finally:
        streamed = stream.finish()
    if not streamed:                # cosim and board: the text comes with the report
        print(f"{r['prompt']}{r['text']}")
    elif stream.text != r["text"]:  # cannot happen: the stream is the report's tokens
        print(f"ternac: the streamed text differs from the report's: {r['text']!r}",
              file=sys.stderr)
        return 1
    how = ("greedy" if r["sampler"] == "greedy" else
           f"sampled (LFSR seed {r['seed']}, temperature {r['temperature']:g})")
    if not r.get("compared", True):
        verdict = "the integer golden model itself (no other model ran to compare with)"
    else:
        verdict = (f"{'equal to' if r['matches_golden'] else 'DIFFERENT from'} the integer "
                   f"golden model")
    print(f"-- backend {r['backend']}: {r['tokens']} tokens {how}, {verdict}"
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
        what = [f"{r['logit_mismatches']} of {r['steps']} steps with a logit mismatch"
                if r["logit_mismatches"] else None,
                None if r["matches_golden"] else "another text"]
        print(f"ternac: the {r['backend']} backend running the lowered program disagrees with "
              f"the integer golden model of the checkpoint ("
              + ", ".join(w for w in what if w) + ")", file=sys.stderr)
        return 1
    return 0
