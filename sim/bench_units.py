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


async def _contract_monitor(dut, name, counts):
    """Passive check of the stream contract on ``name``: once valid is high and ready low,
    valid stays high and the payload unchanged until the transfer; violations are counted
    in ``counts["violations"]`` and transfers in ``counts["beats"]``."""
    valid = getattr(dut, f"{name}__valid")
    ready = getattr(dut, f"{name}__ready")
    payload = getattr(dut, f"{name}__payload")
    held = None
    while True:
        await RisingEdge(dut.clk)
        v, r, p = int(valid.value), int(ready.value), int(payload.value)
        if held is not None and (not v or p != held):
            counts["violations"] += 1
        held = p if (v and not r) else None
        counts["beats"] += v and r


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


@cocotb.test()
async def stream_segments(dut):
    """Generic, several operations in one simulation: for each of ``segments``, set its
    ``static`` config ports, send its ``beats`` into ``src`` (and its ``side_beats`` into the
    second stream ``side_src``, if the unit has one), collect its ``n_out`` payloads from
    ``sink``; report each segment's outputs and ``cycles`` (first beat offered to last
    output taken, 10 ns a cycle). With ``max_cycles``, a segment that has not delivered its
    outputs within that many cycles fails the test; with ``monitor``, the stream contract of
    ``sink`` is checked passively (``violations`` and ``beats`` in the results)."""
    from cocotb.utils import get_sim_time
    cfg = bench_inputs()
    if "segments" not in cfg:
        return   # inputs meant for stream_beats: run_bench without testcase runs both
    await _reset(dut)
    source, sink = _io(dut, cfg, cfg.get("src", "i"), cfg.get("sink", "o"))
    side = None
    if cfg.get("side_src"):
        side = StreamSource(dut, cfg["side_src"], dut.clk, stall=cfg.get("stall", 0.0),
                            rng=random.Random(cfg.get("seed", 0) + 2))
    counts = {"violations": 0, "beats": 0}
    if cfg.get("monitor"):
        cocotb.start_soon(_contract_monitor(dut, cfg.get("sink", "o"), counts))
    results = []
    for seg in cfg["segments"]:
        for name, value in seg.get("static", {}).items():
            getattr(dut, name).value = value
        await RisingEdge(dut.clk)
        t0 = get_sim_time("ns")
        tasks = [cocotb.start_soon(source.send(seg["beats"]))]
        if side is not None and seg.get("side_beats"):
            tasks.append(cocotb.start_soon(side.send(seg["side_beats"])))
        if cfg.get("max_cycles"):
            # A unit that loses a beat would leave the sink waiting for ever: fail instead.
            from cocotb.triggers import with_timeout
            got = await with_timeout(sink.recv(seg["n_out"]), cfg["max_cycles"] * 10, "ns")
        else:
            got = await sink.recv(seg["n_out"])
        cycles = round((get_sim_time("ns") - t0) / 10)
        for t in tasks:
            await t
        results.append({"out": got, "cycles": cycles})
    sink.ready.value = 1
    extra = 0
    for _ in range(cfg.get("quiet_cycles", 20)):
        await RisingEdge(dut.clk)
        extra += int(sink.valid.value)
    bench_output({"segments": results, "extra": extra, **counts})
