"""``ternac report``: the power and throughput report of one board build of one model.

    ternac report --board {icebreaker,ulx3s} --model {shakespeare,digits} --out DIR
                  [--build-dir DIR] [--lanes L] [--tokens N] [--inferences N] [--fallback]
                  [--cpu-batches 1,64] [--no-cpu] [--keep-waves]

It gathers, in one run:

* the build report (``report.json`` of the build folder: resources used against the
  device, the constrained clock, nextpnr's achieved Fmax); when the folder has none the build
  runs first (``ternac build``'s code). A model whose resource estimate cannot fit the
  board is one sentence and exit 2, unless ``--fallback`` is given: then the report is made
  for the best board the model builds for (the ULX3S when the LM does not fit the
  iCEBreaker) and says so;
* the RTL's cycles a token (``--tokens`` steps of ``ternac generate`` on the Verilator
  backend, every logit compared with the integer golden model) or an inference (``--inferences``
  digits), and the cycle model's prediction (``golden.cycles.program_cycles``) with its
  breakdown by op;
* throughput at the build's clock: tokens/s (inferences/s) and trit-MAC/s, derived;
* the power model (:mod:`ternac.power`, modelled, with its range), fed by the switching
  activity of one token / one inference counted from a Verilator waveform
  (:mod:`ternac.sim.power_trace`); mW, uJ/token (uJ/inference) and pJ/trit-MAC;
* the CPU baseline measured in this run (:func:`ternac.baselines.measure_cpu`, small
  batches), the GPU baseline read from the committed ``results/gpu_h200.json`` (said so when
  no GPU is present), and the literature anchors (``results/literature.json``).

Outputs in ``DIR``: ``report.json`` (figures with units in their key names and a ``kinds``
map with one entry for every figure: measured / derived / modelled / literature),
``report.md``, ``report.html`` (self-contained: its PNG plots embedded as base64 data URIs)
and the PNG plots (resources against the device, cycles by op, throughput and energy against
every baseline on log axes).

Exit codes: 0 done; 1 the RTL disagreed with the golden model or a build missed timing;
2 a user error (unknown board or model, an option outside its range, a lane count the model
is not built with, a model that does not fit, an unusable folder), one sentence on stderr.
"""
from __future__ import annotations

import argparse
import base64
import datetime
import html
import io
import json
import math
import os
import pathlib
import shlex
import sys
import time

from ternac import cliargs
from ternac.cliargs import range_message, whole, whole_list

__all__ = ["add_report_parser", "report_main", "make_report", "write_report", "render_html",
           "render_markdown", "fmt", "MODELS", "SCHEMA"]

SCHEMA = "ternac-report/1"
MODELS = ("shakespeare", "digits")
REPO = pathlib.Path(__file__).resolve().parent.parent
KINDS = ("measured", "derived", "modelled", "literature")


class ReportError(Exception):
    """A user error of the report (one sentence, exit 2)."""


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------

#: The most Verilator runs (LM tokens or digits inferences) one report makes.
RTL_RUNS_MAX = 64
#: The largest CPU baseline batch: the digits workloads hold 64 steps of int64 and float32
#: inputs, 48 KiB a batch element (3 GiB at 65536).
CPU_BATCH_MAX = 65536
_RTL_WHY = "Verilator runs, each compared with golden"
_tokens = whole("--tokens", 1, RTL_RUNS_MAX, why=_RTL_WHY)
_inferences = whole("--inferences", 1, RTL_RUNS_MAX, why=_RTL_WHY)
_cpu_batches = whole_list("--cpu-batches", 1, CPU_BATCH_MAX,
                          why="batch sizes of the CPU baseline")


def _check_runs(option: str, value) -> None:
    """``value`` of ``--tokens``/``--inferences`` for an API caller: the parser's sentence."""
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= RTL_RUNS_MAX:
        raise ReportError(range_message(option, value, 1, RTL_RUNS_MAX, why=_RTL_WHY))


def add_report_parser(sub):
    """Add ``report`` to an argparse subparsers object; sets ``func=report_main``."""
    from ternac.boards_cli import BOARD_CHOICES
    p = sub.add_parser("report", help="power and throughput report of a board build, with "
                                      "CPU/GPU baselines and literature anchors")
    p.add_argument("--board", choices=BOARD_CHOICES, required=True)
    p.add_argument("--model", choices=MODELS, required=True)
    p.add_argument("--out", required=True, metavar="DIR", help="folder for report.json/md/html")
    p.add_argument("--build-dir", default=None,
                   help="build folder with report.json (default build/<board>-shakespeare or "
                        "build/<board>-L<L>); built first when it has none")
    p.add_argument("--lanes", type=cliargs.lanes, default=None, help="lanes (digits default 8; the LM 32)")
    p.add_argument("--tokens", type=_tokens, default=4,
                   help=f"LM tokens run on the RTL (default 4, at most {RTL_RUNS_MAX})")
    p.add_argument("--inferences", type=_inferences, default=4,
                   help=f"digits run on the RTL (default 4, at most {RTL_RUNS_MAX})")
    p.add_argument("--fallback", action="store_true",
                   help="if the model does not fit the board, report the best board it builds for")
    p.add_argument("--cpu-batches", type=_cpu_batches, default=(1, 64), metavar="B,B,...",
                   help=f"CPU baseline batch sizes, comma-separated (default 1,64; each at "
                        f"most {CPU_BATCH_MAX})")
    p.add_argument("--no-cpu", action="store_true", help="skip the CPU baseline")
    p.add_argument("--keep-waves", action="store_true",
                   help="keep the VCD of the traced run (hundreds of MB for a token)")
    p.set_defaults(func=report_main)
    return p


