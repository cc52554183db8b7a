"""``ternac bench lm``: the MatMul-free LM's throughput per board configuration (issue 9).

For each configuration of :data:`CONFIGS` (the iCEBreaker at 32 lanes with I2 weights, the
iCEBreaker at 40 lanes with T3 weights, the ULX3S at 128 lanes) one JSON file
``<out>/lm-<name>.json`` with:

* ``cycles_per_token``: the RTL's own cycle counter (the sequencer's ``cycles``, start to
  done) over a Verilator run of a few tokens (prompt ``ROMEO:``'s first characters, then
  ``--tokens`` generated), every logit of every step compared with the integer golden
  model (``matches_golden``, ``logit_mismatches``): *measured*;
* ``weight_stream_bound_cycles`` = ternary weights / trits a cycle (one trit a lane a
  cycle: 32 for I2 at L = 32, 40 for T3 at L = 40, 128 at L = 128) and
  ``fraction_of_bound`` = bound / cycles per token: *derived*; ``padded_bound_cycles``
  counts the weight words the lowering actually streams (rows padded to whole tiles of L),
  *derived*;
* ``build``: achieved Fmax, the clock constrained, timing met, critical path, LUT / FF /
  DSP / EBR / SPRAM (used, available) from that configuration's board build
  (``boards.build.build_board``: Yosys + nextpnr), *measured*; a build runs synthesis even
  where the pre-synthesis estimate says the design cannot fit, so when place and route
  runs out of cells ``build.refused`` holds the sentence and ``resources`` what Yosys
  mapped, *measured (Yosys synthesis)*; with ``--no-build`` ``resources`` is the estimate,
  *modelled*;
* ``tokens_per_s`` = constrained clock / cycles per token (only when timing is met) and
  ``tokens_per_s_at_fmax`` = achieved Fmax / cycles: *derived*;
* ``targets``: issue 9's targets for the configuration (*requested*) and whether each
  figure meets it (*derived*).

and ``<out>/lm-lane-scaling.json``: where the cycles a token go at 32, 128 and 256 lanes of
the ULX3S generator (:func:`lane_scaling`, issue 9's "where the next bottleneck is for L =
256"), every figure *modelled* or *derived*.

Builds are slow (an ECP5 place and route of 128 lanes takes tens of minutes here), so the
board build goes through the design-space sweep's record cache
(:func:`ternac.sweep.run_sweep`, ``in_process=True``: one point at a time, no Ray): a
record is keyed by the sha256 of the point (board, lanes, clock, the named AccelConfig),
the checkpoint and corpus bytes, the tool versions and the ternac source
(:func:`ternac.sweep.source_hash`), and a re-run whose inputs hash the same reads the
stored record (``build.cached: true``) instead of building again. A record also holds the
sweep's own one-token RTL run (``build.sweep_cycles_per_token``, measured).

Exit codes: 0 when every configuration was measured and its RTL equals golden on every
logit (a timing miss or a refused build is a result, recorded, not a failure); 1 when an
RTL run differs from golden or a build failed (a tool error); 2 for a bad argument.
"""
from __future__ import annotations

import dataclasses
import pathlib
import sys
import time

from ternac.cliargs import range_message, whole

__all__ = ["BenchConfig", "CONFIGS", "bench_config", "bench_lm", "lane_scaling",
           "SCALING_LANES", "add_bench_lm_parser", "bench_lm_main"]


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """One benched configuration.

    Attributes
    ----------
    name : str        file stem, ``lm-<name>.json``
    board : str       ``boards.facts.BOARDS`` key
    config : str      name of the AccelConfig in ``ternac.config``
    freq_MHz : float  the clock the board build is constrained at (MHz; issue 9's target)
    targets : dict    issue 9's targets: ``cycles_per_token`` (at most),
                      ``fraction_of_bound`` (at least), ``clock_MHz`` (at least, met),
                      ``tokens_per_s`` (at least)
    """
    name: str
    board: str
    config: str
    freq_MHz: float
    targets: dict


