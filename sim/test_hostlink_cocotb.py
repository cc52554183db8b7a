"""cocotb bench of the UART host link (hw/uart.py + hw/hostlink.py) in front of a small
accelerator model (tests/test_hostlink.py: HostlinkBench), driven by the real host driver
(ternac.hostdriver.HostDriver) over cocotbext-uart.

Covers every command and every named error, corrupt frames, garbage and truncated frames
between good ones, and random idle gaps inside frames. Bench parameters come from
TERNAC_BENCH_IN (sim.runner.run_bench).
"""
import random

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, Timer

from streams import bench_inputs
from ternac.hostdriver import (MAX_WORDS, PROTOCOL_VERSION, SYNC_REQUEST, Command,
                               CosimTransport, DeviceError, HostDriver, Reply, Space,
                               StatusFlag, encode_frame)

CLK_NS = 10


class TB:
    """Clock, reset and a HostDriver over cocotbext-uart on the bench's rx/tx pins."""

    def __init__(self, dut):
        self.dut = dut
        self.p = bench_inputs()
        Clock(dut.clk, CLK_NS, unit="ns").start()
        baud = round(1e9 / (CLK_NS * self.p["divisor"]))
        byte_ns = 10 * CLK_NS * self.p["divisor"]
        self.byte_ns = byte_ns
        self.transport = CosimTransport(
            dut.rx, dut.tx, baud, byte_timeout_ns=40 * byte_ns + 20 * MAX_WORDS * CLK_NS,
            run_timeout_ns=100_000, resync_ns=2 * self.p["timeout_cycles"] * CLK_NS)
        self.drv = HostDriver(self.transport, retries=0)

    async def reset(self):
        self.dut.rst.value = 1
        await ClockCycles(self.dut.clk, 4)
        self.dut.rst.value = 0
        await ClockCycles(self.dut.clk, 4)

    async def send_with_gaps(self, data, rng, max_gap_bytes=2.0):
        """Send bytes one at a time with random idle gaps (all shorter than the timeout)."""
        src = self.transport.source
        for b in data:
            await src.write(bytes([b]))
            await src.wait()
            gap = rng.choice([0, 0, 0, 1, 7, 40, int(max_gap_bytes * self.byte_ns)])
            if gap:
                await Timer(gap, "ns")

    async def expect(self, frame, code, *, gaps=None):
        """Send a raw frame and check the response code; returns the payload."""
        if gaps is None:
            got = await self.drv.raw(frame)
        else:
            await self.send_with_gaps(frame, gaps)
            got = await self.drv.raw(b"")
        assert got[0] == code, f"expected {Reply(code).name}, got {got[0]:#04x} for {frame.hex()}"
        return got[1]


def write_frame(space, addr, words):
    return encode_frame(Command.WRITE_MEM, bytes([space]) + addr.to_bytes(4, "little")
                        + b"".join((w & 0xFFFFFFFF).to_bytes(4, "little") for w in words))


def read_frame(space, addr, count):
    return encode_frame(Command.READ_MEM, bytes([space]) + addr.to_bytes(4, "little")
                        + count.to_bytes(2, "little"))


@cocotb.test()
async def identify_and_memory(dut):
    tb = TB(dut)
    await tb.reset()
    ident = await tb.drv.identify()
    assert ident.config_hash == tb.p["config_hash"]
    assert ident.protocol_version == PROTOCOL_VERSION and ident.max_words == MAX_WORDS
    await tb.drv.check_identity(tb.p["config_hash"])

    rng = random.Random(1)
    limits = {int(k): v for k, v in tb.p["limits"].items()}
    for space in (Space.OUT, Space.PROG, Space.WEIGHTS):
        words = [rng.getrandbits(32) for _ in range(limits[space])]
        await tb.drv.write_mem(space, 0, words)
        assert await tb.drv.read_mem(space, 0, len(words)) == words, space.name
    # SCRATCH is 16 bits wide, sign-extended on read; more words than one frame carries.
    vals = [rng.randrange(-32768, 32768) for _ in range(limits[Space.SCRATCH])]
    await tb.drv.write_scratch(0, vals)
    assert await tb.drv.read_scratch(0, len(vals)) == vals
    # A single word at the last address of a space.
    last = limits[Space.OUT] - 1
    await tb.drv.write_mem(Space.OUT, last, [0xDEADBEEF])
    assert await tb.drv.read_out(last, 1) == [0xDEADBEEF - (1 << 32)]