def _error(msg, code=2) -> int:
    print(f"ternac: error: {' '.join(str(msg).split())}", file=sys.stderr)
    return code


def report_main(args) -> int:
    """``ternac report``: make the report and print its headline. Returns the exit code."""
    from ternac.errors import USER_ERRORS, one_line
    try:
        out = pathlib.Path(args.out)
        if out.exists() and not out.is_dir():
            raise ReportError(f"the output folder {out} exists and is not a folder")
        if args.model in MODELS:
            _lanes_for(args.model, args.lanes)      # before the folder is made
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ReportError(f"the output folder {out} cannot be made: {e.strerror or e}") from None
        rep = make_report(args.board, args.model, build_dir=args.build_dir, lanes=args.lanes,
                          tokens=args.tokens, inferences=args.inferences,
                          fallback=args.fallback,
                          cpu_batches=None if args.no_cpu else args.cpu_batches,
                          keep_waves=args.keep_waves,
                          command="ternac report " + " ".join(shlex.quote(a) for a in sys.argv[2:]))
        paths = write_report(rep, args.out)
    except ReportError as e:
        return _error(e)
    except ValueError as e:
        return _error(one_line(e))
    except USER_ERRORS as e:
        return _error(one_line(e))
    f = rep["figures"]
    unit = rep["unit"]
    print(rep["headline"])
    print("wrote " + ", ".join(str(p) for p in paths))
    bad = f.get(f"rtl_{unit}s_mismatching_golden", 0)
    return 1 if bad or not rep["build"]["timing_met"] else 0


# ---------------------------------------------------------------------------------------
# Gathering
# ---------------------------------------------------------------------------------------

def _default_build_dir(board: str, model: str, lanes: int) -> pathlib.Path:
    return REPO / "build" / (f"{board}-{model}" if model != "digits" else f"{board}-L{lanes}")


def _lanes_for(model: str, lanes: int | None) -> int:
    """``lanes``, or the model's default (the LM 32, digits 8) for None. Raises ReportError
    (boards_cli._model_config's sentence) for a lane count the model is not built with, so
    that it is not reported as a model that does not fit."""
    from ternac.boards_cli import _model_config
    lanes = (32 if model == "shakespeare" else 8) if lanes is None else lanes
    try:
        _model_config(model, lanes)
    except ValueError as e:
        raise ReportError(" ".join(str(e).split())) from None
    return lanes


def _fits(board: str, model: str, lanes: int) -> str | None:
    """None if the resource estimate says ``model`` fits ``board``, else why not."""
    from ternac.boards.resources import check_fit, estimate
    from ternac.boards_cli import _model_config
    cfg = _model_config(model, lanes)       # a bad lane count: ValueError, not a misfit
    try:
        check_fit(estimate(cfg, board))
    except Exception as e:      # FitError (a ValueError-like user error) or ValueError
        if type(e).__name__ in ("FitError", "ValueError"):
            return " ".join(str(e).split())
        raise
    return None


def _board_for(board: str, model: str, lanes: int, fallback: bool) -> tuple[str, dict | None]:
    """The board the report is made for, and the fallback note (None if ``board`` fits)."""
    from ternac.boards.facts import BOARDS
    why = _fits(board, model, lanes)
    if why is None:
        return board, None
    if not fallback:
        raise ReportError(f"the {model} model does not fit the {BOARDS[board].name}: {why}")
    for other in BOARDS:
        if other != board and _fits(other, model, lanes) is None:
            return other, {"asked": board, "used": other, "reason": why}
    raise ReportError(f"the {model} model fits none of the boards ({why})")


def _load_build(build_dir: pathlib.Path, board: str, model: str, lanes: int,
                progress: bool) -> tuple[dict, bool]:
    """The build report of ``build_dir``; builds first when it has none. Returns
    (report, built in this run)."""
    path = build_dir / "report.json"
    if path.exists():
        try:
            rep = json.loads(path.read_text())
        except ValueError as e:
            raise ReportError(f"the build report {path} cannot be read: {e}") from None
        if rep.get("board") != board or rep.get("model", "digits") != model:
            raise ReportError(f"the build report {path} is of {rep.get('model')} on "
                              f"{rep.get('board')}, not {model} on {board}")
        return rep, False
    from ternac.boards.build import FitError, TimingError, build_board
    from ternac.boards_cli import _compile
    if progress:
        print(f"[report] no build report in {build_dir}: building {model} for {board} ...",
              file=sys.stderr, flush=True)
    compiled = _compile(model, lanes, None)
    try:
        rep = build_board(board, compiled.cfg, compiled.program_words, compiled.weight_words,
                          build_dir=str(build_dir), extra={"model": model})
    except TimingError as e:
        rep = e.report
    except FitError as e:
        raise ReportError(str(e)) from None
    return rep, True