#: Issue 9's configurations and targets (its "Targets" table).
CONFIGS = (
    BenchConfig("icebreaker-L32-i2", "icebreaker", "LM_CONFIG", 24.0,
                {"cycles_per_token": 15666, "fraction_of_bound": 0.85, "clock_MHz": 24.0,
                 "tokens_per_s": 1500}),
    BenchConfig("icebreaker-L40-t3", "icebreaker", "LM_T3_CONFIG", 24.0,
                {"cycles_per_token": 12530, "fraction_of_bound": 0.85, "clock_MHz": 24.0,
                 "tokens_per_s": 1900}),
    BenchConfig("ulx3s-L128-i2", "ulx3s", "LM_ULX3S_CONFIG", 50.0,
                {"cycles_per_token": 4160, "fraction_of_bound": 0.80, "clock_MHz": 50.0,
                 "tokens_per_s": 12000}),
)
_BY_NAME = {c.name: c for c in CONFIGS}

#: The RTL run: the first characters of this prompt, then ``tokens`` generated.
PROMPT = "ROMEO:"

KINDS = {
    "cycles_per_token": "measured (RTL cycle counter, Verilator; mean over the steps)",
    "cycles_per_step": "measured (RTL cycle counter, Verilator)",
    "cycles_min": "measured", "cycles_max": "measured",
    "matches_golden": "measured (every logit of every step compared)",
    "logit_mismatches": "measured",
    "cycles_model": "modelled (golden.cycles.program_cycles)",
    "ternary_weights": "measured (the checkpoint's trits)",
    "trits_per_cycle": "derived (one trit a lane a cycle from the weight memory)",
    "weight_stream_bound_cycles": "derived (ternary_weights / trits_per_cycle)",
    "fraction_of_bound": "derived (weight_stream_bound_cycles / cycles_per_token)",
    "padded_bound_cycles": "derived (weight words the program streams, rows padded to "
                           "whole tiles of L lanes)",
    "fraction_of_padded_bound": "derived",
    "build.resources": "measured (Yosys stat, nextpnr report) when build.status is ok or "
                       "timing_missed; modelled (boards/resources.py) when the build was "
                       "refused",
    "build.fmax_MHz_achieved": "measured (nextpnr static timing)",
    "build.clock_MHz_constrained": "requested",
    "build.critical_path": "measured (nextpnr)",
    "build.sweep_cycles_per_token": "measured (the sweep record's one-token RTL run)",
    "tokens_per_s": "derived (constrained clock / cycles_per_token; only when timing is met)",
    "tokens_per_s_at_fmax": "derived (achieved Fmax / cycles_per_token)",
    "tokens_per_s_at_constraint_unbuilt": "modelled (the constrained clock, which no build "
                                          "has shown this design meets, / cycles_per_token)",
    "targets": "requested (issue 9)", "meets": "derived",
    "wall_s": "measured (this machine)",
}


def _say(msg: str, progress: bool) -> None:
    if progress:
        print(f"[bench] {msg}", file=sys.stderr, flush=True)


def _rtl_run(intlm, cm, prompt_len: int, tokens: int, progress: bool) -> dict:
    """A few tokens on the Verilator RTL, every logit compared with the integer golden."""
    from ternac.sim.accel import run_lm
    ids = [int(t) for t in intlm.vocab.encode(PROMPT[:prompt_len]).tolist()]
    res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants,
                 cm.token_addr, ids, tokens, logits_addr=cm.logits_addr, n_logits=cm.n_logits,
                 logits_in_scratch=cm.logits_in_scratch, progress=progress)
    golden_logits: list = []
    golden_new = intlm.generate(ids, tokens, logits_out=golden_logits)
    mism = sum(sum(1 for a, b in zip(r, g) if int(a) != int(b)) + abs(len(r) - len(g))
               for r, g in zip(res["logits"], golden_logits))
    mism += sum(len(g) for g in golden_logits[len(res["logits"]):])
    new = [int(t) for t in res["tokens"][len(ids):]]
    cycles = [int(c) for c in res["cycles"]]
    return {"prompt": intlm.vocab.decode(ids), "tokens": tokens,
            "text": intlm.vocab.decode(new), "golden_text": intlm.vocab.decode(golden_new),
            "matches_golden": new == list(golden_new) and mism == 0,
            "logit_mismatches": mism, "logits_compared": sum(len(g) for g in golden_logits),
            "cycles_per_step": cycles,
            "cycles_per_token": sum(cycles) / len(cycles),
            "cycles_min": min(cycles), "cycles_max": max(cycles)}


