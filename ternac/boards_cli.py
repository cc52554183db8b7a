"""The board commands of the ``ternac`` CLI: build, program, and running on a board.

The CLI (``ternac/cli.py``) wires these with ``add_build_parser(sub)`` and
``add_program_parser(sub)``; each ``*_main(args)`` takes the argparse namespace and returns
the exit code:

    ternac build --board {icebreaker,ulx3s} [--model digits] [--lanes L] [--freq MHZ]
                 [--baud B] [--checkpoint PATH] [--build-dir DIR] [--json FILE]
                 [--no-fit-check]
    ternac build unit NAME [--device {up5k,ecp5-85}] [--lanes L] [--model M] [--freq MHZ]
                 [--json FILE]
    ternac program --board {icebreaker,ulx3s} [--bitstream PATH] [--lanes L] [--flash]
                   [--dry-run]

Exit codes: 0 success; 1 the build ran but missed timing (the report is still written,
``timing_met: false``) or a tool failed; 2 a user error (bad argument, a model or lane
count that does not fit the device, no bitstream, no programmer, missing system libraries,
no board on USB). A board build whose resource estimate (``boards/resources.py``) cannot
fit the device is refused before synthesis, with exit 2. Errors are one sentence
``ternac: error: ...`` with no traceback.

Running a model on a board (``--backend board``) or on its co-simulation (``--backend
cosim``) is not here: the sessions over the host link are :mod:`ternac.session`, the
co-simulation :mod:`ternac.sim.board_cosim`, and the backend dispatch :mod:`ternac.runner`.
"""
from __future__ import annotations

import os
import sys

__all__ = ["add_build_parser", "add_program_parser", "build_main", "program_main",
           "BOARD_CHOICES", "DEVICE_CHOICES"]

from ternac.boards import facts as _facts
from ternac.cliargs import BAUD_MAX, BAUD_MIN, check_baud, number, whole
from ternac.cliargs import baud as _baud
from ternac.cliargs import lanes as _lanes


def _freq(text: str) -> float:
    """``--freq``: a clock in MHz from boards.build's MIN_FREQ_MHZ to MAX_FREQ_MHZ (the
    message is check_freq's; boards.build, with Amaranth, is loaded only when given)."""
    from ternac.boards.build import MAX_FREQ_MHZ, MIN_FREQ_MHZ
    return number("--freq", MIN_FREQ_MHZ, MAX_FREQ_MHZ, noun="a clock in MHz")(text)


def _pnr_seed(text: str) -> int:
    """``--pnr-seed``: 1 to boards.build's PNR_SEED_MAX (check_pnr_seed's message)."""
    from ternac.boards.build import PNR_SEED_MAX
    return whole("--pnr-seed", 1, PNR_SEED_MAX)(text)

#: From boards/facts.py (the one board table).
BOARD_CHOICES = tuple(_facts.BOARDS)
DEVICE_CHOICES = tuple(_facts.DEVICES)


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
    p.add_argument("--model", default="digits", choices=("digits", "shakespeare", "vit-digits"),
                   help="model baked in, or whose configuration a unit is built with "
                        "(default digits; shakespeare needs --lanes 32; vit-digits is "
                        "compiled for 8 lanes, VIT_CONFIG)")
    p.add_argument("--lanes", type=_lanes, default=8, help="lanes L (default 8)")
    clocks = ", ".join(f"{b.name} {b.default_mhz:g}"
                       + (" from the PLL" if b.default_mhz != b.osc_mhz else "")
                       for b in _facts.BOARDS.values())
    units = ", ".join(f"{d.ooc_mhz:g} on {k}" for k, d in _facts.DEVICES.items())
    p.add_argument("--freq", type=_freq, default=None,
                   help=f"clock in MHz (board default: {clocks}; units: {units})")
    p.add_argument("--baud", type=_baud, default=None,
                   help=f"host-link baud rate of a board build, {BAUD_MIN} to {BAUD_MAX} "
                        f"(default {_facts.DEFAULT_BAUD}); the board backend of run and "
                        f"generate must be given the same")
    p.add_argument("--pnr-seed", type=_pnr_seed, default=None,
                   help="nextpnr's placement seed (default nextpnr's own); another seed is "
                        "another placement, e.g. when routing does not finish")
    p.add_argument("--no-fit-check", action="store_true",
                   help="run synthesis even when the resource estimate says the design "
                        "cannot fit the device")
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
    p.add_argument("--lanes", type=_lanes, default=8, help="lanes of the default bitstream")
    p.add_argument("--flash", action="store_true",
                   help="ULX3S: write the SPI flash instead of SRAM (iCEBreaker: always flash)")
    p.add_argument("--dry-run", action="store_true", help="print the command, run nothing")
    p.set_defaults(func=program_main)
    return p


