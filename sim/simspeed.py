"""Simulation speed of the Verilator backend: simulated clock cycles a second of the
Accelerator RTL on the flagship LM (greedy generation from "ROMEO:") and on digits (all 360
test digits), every token and logit checked against the integer golden model.

Two configurations, built and run in the same call so that both see the same machine:

``current``
    what :mod:`sim.accel` does: only the top ports visible to VPI, the clock inside
    Verilator (``sim.runner.build(clock="hdl")``), the bench waiting on ``done`` (one VPI
    callback a program, none a clock edge), ``OPT_FAST=-O2``, one simulator process a batch.
``legacy``
    what the benches did before (commit aecd826): cocotb's ``--public-flat-rw``, a cocotb
    ``Clock``, ``done`` polled every 64 cycles with ``ClockCycles`` (Python woken on every
    edge), the model compiled with verilated.mk's ``-Os``, 60 digits a simulator process.

Figures (all measured on this machine in this run, so they move with its load; the
1-minute load average is reported next to them): ``sim_cycles_per_s`` = simulated clock
cycles (host-port traffic included) / wall seconds of the simulator processes (their
start-up included, the Verilator build and the Verilog conversion not);
``bench_cycles_per_s`` the same without the start-up; ``cpu_cycles_per_s`` per CPU second
of the simulator process (the least load-dependent of the three).

Run: ``python -m ternac.sim.simspeed --json build/bench/simspeed.json`` (``make bench``).
"""
from __future__ import annotations

import argparse
import datetime
import os
import sys
import time

__all__ = ["measure_lm", "measure_digits", "measure", "main", "LEGACY", "CURRENT"]

#: sim.runner.build options of each configuration.
CURRENT: dict = {}
LEGACY: dict = {"public": "all", "clock": "cocotb", "make_vars": []}
#: How the legacy bench waited for done, and how many digits it ran a simulator process.
LEGACY_POLL_CYCLES = 64
LEGACY_CHUNK = 60


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[simspeed] {msg}", file=sys.stderr, flush=True)


def _figures(res: dict, program_cycles: int) -> dict:
    """Rates from the speed keys of a run (``sim.accel.SPEED_KEYS``)."""
    cyc = res["sim_clock_cycles"]
    return {
        "program_cycles": program_cycles,
        "sim_clock_cycles": cyc,
        "sim_wall_seconds": round(res["sim_wall_seconds"], 3),
        "bench_seconds": round(res["bench_seconds"], 3),
        "bench_cpu_seconds": round(res["bench_cpu_seconds"], 3),
        "sim_runs": res["sim_runs"],
        "sim_cycles_per_s": round(cyc / res["sim_wall_seconds"]),
        "bench_cycles_per_s": round(cyc / res["bench_seconds"]),
        "cpu_cycles_per_s": round(cyc / res["bench_cpu_seconds"]),
        "program_cycles_per_s": round(program_cycles / res["sim_wall_seconds"]),
    }


def _build(cfg, weight_words, program_words, options: dict, build_dir, progress: bool):
    """Build (or find cached) the Accelerator; returns (runner, dir, name, seconds, cached)."""
    from ternac.sim.accel import build_accelerator
    from ternac.sim.runner import build_flags
    t0 = time.perf_counter()
    runner, bdir, name = build_accelerator(cfg, weight_words, program_words,
                                           build_dir=build_dir, progress=progress, **options)
    seconds = time.perf_counter() - t0
    stamp = (bdir / ".built").read_text().strip()
    flags = build_flags(options.get("public", "ports"), options.get("clock", "hdl"),
                        options.get("make_vars"))
    return runner, bdir, name, {"build_seconds": round(seconds, 2), "built": stamp,
                                "build_dir": bdir.name, "flags": flags}