def _rtl(model: str, lanes: int, tokens: int, inferences: int, progress: bool) -> dict:
    """RTL cycles on the Verilator backend (ternac.runner), compared with golden."""
    from ternac import runner
    if model == "shakespeare":
        r = runner.generate("ROMEO:", tokens, "verilator", progress=progress)
        return {"cycles": r["cycles_per_token"], "cycles_min": r["cycles_min"],
                "cycles_max": r["cycles_max"], "runs": r["steps"],
                "mismatching": int(r["logit_mismatches"] or 0) + (0 if r["matches_golden"] else 1),
                "trits": r["ternary_weights"], "text": r["text"]}
    r = runner.run_digits("verilator", lanes, limit=inferences, progress=progress)
    return {"cycles": r["cycles_per_inference"], "cycles_min": r["cycles_min"],
            "cycles_max": r["cycles_max"], "runs": r["samples"],
            "mismatching": r["mismatches"], "trits": r["useful_macs_per_inference"],
            "accuracy": r["accuracy"]}


def _lowered(model: str, lanes: int):
    if model == "shakespeare":
        from ternac.runner import load_lm
        intlm, cm = load_lm()
        return cm, intlm
    from ternac.config import AccelConfig
    from ternac.golden.mlp import DEFAULT_CHECKPOINT
    from ternac.lower import compile_checkpoint
    return compile_checkpoint(DEFAULT_CHECKPOINT, AccelConfig(lanes=lanes)), None


def _cycle_model(cm) -> dict:
    from ternac.golden.cycles import program_cycles
    return program_cycles(cm.program, cm.cfg.lanes, weight_format=cm.cfg.weight_format,
                          mv_chain=cm.cfg.mv_chain, norm_steps=cm.cfg.norm_steps)


def _trace(model: str, cm, intlm, keep: bool, progress: bool) -> dict:
    """Switching activity of one token / one inference (ternac.sim.power_trace)."""
    from ternac.sim.power_trace import activity, trace_run
    if model == "shakespeare":
        ids = [int(t) for t in intlm.vocab.encode("R").tolist()]
        bench = "bench_lm"
        inputs = {"constants": [[int(a), [int(v) for v in vals]]
                                for a, vals in cm.scratch_constants.items()],
                  "token_addr": cm.token_addr, "prompt": ids, "n_new": 1,
                  "logits_addr": cm.logits_addr, "n_logits": cm.n_logits,
                  "logits_in_scratch": cm.logits_in_scratch}
    else:
        from ternac.golden.digits_data import load_split, quantize_pixels
        _, _, x, _ = load_split()
        bench = "bench_top"
        inputs = {"inputs": quantize_pixels(x[:1]).tolist(), "input_addr": cm.input_addr,
                  "logits_addr": cm.logits_addr, "n_logits": cm.n_logits}
    if progress:
        print(f"[report] tracing one {'token' if model == 'shakespeare' else 'inference'} "
              "for the power model ...", file=sys.stderr, flush=True)
    r = trace_run(cm.cfg, cm.weight_words, cm.program_words, bench, inputs, progress=progress)
    try:
        act = activity(r["fst"], r["verilog"], r["toplevel"])
    finally:
        if not keep:
            pathlib.Path(r["fst"]).unlink(missing_ok=True)
    act["waveform"] = r["fst"] if keep else None
    return act


def _cpu(model: str, batches) -> dict:
    from ternac.baselines import measure_cpu
    work = ("lm_float", "lm_int") if model == "shakespeare" else ("digits_float", "digits_int")
    return measure_cpu(workloads=work, batches=batches, repeats=3, block_s=0.2,
                       max_point_s=5.0, command=f"ternac report (measure_cpu {work} {batches})")


def _gpu_present() -> bool:
    try:
        import torch
        return bool(torch.cuda.is_available())
    except Exception:
        return False


def make_report(board: str, model: str, *, build_dir=None, lanes=None, tokens: int = 4,
                inferences: int = 4, fallback: bool = False, cpu_batches=(1, 64),
                keep_waves: bool = False, progress: bool = True, command: str | None = None,
                inject: dict | None = None) -> dict:
    """Gather every figure of the report (see the module docstring) and return it as a dict.

    ``inject`` replaces gathered inputs with given ones, for tests and for re-rendering:
    ``build`` (a build report dict), ``rtl`` ({cycles, cycles_min, cycles_max, runs,
    mismatching, trits}), ``cycle_model`` (:func:`program_cycles`'s dict), ``activity``
    (:func:`ternac.sim.power_trace.activity`'s dict), ``cpu`` (a ``measure_cpu`` result) or
    ``gpu`` (a baseline result); everything derived from them runs the real code.

    Raises
    ------
    ReportError (one sentence) for an unknown model, a lane count the model is not built
    with, ``tokens``/``inferences`` outside 1 .. RTL_RUNS_MAX, a model that does not fit
    (without ``fallback``) or an unreadable build report; the runners' user errors.
    """
    from ternac.boards.facts import BOARDS
    inject = dict(inject or {})
    if model not in MODELS:
        raise ReportError(f"unknown model {model!r}; choose one of {', '.join(MODELS)}")
    if board not in BOARDS:
        raise ReportError(f"unknown board {board!r}; choose one of {', '.join(BOARDS)}")
    _check_runs("--tokens", tokens)
    _check_runs("--inferences", inferences)
    lm = model == "shakespeare"
    lanes = _lanes_for(model, lanes)
    t_start = time.perf_counter()
    notes = []
    if "build" in inject:
        used, fb = board, None
        build, built = inject["build"], False
        build_src = "injected"
    else:
        used, fb = _board_for(board, model, lanes, fallback)
        if fb:
            notes.append(f"The {model} model does not fit the {BOARDS[board].name} yet "
                         f"({fb['reason']}); this report is of the {BOARDS[used].name}, the best "
                         f"board it builds for.")
        bdir = pathlib.Path(build_dir) if build_dir and not fb else _default_build_dir(used, model, lanes)
        build, built = _load_build(bdir, used, model, lanes, progress)
        build_src = str(bdir / "report.json")
    b = BOARDS[used]
    family = b.family
    cm = intlm = None
    if not all(k in inject for k in ("cycle_model", "activity")):
        cm, intlm = _lowered(model, lanes)
    rtl = inject["rtl"] if "rtl" in inject else _rtl(model, lanes, tokens, inferences, progress)
    cmod = inject["cycle_model"] if "cycle_model" in inject else _cycle_model(cm)
    act = inject["activity"] if "activity" in inject else _trace(model, cm, intlm, keep_waves, progress)
    if "cpu" in inject:
        cpu = inject["cpu"]
    elif cpu_batches:
        if progress:
            print("[report] measuring the CPU baseline ...", file=sys.stderr, flush=True)
        cpu = _cpu(model, cpu_batches)
    else:
        cpu = None
    from ternac.baselines import GPU_RESULT, load_literature, load_result
    gpu = inject["gpu"] if "gpu" in inject else load_result(GPU_RESULT)
    gpu_here = _gpu_present()
    lit = load_literature()
    rep = assemble(board_asked=board, board=used, model=model, lanes=lanes, build=build,
                   build_src=build_src, built=built, rtl=rtl, cycle_model=cmod, activity=act,
                   cpu=cpu, gpu=gpu, gpu_present=gpu_here, literature=lit, fallback=fb,
                   notes=notes, command=command)
    rep["seconds_total"] = round(time.perf_counter() - t_start, 1)
    return rep