def _build(bc: BenchConfig, lanes: int, *, build: bool, cache_dir, work_dir,
           progress: bool) -> dict:
    """The board build of ``bc`` through the sweep's cached records."""
    from ternac.sweep import Point, run_sweep
    # fit_check=False: a configuration the estimate refuses is still synthesized, so its
    # record holds what Yosys mapped (measured) rather than the estimate alone.
    point = Point(bc.board, "shakespeare", lanes, float(bc.freq_MHz), build=build,
                  energy=False, config=bc.config, fit_check=not build)
    s = run_sweep([point], cache_dir=cache_dir, work_dir=work_dir, progress=progress,
                  in_process=True, command=None)
    rec = s["points"][0]
    b = rec.get("build") or {}
    est = rec.get("estimate") or {}
    out = {"status": rec["status"], "reason": rec.get("reason"), "cached": s["cached"] == 1,
           "record": str(pathlib.Path(s["cache_dir"]) / f"{rec['key']}.json"),
           "key": rec["key"], "clock_MHz_constrained": rec.get("clock_MHz"),
           "fmax_MHz_achieved": rec.get("fmax_MHz_achieved"), "timing_met": rec.get("timing_met"),
           "critical_path": b.get("critical_path"), "bitstream": b.get("bitstream"),
           "wall_time_s": b.get("wall_time_s"),
           "sweep_cycles_per_token": rec.get("cycles_per_token"),
           "sweep_matches_golden": rec.get("matches_golden"),
           "estimate": est.get("resources"), "refused": None}
    cap = est.get("capacity") or {}
    if b.get("resources"):
        out["resources"] = {k: v for k, v in b["resources"].items()
                            if k in ("LC", "LUT", "FF", "DSP", "EBR", "SPRAM")}
        out["resources_kind"] = "measured"
    elif rec.get("synthesized"):
        # LC: the logic cells nextpnr's packer needed (its log), where placement ran out;
        # each holds one LUT4 and one FF, so the device's LC count is the LUT4 capacity.
        out["resources"] = {k: {"used": v, "available": cap.get("LUT" if k == "LC" else k)}
                            for k, v in rec["synthesized"].items()}
        out["resources_kind"] = ("measured (Yosys synthesis, and LC from nextpnr's packer; "
                                 "placement ran out of cells)")
    elif est.get("resources"):
        out["resources"] = {k: {"used": v, "available": cap.get(k)}
                            for k, v in est["resources"].items()}
        out["resources_kind"] = "modelled (boards/resources.py, before synthesis)"
    else:
        out["resources"], out["resources_kind"] = None, None
    if rec["status"] == "does_not_fit":
        out["refused"] = rec.get("reason")
    if not build and rec["status"] != "does_not_fit":
        out["status"] = "not_built"
    return out


def _load_intlm(text):
    """The shipped checkpoint's integer LM calibrated on ``text`` (checked against its
    corpus first); CheckpointError (one sentence) if it cannot be read."""
    from ternac.errors import CheckpointError, one_line
    from ternac.golden.lm_int import IntLM
    from ternac.runner import check_corpus
    check_corpus(None, text)
    try:
        return IntLM.from_checkpoint(None, text_path=text)
    except ValueError as exc:
        raise CheckpointError(one_line(exc)) from None


