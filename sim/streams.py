"""cocotb stream drivers for amaranth.lib.stream ports (``<name>__valid``, ``__ready``,
``__payload``), with seeded random valid/ready stalls, and struct payload packing.

One copy of these helpers serves every bench (STYLE.md, Glasgow habit).
"""
from __future__ import annotations

import json
import os
import random

from cocotb.triggers import RisingEdge

__all__ = ["pack", "unpack", "StreamSource", "StreamSink", "bench_inputs", "bench_output",
           "bench_progress", "to_signed", "start_clock"]


def pack(layout, **fields) -> int:
    """Pack field values into the integer of an Amaranth ``data.StructLayout`` (LSB first)."""
    word = 0
    for name, value in fields.items():
        f = layout[name]
        word |= (int(value) & ((1 << f.width) - 1)) << f.offset
    return word


def to_signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def unpack(layout, word: int) -> dict:
    """Unpack an integer into ``{field: value}``; signed fields come back signed."""
    out = {}
    for name, f in layout:
        v = (word >> f.offset) & ((1 << f.width) - 1)
        shape = f.shape
        signed = getattr(shape, "signed", False)
        out[name] = to_signed(v, f.width) if signed else v
    return out


class StreamSource:
    """Drives a stream input of the DUT. ``stall`` is the probability of holding valid low
    in a cycle where a beat is available (seeded ``rng``)."""

    def __init__(self, dut, name: str, clk, *, stall: float = 0.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.stall = stall
        self.rng = rng or random.Random(0)
        self.valid.value = 0

    async def send(self, beats):
        beats = list(beats)
        k = 0
        while k < len(beats):
            if self.stall and self.rng.random() < self.stall:
                self.valid.value = 0
            else:
                self.valid.value = 1
                self.payload.value = beats[k]
            await RisingEdge(self.clk)
            if int(self.valid.value) and int(self.ready.value):
                k += 1
        self.valid.value = 0


class StreamSink:
    """Consumes a stream output of the DUT, holding ready low with probability ``stall``."""

    def __init__(self, dut, name: str, clk, *, stall: float = 0.0, rng: random.Random | None = None):
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload")
        self.clk = clk
        self.stall = stall
        self.rng = rng or random.Random(1)
        self.ready.value = 0

    async def recv(self, n: int) -> list[int]:
        got = []
        while len(got) < n:
            self.ready.value = 0 if (self.stall and self.rng.random() < self.stall) else 1
            await RisingEdge(self.clk)
            if int(self.valid.value) and int(self.ready.value):
                got.append(int(self.payload.value))
        self.ready.value = 0
        return got


def start_clock(dut, period_ns: int = 10) -> None:
    """Start the clock of ``dut``: a ``cocotb.clock.Clock`` on ``dut.clk``, unless the design
    was built with its clock inside Verilator (``sim.runner.build(clock="hdl")``: the
    wrapper's ``ternac_clock_ns`` holds its period), which must then be ``period_ns``.

    Raises
    ------
    AssertionError if the built-in clock has another period.
    """
    try:
        hdl_ns = int(dut.ternac_clock_ns.value)
    except AttributeError:
        from cocotb.clock import Clock
        Clock(dut.clk, period_ns, unit="ns").start()
        return
    assert hdl_ns == period_ns, f"the design's clock runs at {hdl_ns} ns, the bench wants {period_ns} ns"


def bench_inputs() -> dict:
    """The JSON inputs handed to this bench by sim.runner.run_bench."""
    path = os.environ.get("TERNAC_BENCH_IN")
    if not path:
        return {}
    with open(path) as f:
        return json.load(f)


def bench_progress(record: dict) -> None:
    """Append ``record`` as a JSON line to the progress file sim.runner.run_bench watches
    (``TERNAC_BENCH_PROGRESS``), if it asked for one."""
    path = os.environ.get("TERNAC_BENCH_PROGRESS")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(record) + "\n")


def bench_output(obj: dict) -> None:
    """Hand results back to sim.runner.run_bench."""
    path = os.environ.get("TERNAC_BENCH_OUT")
    if path:
        with open(path, "w") as f:
            json.dump(obj, f)