def _res(build: dict) -> dict:
    """{kind: (used, available)} of the build report's LUT, FF, EBR, SPRAM, DSP."""
    out = {}
    for k in ("LUT", "FF", "EBR", "SPRAM", "DSP"):
        r = build["resources"].get(k)
        if r and r.get("available"):
            out[k] = (int(r["used"]), int(r["available"]))
    return out


def assemble(*, board_asked, board, model, lanes, build, build_src, built, rtl, cycle_model,
             activity, cpu, gpu, gpu_present, literature, fallback, notes, command) -> dict:
    """The report dict from its gathered inputs: every figure is computed here (one code
    path for the command and the tests)."""
    from ternac import power
    from ternac.boards.facts import BOARDS
    b = BOARDS[board]
    lm = model == "shakespeare"
    unit = "token" if lm else "inference"
    rate_key = "tokens_per_s" if lm else "inferences_per_s"
    F: dict[str, float | int] = {}
    K: dict[str, str] = {}

    def put(key, value, kind):
        if value is None:
            return
        if kind not in KINDS:
            raise ValueError(f"kind {kind!r} of {key!r}")
        F[key] = value
        K[key] = kind

    res = _res(build)
    for k, (u, a) in res.items():
        put(f"{k}_used", u, "measured")
        put(f"{k}_available", a, "literature")
        put(f"{k}_utilization", u / a, "derived")
    timing_met = bool(build.get("timing_met", True))
    clock = float(build["clock_MHz_constrained"]) if timing_met else float(build["fmax_MHz_achieved"])
    put("clock_MHz", clock, "measured")
    put("fmax_MHz", float(build["fmax_MHz_achieved"]), "measured")
    if not timing_met:
        notes.append(f"The build missed its {build['clock_MHz_constrained']} MHz constraint: "
                     f"throughput and power are at the achieved {clock} MHz.")
    cyc = float(rtl["cycles"])
    trits = int(rtl["trits"])
    put(f"rtl_cycles_per_{unit}", cyc, "measured")
    put(f"rtl_cycles_per_{unit}_min", rtl.get("cycles_min"), "measured")
    put(f"rtl_cycles_per_{unit}_max", rtl.get("cycles_max"), "measured")
    put(f"rtl_{unit}s_run", rtl.get("runs"), "measured")
    put(f"rtl_{unit}s_mismatching_golden", rtl.get("mismatching"), "measured")
    put(f"model_cycles_per_{unit}", cycle_model["total"], "modelled")
    put(f"model_cycles_per_{unit}_min", cycle_model["total_min"], "modelled")
    put(f"model_over_rtl_cycles", cycle_model["total"] / cyc, "derived")
    put(f"trit_macs_per_{unit}", trits, "measured")
    rate = clock * 1e6 / cyc
    put(rate_key, rate, "derived")
    put(f"{rate_key}_at_fmax", float(build["fmax_MHz_achieved"]) * 1e6 / cyc, "derived")
    put("trit_macs_per_s", rate * trits, "derived")
    put("trit_macs_per_cycle", trits / cyc, "derived")
    # power
    used = {k: u for k, (u, _) in res.items()}
    pll = bool(build.get("pll", b.default_mhz != b.osc_mhz))
    rates = power.rates_from_activity(activity, b.family, b.weights, used.get("DSP", 0))
    est = power.estimate(b.family, clock, used, rates, pll=pll)
    for k in ("cycles", "ff_alpha", "logic_alpha", "ff_bits", "logic_bits"):
        put(f"activity_{k}", activity[k], "measured")
    for k in ("ebr_accesses", "ebr_accesses_high", "spram_accesses", "spram_accesses_high",
              "dsp_ops"):
        put(f"activity_{k}_per_cycle", rates[k], "derived")
    for sfx, key in (("", "point_mW"), ("_low", "low_mW"), ("_high", "high_mW")):
        p = est[key]
        put(f"power_mW{sfx}", p, "modelled")
        e = power.energy(p, cyc, clock, trits)
        put(f"uJ_per_{unit}{sfx}", e["uJ"], "modelled")
        put(f"pJ_per_trit_mac{sfx}", e["pJ_per_trit_mac"], "modelled")
    for t, v in est["terms_mW"].items():
        if t != "total":
            put(f"power_mW_{t}", v, "modelled")
    put("power_calibration_error", est["calibration_error"], "modelled")
    for i, pt in enumerate(est["calibration"]["points"]):
        put(f"calibration_{i}_measured_mW", pt["measured_mW"], "literature")
        put(f"calibration_{i}_model_mW", pt["model_mW"], "modelled")
    for name, c in est["coefficients"].items():
        for part in ("point", "low", "high"):
            put(f"coeff_{name}_{part}", c[part], "modelled" if c["kind"] in ("fitted", "unsourced", "assumed") else "literature")
    breakdown = {op: int(v) for op, v in sorted(cycle_model["by_op"].items(), key=lambda x: -x[1])}
    for op, v in breakdown.items():
        put(f"model_cycles_{op}", v, "modelled")
    # baselines
    rows = []

    def base_rows(result, where, kind_note):
        if not result:
            return
        for w, wd in result["workloads"].items():
            if (wd["unit"] == "token") != lm:
                continue
            for which in ("batch1", "best"):
                p = wd.get(which)
                if not p:
                    continue
                key = f"{where}_{w}_{which}"
                put(f"{key}_batch", p["batch"], "measured")
                put(f"{key}_{rate_key}", p[rate_key], "measured")
                ek = f"uJ_per_{unit}"
                if p.get(ek) is not None:
                    put(f"{key}_{ek}", p[ek], "derived")
                if p.get("pJ_per_trit_mac") is not None:
                    put(f"{key}_pJ_per_trit_mac", p["pJ_per_trit_mac"], "derived")
                if p.get("W") is not None:
                    put(f"{key}_W", p["W"], "measured")
                rows.append({"key": key, "label": f"{where.upper()} {result['device']}: {w}, "
                             f"{'batch 1' if which == 'batch1' else 'best batch'} "
                             f"(B={p['batch']}{', ' + str(p['threads']) + ' thr' if 'threads' in p else ''})",
                             "source": kind_note})
    base_rows(cpu, "cpu", "measured in this run")
    gpu_note = (f"read from the committed {os.path.relpath(gpu.get('source', 'results/gpu_h200.json'), REPO)} "
                f"(measured {gpu['date']} on {gpu['device']}, `{gpu['command']}`)"
                + ("" if gpu_present else "; no GPU is present in this run"))
    base_rows(gpu, "gpu", gpu_note)
    lit_rows = []
    for e in literature:
        key = f"lit_{e['id'].replace('-', '_')}"
        for k in ("tokens_per_s", "W", "uJ_per_token", "pJ_per_weight_op", "MHz"):
            v = e.get(k)
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                put(f"{key}_{k}", v, "literature")
        lit_rows.append({"key": key, "id": e["id"], "name": e["name"], "platform": e["platform"],
                         "comparable": e["comparable"],
                         "note": e.get("comparable_note") or e.get("comparable_reason", ""),
                         "url": e["source"]["url"], "title": e["source"]["title"]})
    now = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    pt = F["power_mW"]
    headline = (f"{model} on the {b.name} ({b.dev.name}) at {clock:g} MHz: {fmt(rate)} {unit}s/s "
                f"(derived), {fmt(pt)} mW modelled ({fmt(F['power_mW_low'])}-"
                f"{fmt(F['power_mW_high'])}), {fmt(F[f'uJ_per_{unit}'])} uJ/{unit} "
                f"({fmt(F[f'uJ_per_{unit}_low'])}-{fmt(F[f'uJ_per_{unit}_high'])}), "
                f"{fmt(F['pJ_per_trit_mac'])} pJ/trit-MAC")
    if fallback:
        headline += f" [fallback: the model does not fit the {BOARDS[fallback['asked']].name}]"
    notes.append(gpu_note[0].upper() + gpu_note[1:] + ".")
    notes.append("CPU figures: " + ("measured in this run with PyTorch on "
                                    f"{cpu['device']} (small batches for speed)." if cpu else
                                    "not measured in this run (--no-cpu)."))
    notes.append(est["what_it_cannot_know"])
    return {
        "schema": SCHEMA, "date": now, "command": command, "headline": headline,
        "board": board, "board_name": b.name, "device": b.dev.part, "board_asked": board_asked,
        "fallback": fallback, "model": model, "lanes": lanes, "unit": unit, "rate_key": rate_key,
        "build": {"source": build_src, "built_in_this_run": built, "timing_met": timing_met,
                  "critical_path": build.get("critical_path"), "pll": pll,
                  "wall_time_s": build.get("wall_time_s")},
        "figures": F, "kinds": K, "cycle_breakdown": breakdown,
        "power": {k: est[k] for k in ("coefficients", "calibration", "corners",
                                      "corners_rejected", "what_it_cannot_know")},
        "activity": {k: v for k, v in activity.items()},
        "baseline_rows": rows, "literature_rows": lit_rows, "notes": notes,
        "sources": power.SOURCES,
        "rtl_text": rtl.get("text"),
    }