def bench_config(bc: BenchConfig, *, tokens: int = 2, prompt_len: int = 2, build: bool = True,
                 cache_dir="build/sweep/cache", work_dir="build/sweep/work",
                 progress: bool = True, text=None, intlm=None) -> dict:
    """Bench one configuration (module docstring); returns its JSON object. ``text``: the
    LM's corpus (None: golden.shakespeare_data.DEFAULT_TEXT), checked against the
    checkpoint's corpus_sha256 (ternac.runner.check_corpus). ``intlm``: that integer LM
    if the caller has loaded it already.

    Raises
    ------
    InputError for an unknown AccelConfig name; sim.runner.BenchFailed if the RTL run fails.
    """
    import ternac.config as configs
    from ternac.errors import InputError
    from ternac.golden.cycles import program_cycles
    from ternac.lower import compile_lm
    t0 = time.perf_counter()
    cfg = getattr(configs, bc.config, None)
    if not isinstance(cfg, configs.AccelConfig):
        raise InputError(f"{bc.config!r} is not an AccelConfig in ternac.config")
    _say(f"{bc.name}: lowering the LM for {bc.config} ({cfg.lanes} lanes, "
         f"{cfg.weight_format.upper()}) ...", progress)
    if intlm is None:
        intlm = _load_intlm(text)
    cm = compile_lm(intlm, cfg)
    trits = int(intlm.config.n_ternary)
    padded = sum(int(e.count) for e in cm.image.tensors)
    pc = program_cycles(cm.program, cfg.lanes, weight_format=cfg.weight_format,
                        mv_chain=cfg.mv_chain, norm_steps=cfg.norm_steps)
    _say(f"{bc.name}: the RTL in Verilator, {prompt_len} prompt tokens then {tokens} ...",
         progress)
    rtl = _rtl_run(intlm, cm, prompt_len, tokens, progress)
    _say(f"{bc.name}: {rtl['cycles_per_token']:.0f} cycles a token (RTL), matches golden: "
         f"{rtl['matches_golden']}; "
         + (f"board build ({bc.board}, {bc.freq_MHz:g} MHz) ..." if build
            else "no board build (--no-build): the resource estimate"), progress)
    bld = _build(bc, cfg.lanes, build=build, cache_dir=cache_dir, work_dir=work_dir,
                 progress=progress)
    cyc = rtl["cycles_per_token"]
    bound = trits / cfg.lanes
    rep = {
        "name": bc.name, "board": bc.board, "model": "shakespeare", "config_name": bc.config,
        "config": cfg.to_dict(), "lanes": cfg.lanes, "weight_format": cfg.weight_format,
        "weight_words": len(cm.weight_words), "instructions": len(cm.program),
        **{k: rtl[k] for k in ("prompt", "tokens", "text", "golden_text", "matches_golden",
                               "logit_mismatches", "logits_compared", "cycles_per_step",
                               "cycles_per_token", "cycles_min", "cycles_max")},
        "cycles_model": {k: pc[k] for k in ("total", "total_min", "exact", "by_op")},
        "ternary_weights": trits,
        "trits_per_cycle": cfg.lanes,
        "weight_stream_bound_cycles": bound,
        "fraction_of_bound": bound / cyc,
        "padded_bound_cycles": padded,
        "fraction_of_padded_bound": padded / cyc,
        "build": bld,
        "tokens_per_s": None, "tokens_per_s_at_fmax": None,
        "tokens_per_s_at_constraint_unbuilt": None,
    }
    clock = bld.get("clock_MHz_constrained") or bc.freq_MHz
    if bld["status"] in ("ok", "timing_missed"):
        if bld.get("timing_met"):
            rep["tokens_per_s"] = clock * 1e6 / cyc
        if bld.get("fmax_MHz_achieved"):
            rep["tokens_per_s_at_fmax"] = bld["fmax_MHz_achieved"] * 1e6 / cyc
    else:
        rep["tokens_per_s_at_constraint_unbuilt"] = clock * 1e6 / cyc
    t = bc.targets
    tps = rep["tokens_per_s"]
    rep["targets"] = dict(t)
    rep["meets"] = {
        "cycles_per_token": cyc <= t["cycles_per_token"],
        "fraction_of_bound": rep["fraction_of_bound"] >= t["fraction_of_bound"],
        "clock_MHz": bool(bld.get("timing_met")) and clock >= t["clock_MHz"],
        "tokens_per_s": tps is not None and tps >= t["tokens_per_s"],
    }
    rep["wall_s"] = round(time.perf_counter() - t0, 2)
    rep["kinds"] = KINDS
    return rep


