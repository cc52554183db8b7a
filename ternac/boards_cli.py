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

Running a model on a board (``--backend board``) or on its co-simulation (``--backend
cosim``) is not here: the sessions over the host link are :mod:`ternac.session`, the
co-simulation :mod:`ternac.sim.board_cosim`, and the backend dispatch :mod:`ternac.runner`.
"""
from __future__ import annotations

import os
import sys

__all__ = ["add_build_parser", "add_program_parser", "build_main", "program_main",
           "BOARD_CHOICES", "DEVICE_CHOICES"]

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