# ---------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------

def fmt(v) -> str:
    """A figure as shown in the tables: integers in full with thousands separators, other
    numbers to 4 significant digits (``float(text.replace(",", ""))`` reads it back)."""
    if isinstance(v, bool):
        return str(v)
    if isinstance(v, int) or (isinstance(v, float) and v.is_integer() and abs(v) < 1e15):
        return f"{int(v):,}"
    if v == 0 or not math.isfinite(v):
        return str(v)
    if 1e-3 <= abs(v) < 1e6:
        d = max(0, 3 - int(math.floor(math.log10(abs(v)))))
        return f"{v:,.{d}f}"
    return f"{v:.4g}"


def _plots(rep: dict) -> dict[str, bytes]:
    """The report's PNG plots: {file name: PNG bytes}."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    F = rep["figures"]
    unit, rk = rep["unit"], rep["rate_key"]
    out = {}

    def save(fig, name):
        buf = io.BytesIO()
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100)
        plt.close(fig)
        out[name] = buf.getvalue()

    kinds = [k for k in ("LUT", "FF", "EBR", "SPRAM", "DSP") if f"{k}_used" in F]
    fig, ax = plt.subplots(figsize=(7, 2.8))
    util = [F[f"{k}_utilization"] * 100 for k in kinds]
    ax.barh(kinds, [100] * len(kinds), color="#e6e6e6", label="device capacity")
    ax.barh(kinds, util, color="#3b7dd8", label="used (measured)")
    for i, k in enumerate(kinds):
        ax.text(min(util[i], 100) + 1, i, f"{F[f'{k}_used']:,} / {F[f'{k}_available']:,}",
                va="center", fontsize=9)
    ax.set_xlim(0, 125)
    ax.invert_yaxis()
    ax.set_xlabel("% of the device")
    ax.set_title(f"Resources of the {rep['board_name']} build ({rep['device']})")
    ax.legend(loc="lower right", fontsize=8)
    save(fig, "resources.png")

    ops = list(rep["cycle_breakdown"])
    fig, ax = plt.subplots(figsize=(7, 0.35 * len(ops) + 1.4))
    ax.barh(ops, [rep["cycle_breakdown"][o] for o in ops], color="#7a5cc4")
    ax.invert_yaxis()
    ax.set_xlabel(f"cycles a {unit} (cycle model, modelled)")
    ax.set_title(f"Cycles by op: model {F[f'model_cycles_per_{unit}']:,}, "
                 f"RTL {fmt(F[f'rtl_cycles_per_{unit}'])} (measured)")
    save(fig, "cycles.png")

    def compare(metric, title, name, err=None):
        labels, vals, colors, lo, hi = [], [], [], [], []
        here = F.get(metric)
        if here:
            labels.append(f"ternac on {rep['board_name']} ({'modelled' if 'uJ' in metric or 'pJ' in metric else 'derived'})")
            vals.append(here)
            colors.append("#d8473b")
            lo.append(here - F.get(metric + "_low", here))
            hi.append(F.get(metric + "_high", here) - here)
        for r in rep["baseline_rows"]:
            k = f"{r['key']}_{metric}"
            if k in F and F[k] > 0:
                labels.append(r["label"])
                vals.append(F[k])
                colors.append("#3b7dd8" if r["key"].startswith("cpu") else "#2f9e57")
                lo.append(0)
                hi.append(0)
        lit_metric = {"pJ_per_trit_mac": "pJ_per_weight_op"}.get(metric, metric)
        for r in rep["literature_rows"]:
            k = f"{r['key']}_{lit_metric}"
            if k in F and F[k] > 0:
                labels.append(f"{r['name']} (literature{'' if r['comparable'] else ', not comparable'})")
                vals.append(F[k])
                colors.append("#999999" if not r["comparable"] else "#e0a030")
                lo.append(0)
                hi.append(0)
        fig, ax = plt.subplots(figsize=(10, 0.32 * len(labels) + 1.5))
        y = range(len(labels))
        ax.barh(list(y), vals, color=colors)
        if here and (lo[0] or hi[0]):
            ax.errorbar([vals[0]], [0], xerr=[[lo[0]], [hi[0]]], fmt="none", ecolor="black",
                        capsize=4, label="modelled range")
            ax.legend(loc="lower right", fontsize=8)
        for i, v in enumerate(vals):
            ax.text(v + (hi[i] if i < len(hi) else 0), i, " " + fmt(v), va="center", fontsize=7)
        ax.set_yticks(list(y))
        ax.set_yticklabels(labels, fontsize=8)
        ax.set_xscale("log")
        if vals:
            least = min(min(vals), vals[0] - lo[0])
            ax.set_xlim(least / 3, max(vals[0] + hi[0], max(vals)) * 30)   # room for labels
        ax.invert_yaxis()
        ax.set_xlabel(title)
        ax.grid(axis="x", which="major", alpha=0.3)
        save(fig, name)

    compare(rk, f"{unit}s/s (log)", "throughput.png")
    compare(f"uJ_per_{unit}", f"uJ/{unit} (log; ternac: modelled range)", "energy.png")
    compare("pJ_per_trit_mac", "pJ per trit-MAC / weight-op (log)", "pj_per_op.png")
    return out


#: The tables: (title, [(label, figure key, unit)]).
def _tables(rep: dict) -> list[tuple[str, list[tuple[str, str, str]]]]:
    F, unit, rk = rep["figures"], rep["unit"], rep["rate_key"]
    t = []
    head = [("clock (constrained, met)", "clock_MHz", "MHz"), ("achieved Fmax", "fmax_MHz", "MHz"),
            (f"RTL cycles a {unit}", f"rtl_cycles_per_{unit}", "cycles"),
            (f"cycle model a {unit} (upper bound)", f"model_cycles_per_{unit}", "cycles"),
            (f"cycle model a {unit} (lower bound)", f"model_cycles_per_{unit}_min", "cycles"),
            ("model / RTL", "model_over_rtl_cycles", ""),
            (f"{unit}s/s", rk, f"{unit}s/s"), (f"{unit}s/s at Fmax", f"{rk}_at_fmax", f"{unit}s/s"),
            ("trit-MAC/s", "trit_macs_per_s", "1/s"), (f"trit-MACs a {unit}", f"trit_macs_per_{unit}", ""),
            ("power (point)", "power_mW", "mW"), ("power low", "power_mW_low", "mW"),
            ("power high", "power_mW_high", "mW"),
            (f"energy a {unit}", f"uJ_per_{unit}", "uJ"), (f"energy a {unit}, low", f"uJ_per_{unit}_low", "uJ"),
            (f"energy a {unit}, high", f"uJ_per_{unit}_high", "uJ"),
            ("energy a trit-MAC", "pJ_per_trit_mac", "pJ"), ("energy a trit-MAC, low", "pJ_per_trit_mac_low", "pJ"),
            ("energy a trit-MAC, high", "pJ_per_trit_mac_high", "pJ"),
            (f"RTL {unit}s run", f"rtl_{unit}s_run", ""),
            (f"RTL {unit}s differing from golden", f"rtl_{unit}s_mismatching_golden", "")]
    t.append(("Headline", head))
    resrows = []
    for k in ("LUT", "FF", "EBR", "SPRAM", "DSP"):
        if f"{k}_used" in F:
            resrows += [(f"{k} used", f"{k}_used", "cells"), (f"{k} on the device", f"{k}_available", "cells"),
                        (f"{k} utilization", f"{k}_utilization", "")]
    t.append(("Resources", resrows))
    t.append(("Cycle model by op", [(op, f"model_cycles_{op}", "cycles") for op in rep["cycle_breakdown"]]))
    prow = [(f"term: {k[len('power_mW_'):]}", k, "mW") for k in F if k.startswith("power_mW_")
            and k not in ("power_mW_low", "power_mW_high")]
    prow += [("calibration error (largest MARLANN residual)", "power_calibration_error", "")]
    for i, p in enumerate(rep["power"]["calibration"]["points"]):
        prow += [(f"MARLANN {p['what']}: published", f"calibration_{i}_measured_mW", "mW"),
                 (f"MARLANN {p['what']}: model", f"calibration_{i}_model_mW", "mW")]
    t.append(("Power model terms and calibration", prow))
    crow = []
    for name, c in rep["power"]["coefficients"].items():
        for part in ("point", "low", "high"):
            crow.append((f"{name} ({c['kind']}) {part}", f"coeff_{name}_{part}", c["unit"]))
    t.append(("Power model coefficients", crow))
    arow = [("cycles traced", "activity_cycles", "cycles"),
            ("register toggles a bit a cycle", "activity_ff_alpha", ""),
            ("logic toggles a bit a cycle", "activity_logic_alpha", ""),
            ("register bits", "activity_ff_bits", ""), ("logic bits", "activity_logic_bits", "")]
    arow += [(k[len("activity_"):].replace("_", " "), k, "a cycle") for k in F
             if k.startswith("activity_") and k.endswith("_per_cycle")]
    t.append(("Switching activity (one traced run)", arow))
    brow = []
    for r in rep["baseline_rows"]:
        for metric, u in (("batch", ""), (rk, f"{unit}s/s"), ("W", "W"), (f"uJ_per_{unit}", "uJ"),
                          ("pJ_per_trit_mac", "pJ")):
            k = f"{r['key']}_{metric}"
            if k in F:
                brow.append((f"{r['label']}: {metric}", k, u))
    t.append(("Baselines", brow))
    lrow = []
    for r in rep["literature_rows"]:
        for metric, u in (("tokens_per_s", "tokens/s"), ("W", "W"), ("uJ_per_token", "uJ"),
                          ("pJ_per_weight_op", "pJ"), ("MHz", "MHz")):
            k = f"{r['key']}_{metric}"
            if k in F:
                lrow.append((f"{r['name']}: {metric}" + ("" if r["comparable"] else " (not comparable)"), k, u))
    t.append(("Literature anchors", lrow))
    return t


_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;max-width:1100px;
margin:1.5em auto;padding:0 1em;color:#222;line-height:1.4}h1{font-size:1.5em}h2{font-size:1.15em;
margin-top:1.6em;border-bottom:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}td.num{text-align:right;font-variant-numeric:
tabular-nums}th{background:#f4f4f4}.k-measured{color:#1b6e2e}.k-derived{color:#1f4fa0}.k-modelled{color:
#a0351f}.k-literature{color:#6b4fa0}.note{background:#fff8e0;border-left:4px solid #e0a030;padding:.4em .8em;
margin:.4em 0}img{max-width:100%;border:1px solid #eee;margin:.4em 0}.headline{font-size:1.05em;
background:#eef4ff;padding:.6em .8em;border-left:4px solid #3b7dd8}"""