def bench_lm(names=None, *, out_dir="build/bench", tokens: int = 2, prompt_len: int = 2,
             build: bool = True, cache_dir="build/sweep/cache", work_dir="build/sweep/work",
             progress: bool = True, text=None) -> list[dict]:
    """Bench the configurations ``names`` (default all of :data:`CONFIGS`, in order), one
    after another; writes ``<out_dir>/lm-<name>.json`` for each and returns the objects.

    Raises
    ------
    InputError for ``tokens`` outside 1 .. TOKENS_MAX, an empty ``text`` path, an unknown
    configuration name, a missing or other corpus, or an output folder that cannot be made.
    """
    from ternac.errors import InputError, check_output_dir, write_json
    if isinstance(tokens, bool) or not isinstance(tokens, int) or not 1 <= tokens <= TOKENS_MAX:
        raise InputError(range_message("--tokens", tokens, 1, TOKENS_MAX, why=_TOKENS_WHY))
    if text is not None and not str(text).strip():
        # The CLI refuses an empty --text before it gets here (cli.check_paths); an API
        # caller gets the same sentence.
        import os

        from ternac.golden.shakespeare_data import DEFAULT_TEXT
        raise InputError(f"the --text path is empty; give a path or leave the option out for "
                         f"the corpus {os.path.relpath(str(DEFAULT_TEXT))}")
    names = list(names or [c.name for c in CONFIGS])
    for n in names:
        if n not in _BY_NAME:
            raise InputError(f"unknown bench configuration {n!r}; choose from "
                             f"{', '.join(_BY_NAME)}")
    check_output_dir(out_dir, "bench output folder")
    from ternac.runner import check_corpus
    check_corpus(None, text)           # before any work: a missing corpus is one sentence
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    reps = []
    intlm = _load_intlm(text)
    for n in names:
        rep = bench_config(_BY_NAME[n], tokens=tokens, prompt_len=prompt_len, build=build,
                           cache_dir=cache_dir, work_dir=work_dir, progress=progress,
                           text=text, intlm=intlm)
        path = out / f"lm-{n}.json"
        write_json(path, rep)
        reps.append(rep)
        _say(f"{n}: wrote {path}", progress)
    path = out / "lm-lane-scaling.json"
    write_json(path, lane_scaling(text=text, intlm=intlm))
    _say(f"lane scaling (modelled, L = {', '.join(map(str, SCALING_LANES))}): wrote {path}",
         progress)
    return reps


#: Lane counts of the scaling study (:func:`lane_scaling`): the iCEBreaker's 32, the ULX3S's
#: 128, and 256, issue 9's next step (not 64: the LM's SIGMOID pair epilogue needs k >= 2L +
#: 4 or one tile, golden.cycles.matvec_cycles, and its k = 128 f-projection has 2 tiles).
SCALING_LANES = (32, 128, 256)


