"""The board commands of the ``ternac`` CLI: build, program, and running on a board.

The CLI (``ternac/cli.py``) wires these with ``add_build_parser(sub)`` and
``add_program_parser(sub)``; each ``*_main(args)`` takes the argparse namespace and returns
the exit code:

    ternac build --board {icebreaker,ulx3s} [--model digits] [--lanes L] [--freq MHZ]
                 [--baud B] [--checkpoint PATH] [--build-dir DIR] [--json FILE]
    ternac build unit NAME [--device {up5k,ecp5-85}] [--lanes L] [--freq MHZ] [--json FILE]
    ternac program --board {icebreaker,ulx3s} [--bitstream PATH] [--lanes L] [--flash]
                   [--dry-run]

Exit codes: 0 success; 1 the build ran but missed timing (the report is still written,
``timing_met: false``) or a tool failed; 2 a user error (bad argument, a model or lane
count that does not fit the device, no bitstream, no programmer, missing system libraries,
no board on USB). Errors are one sentence ``ternac: error: ...`` with no traceback.

``run_digits_on_board`` / ``run_digits_cosim`` serve ``ternac run digits --backend
{board,cosim}``; ``run_lm_on_board`` / ``run_lm_cosim`` serve ``ternac generate --backend
{board,cosim}``. The language-model session (identify, weights, program, scratch constants,
then token by token) is written once, :func:`lm_session`, and run over a real board's
serial port here or over the simulated UART inside the cocotb bench
(``sim/board_cosim.py``), by the same :class:`ternac.hostdriver.HostDriver`.
"""
from __future__ import annotations

import os
import sys

__all__ = ["add_build_parser", "add_program_parser", "build_main", "program_main",
           "run_digits_on_board", "run_digits_cosim", "run_lm_on_board", "run_lm_cosim",
           "lm_session", "lm_session_inputs", "drive_sync", "drive_async", "BOARD_CHOICES",
           "DEVICE_CHOICES"]

BOARD_CHOICES = ("icebreaker", "ulx3s")
DEVICE_CHOICES = ("up5k", "ecp5-85")


def add_build_parser(sub):
    """Add ``build`` (board builds and ``build unit NAME``) to an argparse subparsers object;
    sets ``func=build_main``. Returns the parser."""
    p = sub.add_parser("build", help="synthesize, place and route a board bitstream, or one "
                                     "unit out of context, with a JSON report")
    p.add_argument("target", nargs="*", metavar="unit NAME",
                   help="'unit NAME' builds one unit (engine, sequencer, top, hostlink, ...) "
                        "out of context; without it, --board builds the board bitstream")
    p.add_argument("--board", choices=BOARD_CHOICES, help="board to build the bitstream for")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="up5k",
                   help="device of a unit build (default up5k)")
    p.add_argument("--model", default="digits", choices=("digits", "shakespeare"),
                   help="model baked in (default digits; shakespeare needs --lanes 32)")
    p.add_argument("--lanes", type=int, default=8, help="lanes L (default 8)")
    p.add_argument("--freq", type=float, default=None,
                   help="clock in MHz (board default: iCEBreaker 12, ULX3S 40 from the PLL; "
                        "units: 48 on up5k, 100 on ECP5)")
    p.add_argument("--baud", type=int, default=115200, help="host-link baud rate")
    p.add_argument("--checkpoint", default=None, help="checkpoint (default: the shipped one)")
    p.add_argument("--build-dir", default=None,
                   help="build folder (default build/<board>-L<L> or build/units/...)")
    p.add_argument("--json", default=None, help="also write the JSON report here")
    p.set_defaults(func=build_main)
    return p


def add_program_parser(sub):
    """Add ``program`` to an argparse subparsers object; sets ``func=program_main``."""
    p = sub.add_parser("program", help="program a board with its bitstream")
    p.add_argument("--board", choices=BOARD_CHOICES, required=True)
    p.add_argument("--bitstream", default=None,
                   help="bitstream (default: build/<board>-L<lanes>/top.bin or top.bit)")
    p.add_argument("--lanes", type=int, default=8, help="lanes of the default bitstream")
    p.add_argument("--flash", action="store_true",
                   help="ULX3S: write the SPI flash instead of SRAM (iCEBreaker: always flash)")
    p.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    p.set_defaults(func=program_main)
    return p