def render_html(rep: dict, pngs: dict[str, bytes]) -> str:
    """The self-contained HTML report: every PNG inlined as a base64 data URI; every number
    of a table in a ``<td class="num" data-key="figure key">``."""
    e = html.escape
    F, K = rep["figures"], rep["kinds"]
    parts = ["<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
             f"<title>ternac report: {e(rep['model'])} on {e(rep['board_name'])}</title>",
             f"<style>{_CSS}</style></head><body>",
             f"<h1>ternac report: {e(rep['model'])} on the {e(rep['board_name'])} "
             f"({e(rep['device'])}), {rep['lanes']} lanes</h1>",
             f"<p class='headline'>{e(rep['headline'])}</p>",
             f"<p>Made {e(rep['date'])} by <code>{e(rep['command'] or 'ternac report')}</code>. "
             f"Build report: <code>{e(rep['build']['source'])}</code>"
             f"{' (built in this run)' if rep['build']['built_in_this_run'] else ''}. Every figure "
             "carries its kind: <span class='k-measured'>measured</span>, <span class='k-derived'>"
             "derived</span>, <span class='k-modelled'>modelled</span>, <span class='k-literature'>"
             "literature</span>.</p>"]
    for n in rep["notes"]:
        parts.append(f"<p class='note'>{e(n)}</p>")
    captions = {"resources.png": "Resources used against the device (measured, nextpnr)",
                "cycles.png": "Cycles by op kind (cycle model) against the RTL count",
                "throughput.png": f"{rep['unit']}s/s against every baseline (log axis)",
                "energy.png": f"uJ/{rep['unit']} against every baseline (log axis; ternac's bar "
                              "is the modelled point with its range; the CPU has no power "
                              "counter readable here, so no energy bar)",
                "pj_per_op.png": "Energy a trit-MAC (literature: a weight-op) against every baseline"}
    tables = _tables(rep)

    def table(title, rows):
        parts.append(f"<h2>{e(title)}</h2><table><tr><th>figure</th><th>value</th><th>unit</th>"
                     "<th>kind</th><th>key in report.json</th></tr>")
        for label, key, u in rows:
            parts.append(f"<tr><td>{e(label)}</td><td class='num' data-key='{e(key)}'>"
                         f"{e(fmt(F[key]))}</td><td>{e(u)}</td><td class='k-{K[key]}'>{K[key]}</td>"
                         f"<td><code>{e(key)}</code></td></tr>")
        parts.append("</table>")
    table(*tables[0])
    parts.append("<h2>Plots</h2>")
    for name, data in pngs.items():
        uri = "data:image/png;base64," + base64.b64encode(data).decode()
        parts.append(f"<figure><img alt='{e(captions.get(name, name))}' src='{uri}'>"
                     f"<figcaption>{e(captions.get(name, name))}</figcaption></figure>")
    for title, rows in tables[1:]:
        if not rows:
            continue
        table(title, rows)
    parts.append("<h2>Sources</h2><ul>")
    for s in rep["sources"].values():
        parts.append(f"<li>{e(s['authors'])}, {e(s['title'])} ({s['year']}), "
                     f"<a href='{e(s['url'])}'>{e(s['url'])}</a></li>")
    for r in rep["literature_rows"]:
        parts.append(f"<li>{e(r['title'])}: <a href='{e(r['url'])}'>{e(r['url'])}</a> "
                     f"({'comparable' if r['comparable'] else 'not comparable'}: {e(r['note'])})</li>")
    parts.append("</ul></body></html>")
    return "\n".join(parts)


