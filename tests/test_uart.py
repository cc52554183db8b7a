"""hw/uart.py in Amaranth's simulator: loopback with stalls, baud mismatch, glitches,
framing errors, overrun, and the transmitter's bit timing."""
import gc
import random
import warnings

import pytest
from amaranth import Module
from amaranth.sim import Simulator

from ternac.hw.uart import UARTRx, UARTTx, uart_divisor


def _bits_of(byte, stop=1):
    return [0] + [(byte >> i) & 1 for i in range(8)] + [stop]


async def _drive_line(ctx, pin, bytes_, bit_cycles, *, stop=1, gap_cycles=0, idle=1):
    """Bit-bang 8N1 frames on ``pin`` with a fractional bit period in clock cycles."""
    t = 0.0
    now = 0
    for b in bytes_:
        for bit in _bits_of(b, stop):
            t += bit_cycles
            ctx.set(pin, bit)
            while now < round(t):
                await ctx.tick()
                now += 1
        ctx.set(pin, idle)
        await ctx.tick().repeat(gap_cycles + 1)
        t = now = 0


def _run(dut, *testbenches, deadline=200_000):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run_until(deadline * 1e-6)




def test_loopback_with_stalls():
    divisor = 8
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=divisor)
    m.submodules.rx = rx = UARTRx(divisor=divisor)
    m.d.comb += rx.rx.eq(tx.tx)
    rng = random.Random(5)
    data = [rng.randrange(256) for _ in range(60)] + [0x00, 0xFF, 0x55, 0xAA]
    got, errors = [], []

    async def source(ctx):
        for b in data:
            for _ in range(rng.choice([0, 0, 0, 3, 17, 90])):   # idle gaps on the input
                await ctx.tick()
            ctx.set(tx.i.payload, b)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)

    async def sink(ctx):
        while len(got) < len(data):
            ready = rng.random() < 0.3      # stalls, all shorter than a byte time
            ctx.set(rx.o.ready, ready)
            _, _, valid, payload, overrun, ferr = await ctx.tick().sample(
                rx.o.valid, rx.o.payload, rx.overrun, rx.framing_error)
            if overrun or ferr:
                errors.append((overrun, ferr))
            if ready and valid:
                got.append(payload)

    _run(m, source, sink)
    assert errors == []
    assert got == data


@pytest.mark.parametrize("mismatch", [-0.03, 0.0, +0.03])
def test_rx_tolerates_baud_mismatch(mismatch):
    divisor = 16
    dut = UARTRx(divisor=divisor)
    data = [0x00, 0xFF, 0xA5, 0x5A, 0x81, 0x7E]
    got = []

    async def line(ctx):
        await _drive_line(ctx, dut.rx, data, divisor * (1 + mismatch))

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        while len(got) < len(data):
            _, _, valid, payload = await ctx.tick().sample(dut.o.valid, dut.o.payload)
            if valid:
                got.append(payload)

    _run(dut, line, sink)
    assert got == data


def test_rx_ignores_glitch_and_flags_framing_error():
    divisor = 16
    dut = UARTRx(divisor=divisor)
    events = []

    async def line(ctx):
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(20)
        ctx.set(dut.rx, 0)                  # a glitch shorter than half a bit
        await ctx.tick().repeat(divisor // 2 - 3)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(5 * divisor)
        # a low stop bit, and the line stays low for a while (a break)
        await _drive_line(ctx, dut.rx, [0x3C], divisor, stop=0, idle=0, gap_cycles=30 * divisor)
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        await _drive_line(ctx, dut.rx, [0xC3], divisor)
        await ctx.tick().repeat(3 * divisor)
        events.append("end")

    async def sink(ctx):
        ctx.set(dut.o.ready, 1)
        while "end" not in events:
            _, _, valid, payload, ferr = await ctx.tick().sample(
                dut.o.valid, dut.o.payload, dut.framing_error)
            if valid:
                events.append(payload)
            if ferr:
                events.append("ferr")

    _run(dut, line, sink)
    assert events == ["ferr", 0xC3, "end"]


def test_rx_overrun_keeps_first_byte():
    divisor = 8
    dut = UARTRx(divisor=divisor)
    seen = []

    async def line(ctx):
        await _drive_line(ctx, dut.rx, [0x11, 0x22], divisor)
        await ctx.tick().repeat(4)
        ctx.set(dut.o.ready, 1)
        await ctx.tick()
        seen.append("taken")

    async def watch(ctx):
        while "taken" not in seen:
            _, _, overrun = await ctx.tick().sample(dut.overrun)
            if overrun:
                seen.append("overrun")

    async def check(ctx):
        await ctx.tick().until(dut.o.valid)
        assert ctx.get(dut.o.payload) == 0x11

    _run(dut, line, watch, check)
    assert seen == ["overrun", "taken"]


def test_tx_bit_timing():
    divisor = 10
    dut = UARTTx(divisor=divisor)
    line = []

    async def tb(ctx):
        ctx.set(dut.i.payload, 0xB4)
        ctx.set(dut.i.valid, 1)
        await ctx.tick()
        ctx.set(dut.i.valid, 0)
        for _ in range(12 * divisor):
            line.append(ctx.get(dut.tx))
            await ctx.tick()

    _run(dut, tb)
    start = line.index(0)
    mid = [line[start + k * divisor + divisor // 2] for k in range(10)]
    assert mid == _bits_of(0xB4)
    assert all(v == 1 for v in line[start + 10 * divisor:])
    assert line[start:start + 10 * divisor].count(0) == divisor * _bits_of(0xB4).count(0)


def test_divisor_checks():
    assert uart_divisor(12e6, 115200) == 104
    assert uart_divisor(25e6, 115200) == 217
    with warnings.catch_warnings():     # the half-built components are never elaborated
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match="at least 4"):
            UARTRx(divisor=3)
        with pytest.raises(ValueError, match="at least 4"):
            UARTTx(divisor=2.5)
        gc.collect()
    with pytest.raises(ValueError, match="misses"):
        uart_divisor(1e6, 230400)
