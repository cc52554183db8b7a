"""Verilator backend: run a compiled program on the simulated Accelerator RTL."""
from __future__ import annotations

import pathlib

from ternac.config import AccelConfig

__all__ = ["run_batch", "build_accelerator"]


def build_accelerator(cfg: AccelConfig, weight_words, program_words, *, build_dir=None,
                      progress: bool = True):
    """Elaborate :class:`hw.top.Accelerator` with its memories initialised and build it in
    Verilator (cached). Returns ``(runner, build_dir, toplevel_name)``."""
    from hw.top import Accelerator
    from sim.runner import build
    top = Accelerator(cfg, weight_words=weight_words, program_words=program_words)
    name = f"ternac_top_L{cfg.lanes}"
    runner, bdir = build(top, name, build_root=pathlib.Path(build_dir) if build_dir else None,
                         progress=progress)
    return runner, bdir, name


def run_batch(cfg: AccelConfig, weight_words, program_words, inputs, input_addr: int,
              logits_addr: int, n_logits: int, *, build_dir=None, progress: bool = True,
              chunk: int = 60, scratch_readback: tuple[int, int] | None = None) -> dict:
    """Run ``inputs`` (a list of int vectors) one after another on the RTL.

    Each input is written into the scratchpad at ``input_addr`` through the host port, the
    program runs to HALT, and ``n_logits`` 32-bit words are read from the output buffer at
    ``logits_addr``.

    Returns
    -------
    dict with ``logits`` (list of lists of int), ``results`` (ARGMAX index per input) and
    ``cycles`` (cycles from start to done per input, measured by the RTL's own counter),
    and ``scratch`` (the words ``scratch_readback = (addr, n)`` after each run, if asked).

    Raises
    ------
    sim.runner.BenchFailed if the bench fails (e.g. the program never halts).
    """
    from sim.runner import run_bench
    runner, bdir, name = build_accelerator(cfg, weight_words, program_words,
                                           build_dir=build_dir, progress=progress)
    inputs = [list(map(int, x)) for x in inputs]
    out = {"logits": [], "results": [], "cycles": [], "scratch": []}
    chunks = [inputs[k:k + chunk] for k in range(0, len(inputs), chunk)]
    it = chunks
    if progress:
        from tqdm import tqdm
        it = tqdm(chunks, desc=f"RTL L={cfg.lanes}", unit="chunk", leave=False)
    for part in it:
        res = run_bench(runner, bdir, name, "bench_top", inputs={
            "inputs": part, "input_addr": input_addr, "logits_addr": logits_addr,
            "n_logits": n_logits, "scratch_readback": scratch_readback})
        for k in out:
            out[k].extend(res[k])
    return out