def measure_lm(tokens: int = 16, prompt: str = "ROMEO:", *, config: str = "current",
               build_dir=None, progress: bool = False) -> dict:
    """Generate ``tokens`` greedy tokens of the committed LM on the RTL and time it.

    Returns
    -------
    dict: ``design``, ``config``, ``steps``, build facts (``build_seconds`` of this call,
    wall, Verilog conversion included, a cached build costs only that; ``built``: the
    build's own stamp), the rates of :func:`_figures`, and ``bit_exact`` (every token and
    every logit of every step equal to ``IntLM.step``).

    Raises
    ------
    AssertionError if the RTL differs from the golden model; sim.runner.BenchFailed.
    """
    from ternac.golden.lm_int import IntLM
    from ternac.lower import LM_CONFIG, compile_lm
    from ternac.sim.accel import SPEED_KEYS, run_lm
    from ternac.sim.runner import run_bench
    intlm = IntLM.from_checkpoint(None)
    cm = compile_lm(intlm, LM_CONFIG)
    ids = intlm.vocab.encode(prompt).tolist()
    golden_logits: list = []
    golden_new = intlm.generate(ids, tokens, logits_out=golden_logits)
    options = CURRENT if config == "current" else LEGACY
    _log(f"LM, {config}: build", progress)
    runner, bdir, name, facts = _build(cm.cfg, cm.weight_words, cm.program_words, options,
                                       build_dir, progress)
    _log(f"LM, {config}: {tokens} tokens", progress)
    load0 = os.getloadavg()[0]
    if config == "current":
        res = run_lm(cm.cfg, cm.weight_words, cm.program_words, cm.scratch_constants,
                     cm.token_addr, ids, tokens, logits_addr=cm.logits_addr,
                     n_logits=cm.n_logits, logits_in_scratch=cm.logits_in_scratch,
                     build_dir=build_dir, progress=False)
    else:
        t0 = time.perf_counter()
        res = run_bench(runner, bdir, name, "bench_lm", inputs={
            "constants": [[int(a), [int(v) for v in vals]]
                          for a, vals in cm.scratch_constants.items()],
            "token_addr": cm.token_addr, "prompt": ids, "n_new": tokens,
            "logits_addr": cm.logits_addr, "n_logits": cm.n_logits,
            "logits_in_scratch": cm.logits_in_scratch, "poll_cycles": LEGACY_POLL_CYCLES})
        res.update(sim_wall_seconds=time.perf_counter() - t0, sim_runs=1)
    assert all(k in res for k in SPEED_KEYS)
    assert res["tokens"][len(ids):] == golden_new, "the RTL generated other tokens"
    assert len(res["logits"]) == len(golden_logits)
    for k, (a, b) in enumerate(zip(res["logits"], golden_logits)):
        assert a == [int(v) for v in b], f"step {k}: a logit differs from the golden model"
    return {"design": "lm", "config": config, "prompt": prompt, "tokens": tokens,
            "steps": len(res["cycles"]), **facts, **_figures(res, sum(res["cycles"])),
            "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "bit_exact": True}


def measure_digits(lanes: int = 8, *, config: str = "current", build_dir=None,
                   progress: bool = False) -> dict:
    """Run all 360 test digits through the compiled classifier (``lanes`` lanes) on the RTL
    and time it; every logit compared with ``golden.mlp.int_forward``. Returns a dict as
    :func:`measure_lm` does (``inputs`` for ``steps``).

    Raises
    ------
    AssertionError if a logit differs; sim.runner.BenchFailed.
    """
    import torch

    from ternac.config import AccelConfig
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.golden.mlp import DEFAULT_CHECKPOINT, int_forward, int_layers_from_checkpoint
    from ternac.lower import compile_mlp
    from ternac.sim.accel import SPEED_KEYS, run_batch
    from ternac.sim.runner import run_bench
    layers = int_layers_from_checkpoint(DEFAULT_CHECKPOINT)
    cfg = AccelConfig(lanes=lanes)
    c = compile_mlp(layers, cfg)
    _, _, x_test, _ = load_split()
    x = quantize_pixels(x_test)
    golden = int_forward(layers, x)
    options = CURRENT if config == "current" else LEGACY
    _log(f"digits L={lanes}, {config}: build", progress)
    runner, bdir, name, facts = _build(cfg, c.weight_words, c.program_words, options,
                                       build_dir, progress)
    _log(f"digits L={lanes}, {config}: {len(x)} inputs", progress)
    load0 = os.getloadavg()[0]
    inputs = x.tolist()
    if config == "current":
        res = run_batch(cfg, c.weight_words, c.program_words, inputs, c.input_addr,
                        c.logits_addr, c.n_logits, build_dir=build_dir, progress=False)
    else:
        res = {"logits": [], "cycles": [], **dict.fromkeys(SPEED_KEYS, 0)}
        for k in range(0, len(inputs), LEGACY_CHUNK):
            t0 = time.perf_counter()
            part = run_bench(runner, bdir, name, "bench_top", inputs={
                "inputs": inputs[k:k + LEGACY_CHUNK], "input_addr": c.input_addr,
                "logits_addr": c.logits_addr, "n_logits": c.n_logits,
                "poll_cycles": LEGACY_POLL_CYCLES})
            res["logits"] += part["logits"]
            res["cycles"] += part["cycles"]
            for key in SPEED_KEYS[:3]:
                res[key] += part[key]
            res["sim_wall_seconds"] += time.perf_counter() - t0
            res["sim_runs"] += 1
    rtl = torch.tensor(res["logits"])
    assert rtl.shape == golden.shape and torch.equal(rtl, golden), "a logit differs"
    return {"design": f"digits_L{lanes}", "config": config, "inputs": len(inputs),
            **facts, **_figures(res, sum(res["cycles"])),
            "loadavg_1min": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "bit_exact": True}


def measure(*, tokens: int = 16, lanes: int = 8, legacy: bool = True, build_dir=None,
            progress: bool = True) -> dict:
    """Both designs in both configurations (``legacy=False``: current only). Returns the
    JSON of ``make bench`` (``build/bench/simspeed.json``): ``runs`` (one dict a design and
    configuration), ``sim_cycles_per_s`` / ``cpu_cycles_per_s`` ({design: {config: rate}}),
    ``speedup`` (current over legacy, derived), the machine, and ``kinds``."""
    runs = []
    for config in (("legacy", "current") if legacy else ("current",)):
        runs.append(measure_lm(tokens, config=config, build_dir=build_dir, progress=progress))
        runs.append(measure_digits(lanes, config=config, build_dir=build_dir,
                                   progress=progress))
    rate: dict = {}
    cpu: dict = {}
    for r in runs:
        rate.setdefault(r["design"], {})[r["config"]] = r["sim_cycles_per_s"]
        cpu.setdefault(r["design"], {})[r["config"]] = r["cpu_cycles_per_s"]
    out = {
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join(["python -m ternac.sim.simspeed", *sys.argv[1:]]),
        "machine": {"cpus": os.cpu_count(), "loadavg": [round(v, 2) for v in os.getloadavg()]},
        "runs": runs,
        "sim_cycles_per_s": rate,
        "cpu_cycles_per_s": cpu,
    }
    if legacy:
        out["speedup"] = {d: {"wall": round(v["current"] / v["legacy"], 2),
                              "cpu": round(cpu[d]["current"] / cpu[d]["legacy"], 2)}
                          for d, v in rate.items()}
    out["kinds"] = {"runs": "measured", "sim_cycles_per_s": "measured",
                    "cpu_cycles_per_s": "measured", "machine": "measured",
                    **({"speedup": "derived"} if legacy else {})}
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m ternac.sim.simspeed",
                                 description="Simulated cycles a second of the RTL (LM, digits).")
    from ternac.cliargs import lanes, whole
    ap.add_argument("--tokens", type=whole("--tokens", 1), default=16,
                    help="LM tokens to generate (16)")
    ap.add_argument("--lanes", type=lanes, default=8, help="digits lanes (8)")
    ap.add_argument("--no-legacy", action="store_true",
                    help="skip the configuration of before (its builds take a minute or two)")
    ap.add_argument("--build-dir", default=None, help="root of the Verilator builds")
    ap.add_argument("--json", default=None, help="write the figures here")
    args = ap.parse_args(argv)
    from ternac.config import AccelConfig
    from ternac.errors import write_json
    try:            # the digits lanes, checked before the LM measurement runs
        AccelConfig(lanes=args.lanes)
    except ValueError as exc:
        ap.error(f"--lanes: {exc}")
    r = measure(tokens=args.tokens, lanes=args.lanes, legacy=not args.no_legacy,
                build_dir=args.build_dir)
    for run in r["runs"]:
        print(f"{run['design']:>10} {run['config']:>8}: {run['sim_cycles_per_s']:>10,} "
              f"cycles/s wall ({run['cpu_cycles_per_s']:,} per CPU s; "
              f"{run['sim_clock_cycles']:,} cycles in {run['sim_wall_seconds']} s, "
              f"{run['sim_runs']} process(es); load {run['loadavg_1min'][0]})")
    for d, s in r.get("speedup", {}).items():
        print(f"{d:>10} speed-up: {s['wall']}x wall, {s['cpu']}x CPU")
    if args.json:
        write_json(args.json, r)
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
