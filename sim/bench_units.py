"""cocotb benches of the streaming units. Each bench is a pure driver: it sends the beats
given in its JSON inputs and hands every output back; the pytest side compares each element
with golden.

Stalls: the sources pause between beats (``idle``: valid low, never taken back once
offered) and the sinks drop ready (``backpressure``), each with its own seeded generator
(streams.StreamSource / StreamSink); the inputs give them as a stall ``mode`` of
streams.MODES (none, idle, backpressure, both), or as ``idle`` / ``backpressure``
probabilities, for the whole run and, in ``stream_segments``, per segment. ``stall`` (the
old single probability) sets both.

Every stream of the DUT (every ``X`` with ``X__valid``, ``X__ready``, ``X__payload``: the
inputs and the outputs) carries a passive streams.ProtocolMonitor from the end of reset on:
a valid taken back before its transfer, or a payload field that moves while valid is high
and ready low, fails the test at once with a message naming the stream, the cycle and the
field (``fields`` in the inputs: streams.stream_fields of the component). The results
carry ``streams`` (transfers seen on each stream), ``violations`` (0 when it passed) and
``beats`` (the sink's transfers)."""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import RisingEdge

from streams import (MODES, ProtocolMonitor, StreamSink, StreamSource, bench_inputs,
                     bench_output)


async def _reset(dut, cfg):
    """Clock, two cycles of reset, then the protocol monitor on every stream."""
    Clock(dut.clk, 10, unit="ns").start()
    dut.rst.value = 1
    for _ in range(2):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    return ProtocolMonitor(dut, dut.clk, fields=cfg.get("fields")).start()


def _pauses(cfg, default=(0.0, 0.0)):
    """``(idle, backpressure)`` of a run or segment config: ``mode``, else ``idle`` /
    ``backpressure``, else ``stall`` for both, else ``default``."""
    if "mode" in cfg:
        if cfg["mode"] not in MODES:
            raise ValueError(f"stall mode must be one of {', '.join(MODES)}, not {cfg['mode']!r}")
        return MODES[cfg["mode"]]
    if "idle" in cfg or "backpressure" in cfg:
        return cfg.get("idle", default[0]), cfg.get("backpressure", default[1])
    if "stall" in cfg:
        return cfg["stall"], cfg["stall"]
    return default


def _io(dut, cfg, src="i", sink="o"):
    seed = cfg.get("seed", 0)
    idle, bp = _pauses(cfg)
    dut._log.info(f"seed={seed} idle={idle} backpressure={bp}")
    return (StreamSource(dut, src, dut.clk, idle=idle, rng=random.Random(seed)),
            StreamSink(dut, sink, dut.clk, backpressure=bp, rng=random.Random(seed + 1)))


async def _quiet(dut, sink, cycles):
    """Ready high for ``cycles`` cycles: the outputs that still come (none expected)."""
    sink.ready.value = 1
    extra = 0
    for _ in range(cycles):
        await RisingEdge(dut.clk)
        extra += int(sink.valid.value)
    return extra


def _results(monitor, sink):
    rep = monitor.report()
    return {"streams": rep["streams"], "violations": len(rep["violations"]),
            "beats": rep["streams"].get(sink.name, 0), "monitor_cycles": rep["cycles"]}


@cocotb.test()
async def stream_beats(dut):
    """Generic: send ``beats`` into ``src``, collect ``n_out`` payloads from ``sink``."""
    cfg = bench_inputs()
    if "beats" not in cfg:
        return   # inputs meant for stream_segments: run_bench without testcase runs both
    for name, value in cfg.get("static", {}).items():
        getattr(dut, name).value = value
    monitor = await _reset(dut, cfg)
    source, sink = _io(dut, cfg, cfg.get("src", "i"), cfg.get("sink", "o"))
    send = cocotb.start_soon(source.send(cfg["beats"]))
    got = await sink.recv(cfg["n_out"])
    await send
    extra = await _quiet(dut, sink, cfg.get("quiet_cycles", 20))   # nothing more may come out
    bench_output({"out": got, "extra": extra, **_results(monitor, sink)})


@cocotb.test()
async def stream_segments(dut):
    """Generic, several operations in one simulation: for each of ``segments``, set its
    ``static`` config ports and its stall mode (``mode`` / ``idle`` / ``backpressure``,
    else the run's), send its ``beats`` into ``src`` (and its ``side_beats`` into the
    second stream ``side_src``, if the unit has one), collect its ``n_out`` payloads from
    ``sink``; report each segment's outputs and ``cycles`` (first beat offered to last
    output taken, 10 ns a cycle). With ``max_cycles``, a segment that has not delivered its
    outputs within that many cycles fails the test."""
    from cocotb.utils import get_sim_time
    cfg = bench_inputs()
    if "segments" not in cfg:
        return   # inputs meant for stream_beats: run_bench without testcase runs both
    monitor = await _reset(dut, cfg)
    source, sink = _io(dut, cfg, cfg.get("src", "i"), cfg.get("sink", "o"))
    run_pauses = _pauses(cfg)
    side = None
    if cfg.get("side_src"):
        side = StreamSource(dut, cfg["side_src"], dut.clk, idle=run_pauses[0],
                            rng=random.Random(cfg.get("seed", 0) + 2))
    results = []
    for seg in cfg["segments"]:
        for name, value in seg.get("static", {}).items():
            getattr(dut, name).value = value
        idle, bp = _pauses(seg, run_pauses)
        source.set_idle(idle)
        sink.set_backpressure(bp)
        if side is not None:
            side.set_idle(idle)
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
    extra = await _quiet(dut, sink, cfg.get("quiet_cycles", 20))
    bench_output({"segments": results, "extra": extra, **_results(monitor, sink)})


@cocotb.test()
async def broken_source(dut):
    """Self-test of the monitor: a source that breaks the contract on ``src`` on purpose,
    as ``broken`` says, while the sink ``sink`` is never ready (so the unit soon refuses
    its input): ``"payload"`` moves the payload (XOR ``flip``, a bit mask) in a cycle where
    valid is high and ready low; ``"valid"`` takes valid back after a refused cycle. The
    monitor must fail the test; a bench that gets through its ``beats`` passes (and the
    pytest side fails)."""
    cfg = bench_inputs()
    if "broken" not in cfg:
        return
    for name, value in cfg.get("static", {}).items():
        getattr(dut, name).value = value
    monitor = await _reset(dut, cfg)
    src = cfg.get("src", "i")
    valid, ready, payload = (getattr(dut, f"{src}__{p}") for p in ("valid", "ready", "payload"))
    getattr(dut, f"{cfg.get('sink', 'o')}__ready").value = 0
    for beat in cfg["beats"]:
        valid.value, payload.value = 1, beat
        for _ in range(100):
            await RisingEdge(dut.clk)
            if int(ready.value):
                break
            if cfg["broken"] == "payload":
                payload.value = beat ^ cfg.get("flip", 1)
            elif cfg["broken"] == "valid":
                valid.value = 0
                break
        valid.value = 0
        await RisingEdge(dut.clk)
    for _ in range(5):
        await RisingEdge(dut.clk)
    bench_output(monitor.report())