@cocotb.test()
async def named_errors_have_no_effect(dut):
    tb = TB(dut)
    await tb.reset()
    limits = {int(k): v for k, v in tb.p["limits"].items()}
    await tb.drv.write_mem(Space.OUT, 0, [11, 22, 33])

    # BAD_CRC: one payload bit flipped; nothing is written.
    bad = bytearray(write_frame(Space.OUT, 0, [99, 98, 97]))
    bad[8] ^= 0x10
    await tb.expect(bytes(bad), Reply.BAD_CRC)
    # CRC bytes themselves corrupted.
    bad = bytearray(write_frame(Space.OUT, 0, [99]))
    bad[-1] ^= 0x01
    await tb.expect(bytes(bad), Reply.BAD_CRC)
    assert await tb.drv.read_mem(Space.OUT, 0, 3) == [11, 22, 33]

    # BAD_LENGTH: longer than the device buffers (answered at once, from the header) ...
    await tb.expect(bytes([SYNC_REQUEST, Command.WRITE_MEM, 0xFF, 0xFF]), Reply.BAD_LENGTH)
    # ... wrong for the command (WRITE_MEM without whole words; IDENTIFY with a payload;
    # READ_MEM of 0 words or of more than a frame holds).
    await tb.expect(encode_frame(Command.WRITE_MEM, bytes([1, 0, 0, 0, 0, 1, 2])),
                    Reply.BAD_LENGTH)
    await tb.expect(encode_frame(Command.IDENTIFY, b"\x00"), Reply.BAD_LENGTH)
    await tb.expect(read_frame(Space.OUT, 0, 0), Reply.BAD_LENGTH)
    await tb.expect(read_frame(Space.OUT, 0, MAX_WORDS + 1), Reply.BAD_LENGTH)

    # BAD_COMMAND.
    await tb.expect(encode_frame(0x7E), Reply.BAD_COMMAND)
    await tb.expect(encode_frame(0x00, b"abc"), Reply.BAD_COMMAND)

    # BAD_ADDRESS: past the end of a space, straddling it, above 20 bits, unknown space.
    await tb.expect(write_frame(Space.OUT, limits[Space.OUT], [1]), Reply.BAD_ADDRESS)
    await tb.expect(write_frame(Space.OUT, limits[Space.OUT] - 1, [1, 2]), Reply.BAD_ADDRESS)
    await tb.expect(read_frame(Space.SCRATCH, 1 << 24, 1), Reply.BAD_ADDRESS)
    await tb.expect(read_frame(7, 0, 1), Reply.BAD_ADDRESS)
    assert await tb.drv.read_mem(Space.OUT, 0, 3) == [11, 22, 33]

    # The driver turns a named error into DeviceError.
    try:
        await tb.drv.read_mem(Space.OUT, limits[Space.OUT], 1)
    except DeviceError as e:
        assert e.reply == Reply.BAD_ADDRESS
    else:
        raise AssertionError("no DeviceError")

    st = await tb.drv.status()
    assert st.rejected == 14, st
    assert await tb.drv.identify()      # the link still works


@cocotb.test()
async def resync_after_garbage_and_truncation(dut):
    tb = TB(dut)
    await tb.reset()
    rng = random.Random(7)
    src = tb.transport.source

    # Garbage (no sync byte) between frames is skipped.
    for k in range(4):
        garbage = bytes(rng.choice([b for b in range(256) if b != SYNC_REQUEST])
                        for _ in range(rng.randrange(1, 12)))
        await src.write(garbage)
        await tb.expect(write_frame(Space.SCRATCH, k, [k + 100]), Reply.ACK)
    assert await tb.drv.read_scratch(0, 4) == [100, 101, 102, 103]

    # A truncated frame is dropped after the timeout; the next frame is served.
    await src.write(write_frame(Space.SCRATCH, 0, [1, 2, 3])[:9])
    await src.wait()
    await Timer(2 * tb.p["timeout_cycles"] * CLK_NS, "ns")
    st = await tb.drv.status()
    assert st.flags & StatusFlag.TIMEOUT, st
    assert not (await tb.drv.status()).flags & StatusFlag.TIMEOUT     # sticky until read
    assert await tb.drv.read_scratch(0, 4) == [100, 101, 102, 103]

    # A stray sync byte followed by a good frame: the stray "frame" swallows the start of
    # the good one, fails its CRC or times out; the driver's retry recovers.
    tb.drv.retries = 2
    await src.write(bytes([SYNC_REQUEST]))
    ident = await tb.drv.identify()
    assert ident.config_hash == tb.p["config_hash"]
    tb.drv.retries = 0

    # Random idle gaps inside frames (shorter than the timeout): frames still parse.
    for k in range(3):
        await tb.expect(write_frame(Space.OUT, 4 * k, [k, -k, 7 * k, 1 << 31]), Reply.ACK,
                        gaps=rng)
        got = await tb.expect(read_frame(Space.OUT, 4 * k, 4), Reply.ACK, gaps=rng)
        assert got == b"".join((w & 0xFFFFFFFF).to_bytes(4, "little")
                               for w in [k, -k, 7 * k, 1 << 31])


@cocotb.test()
async def run_and_busy(dut):
    tb = TB(dut)
    await tb.reset()
    run_cycles = tb.p["run_cycles"]
    result, cycles = await tb.drv.run()
    assert (result, cycles) == (1, run_cycles)
    st = await tb.drv.status()
    assert st.done and not st.busy and (st.result, st.cycles) == (1, run_cycles)

    # A run that does not wait: memory access and RUN answer BUSY until it is done.
    tb.dut.slow.value = 1
    assert await tb.drv.run(wait=False) is None
    st = await tb.drv.status()
    assert st.busy and not st.done
    await tb.expect(write_frame(Space.SCRATCH, 0, [5]), Reply.BUSY)
    await tb.expect(read_frame(Space.SCRATCH, 0, 1), Reply.BUSY)
    await tb.expect(encode_frame(Command.RUN), Reply.BUSY)
    await tb.expect(encode_frame(Command.IDENTIFY), Reply.ACK)     # not a memory access
    while (await tb.drv.status()).busy:
        await Timer(10 * tb.byte_ns, "ns")
    st = await tb.drv.status()
    assert st.done and st.result == 2
    tb.dut.slow.value = 0
    result, cycles = await tb.drv.run()
    assert (result, cycles) == (3, run_cycles)