def render_markdown(rep: dict, png_names) -> str:
    """report.md: the same tables, the plots as PNG files beside it."""
    F, K = rep["figures"], rep["kinds"]
    lines = [f"# ternac report: {rep['model']} on the {rep['board_name']} ({rep['device']})", "",
             f"**{rep['headline']}**", "", f"Made {rep['date']} by `{rep['command'] or 'ternac report'}`; "
             f"build report `{rep['build']['source']}`.", ""]
    lines += [f"> {n}" for n in rep["notes"]] + [""]
    for name in png_names:
        lines += [f"![{name}]({name})", ""]
    for title, rows in _tables(rep):
        if not rows:
            continue
        lines += [f"## {title}", "", "| figure | value | unit | kind | key |", "|---|---:|---|---|---|"]
        lines += [f"| {label} | {fmt(F[key])} | {u} | {K[key]} | `{key}` |" for label, key, u in rows]
        lines.append("")
    lines += ["## Sources", ""] + [f"- {s['authors']}, {s['title']} ({s['year']}), {s['url']}"
                                   for s in rep["sources"].values()]
    lines += [f"- {r['title']}: {r['url']}" for r in rep["literature_rows"]]
    return "\n".join(lines) + "\n"


def write_report(rep: dict, out) -> list[pathlib.Path]:
    """Write report.json, report.md, report.html and the PNGs into ``out``; returns the
    paths."""
    from ternac.errors import write_json
    out = pathlib.Path(out)
    out.mkdir(parents=True, exist_ok=True)
    pngs = _plots(rep)
    paths = []
    for name, data in pngs.items():
        (out / name).write_bytes(data)
        paths.append(out / name)
    write_json(out / "report.json", rep)
    (out / "report.md").write_text(render_markdown(rep, list(pngs)))
    (out / "report.html").write_text(render_html(rep, pngs))
    return [out / "report.json", out / "report.md", out / "report.html", *paths]


if __name__ == "__main__":  # pragma: no cover
    ap = argparse.ArgumentParser(prog="python -m ternac.report")
    add_report_parser(ap.add_subparsers(dest="command", required=True))
    a = ap.parse_args()
    sys.exit(a.func(a))
