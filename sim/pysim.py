"""One run of a program on the whole Accelerator in Amaranth's own simulator (no Verilator
build): the host port writes scratch, RUN, and the host port reads words back. The tests
that compare single instructions and short programs with the interpreter and the cycle
model (test_cycles, test_dot, test_t3, test_epilogue) share it."""
from __future__ import annotations

from typing import Mapping, Sequence

__all__ = ["run_program_pysim"]


def run_program_pysim(cfg, program, weight_words: Sequence[int] = (),
                      scratch: Mapping[int, Sequence[int]] | None = None,
                      reads: Sequence[tuple[int, int, int]] = (), *,
                      max_cycles: int = 100_000, signed: bool = True) -> dict:
    """Run ``program`` (list of Instr, ending in HALT) once on ``hw.top.Accelerator(cfg)``.

    Parameters
    ----------
    cfg : AccelConfig
    weight_words : the weight memory's initial words
    scratch : ``{addr: [words]}`` written to SCRATCH over the host port before RUN (each
        word as its low 32 bits)
    reads : ``(space, addr, n)`` ranges read over the host port after the run
    max_cycles : clock cycles waited for ``done`` after RUN
    signed : read words as signed 32-bit (else as the raw 32-bit ``host_rdata``)

    Returns
    -------
    dict: ``cycles`` and ``result`` (the RTL's outputs, measured) and ``words`` (a list
    per range of ``reads``).

    Raises
    ------
    AssertionError when the program does not finish within ``max_cycles`` or ends with
    ``error`` set.
    """
    from amaranth.sim import Simulator

    from ternac.config import HostSpace
    from ternac.golden.isa import encode_program
    from ternac.hw.top import Accelerator
    top = Accelerator(cfg, weight_words=list(weight_words),
                      program_words=encode_program(program))
    sim = Simulator(top)
    sim.add_clock(1e-8)
    out: dict = {}

    async def bench(ctx):
        ctx.set(top.host_space, HostSpace.SCRATCH)
        ctx.set(top.host_we, 1)
        for addr, vals in (scratch or {}).items():
            for j, v in enumerate(vals):
                ctx.set(top.host_addr, addr + j)
                ctx.set(top.host_wdata, int(v) & 0xFFFFFFFF)
                await ctx.tick()
        ctx.set(top.host_we, 0)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        for _ in range(max_cycles):
            await ctx.tick()
            if ctx.get(top.done) and not ctx.get(top.busy):
                break
        assert ctx.get(top.done), "the program did not finish"
        assert not ctx.get(top.error), "the program ended with the error flag set"
        out["cycles"], out["result"] = ctx.get(top.cycles), ctx.get(top.result)
        out["words"] = []
        for space, addr, n in reads:
            words = []
            ctx.set(top.host_space, space)
            ctx.set(top.host_re, 1)
            for j in range(n):
                ctx.set(top.host_addr, addr + j)
                await ctx.tick()
                w = ctx.get(top.host_rdata)
                words.append(w - (1 << 32) if signed and w >> 31 else w)
            ctx.set(top.host_re, 0)
            out["words"].append(words)

    sim.add_testbench(bench)
    sim.run()
    return out
