"""cocotb bench of the whole Accelerator: for each input vector, write it into the scratchpad
through the host port, start the program, wait for done, read the output buffer, the ARGMAX
result and the cycle count. Inputs/outputs are JSON (sim.runner.run_bench)."""
import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from streams import bench_inputs, bench_output, to_signed

from ternac.protocol import Space

#: The host-port spaces the benches use (ternac.protocol.Space: the one definition).
SCRATCH, OUT = Space.SCRATCH, Space.OUT


class TopTB:
    """Wraps the Accelerator DUT: clock, reset and host-port accesses."""

    def __init__(self, dut):
        self.dut = dut
        Clock(dut.clk, 10, unit="ns").start()

    async def reset(self):
        d = self.dut
        for s in ("host_we", "host_re", "start", "host_addr", "host_space", "host_wdata"):
            getattr(d, s).value = 0
        d.rst.value = 1
        for _ in range(3):
            await RisingEdge(d.clk)
        d.rst.value = 0
        await RisingEdge(d.clk)

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
        d = self.dut
        d.host_space.value = space
        out = []
        d.host_re.value = 1
        d.host_addr.value = addr
        await RisingEdge(d.clk)
        for k in range(1, n + 1):
            if k < n:
                d.host_addr.value = addr + k
            else:
                d.host_re.value = 0
            await RisingEdge(d.clk)
            out.append(to_signed(int(d.host_rdata.value), 32))
        d.host_re.value = 0
        return out

    async def run(self, timeout_cycles):
        d = self.dut
        d.start.value = 1
        await RisingEdge(d.clk)
        d.start.value = 0
        # Values read at an edge are those before it: let done (sticky from the last run)
        # clear before polling it.
        await RisingEdge(d.clk)
        await RisingEdge(d.clk)
        for _ in range(timeout_cycles // 64 + 1):
            if int(d.done.value):
                break
            await cocotb.triggers.ClockCycles(d.clk, 64)
        assert int(d.done.value), f"program did not finish within {timeout_cycles} cycles"
        return int(d.cycles.value), int(d.result.value), int(d.error.value)


@cocotb.test()
async def run_inputs(dut):
    """Run every input vector; hand back logits, results and cycles."""
    cfg = bench_inputs()
    tb = TopTB(dut)
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
    bench_output({"logits": logits, "results": results, "cycles": cycles, "scratch": scratch})
