"""cocotb benches of the streaming units. Each bench is a pure driver: it sends the beats
given in its JSON inputs (with the seeded valid/ready stall probability given there) and
hands every output back; the pytest side compares each element with golden."""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from streams import StreamSink, StreamSource, bench_inputs, bench_output


async def _reset(dut):
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0


def _io(dut, cfg, src="i", sink="o"):
    seed = cfg.get("seed", 0)
    stall = cfg.get("stall", 0.0)
    dut._log.info(f"seed={seed} stall={stall}")
    return (StreamSource(dut, src, dut.clk, stall=stall, rng=random.Random(seed)),
            StreamSink(dut, sink, dut.clk, stall=stall, rng=random.Random(seed + 1)))


@cocotb.test()
async def stream_beats(dut):
    """Generic: send ``beats`` into ``src``, collect ``n_out`` payloads from ``sink``."""
    cfg = bench_inputs()
    for name, value in cfg.get("static", {}).items():
        getattr(dut, name).value = value
    await _reset(dut)
    source, sink = _io(dut, cfg, cfg.get("src", "i"), cfg.get("sink", "o"))
    send = cocotb.start_soon(source.send(cfg["beats"]))
    got = await sink.recv(cfg["n_out"])
    await send
    # Nothing more may come out.
    sink.ready.value = 1
    extra = 0
    for _ in range(cfg.get("quiet_cycles", 20)):
        await RisingEdge(dut.clk)
        extra += int(sink.valid.value)
    bench_output({"out": got, "extra": extra})