def _fits_elsewhere(cfg, board: str) -> str:
    """``"; it fits the ULX3S's ECP5-85F (--board ulx3s) by the same estimate"``: the other
    boards whose estimate (boards.resources) takes ``cfg``, for a fit refusal's sentence;
    "" if none does."""
    from ternac.boards.facts import BOARDS, DEVICES
    from ternac.boards.resources import FitError, check_fit, estimate
    ok = []
    for key, b in BOARDS.items():
        if key == board:
            continue
        try:
            check_fit(estimate(cfg, key))
        except (FitError, ValueError, KeyError):
            continue
        ok.append(f"the {b.name}'s {DEVICES[b.device].name} (--board {key})")
    return f"; it fits {' and '.join(ok)} by the same estimate" if ok else ""


def _error(msg: str, code: int = 2) -> int:
    print(f"ternac: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def _write_json(path, obj) -> None:
    from ternac.errors import write_json
    write_json(path, obj)


def _model_config(model: str, lanes: int):
    """The AccelConfig a model is built with (known before compiling): digits
    ``AccelConfig(lanes=lanes)``, shakespeare its own (``ternac.config.LM_CONFIGS``: 32
    lanes I2, 40 lanes T3, 128 lanes for the ULX3S).
    Raises ValueError for another lane count of the LM or an unknown model."""
    from ternac.config import AccelConfig
    if model == "shakespeare":
        from ternac.config import LM_CONFIGS
        if lanes not in LM_CONFIGS:
            raise ValueError(f"the shakespeare model is compiled for "
                             f"{', '.join(map(str, LM_CONFIGS))} lanes, not {lanes}; pass "
                             f"--lanes 32 (40: T3 weights, 128: the ULX3S)")
        return LM_CONFIGS[lanes]
    if model == "vit-digits":
        from ternac.config import VIT_CONFIG
        if lanes != VIT_CONFIG.lanes:
            raise ValueError(f"the vit-digits model is compiled for {VIT_CONFIG.lanes} lanes "
                             f"(VIT_CONFIG), not {lanes}; pass --lanes {VIT_CONFIG.lanes}")
        return VIT_CONFIG
    if model != "digits":
        raise ValueError(f"unknown model {model!r}; the boards build: digits, shakespeare, "
                         f"vit-digits")
    return AccelConfig(lanes=lanes)


def _compile(model: str, lanes: int, checkpoint: str | None):
    cfg = _model_config(model, lanes)
    if model == "shakespeare":
        # The flagship LM: its own configuration (32 lanes, vector units), calibrated on
        # the corpus it was trained on (checked by its hash).
        from ternac.golden.lm_int import IntLM
        from ternac.lower import compile_lm
        from ternac.runner import check_corpus
        check_corpus(checkpoint, None)
        return compile_lm(IntLM.from_checkpoint(checkpoint), cfg)
    if model == "vit-digits":
        # The digits ViT (golden/vit.py): its graph lowered for VIT_CONFIG (REPEAT loops).
        from ternac.golden.vit import IntViT
        from ternac.lower import lower
        return lower(IntViT.from_checkpoint(checkpoint).graph(), cfg)
    from ternac.lower import compile_checkpoint
    if checkpoint is None:
        from ternac.golden.mlp import DEFAULT_CHECKPOINT
        checkpoint = DEFAULT_CHECKPOINT
    return compile_checkpoint(checkpoint, cfg)


def build_main(args) -> int:
    """``ternac build --board B`` or ``ternac build unit NAME`` (``args.target == ["unit",
    NAME]``).

    Reads ``args``: target, board, model, lanes, freq, baud, checkpoint, build_dir, json,
    device, no_fit_check. Prints progress on stderr and the report's headline on stdout (a
    board build also the estimate made before synthesis, with its error). A design whose
    estimate cannot fit the device is refused before synthesis (exit 2).
    """
    from ternac.boards.build import (BuildError, FitError, TimingError, build_board, build_unit,
                                     check_build_dir, check_freq, check_pnr_seed)
    from ternac.boards.resources import NoEstimate
    from ternac.errors import USER_ERRORS, one_line
    from ternac.errors import check_output_file
    try:
        # Every argument checked before compiling or any tool starts.
        check_output_file(getattr(args, "json", None), "JSON output", make_folder=True)
        from ternac.errors import check_distinct
        check_distinct([("JSON output", getattr(args, "json", None))],
                       [("checkpoint", getattr(args, "checkpoint", None))])
        check_freq(args.freq)
        check_pnr_seed(getattr(args, "pnr_seed", None))
        check_build_dir(args.build_dir)
        baud = getattr(args, "baud", None)
        if baud is not None:
            check_baud(baud)
        if getattr(args, "checkpoint", None) is not None and not str(args.checkpoint).strip():
            from ternac.runner import model_inputs
            shipped = model_inputs(getattr(args, "model", "digits"), None)[0][1]
            raise ValueError(f"the --checkpoint path is empty; give a path or leave the option "
                             f"out for the committed checkpoint {os.path.relpath(shipped)}")
    except ValueError as e:
        return _error(one_line(e))
    target = list(getattr(args, "target", None) or [])
    name = getattr(args, "name", None)
    if target:
        if len(target) != 2 or target[0] != "unit":
            return _error(f"`ternac build {' '.join(target)}` is not a build target; use "
                          f"`ternac build --board B` or `ternac build unit NAME`")
        name = target[1]
    if name and getattr(args, "baud", None) is not None:
        return _error("--baud applies to a board build (--board B); a unit is built out of "
                      "context without the board's host link")
    try:
        model = getattr(args, "model", "digits")
        if name:
            # A unit as the model's build carries it (shakespeare: 32 lanes, fan-in 256, ...).
            report = build_unit(name, _model_config(model, args.lanes),
                                device=getattr(args, "device", "up5k"),
                                freq_mhz=args.freq, build_dir=args.build_dir,
                                pnr_seed=getattr(args, "pnr_seed", None))
        else:
            if not getattr(args, "board", None):
                return _error("say which board to build for: " + " or ".join(
                    f"--board {b}" for b in BOARD_CHOICES))
            if not getattr(args, "no_fit_check", False):
                # Refuse at once, before compiling: build_board checks again (before
                # synthesis) with the compiled configuration.
                from ternac.boards.resources import check_fit, estimate
                cfg = _model_config(model, args.lanes)
                try:
                    check_fit(estimate(cfg, args.board))
                except FitError as e:
                    raise FitError(f"{e}{_fits_elsewhere(cfg, args.board)}") from None
            compiled = _compile(model, args.lanes, getattr(args, "checkpoint", None))
            build_dir = args.build_dir
            if build_dir is None and model != "digits":
                # build/<board>-shakespeare for the 32-lane LM, else ...-L<lanes>.
                build_dir = os.path.join("build", f"{args.board}-{model}" + (
                    "" if args.lanes == 32 else f"-L{args.lanes}"))
            report = build_board(args.board, compiled.cfg, compiled.program_words,
                                 compiled.weight_words, freq_mhz=args.freq,
                                 baud=getattr(args, "baud", None) or _facts.DEFAULT_BAUD,
                                 build_dir=build_dir,
                                 extra={"model": getattr(args, "model", "digits")},
                                 check_fit=not getattr(args, "no_fit_check", False),
                                 pnr_seed=getattr(args, "pnr_seed", None))
    except TimingError as e:
        if getattr(args, "json", None):
            _write_json(args.json, e.report)
        return _error(e, 1)
    except FitError as e:
        return _error(e, 2)
    except NoEstimate as e:
        return _error(f"{e}; pass --no-fit-check to build without the resource estimate")
    except BuildError as e:
        return _error(e, 1)
    except (ValueError, *USER_ERRORS) as e:
        # E.g. a UART divisor or a PLL the board top's constructor refuses: the top and its
        # memories were made but never elaborated; dropped without UnusedElaboratable.
        from ternac.hw.unused import forget_unused_design
        forget_unused_design(e)
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
    if report.get("estimate"):
        vs = report["estimate"]["vs_measured"]
        print("estimate before synthesis (modelled): " + "  ".join(
            f"{k} {v['estimate']}"
            + ("" if v["error_pct"] is None else f" ({v['error_pct']:+.1f}%)")
            for k, v in vs.items()))
    if "bitstream" in report:
        print(f"bitstream: {report['bitstream']}")
    return 0


#: What a bitstream of each family holds near its start, checked on the project's own
#: builds: icepack's top.bin starts FF 00 00 FF (an empty comment) and has the sync word
#: 7E AA 99 7E at byte 4; ecppack's top.bit starts FF 00, a comment ("Part: LFE5U-85F-..."),
#: then the preamble FF FF BD B3 (at byte 29).
BITSTREAM_SYNC = {"ice40": (b"\x7e\xaa\x99\x7e", "the iCE40 sync word 7EAA997E"),
                  "ecp5": (b"\xff\xff\xbd\xb3", "the ECP5 preamble FFFFBDB3")}
#: How far into the file the sync word may lie (the comment before it is short).
BITSTREAM_HEAD = 4096


def check_bitstream(path, board: str) -> str | None:
    """Why the file ``path`` is not a bitstream for ``board`` (one sentence), or None: it
    must be non-empty and hold its family's sync word (:data:`BITSTREAM_SYNC`) within the
    first :data:`BITSTREAM_HEAD` bytes, so a text file, a checkpoint or the other board's
    bitstream is refused before a programmer starts."""
    dev = _facts.board(board).dev
    sync, what = BITSTREAM_SYNC[dev.family]
    try:
        with open(path, "rb") as f:
            head = f.read(BITSTREAM_HEAD)
    except OSError as exc:
        return f"the bitstream {path} cannot be read: {(exc.strerror or str(exc)).lower()}"
    if not head:
        return f"the bitstream {path} is empty"
    if sync not in head:
        return (f"the bitstream {path} is not one for the {dev.name}: its first {len(head)} "
                f"bytes lack {what}")
    return None


def program_main(args) -> int:
    """``ternac program --board B [--bitstream P] [--flash] [--dry-run]``."""
    from ternac.boards.program import ProgramError, default_bitstream, program
    lanes = getattr(args, "lanes", 8)
    if lanes is None or lanes < 1:
        return _error(f"--lanes must be a positive lane count (of the default bitstream "
                      f"build/<board>-L<lanes>), not {lanes}")
    bitstream = getattr(args, "bitstream", None)
    if bitstream is not None and not str(bitstream).strip():
        return _error(f"the --bitstream path is empty; give a path or leave the option out for "
                      f"{os.path.relpath(default_bitstream(args.board, lanes))}")
    path = bitstream or default_bitstream(args.board, lanes)
    if os.path.isdir(path):
        return _error(f"the bitstream {path} is a folder, not a bitstream file")
    if not os.path.isfile(path):
        # A dry run too: the command it prints would fail.
        return _error(f"no bitstream at {path}: run `ternac build --board {args.board}"
                      + ("" if lanes == 8 else f" --lanes {lanes}") + "` first")
    bad = check_bitstream(path, args.board)
    if bad:
        return _error(bad)
    try:
        program(args.board, bitstream,
                dry_run=getattr(args, "dry_run", False), flash=getattr(args, "flash", False),
                lanes=getattr(args, "lanes", 8))
    except ProgramError as e:
        return _error(e)
    return 0
