"""Verilator backend: run a compiled program on the simulated Accelerator RTL."""
from __future__ import annotations

import pathlib
import time

from ternac.config import AccelConfig

__all__ = ["run_batch", "build_accelerator", "run_lm", "SPEED_KEYS"]

#: The speed of a run, measured, in the dicts run_batch and run_lm return:
#: ``sim_clock_cycles`` (clock cycles simulated, host-port traffic included),
#: ``bench_seconds`` / ``bench_cpu_seconds`` (wall / CPU seconds of the simulator process
#: while the cocotb benches ran), ``sim_wall_seconds`` (wall seconds of the simulator runs,
#: start-up of each process included) and ``sim_runs`` (simulator processes started).
SPEED_KEYS = ("sim_clock_cycles", "bench_seconds", "bench_cpu_seconds", "sim_wall_seconds",
              "sim_runs")


def _add_speed(speed: dict, res: dict, wall: float) -> None:
    for k in SPEED_KEYS[:3]:
        speed[k] += res.get(k, 0)
    speed["sim_wall_seconds"] += wall
    speed["sim_runs"] += 1


def build_accelerator(cfg: AccelConfig, weight_words, program_words, *, build_dir=None,
                      progress: bool = True, **build_options):
    """Elaborate :class:`hw.top.Accelerator` with its memories initialised and build it in
    Verilator (cached). ``build_options`` go to :func:`sim.runner.build` (default: the
    clock inside Verilator, ``clock="hdl"``). Returns ``(runner, build_dir, toplevel_name)``."""
    import hashlib
    import json

    from ternac.hw.top import Accelerator
    from ternac.sim.runner import build, source_digest
    weight_words, program_words = [int(w) for w in weight_words], [int(w) for w in program_words]
    name = f"ternac_top_L{cfg.lanes}"
    options = {"clock": "hdl", **build_options}
    # The Verilog is a function of these and of the code: a known build is found without
    # converting the design again (seconds for the LM).
    fingerprint = hashlib.sha256(json.dumps(
        [repr(cfg), weight_words, program_words, sorted(map(repr, options.items())),
         source_digest()]).encode()).hexdigest()
    runner, bdir = build(lambda: Accelerator(cfg, weight_words=weight_words,
                                             program_words=program_words),
                         name, build_root=pathlib.Path(build_dir) if build_dir else None,
                         progress=progress, fingerprint=fingerprint, **options)
    return runner, bdir, name


def run_batch(cfg: AccelConfig, weight_words, program_words, inputs, input_addr: int,
              logits_addr: int, n_logits: int, *, build_dir=None, progress: bool = True,
              chunk: int | None = None,
              scratch_readback: tuple[int, int] | None = None) -> dict:
    """Run ``inputs`` (a list of int vectors) one after another on the RTL.

    Each input is written into the scratchpad at ``input_addr`` through the host port, the
    program runs to HALT, and ``n_logits`` 32-bit words are read from the output buffer at
    ``logits_addr``. ``chunk`` inputs go to one simulator process (default: all of them, in
    one; each process costs a start-up of about 0.3 s); the progress bar counts inputs as
    the bench finishes them.

    Returns
    -------
    dict with ``logits`` (list of lists of int), ``results`` (ARGMAX index per input) and
    ``cycles`` (cycles from start to done per input, measured by the RTL's own counter),
    and ``scratch`` (the words ``scratch_readback = (addr, n)`` after each run, if asked);
    and the simulation's speed, measured (:data:`SPEED_KEYS`).

    Raises
    ------
    sim.runner.BenchFailed if the bench fails (e.g. the program never halts).
    """
    from ternac.sim.runner import run_bench
    runner, bdir, name = build_accelerator(cfg, weight_words, program_words,
                                           build_dir=build_dir, progress=progress)
    inputs = [list(map(int, x)) for x in inputs]
    out = {"logits": [], "results": [], "cycles": [], "scratch": []}
    chunk = chunk or max(len(inputs), 1)
    chunks = [inputs[k:k + chunk] for k in range(0, len(inputs), chunk)]
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=len(inputs), desc=f"RTL L={cfg.lanes}", unit="input", leave=False)
    speed = dict.fromkeys(SPEED_KEYS, 0)
    try:
        for part in chunks:
            t0 = time.perf_counter()
            res = run_bench(runner, bdir, name, "bench_top", inputs={
                "inputs": part, "input_addr": input_addr, "logits_addr": logits_addr,
                "n_logits": n_logits, "scratch_readback": scratch_readback},
                on_progress=(lambda rec: bar.update(1)) if bar is not None else None)
            _add_speed(speed, res, time.perf_counter() - t0)
            for k in out:
                out[k].extend(res[k])
    finally:
        if bar is not None:
            bar.close()
    return {**out, **speed}


def run_lm(cfg: AccelConfig, weight_words, program_words, constants: dict, token_addr: int,
           prompt: list[int], n_new: int, *, logits_addr: int = 0, n_logits: int = 0,
           logits_in_scratch: bool = False, build_dir=None, progress: bool = True,
           on_step=None) -> dict:
    """Generate with a language-model program on the RTL, token by token.

    ``constants`` ({scratch address: list of int16 words}) are written once; then, for each
    step, the token id goes to ``scratch[token_addr]``, the program runs to HALT, the
    ``n_logits`` logits are read (from the output buffer, or the scratchpad) and the result
    register is the next token. The prompt is fed as given; afterwards each result is fed
    back. ``len(prompt) + n_new - 1`` runs.

    ``on_step``, if given, is called with each step's record as the simulator finishes it
    (``{"step", "token", "result", "cycles"}``: the step index from 0, the token fed, the
    result register, its cycles; from a watcher thread, about 0.1 s after the step; in
    order): the caller shows the progress then, so there is no progress bar here.

    Returns
    -------
    dict with ``tokens`` (prompt + n_new generated ids), ``logits`` (one list a step),
    ``results`` and ``cycles`` (a step each, the RTL's own cycle counter); and the
    simulation's speed, measured (:data:`SPEED_KEYS`).
    """
    from ternac.sim.runner import run_bench
    runner, bdir, name = build_accelerator(cfg, weight_words, program_words,
                                           build_dir=build_dir, progress=progress)
    bar = None
    steps = len(prompt) + n_new - 1
    if progress:
        import sys
        print(f"[run] the RTL in Verilator: {steps} steps ({len(prompt)} prompt tokens in, "
              f"{n_new} generated out; a step feeds one token and yields the next) ...",
              file=sys.stderr, flush=True)
    if progress and on_step is None:
        from tqdm import tqdm
        bar = tqdm(total=steps, desc="RTL steps", unit="step", leave=False)

    def step(rec):
        if bar is not None:
            bar.update(1)
        if on_step is not None:
            on_step(rec)
    t0 = time.perf_counter()
    try:
        res = run_bench(runner, bdir, name, "bench_lm", inputs={
            "constants": [[int(a), [int(v) for v in vals]] for a, vals in constants.items()],
            "token_addr": token_addr, "prompt": [int(t) for t in prompt], "n_new": n_new,
            "logits_addr": logits_addr, "n_logits": n_logits,
            "logits_in_scratch": logits_in_scratch},
            on_progress=step if (bar is not None or on_step is not None) else None)
    finally:
        if bar is not None:
            bar.close()
    speed = dict.fromkeys(SPEED_KEYS, 0)
    _add_speed(speed, res, time.perf_counter() - t0)
    return {**res, **speed}