def lane_scaling(lanes=SCALING_LANES, *, text=None, intlm=None) -> dict:
    """Where the LM's cycles a token go as the ULX3S generator widens (issue 9: "report
    where the next bottleneck is for L = 256"): one entry per lane count, every figure
    *modelled* or *derived*, none measured (no RTL at 256 lanes: AccelConfig stops at 128).

    The instruction stream is the ULX3S lowering's (:data:`ternac.config.LM_ULX3S_CONFIG`,
    I2), lowered at ``L`` itself below 128 lanes (its one-tile chains need ``n <= L``);
    above, the 128-lane stream: a MATVEC's cost depends only on its ``n``, ``k`` and the
    lanes, so golden.cycles.program_cycles prices it at any ``L``; an EMBED's word count
    ``k`` is rescaled to ``L``'s words (``ceil(k * 128 / L)``: a word holds ``L / 4``
    bytes), and
    MATVEC chaining (``mv_chain``) is modelled only where every chained first MATVEC has
    ``k >= L`` (ternac.lower's rule), else off (``mv_chain`` in the entry).

    Per entry: ``cycles_per_token`` and ``by_op`` (program_cycles, modelled);
    ``weight_stream_bound_cycles`` = ternary weights / L and ``fraction_of_bound``
    (derived); ``padded_stream_cycles`` = sum over MATVECs of ``ceil(n / L) * k``, the
    weight words streamed with rows padded to whole tiles (derived); ``drain_cycles`` = sum
    of ``ceil(n / L) * L``: the engine drains every lane of a tile, one result a cycle,
    padding included (hw/engine.py; derived); ``outside_matvec_cycles``: the vector ops,
    EMBED and ARGMAX that run on their own (modelled); ``bottleneck``: the largest of
    those three terms by name.

    ``intlm``: the integer LM (golden.lm_int.IntLM) if the caller has it loaded already
    (default: the shipped checkpoint calibrated on ``text``).

    Returns ``{"lanes": {L: entry}, "program", "ternary_weights", "kinds"}``.

    Raises
    ------
    ValueError for a lane count that is not a positive multiple of 4, or one whose MATVECs
    the cycle model does not cover (golden.cycles); InputError for a missing or other corpus
    (ternac.runner.check_corpus).
    """
    import dataclasses as dc

    from ternac.config import LM_ULX3S_CONFIG as cfg
    from ternac.golden.cycles import program_cycles
    from ternac.golden.isa import Op
    from ternac.lower import compile_lm
    if intlm is None:
        intlm = _load_intlm(text)
    cm = compile_lm(intlm, cfg)
    trits = int(intlm.config.n_ternary)
    out = {}
    for L in lanes:
        if isinstance(L, bool) or not isinstance(L, int) or L < 4 or L % 4:
            raise ValueError(f"a lane count is a positive multiple of 4, not {L!r}")
        if L < cfg.lanes:
            # Lowered at L itself: the one-tile forms (chained pairs, chains of three) and
            # the scratch layout follow the lane count (the weight memory as deep as the
            # ULX3S's in bits).
            prog = compile_lm(intlm, dc.replace(
                cfg, lanes=L, weight_depth=cfg.weight_depth * cfg.lanes // L)).program
        else:
            prog = [dc.replace(i, k=-(-i.k * cfg.lanes // L)) if i.op == Op.EMBED else i
                    for i in cm.program]
        mvs = [i for i in prog if i.op == Op.MATVEC]
        # The chained first MATVECs (a MATVEC right after a MATVEC and its epilogue).
        firsts, prev = [], None
        j = 0
        while j < len(prog):
            ins = prog[j]
            if ins.op == Op.MATVEC and prev is not None:
                firsts.append(prev)
            prev = ins if ins.op == Op.MATVEC else None
            j += 2 if ins.op == Op.MATVEC and ins.epi else 1
        chain = cfg.mv_chain and all(p.k >= L for p in firsts)
        pc = program_cycles(prog, L, weight_format="i2", mv_chain=chain,
                            norm_steps=cfg.norm_steps)
        stream = sum(-(-i.n // L) * i.k for i in mvs)
        drain = sum(-(-i.n // L) * L for i in mvs)
        outside = pc["total"] - pc["by_op"].get("MATVEC", 0)
        terms = {"weight stream (padded tiles)": stream,
                 "engine drain (one result a cycle, every lane of a tile)": drain,
                 "vector ops, EMBED and ARGMAX outside MATVECs": outside}
        out[L] = {"cycles_per_token": pc["total"], "by_op": pc["by_op"], "mv_chain": chain,
                  "weight_stream_bound_cycles": trits / L,
                  "fraction_of_bound": trits / L / pc["total"],
                  "padded_stream_cycles": stream, "drain_cycles": drain,
                  "outside_matvec_cycles": outside,
                  "bottleneck": max(terms, key=terms.get)}
    return {"lanes": out,
            "program": f"the ULX3S lowering (LM_ULX3S_CONFIG, {cfg.lanes} lanes, I2), "
                       f"{len(cm.program)} instructions, EMBED words rescaled to each L",
            "ternary_weights": trits,
            "kinds": {"cycles_per_token": "modelled (golden.cycles.program_cycles)",
                      "by_op": "modelled", "outside_matvec_cycles": "modelled",
                      "weight_stream_bound_cycles": "derived (ternary weights / L)",
                      "fraction_of_bound": "derived", "padded_stream_cycles": "derived",
                      "drain_cycles": "derived (hw/engine.py drains L results a tile)",
                      "ternary_weights": "measured (the checkpoint's trits)"}}


def _line(rep: dict) -> str:
    b = rep["build"]
    res = b.get("resources") or {}

    def r(k):
        v = res.get(k) or {}
        return f"{k} {v.get('used')}"
    fmax = b.get("fmax_MHz_achieved")
    tps = rep["tokens_per_s"] or rep["tokens_per_s_at_constraint_unbuilt"]
    return (f"{rep['name']}: {rep['cycles_per_token']:.0f} cycles/token (measured), "
            f"{rep['fraction_of_bound']:.3f} of the bound {rep['weight_stream_bound_cycles']:.0f}"
            f" (derived); build {b['status']}"
            + (f", Fmax {fmax} MHz for {b['clock_MHz_constrained']}" if fmax else "")
            + f"; {', '.join(r(k) for k in ('LUT', 'FF', 'DSP', 'EBR', 'SPRAM'))} "
            f"({b.get('resources_kind')}); "
            + (f"{tps:,.0f} tokens/s ({'derived' if rep['tokens_per_s'] else 'modelled, unbuilt'})"
               if tps else "no tokens/s (timing missed)")
            + ("" if rep["matches_golden"] else "; RTL DIFFERS FROM GOLDEN"))


#: The most tokens one configuration generates on the RTL (a Verilator run, every logit
#: compared with golden).
TOKENS_MAX = 64
_TOKENS_WHY = "tokens generated on the RTL in Verilator, every logit compared with golden"
_tokens = whole("--tokens", 1, TOKENS_MAX, why=_TOKENS_WHY)


def add_bench_lm_parser(bsub):
    """Add ``lm`` to the ``ternac bench`` subparsers; sets ``func=bench_lm_main``."""
    b = bsub.add_parser("lm", help="the LM per board configuration: RTL cycles a token, the "
                                   "fraction of the weight-stream bound, Fmax, resources, "
                                   "tokens/s (one JSON each)")
    b.add_argument("--config", action="append", choices=[c.name for c in CONFIGS],
                   help="a configuration (repeat; default all)")
    b.add_argument("--out", default="build/bench", metavar="DIR",
                   help="folder of the lm-<name>.json files (default build/bench)")
    b.add_argument("--tokens", type=_tokens, default=2,
                   help=f"tokens generated on the RTL (default 2, at most {TOKENS_MAX})")
    b.add_argument("--no-build", action="store_true",
                   help="no board build: resources from the estimate (modelled), no Fmax")
    b.add_argument("--cache", default="build/sweep/cache", metavar="DIR",
                   help="the sweep's record cache (default build/sweep/cache)")
    b.add_argument("--text", default=None, metavar="PATH",
                   help="the LM's corpus (default ../shared/data/tinyshakespeare.txt; must be "
                        "the one the checkpoint was trained on)")
    b.set_defaults(func=bench_lm_main)
    return b


def bench_lm_main(args) -> int:
    """``ternac bench lm``; returns the exit code (module docstring)."""
    reps = bench_lm(args.config, out_dir=args.out, tokens=args.tokens,
                    build=not args.no_build, cache_dir=args.cache, text=args.text)
    for rep in reps:
        print(_line(rep))
    bad = [r["name"] for r in reps if not r["matches_golden"] or r["build"]["status"] == "error"]
    return 1 if bad else 0
