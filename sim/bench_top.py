"""cocotb bench of the whole Accelerator: for each input vector, write it into the scratchpad
through the host port, start the program, wait for done, read the output buffer, the ARGMAX
result and the cycle count. Inputs/outputs are JSON (sim.runner.run_bench)."""
import time

import cocotb
from cocotb.triggers import ClockCycles, First, NextTimeStep, ReadOnly, RisingEdge, Timer
from cocotb.utils import get_sim_time

from streams import (ProtocolMonitor, bench_inputs, bench_output, bench_progress,
                     start_clock, stream_names, to_signed)
from ternac.protocol import Space

#: The host-port spaces the benches use (ternac.protocol.Space: the one definition).
SCRATCH, OUT = Space.SCRATCH, Space.OUT
CLK_NS = 10


class TopTB:
    """Wraps the Accelerator DUT: clock, reset and host-port accesses.

    After reset, a streams.ProtocolMonitor watches every valid/ready stream at the DUT's
    ports (the Accelerator has none: its host port is a plain memory port, so nothing
    wakes on the clock for it), or, given ``internal`` (streams.instance_streams of the
    model's Verilog, for a model built with every signal visible, ``public="all"``, and
    the clock from cocotb), every stream at the ports of the units inside it whose valid,
    ready and payload are all instance ports (in the ViT build: the engine's input and
    output, the streamer's commands, the Norm's and the Shiftmax's inputs; the
    clock-enabled pipelines have no ready port): a violation fails the bench.
    :meth:`streams` reports what it saw."""

    def __init__(self, dut, poll_cycles: int | None = None, internal=None):
        self.dut = dut
        self.internal = internal
        self.monitor = None
        # Kept to measure what it cost (ternac.sim.simspeed): poll done every poll_cycles
        # clock cycles, waking Python on each edge, as the benches did before.
        self.poll_cycles = poll_cycles
        self.t0, self.c0 = time.perf_counter(), time.process_time()
        start_clock(dut, CLK_NS)

    def speed(self) -> dict:
        """Simulated clock cycles so far, and the wall and CPU seconds of the simulator
        process since this bench began (measured; the simulator's start-up before the bench
        is not included; the CPU time is the model's and the bench's, one process)."""
        return {"sim_clock_cycles": round(get_sim_time("ns") / CLK_NS),
                "bench_seconds": time.perf_counter() - self.t0,
                "bench_cpu_seconds": time.process_time() - self.c0}

    async def reset(self):
        d = self.dut
        for s in ("host_we", "host_re", "start", "host_addr", "host_space", "host_wdata"):
            getattr(d, s).value = 0
        d.rst.value = 1
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)
        if self.monitor is None:
            if self.internal is not None:
                self.monitor = ProtocolMonitor(d, d.clk, internal=self.internal).start()
            elif stream_names(d):
                self.monitor = ProtocolMonitor(d, d.clk).start()

    def streams(self) -> dict:
        """``{"streams": {path: transfers}, "partial": [paths without ready or valid]}`` of
        the protocol monitor (empty when no stream was watched)."""
        if self.monitor is None:
            return {"streams": {}, "partial": []}
        rep = self.monitor.report()
        return {"streams": rep["streams"], "partial": rep["partial"]}

    async def write(self, space, addr, values):
        d = self.dut
        d.host_space.value = space
        d.host_we.value = 1
        for k, v in enumerate(values):
            d.host_addr.value = addr + k
            d.host_wdata.value = v & 0xFFFFFFFF
            await RisingEdge(d.clk)
        d.host_we.value = 0

    async def read(self, space, addr, n):
        """Read ``n`` words of ``space`` from ``addr`` on, one a cycle (``host_rdata`` holds
        the word of the address taken at the previous edge). Each word is read in the
        read-only phase after the edge, so the bench reads the same values whether the clock
        is cocotb's (the callback of an edge runs before the design has taken it) or the
        design's own (after)."""
        d = self.dut
        d.host_space.value = space
        d.host_re.value = 1
        d.host_addr.value = addr
        out = []
        for k in range(n):
            await RisingEdge(d.clk)         # the port takes address addr + k here
            if k + 1 < n:
                d.host_addr.value = addr + k + 1
            else:
                d.host_re.value = 0
            await ReadOnly()
            out.append(to_signed(int(d.host_rdata.value), 32))
        await NextTimeStep()                # out of the read-only phase, before the next edge
        return out

    async def run(self, timeout_cycles):
        """Pulse ``start`` and let the program run to HALT without waking Python: wait on a
        rising edge of ``done`` itself (or ``timeout_cycles`` of simulated time), not on the
        clock. Returns ``(cycles, result, error)`` as the RTL reports them."""
        d = self.dut
        d.start.value = 1
        await RisingEdge(d.clk)
        d.start.value = 0
        # Values read at an edge are those before it: two edges on, the start has been taken
        # and done (sticky from the last run) reads low, so the edge to wait for is ahead.
        await RisingEdge(d.clk)
        await RisingEdge(d.clk)
        if self.poll_cycles:
            for _ in range(timeout_cycles // self.poll_cycles + 1):
                if int(d.done.value):
                    break
                await ClockCycles(d.clk, self.poll_cycles)
        elif not int(d.done.value):
            await First(RisingEdge(d.done), Timer(timeout_cycles * CLK_NS, unit="ns"))
            await RisingEdge(d.clk)
        assert int(d.done.value), f"program did not finish within {timeout_cycles} cycles"
        return int(d.cycles.value), int(d.result.value), int(d.error.value)


@cocotb.test()
async def run_inputs(dut):
    """Run every input vector; hand back logits, results and cycles."""
    cfg = bench_inputs()
    tb = TopTB(dut, cfg.get("poll_cycles"), cfg.get("internal"))
    await tb.reset()
    logits, results, cycles, scratch = [], [], [], []
    rb = cfg.get("scratch_readback")
    for x in cfg["inputs"]:
        await tb.write(SCRATCH, cfg["input_addr"], x)
        cyc, res, err = await tb.run(cfg.get("timeout_cycles", 1_000_000))
        assert not err, "the sequencer halted on an unknown opcode"
        logits.append(await tb.read(OUT, cfg["logits_addr"], cfg["n_logits"]))
        results.append(res)
        cycles.append(cyc)
        if rb:
            scratch.append(await tb.read(SCRATCH, rb[0], rb[1]))
        bench_progress({"inputs_done": len(results)})
    bench_output({"logits": logits, "results": results, "cycles": cycles, "scratch": scratch,
                  **tb.speed(), **tb.streams()})