def _error(msg: str, code: int = 2) -> int:
    print(f"ternac: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def _write_json(path, obj) -> None:
    from ternac.errors import write_json
    write_json(path, obj)


def _compile(model: str, lanes: int, checkpoint: str | None):
    from ternac.compiler import compile_checkpoint
    from ternac.config import AccelConfig
    if model == "shakespeare":
        # The flagship LM: its own configuration (32 lanes, vector units), whatever --lanes.
        from ternac.golden.lm_int import IntLM
        from ternac.compile_lm import LM_CONFIG, compile_lm
        if lanes != LM_CONFIG.lanes:
            raise ValueError(f"the shakespeare model is compiled for {LM_CONFIG.lanes} lanes, "
                             f"not {lanes}; pass --lanes {LM_CONFIG.lanes}")
        return compile_lm(IntLM.from_checkpoint(checkpoint), LM_CONFIG)
    if model != "digits":
        raise ValueError(f"unknown model {model!r}; the boards build: digits, shakespeare")
    if checkpoint is None:
        from ternac.golden.mlp import DEFAULT_CHECKPOINT
        checkpoint = DEFAULT_CHECKPOINT
    return compile_checkpoint(checkpoint, AccelConfig(lanes=lanes))


def build_main(args) -> int:
    """``ternac build --board B`` or ``ternac build unit NAME`` (``args.target == ["unit",
    NAME]``).

    Reads ``args``: target, board, model, lanes, freq, baud, checkpoint, build_dir, json,
    device. Prints progress on stderr and the report's headline on stdout.
    """
    from ternac.boards.build import BuildError, FitError, TimingError, build_board, build_unit
    from ternac.errors import USER_ERRORS, one_line
    from ternac.errors import check_output_file
    try:
        check_output_file(getattr(args, "json", None), "JSON output", make_folder=True)
    except ValueError as e:
        return _error(e)
    target = list(getattr(args, "target", None) or [])
    name = getattr(args, "name", None)
    if target:
        if len(target) != 2 or target[0] != "unit":
            return _error(f"`ternac build {' '.join(target)}` is not a build target; use "
                          f"`ternac build --board B` or `ternac build unit NAME`")
        name = target[1]
    try:
        if name:
            from ternac.config import AccelConfig
            cfg = AccelConfig(lanes=args.lanes)
            report = build_unit(name, cfg, device=getattr(args, "device", "up5k"),
                                freq_mhz=args.freq, build_dir=args.build_dir)
        else:
            if not getattr(args, "board", None):
                return _error("say which board to build for: --board icebreaker or --board ulx3s")
            model = getattr(args, "model", "digits")
            compiled = _compile(model, args.lanes, getattr(args, "checkpoint", None))
            build_dir = args.build_dir
            if build_dir is None and model != "digits":
                build_dir = os.path.join("build", f"{args.board}-{model}")
            report = build_board(args.board, compiled.cfg, compiled.program_words,
                                 compiled.weight_words, freq_mhz=args.freq,
                                 baud=getattr(args, "baud", 115200), build_dir=build_dir,
                                 extra={"model": getattr(args, "model", "digits")})
    except TimingError as e:
        if getattr(args, "json", None):
            _write_json(args.json, e.report)
        return _error(e, 1)
    except FitError as e:
        return _error(e, 2)
    except BuildError as e:
        return _error(e, 1)
    except (ValueError, *USER_ERRORS) as e:
        return _error(one_line(e))
    if getattr(args, "json", None):
        _write_json(args.json, report)
    res = report["resources"]
    what = report.get("board") or f"unit {report.get('unit')}"
    print(f"{what}: LUT {res['LUT']['used']}/{res['LUT']['available']}  FF {res['FF']['used']}  "
          f"EBR {res['EBR']['used']}/{res['EBR']['available']}  "
          f"SPRAM {res.get('SPRAM', {}).get('used', 0)}  DSP {res['DSP']['used']}/"
          f"{res['DSP']['available']}  Fmax {report['fmax_MHz_achieved']} MHz "
          f"(constrained {report['clock_MHz_constrained']:g})  "
          f"{report['wall_time_s']['total_s']:.0f} s")
    if "bitstream" in report:
        print(f"bitstream: {report['bitstream']}")
    return 0


def program_main(args) -> int:
    """``ternac program --board B [--bitstream P] [--flash] [--dry-run]``."""
    from ternac.boards.program import ProgramError, program
    try:
        program(args.board, getattr(args, "bitstream", None),
                dry_run=getattr(args, "dry_run", False), flash=getattr(args, "flash", False),
                lanes=getattr(args, "lanes", 8))
    except ProgramError as e:
        return _error(e)
    return 0


def run_digits_on_board(compiled, inputs, *, port: str, board: str = "icebreaker",
                        baud: int = 115200, progress: bool = True):
    """``ternac run digits --backend board --port P``: the compiled model on a real board.

    Checks the board's configuration hash, loads weights (SPRAM boards) and the program,
    then for each input writes it, RUNs and reads the logits.

    Returns
    -------
    (logits, results, cycles): lists per input, as the verilator backend.

    Raises
    ------
    ternac.errors.BackendError (one sentence) if the port cannot be opened, the board runs
    another bitstream, or the link fails.
    """
    from ternac.boards.core import board_config_hash
    from ternac.errors import BackendError
    from ternac.hostdriver import HostDriver, LinkError, SerialTransport
    try:
        drv = HostDriver(SerialTransport(port, baud), cfg=compiled.cfg)
        drv.check_identity(board_config_hash(compiled.cfg, compiled.program_words, board))
        if board == "icebreaker":
            if progress:
                print(f"[board] loading {len(compiled.weight_words)} weight words over "
                      f"{port} ...", file=sys.stderr, flush=True)
            drv.load_weights(compiled.weight_words)
        drv.load_program(compiled.program_words)
        logits, results, cycles = [], [], []
        it = inputs
        if progress:
            from tqdm import tqdm
            it = tqdm(inputs, desc=f"{board}", unit="input", leave=False)
        for x in it:
            drv.write_scratch(compiled.input_addr, [int(v) for v in x])
            r, c = drv.run()
            logits.append(drv.read_out(compiled.logits_addr, compiled.n_logits))
            results.append(r)
            cycles.append(c)
        drv.transport.close()
    except LinkError as e:
        raise BackendError(f"the board on {port} did not answer as expected: {e}") from None
    return logits, results, cycles


def run_digits_cosim(compiled, inputs, *, board: str = "icebreaker", build_dir=None,
                     progress: bool = True):
    """``ternac run digits --backend cosim``: see :func:`sim.board_cosim.run_digits_cosim`."""
    from ternac.sim.board_cosim import run_digits_cosim as _run
    return _run(compiled, inputs, board=board, build_dir=build_dir, progress=progress)


# -- the language model over the host link ----------------------------------------------------

#: Weight words a load_weights call of the LM session (one progress line each).
LM_WEIGHT_CHUNK = 1024


def lm_session_inputs(cm, prompt_ids, n_new: int, board: str = "icebreaker") -> dict:
    """The plain (JSON-able) inputs of :func:`lm_session` for a
    :class:`ternac.compile_lm.CompiledLM` on ``board``.

    Raises
    ------
    ValueError for an unknown board or n_new < 1, or an empty prompt.
    """
    from ternac.boards.core import board_config_hash
    if board not in BOARD_CHOICES:
        raise ValueError(f"unknown board {board!r}; choose one of {', '.join(BOARD_CHOICES)}")
    if not prompt_ids or n_new < 1:
        raise ValueError(f"an LM session needs a prompt and at least one new token, not "
                         f"{len(prompt_ids)} prompt tokens and {n_new} new")
    return {
        "config_hash": board_config_hash(cm.cfg, cm.program_words, board),
        "word_bits": cm.cfg.word_bits,
        # iCEBreaker keeps the weights in SPRAM, which the bitstream cannot initialise.
        "load_weights": board == "icebreaker",
        "weights": [int(w) for w in cm.weight_words],
        "program": [int(w) for w in cm.program_words],
        "constants": [[int(a), [int(v) for v in vals]]
                      for a, vals in sorted(cm.scratch_constants.items())],
        "token_addr": int(cm.token_addr), "logits_addr": int(cm.logits_addr),
        "n_logits": int(cm.n_logits),
        # Sampling programs keep their int16 logits in scratch (CompiledLM.logits_in_scratch).
        "logits_in_scratch": bool(getattr(cm, "logits_in_scratch", False)),
        "prompt": [int(t) for t in prompt_ids], "n_new": int(n_new),
    }


def lm_session(p: dict, say=None):
    """One generation over the host link, written once for every transport: a generator
    that yields driver calls ``(method name, *args)`` of :class:`ternac.hostdriver.HostDriver`
    and receives their results (run it with :func:`drive_sync` or :func:`drive_async`).

    Steps: IDENTIFY and check the configuration hash; load the weights (SPRAM boards;
    ``LM_WEIGHT_CHUNK`` words a call, then the first words read back and compared); load
    the program; write the scratch constants (the zero state, the resident norm weights);
    then ``len(prompt) + n_new - 1`` times: write the token id, RUN, read the logits from
    OUT (from SCRATCH with ``logits_in_scratch``, the sampling programs); the RUN result (ARGMAX) is the next token, fed back after the prompt (as
    ``sim/bench_lm.py`` does over the plain host port). Finally STATUS must show no
    rejected frame and no error flag.

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
    ternac.hostdriver.LinkError if a weight reads back wrong or the link reports errors.
    """
    from ternac.hostdriver import WORD_STRIDE, LinkError, Space
    say = say or (lambda msg: None)
    yield ("check_identity", p["config_hash"])
    weights = p["weights"]
    if p["load_weights"]:
        for base in range(0, len(weights), LM_WEIGHT_CHUNK):
            yield ("load_weights", weights[base:base + LM_WEIGHT_CHUNK], base)
            say(f"weights {min(base + LM_WEIGHT_CHUNK, len(weights))}/{len(weights)} words")
        n = min(8, len(weights))
        per = -(-p["word_bits"] // 32)
        back = yield ("read_mem", Space.WEIGHTS, 0, WORD_STRIDE * n)
        for i in range(n):
            word = sum(back[WORD_STRIDE * i + s] << (32 * s) for s in range(per))
            if word != weights[i]:
                raise LinkError(f"weight word {i} read back as {word:#x}, {weights[i]:#x} "
                                f"was written")
    yield ("load_program", p["program"])
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
    st = yield ("status",)
    if st.rejected or st.flags & 0x3C:
        raise LinkError(f"the link reported errors: {st.rejected} rejected frames, "
                        f"flags {int(st.flags):#04x}")
    return {"tokens": tokens, "logits": logits, "results": results, "cycles": cycles,
            "status": {"flags": int(st.flags), "rejected": st.rejected}}


def drive_sync(drv, gen):
    """Run a session generator (:func:`lm_session`) on a driver with a synchronous
    transport; returns the generator's value."""
    value = None
    while True:
        try:
            name, *args = gen.send(value)
        except StopIteration as stop:
            return stop.value
        value = getattr(drv, name)(*args)


async def drive_async(drv, gen):
    """As :func:`drive_sync` for an asynchronous transport (inside a cocotb test)."""
    value = None
    while True:
        try:
            name, *args = gen.send(value)
        except StopIteration as stop:
            return stop.value
        value = await getattr(drv, name)(*args)


def run_lm_on_board(cm, prompt_ids, n_new: int, *, port: str, board: str = "icebreaker",
                    baud: int = 115200, progress: bool = True) -> dict:
    """``ternac generate --backend board --port P``: a compiled LM on a real board whose
    bitstream was built for ``cm`` (its configuration hash is checked first).

    Returns
    -------
    dict as :func:`lm_session` (tokens, logits, results, cycles, status).

    Raises
    ------
    ternac.errors.BackendError (one sentence) if the port cannot be opened, the board runs
    another bitstream, or the link fails.
    """
    from ternac.errors import BackendError
    from ternac.hostdriver import HostDriver, LinkError, SerialTransport
    p = lm_session_inputs(cm, prompt_ids, n_new, board)
    say = (lambda msg: print(f"[board] {msg}", file=sys.stderr, flush=True)) if progress else None
    if "://" not in port and not os.path.exists(port):
        raise BackendError(f"the serial port {port} does not exist; is the board plugged in "
                           f"and is --port right?")
    try:
        transport = SerialTransport(port, baud)
    except LinkError as e:
        raise BackendError(str(e)) from None
    try:
        drv = HostDriver(transport, cfg=cm.cfg)
        return drive_sync(drv, lm_session(p, say))
    except LinkError as e:
        raise BackendError(f"the board on {port} did not answer as expected: {e}") from None
    finally:
        transport.close()


def run_lm_cosim(cm, prompt_ids, n_new: int, *, board: str = "icebreaker", build_dir=None,
                 progress: bool = True) -> dict:
    """``ternac generate --backend cosim``: see :func:`sim.board_cosim.run_lm_cosim`."""
    from ternac.sim.board_cosim import run_lm_cosim as _run
    return _run(cm, prompt_ids, n_new, board=board, build_dir=build_dir, progress=progress)
