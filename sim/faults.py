"""Fault injection on the host link in co-simulation (issue 12 item 3).

The host end of the line is simulated too: a :class:`FaultBench` puts a host-side UART
(hw/uart.py's transmitter and receiver, the same divisor) in front of the device's UART
pins, so the cocotb side hands over and takes back whole bytes (a few VPI calls a byte,
not a callback a clock), while every byte still crosses a serial line in Verilator. The
device is the real :class:`ternac.hw.hostlink.UARTHostlink` in front of a stub
accelerator (:class:`StubAccelerator`: four memories and a run counter, where the fault
does not need the datapath) or the real board core (``ternac.boards.core.BoardCore``:
link + Accelerator, :func:`run_board_faults`).

Faults, one a trial, on a request (host -> device, ``h2d``) or a response (device -> host,
``d2h``):

* ``bitflip``: one bit of one byte inverted *on the serial line* for one bit time (any of
  the 10 bit times: a flipped start bit loses the byte's framing, a flipped stop bit is a
  framing error, a data bit a wrong byte);
* ``drop``, ``duplicate``, ``insert`` (a random byte, a sync byte one time in four),
  ``truncate`` (the frame cut after a random number of bytes): the byte stream the line
  carries (h2d) or that the host's UART delivers (d2h);
* ``reset_frame``: the device's reset pulsed while a request is on the line or being
  executed (h2d), or while its response is on the line (d2h);
* ``reset_run`` (``device``): the device's reset pulsed while a RUN executes.

Every trial runs one driver operation (:class:`ternac.hostdriver.HostDriver` over
:class:`BenchTransport`: IDENTIFY, STATUS, WRITE_MEM, READ_MEM, a scratch write, RUN with
or without waiting), then, with the faults off, waits out the device's partial-frame
timeout and asks STATUS: the device must answer it at once (**never hangs**). Every word
the device writes through its host port is seen by a monitor and must be one of the words
of the trial's write at its address (**never writes outside the addressed region**); a
read must return what the monitored writes left in the memory, a run the stub's count and
cycles; every 256 trials and at the end all memories are read back and compared. The
driver must return the right result or raise a one-sentence ``LinkError`` /
``DeviceError`` within a bound (``MAX_OP_NS``).

Outcomes a fault: **recovered** (the operation returned the right result and the fault
was noticed: a retry, a rejected frame, a sticky STATUS flag), **masked** (right result,
nothing noticed: e.g. a non-sync byte between frames), **failed_clearly** (the driver
raised its one-sentence error; the device answers the next request), **silently
corrupted** (a wrong result returned as right, or a write outside the request; target 0)
and **hung** (the device did not answer the probe). ``detected`` = recovered +
failed_clearly + the corrupted ones that were noticed.

The board slice (:func:`run_board_faults`) runs the digits session
(:func:`ternac.session.digits_session`) on the real board core with faults before its
calls, and compares every logit with the integer golden model.

``python -m ternac.sim.faults --seed 1 --faults 10000 --board-inputs 120 --json
build/faults.json`` (``make faults``) runs the stub campaign in one simulator start and the
board slice in another, with progress bars; tests/test_faults.py runs fixed-seed slices. This file is also the cocotb test module (``stub_campaign``,
``board_campaign``).
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import sys
import time

import cocotb
from cocotb.triggers import Event, First, Timer

__all__ = ["DIVISOR", "TIMEOUT_CYCLES", "LIMITS", "FAULTS", "FaultBench", "StubAccelerator",
           "build_fault_bench", "run_faults", "run_board_faults", "main"]

CLK_NS = 10
#: Clock cycles a UART bit in the campaign (the smallest hw/uart.py takes): 40 ns a bit.
DIVISOR = 4
BIT_NS = DIVISOR * CLK_NS
BYTE_NS = 10 * BIT_NS
#: The device drops a partial frame after 16 byte times without a byte.
TIMEOUT_CYCLES = 16 * 10 * DIVISOR
RUN_CYCLES = 37
SLOW_RUN_CYCLES = 3000
#: Host addresses of the stub's spaces (SCRATCH holds more than one frame).
LIMITS = {0: 80, 1: 24, 2: 16, 3: 32}
CONFIG_HASH = 0xFA017ED5
#: The driver's waits (simulated ns): a response byte (longer than the 9 cycles a word
#: of a 64-word WRITE_MEM), a RUN, and the resynchronisation before a retry: the device's
#: partial-frame timeout (a false frame started by a stray sync byte has timed out), the
#: longest response (a 64-word READ_MEM, 262 bytes: the rest of one whose start was lost
#: is still on the line) and its 6-byte answer to a false frame. A shorter wait (twice the
#: timeout, as before) let a retry arrive while the device was still sending: lost, three
#: times over.
BYTE_TIMEOUT_NS = 10_000
RUN_TIMEOUT_NS = 4 * SLOW_RUN_CYCLES * CLK_NS
RESYNC_NS = TIMEOUT_CYCLES * CLK_NS + (6 + 4 * 64 + 6) * BYTE_NS
#: (direction, kind) of every fault the campaign injects.
FAULTS = ([("h2d", k) for k in ("bitflip", "drop", "duplicate", "insert", "truncate",
                                "reset_frame")]
          + [("d2h", k) for k in ("bitflip", "drop", "duplicate", "insert", "truncate",
                                  "reset_frame")]
          + [("device", "reset_run")])


# -- the RTL ---------------------------------------------------------------------------------

def _stub_accelerator():
    from amaranth import Module, Mux, Signal
    from amaranth.lib import wiring
    from amaranth.lib.memory import Memory
    from amaranth.lib.wiring import In, Out

    class StubAccelerator(wiring.Component):
        """Host-port model of ``hw.top.Accelerator``: four 32-bit memories of ``limits``
        words (SCRATCH keeps 16 bits, sign-extended on read, where ``signed_scratch``), and
        a run of ``run_cycles`` (``slow_run_cycles`` while ``slow``) whose result counts
        the runs since reset. The one stub behind the host link in the fault campaign,
        tests/test_hostlink.py and tests/test_fuzz_rtl.py."""

        def __init__(self, limits=None, run_cycles=RUN_CYCLES, slow_run_cycles=SLOW_RUN_CYCLES,
                     signed_scratch=True):
            self._limits = dict(LIMITS if limits is None else limits)
            self._run, self._slow_run = int(run_cycles), int(slow_run_cycles)
            self._signed = bool(signed_scratch)
            super().__init__({
                "host_addr": In(20), "host_space": In(2), "host_wdata": In(32),
                "host_we": In(1), "host_re": In(1), "host_rdata": Out(32),
                "start": In(1), "busy": Out(1), "done": Out(1), "error": Out(1),
                "result": Out(32), "cycles": Out(32), "slow": In(1),
            })

        def elaborate(self, platform):
            m = Module()
            rsel = Signal(2)
            with m.If(self.host_re):
                m.d.sync += rsel.eq(self.host_space)
            datas = []
            for space, depth in self._limits.items():
                m.submodules[f"mem{space}"] = mem = Memory(shape=32, depth=depth, init=[])
                rd, wr = mem.read_port(), mem.write_port()
                hit = (self.host_space == space) & ~self.busy
                m.d.comb += [rd.addr.eq(self.host_addr), wr.addr.eq(self.host_addr),
                             wr.data.eq(self.host_wdata), wr.en.eq(self.host_we & hit)]
                datas.append(rd.data[:16].as_signed() if space == 0 and self._signed
                             else rd.data)
            with m.Switch(rsel):
                for i, space in enumerate(self._limits):
                    with m.Case(space):
                        m.d.comb += self.host_rdata.eq(datas[i])
            left = Signal(range(max(self._run, self._slow_run) + 1))
            with m.If(self.start & ~self.busy):
                m.d.sync += [self.busy.eq(1), self.done.eq(0), self.cycles.eq(0),
                             left.eq(Mux(self.slow, self._slow_run, self._run) - 1)]
            with m.Elif(self.busy):
                m.d.sync += [self.cycles.eq(self.cycles + 1), left.eq(left - 1)]
                with m.If(left == 0):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1),
                                 self.result.eq(self.result + 1)]
            return m

    return StubAccelerator


def StubAccelerator(**kw):
    """A new stub accelerator (see ``_stub_accelerator``; keywords ``limits``,
    ``run_cycles``, ``slow_run_cycles``, ``signed_scratch``; Amaranth is imported lazily so the
    cocotb side of this module does not load it)."""
    return _stub_accelerator()(**kw)


def FaultBench(device="stub", *, cfg=None, program_words=(), weight_words=(),
               timeout_cycles: int = TIMEOUT_CYCLES):
    """The campaign's top: host-side UART + fault inputs + the device under test.

    Parameters
    ----------
    device : "stub" or "board"
        ``stub``: :class:`ternac.hw.hostlink.UARTHostlink` (divisor :data:`DIVISOR`,
        limits :data:`LIMITS`) in front of :class:`StubAccelerator`; ``board``:
        ``ternac.boards.core.BoardCore`` for ``cfg`` (EBR weights baked in, as the ULX3S).
    cfg, program_words, weight_words
        The board core's configuration, baked-in program and weights (``board``).

    Ports (all the bench touches)
    -----
    h_tx_data (8), h_tx_valid (1) in, h_tx_ready (1) out: a byte for the host's UART
    transmitter; h_tx_line out: its serial output before the fault;
    flip_h2d, flip_d2h in: XORed into the host->device / device->host line (a bit fault);
    d_tx_line out: the device's serial output before the fault; d_tx_taken (16) out: the
    bytes its UART transmitter has taken (mod 2**16);
    h_rx_data (8), h_rx_count (16) out: the last byte the host's receiver took and how
    many it took (mod 2**16); h_rx_ferr (8) out: its framing errors (mod 256);
    dev_rst in: the device's synchronous reset (the host side keeps running);
    slow in: the stub's long run;
    mon_we, mon_space (2), mon_addr (20), mon_wdata (32) out: the device's host port.
    """
    from amaranth import Module, Signal
    from amaranth.hdl import ResetInserter
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from ternac.hw.hostlink import UARTHostlink, connect_accelerator
    from ternac.hw.uart import UARTRx, UARTTx

    class _StubDevice(wiring.Component):
        def __init__(self):
            self.link = UARTHostlink(divisor=DIVISOR, limits=LIMITS, config_hash=CONFIG_HASH,
                                     timeout_cycles=timeout_cycles)
            self.accel = StubAccelerator()
            super().__init__({"uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
                              "slow": In(1)})

        def elaborate(self, platform):
            m = Module()
            m.submodules.link = self.link
            m.submodules.accel = self.accel
            connect_accelerator(m, self.link.host, self.accel)
            m.d.comb += [self.link.rx.eq(self.uart_rx), self.uart_tx.eq(self.link.tx),
                         self.accel.slow.eq(self.slow)]
            return m

    if device == "stub":
        dev = _StubDevice()
        host_port = dev.link.host
        dev_tx = dev.link._uart_tx.i
    elif device == "board":
        from ternac.boards.core import BoardCore
        from ternac.protocol import board_config_hash
        dev = BoardCore(cfg, program_words, weight_words, divisor=DIVISOR,
                        timeout_cycles=timeout_cycles,
                        config_hash=board_config_hash(cfg, program_words, "ulx3s"),
                        blink_cycles=64)
        host_port = dev._link.host
        dev_tx = dev._link._uart_tx.i
    else:
        raise ValueError(f"device must be 'stub' or 'board', not {device!r}")

    class _FaultBench(wiring.Component):
        def __init__(self):
            super().__init__({
                "h_tx_data": In(8), "h_tx_valid": In(1), "h_tx_ready": Out(1),
                "h_tx_line": Out(1), "flip_h2d": In(1), "flip_d2h": In(1),
                "d_tx_line": Out(1), "h_rx_data": Out(8), "h_rx_count": Out(16),
                "h_rx_ferr": Out(8), "dev_rst": In(1), "slow": In(1),
                "mon_we": Out(1), "mon_space": Out(2), "mon_addr": Out(20),
                "mon_wdata": Out(32), "d_tx_taken": Out(16),
            })

        def elaborate(self, platform):
            m = Module()
            m.submodules.htx = htx = UARTTx(divisor=DIVISOR)
            m.submodules.hrx = hrx = UARTRx(divisor=DIVISOR)
            m.submodules.dev = ResetInserter(self.dev_rst)(dev)
            m.d.comb += [
                htx.i.payload.eq(self.h_tx_data), htx.i.valid.eq(self.h_tx_valid),
                self.h_tx_ready.eq(htx.i.ready), self.h_tx_line.eq(htx.tx),
                dev.uart_rx.eq(htx.tx ^ self.flip_h2d),
                self.d_tx_line.eq(dev.uart_tx),
                hrx.rx.eq(dev.uart_tx ^ self.flip_d2h), hrx.o.ready.eq(1),
                self.mon_we.eq(host_port.we), self.mon_space.eq(host_port.space),
                self.mon_addr.eq(host_port.addr), self.mon_wdata.eq(host_port.wdata),
            ]
            if device == "stub":
                m.d.comb += dev.slow.eq(self.slow)
            else:
                unused = Signal()
                m.d.comb += unused.eq(self.slow)
            with m.If(hrx.o.valid):
                m.d.sync += [self.h_rx_data.eq(hrx.o.payload),
                             self.h_rx_count.eq(self.h_rx_count + 1)]
            with m.If(hrx.framing_error):
                m.d.sync += self.h_rx_ferr.eq(self.h_rx_ferr + 1)
            with m.If(dev_tx.valid & dev_tx.ready):
                m.d.sync += self.d_tx_taken.eq(self.d_tx_taken + 1)
            return m

    return _FaultBench()


def build_fault_bench(device="stub", *, progress: bool = True, **kw):
    """Build :func:`FaultBench` in Verilator with the clock inside the model (cached by its
    Verilog); returns (runner, build_dir, toplevel)."""
    from ternac.sim.runner import build
    name = f"ternac_faults_{device}"
    runner, bdir = build(FaultBench(device, **kw), name, clock="hdl", clock_ns=CLK_NS,
                         progress=progress)
    return runner, bdir, name


# -- the cocotb side: the host end of the line -------------------------------------------------

class Fault:
    """One fault: ``direction`` ("h2d", "d2h", "device"), ``kind``, ``pos`` (byte index in
    the frame), ``bit`` (0 start, 1-8 data LSB first, 9 stop), ``byte`` (an inserted value),
    ``delay_ns`` (a reset's offset)."""

    def __init__(self, direction, kind, pos=0, bit=0, byte=0, delay_ns=0):
        self.direction, self.kind, self.pos, self.bit = direction, kind, pos, bit
        self.byte, self.delay_ns = byte, delay_ns
        self.applied = False

    def __repr__(self):
        return (f"{self.direction}/{self.kind} pos={self.pos} bit={self.bit} "
                f"byte={self.byte:#04x} delay={self.delay_ns}ns")


class BenchTransport:
    """A :class:`ternac.hostdriver.HostDriver` transport over the bench's host-side UART,
    injecting the armed fault: ``h2d`` into the first request written after
    :meth:`arm`, ``d2h`` into the first response bytes received after it."""
    is_async = True

    def __init__(self, dut):
        self.dut = dut
        self.buf = bytearray()
        self.event = Event()
        self.h2d = self.d2h = None
        self.index = 0          # bytes received since arm()
        self.truncating = False
        self.drains = 0
        self.resets = 0
        dut.h_tx_valid.value = 0
        dut.flip_h2d.value = 0
        dut.flip_d2h.value = 0
        dut.dev_rst.value = 0
        cocotb.start_soon(self._receive())

    # fault control ------------------------------------------------------------------
    def arm(self, fault, response_len: int):
        """Arm ``fault`` for the next request (h2d) or response (d2h, whose clean length
        is ``response_len``: a truncation drops the rest of it)."""
        self.h2d = fault if fault.direction in ("h2d", "device") else None
        self.d2h = fault if fault.direction == "d2h" else None
        self.response_len = response_len
        self.index = 0
        self.truncating = False
        self.drains = 0
        self._line_started = False
        if self.d2h is not None and fault.kind in ("bitflip", "reset_frame"):
            self._line_task = cocotb.start_soon(self._response_line_fault(
                fault, int(self.dut.d_tx_taken.value)))

    def disarm(self):
        self.h2d = self.d2h = None
        self.truncating = False
        # A line fault still waiting for its byte is dropped (the response was shorter: it
        # was not applied); one under way (a flip or a reset pulse) is left to finish, so
        # the line or the reset is never left stuck.
        task, self._line_task = getattr(self, "_line_task", None), None
        if task is not None and not task.done() and not self._line_started:
            task.cancel()

    async def reset_device(self, cycles: int = 3):
        self.resets += 1
        self.dut.dev_rst.value = 1
        await Timer(cycles * CLK_NS, "ns")
        self.dut.dev_rst.value = 0

    async def _flip_line(self, line, flip, fault):
        """Invert the next serial frame's bit ``fault.bit`` on ``line`` (the wire after it)
        for one bit time."""
        await line.falling_edge                       # the start bit, on a clock edge
        await Timer(fault.bit * BIT_NS + 1, "ns")
        flip.value = 1
        await Timer(BIT_NS, "ns")
        flip.value = 0
        fault.applied = True

    async def _response_line_fault(self, fault, base: int):
        """A bit flip or a reset in byte ``fault.pos`` of the device's next response: wait
        until its transmitter has taken that byte (the line is then high, between bytes),
        then for its start bit."""
        dut = self.dut
        self._line_started = False
        while (int(dut.d_tx_taken.value) - base) % (1 << 16) <= fault.pos:
            await dut.d_tx_taken.value_change
        self._line_started = True
        if fault.kind == "bitflip":
            await self._flip_line(dut.d_tx_line, dut.flip_d2h, fault)
        else:
            await dut.d_tx_line.falling_edge
            await Timer(fault.delay_ns + 1, "ns")
            await self.reset_device()
            fault.applied = True

    # receive -----------------------------------------------------------------------
    async def _receive(self):
        dut = self.dut
        seen = int(dut.h_rx_count.value)
        while True:
            await dut.h_rx_count.value_change
            count = int(dut.h_rx_count.value)
            assert (count - seen) % (1 << 16) == 1, "the host receiver outran the bench"
            seen = count
            self._deliver(int(dut.h_rx_data.value))

    def _deliver(self, b):
        i = self.index
        self.index += 1
        before = len(self.buf)
        f = self.d2h
        if f is not None and i == f.pos and f.kind in ("drop", "duplicate", "insert",
                                                      "truncate"):
            f.applied = True
            if f.kind == "duplicate":
                self.buf += bytes([b, b])
            elif f.kind == "insert":
                self.buf += bytes([f.byte, b])
            elif f.kind == "truncate":
                self.truncating = True
        elif self.truncating and i < self.response_len:
            pass                    # lost: the host never sees it
        else:
            self.buf.append(b)
        if len(self.buf) != before:     # a dropped byte wakes no reader: it never arrived
            self.event.set()

    # the transport ---------------------------------------------------------------
    async def _send_byte(self, b):
        dut = self.dut
        dut.h_tx_data.value = b
        dut.h_tx_valid.value = 1
        if not dut.h_tx_ready.value:
            await dut.h_tx_ready.rising_edge
        await dut.h_tx_ready.falling_edge            # taken
        dut.h_tx_valid.value = 0

    async def write(self, data: bytes):
        f, self.h2d = self.h2d, None
        data = bytes(data)
        if f is None:
            for b in data:
                await self._send_byte(b)
            return
        k = f.pos
        if f.kind == "drop":
            data = data[:k] + data[k + 1:]
        elif f.kind == "duplicate":
            data = data[:k + 1] + data[k:]
        elif f.kind == "insert":
            data = data[:k] + bytes([f.byte]) + data[k:]
        elif f.kind == "truncate":
            data = data[:k]
        if f.kind in ("drop", "duplicate", "insert", "truncate"):
            f.applied = True
        for i, b in enumerate(data):
            await self._send_byte(b)
            if i == k and f.kind == "bitflip":
                await self._flip_line(self.dut.h_tx_line, self.dut.flip_h2d, f)
            if i == k and f.kind == "reset_frame":
                await Timer(f.delay_ns + 1, "ns")
                await self.reset_device()
                f.applied = True
        if f.kind == "reset_frame" and k >= len(data):
            # after the last byte: while the request is checked and executed
            await Timer(BYTE_NS + f.delay_ns, "ns")
            await self.reset_device()
            f.applied = True
        if f.kind == "reset_run":
            async def later():
                await Timer(BYTE_NS + f.delay_ns, "ns")     # the last byte, then the run
                await self.reset_device()
                f.applied = True
            cocotb.start_soon(later())

    async def read(self, n: int, long: bool = False) -> bytes:
        from ternac.protocol import LinkTimeout
        timeout = RUN_TIMEOUT_NS if long else BYTE_TIMEOUT_NS
        while len(self.buf) < n:
            before = len(self.buf)
            self.event.clear()
            await First(self.event.wait(), Timer(timeout, "ns"))
            if len(self.buf) == before:
                raise LinkTimeout(f"no response byte within {timeout} ns of simulated time "
                                  f"(got {before} of {n} bytes)")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    async def drain(self):
        self.drains += 1
        await Timer(RESYNC_NS, "ns")
        self.buf.clear()


# -- the campaign (inside the simulator) ---------------------------------------------------

SPACES = (0, 1, 2, 3)
SCRATCH = 0


def _one_sentence(msg: str) -> bool:
    """One line, no traceback, ending without a second sentence after a full stop."""
    return bool(msg) and "\n" not in msg and "Traceback" not in msg and len(msg) < 400


class Campaign:
    """The per-trial bookkeeping (memory model from the monitored writes, expected run
    count) and the outcome counts."""

    def __init__(self, dut, transport, seed: int, *, stub: bool = True):
        from ternac.hostdriver import HostDriver
        self.dut, self.t, self.stub = dut, transport, stub
        self.rng = random.Random(seed)
        self.drv = HostDriver(transport, retries=2)
        self.mem = {s: {} for s in SPACES}
        self.writes = []            # monitored host-port writes of the current trial
        self.runs = 0               # the stub's result (runs since reset)
        self.stats = {}
        self.by_op = {}
        self.errors = {}
        self.corruptions = []
        self.hangs = []
        self.max_op_ns = {}
        self.readbacks = 0
        self.readback_mismatches = 0    # (read-back, space) pairs that differed from the model
        self.since_readback = set()     # the fault kinds of the trials since the last read-back
        self.rejected = 0
        cocotb.start_soon(self._monitor())

    async def _monitor(self):
        dut = self.dut
        while True:
            await dut.mon_we.rising_edge
            self.writes.append((int(dut.mon_space.value), int(dut.mon_addr.value),
                                int(dut.mon_wdata.value)))

    # operations ---------------------------------------------------------------------
    def pick_op(self, fault):
        rng = self.rng
        if fault.kind == "reset_run":
            return ("run", True, True)
        r = rng.random()
        if r < 0.05:
            return ("identify",)
        if r < 0.10:
            return ("status",)
        if r < 0.45:
            space = rng.choice(SPACES)
            n = rng.randint(1, min(LIMITS[space], 24 if space else 70))
            addr = rng.randrange(LIMITS[space] - n + 1)
            bits = 16 if space == SCRATCH else 32
            return ("write_mem", space, addr, [rng.getrandbits(bits) for _ in range(n)])
        if r < 0.55:
            n = rng.randint(1, 12)
            addr = rng.randrange(LIMITS[SCRATCH] - n + 1)
            return ("write_scratch", addr, [rng.randrange(-32768, 32768) for _ in range(n)])
        if r < 0.85:
            space = rng.choice(SPACES)
            n = rng.randint(1, min(LIMITS[space], 24))
            return ("read_mem", space, rng.randrange(LIMITS[space] - n + 1), n)
        return ("run", rng.random() < 0.8, False)

    @staticmethod
    def request_len(op) -> int:
        """Bytes of the op's first request frame."""
        if op[0] == "write_mem":
            return 11 + 4 * min(len(op[3]), 64)
        if op[0] == "write_scratch":
            return 11 + 4 * min(len(op[2]), 64)
        if op[0] == "read_mem":
            return 13
        if op[0] == "run":
            return 6 if op[1] else 7
        return 6

    @staticmethod
    def response_len(op) -> int:
        """Bytes of the op's first ACK response frame."""
        if op[0] == "read_mem":
            return 6 + 4 * min(op[3], 64)
        if op[0] == "run":
            return 14 if op[1] else 6
        return {"identify": 13, "status": 16, "write_mem": 6, "write_scratch": 6}[op[0]]

    def intended(self, op) -> dict:
        """(space, addr) -> word of every write the op asks for."""
        if op[0] == "write_mem":
            _, space, addr, words = op
            return {(space, addr + i): w & 0xFFFFFFFF for i, w in enumerate(words)}
        if op[0] == "write_scratch":
            _, addr, vals = op
            return {(SCRATCH, addr + i): v & 0xFFFF for i, v in enumerate(vals)}
        return {}

    def model_read(self, space, addr, n):
        out = []
        for a in range(addr, addr + n):
            w = self.mem[space].get((a), 0)
            if space == SCRATCH:
                w &= 0xFFFF
                w = (w - (1 << 16) if w >> 15 else w) & 0xFFFFFFFF
            out.append(w)
        return out

    async def do(self, drv, op):
        """Run ``op`` on ``drv``; returns its result."""
        name = op[0]
        if name == "identify":
            return await drv.identify()
        if name == "status":
            return await drv.status()
        if name == "write_mem":
            return await drv.write_mem(*op[1:])
        if name == "write_scratch":
            return await drv.write_scratch(*op[1:])
        if name == "read_mem":
            return await drv.read_mem(*op[1:])
        wait, slow = op[1], op[2]
        self.dut.slow.value = int(slow)
        if wait:
            return await drv.run()
        await drv.run(wait=False)
        return None

    def check_result(self, op, res, reset: bool = False) -> str | None:
        """None if ``res`` is right for ``op``, else what is wrong (``reset``: the device
        was reset during the op, which clears the stub's run count)."""
        name = op[0]
        runs = (self.runs, 0) if reset else (self.runs,)
        if name == "identify":
            if res.config_hash != self.config_hash:
                return f"IDENTIFY returned hash {res.config_hash:#x}"
        elif name == "status":
            if res.busy or res.result not in runs:
                return f"STATUS returned {res}, {runs} runs expected"
        elif name in ("write_mem", "write_scratch"):
            missing = [k for k, w in self.intended(op).items() if self.mem[k[0]].get(k[1]) != w]
            if missing:
                return f"{len(missing)} words acknowledged but not written, first {missing[0]}"
        elif name == "read_mem":
            want = self.model_read(*op[1:])
            if list(res) != want:
                bad = next(i for i, (a, b) in enumerate(zip(res, want)) if a != b)
                return f"READ_MEM word {bad} returned {res[bad]:#x}, memory holds {want[bad]:#x}"
        elif name == "run" and op[1]:
            cycles = SLOW_RUN_CYCLES if op[2] else RUN_CYCLES
            if tuple(res) not in [(r + 1, cycles) for r in runs]:
                return f"RUN returned {res}, ({runs[0] + 1}, {cycles}) expected"
        return None

    def apply_writes(self, op) -> str | None:
        """Fold the monitored writes into the memory model; returns a description of the
        first write outside the op's request, if any."""
        want = self.intended(op)
        bad = None
        for space, addr, data in self.writes:
            if want.get((space, addr)) != data and bad is None:
                bad = (f"device wrote {data:#x} at {['SCRATCH', 'OUT', 'PROG', 'WEIGHTS'][space]}"
                       f"[{addr}], outside the request")
            self.mem[space][addr] = data
        self.writes.clear()
        return bad

    def make_fault(self, direction, kind, op):
        rng = self.rng
        n_req, n_resp = self.request_len(op), self.response_len(op)
        n = n_req if direction != "d2h" else n_resp
        f = Fault(direction, kind, pos=rng.randrange(n), bit=rng.randrange(10),
                  byte=0xA5 if rng.random() < 0.25 else rng.randrange(256))
        if kind == "insert" and direction == "h2d":
            f.pos = rng.randrange(n + 1)            # n: garbage after the frame
        elif kind == "truncate":
            f.pos = rng.randrange(1, n)
        elif kind == "reset_frame":
            if direction == "h2d":
                f.pos = rng.randrange(n + 1)        # n: after the last byte, executing
                f.delay_ns = rng.randrange(BYTE_NS if f.pos < n else 9 * 64 * CLK_NS)
            else:
                f.delay_ns = rng.randrange(BYTE_NS)
        elif kind == "reset_run":
            f.delay_ns = rng.randrange(SLOW_RUN_CYCLES * CLK_NS)
        return f

    def count(self, key, outcome, detected, op_ns):
        s = self.stats.setdefault(key, {"injected": 0, "detected": 0, "recovered": 0,
                                        "masked": 0, "failed_clearly": 0,
                                        "silently_corrupted": 0, "hung": 0})
        s["injected"] += 1
        s["detected"] += int(detected)
        s[outcome] += 1
        self.max_op_ns[key] = max(self.max_op_ns.get(key, 0), op_ns)

    async def probe(self):
        """Faults off: wait out a partial frame, drop stale input, STATUS. Returns the
        status, or None if the device did not answer (then it is reset)."""
        from ternac.protocol import LinkError
        self.t.disarm()
        await Timer(RESYNC_NS, "ns")
        self.t.buf.clear()
        # The session's own driver (it learns the device's run tag, as in a session), with
        # no retry: the device must answer at once.
        retries, self.drv.retries = self.drv.retries, 0
        try:
            return await self.drv.status()
        except LinkError:
            return None
        finally:
            self.drv.retries = retries

    async def trial(self, direction, kind):
        from cocotb.utils import get_sim_time

        from ternac.errors import InputError
        from ternac.protocol import DeviceError, LinkError, StatusFlag
        op = self.pick_op(Fault(direction, kind))
        fault = self.make_fault(direction, kind, op)
        self.t.arm(fault, self.response_len(op))
        self.writes.clear()
        resets = self.t.resets
        t0 = get_sim_time("ns")
        res, err = None, None
        try:
            res = await self.do(self.drv, op)
        except (LinkError, DeviceError) as e:
            err = e
        except InputError as e:             # the campaign's ops are valid: a bench bug
            raise AssertionError(f"{op[0]} refused its arguments: {e}") from None
        op_ns = get_sim_time("ns") - t0
        drains = self.t.drains
        self.t.disarm()
        st = await self.probe()
        outside = self.apply_writes(op)
        key = f"{direction}/{kind}"
        self.since_readback.add(key)
        self.by_op.setdefault(op[0], 0)
        self.by_op[op[0]] += 1
        if st is None:
            # A second chance, with retries, tells a slow device from a hung one.
            self.t.buf.clear()
            await Timer(4 * RESYNC_NS, "ns")
            try:
                late = await self.drv.status()
            except LinkError as e:
                late = f"no answer either ({e})"
            self.hangs.append(f"{key} {fault} during {op[:3] if op[0] == 'read_mem' else op[0]}"
                              f" (driver: {err!r}, {drains} drains; later STATUS: {late}; "
                              f"at {get_sim_time('ns')} ns)")
            await self.t.reset_device()
            self.runs = 0
            self.rejected = 0
            st = await self.probe()
            assert st is not None, f"the device did not answer after a reset ({key})"
            self.count(key, "hung", True, op_ns)
            return
        sticky = st.flags & (StatusFlag.RX_OVERRUN | StatusFlag.RX_FRAMING | StatusFlag.TIMEOUT)
        noticed = (drains > 0 or err is not None or bool(sticky)
                   or st.rejected != self.rejected or st.busy)
        self.rejected = st.rejected
        wrong = outside
        if err is None and wrong is None and fault.applied:
            wrong = self.check_result(op, res, reset=self.t.resets != resets)
        if err is not None:
            msg = str(err)
            if not _one_sentence(msg):
                wrong = f"an unclear error: {msg!r}"
            self.errors.setdefault(f"{type(err).__name__}: {msg}", 0)
            self.errors[f"{type(err).__name__}: {msg}"] += 1
        if op_ns > MAX_OP_NS:
            wrong = wrong or f"the driver took {op_ns} ns (bound {MAX_OP_NS} ns)"
        # The stub's run count (checked above against the count before the trial): from
        # here on what STATUS says (a lost RUN response may or may not have run).
        self.runs = st.result
        if st.busy:                 # a no-wait run: let it finish
            while st.busy:
                await Timer(SLOW_RUN_CYCLES * CLK_NS // 4, "ns")
                st = await self.probe()
            self.runs = st.result
            self.rejected = st.rejected
        if not fault.applied:
            raise AssertionError(f"fault {fault} was not applied during {op}")
        if wrong is not None:
            self.corruptions.append(f"{key} {fault} during {op[0]}: {wrong}")
            self.count(key, "silently_corrupted", noticed, op_ns)
        elif err is not None:
            self.count(key, "failed_clearly", True, op_ns)
        elif noticed:
            self.count(key, "recovered", True, op_ns)
        else:
            self.count(key, "masked", False, op_ns)

    async def setup(self):
        """Known contents in every memory, written and read back with the faults off."""
        for space in SPACES:
            bits = 16 if space == SCRATCH else 32
            words = [self.rng.getrandbits(bits) for _ in range(LIMITS[space])]
            await self.drv.write_mem(space, 0, words)
            self.apply_writes(("write_mem", space, 0, words))
        await self.readback()
        st = await self.probe()
        self.runs, self.rejected = st.result, st.rejected

    async def readback(self):
        """Every memory read back (faults off) and compared with the model. Each space that
        differs is one silent corruption (``readback_mismatches``, in the totals' count);
        it is also counted in that fault kind's ``readback_mismatches`` when every trial
        since the previous read-back was of one kind."""
        self.readbacks += 1
        kinds, self.since_readback = self.since_readback, set()
        for space in SPACES:
            got = await self.drv.read_mem(space, 0, LIMITS[space])
            want = self.model_read(space, 0, LIMITS[space])
            if got != want:
                bad = next(i for i, (a, b) in enumerate(zip(got, want)) if a != b)
                self.readback_mismatches += 1
                if len(kinds) == 1:
                    s = self.stats[next(iter(kinds))]
                    s["readback_mismatches"] = s.get("readback_mismatches", 0) + 1
                self.corruptions.append(f"read-back of space {space} word {bad}: "
                                        f"{got[bad]:#x}, model {want[bad]:#x} (trial kinds "
                                        f"since the last read-back: {sorted(kinds) or 'none'})")


#: The longest a driver operation may take under one fault (simulated ns): three attempts
#: of the longest request (a 70-word write: two frames), each with its byte timeout and
#: resynchronisation, or a RUN's timeout.
MAX_OP_NS = 3 * (2 * (11 + 4 * 64) * BYTE_NS + BYTE_TIMEOUT_NS + RESYNC_NS) + RUN_TIMEOUT_NS


def _summary(c: Campaign) -> dict:
    keys = ("injected", "detected", "recovered", "masked", "failed_clearly",
            "silently_corrupted", "hung")
    totals = {k: sum(s[k] for s in c.stats.values()) for k in keys}
    # a read-back that differs from the model is a silent corruption, whichever trial did it
    totals["readback_mismatches"] = c.readback_mismatches
    totals["silently_corrupted"] += c.readback_mismatches
    return {"totals": totals, "by_fault": c.stats, "by_op": c.by_op,
            "max_op_us": {k: round(v / 1e3, 1) for k, v in c.max_op_ns.items()},
            "errors": dict(sorted(c.errors.items(), key=lambda kv: -kv[1])[:40]),
            "distinct_errors": len(c.errors), "corruptions": c.corruptions[:50],
            "hangs": c.hangs[:50], "readbacks": c.readbacks}


#: Deliberately broken drivers (tests/test_faults.py: the campaign's checks can fail).
BROKEN = ("no_crc", "addr_plus_one", "lost_write")


def _break_driver(broken):
    """Break the driver in this simulator process: ``no_crc`` accepts a response whatever
    its CRC; ``addr_plus_one`` writes every WRITE_MEM one address above the one asked;
    ``lost_write`` breaks the campaign's memory model instead: it loses the set-up's first
    monitored write batch's last word, so only a read-back can see the difference at once."""
    import ternac.hostdriver as hd
    if broken is None:
        return
    if broken == "no_crc":
        def decode(frame, *, sync=hd.SYNC_RESPONSE):
            n = int.from_bytes(frame[2:4], "little")
            return frame[1], bytes(frame[4:4 + n])
        hd.decode_frame = decode
    elif broken == "addr_plus_one":
        write = hd.HostDriver._write_mem

        def shifted(self, space, addr, words):
            return write(self, space, addr + 1 if len(words) < LIMITS[space] else addr, words)
        hd.HostDriver._write_mem = shifted
    elif broken == "lost_write":
        apply = Campaign.apply_writes

        def lossy(self, op):
            if self.writes and not getattr(self, "lost", False):
                self.lost = True
                self.writes.pop()
            return apply(self, op)
        Campaign.apply_writes = lossy
    else:
        raise ValueError(f"unknown broken driver {broken!r}")


@cocotb.test()
async def stub_campaign(dut):
    """The stub campaign: ``faults`` trials with seed ``seed`` (bench inputs)."""
    from cocotb.utils import get_sim_time

    from streams import bench_inputs, bench_output, bench_progress
    p = bench_inputs()
    _break_driver(p.get("broken"))
    t = BenchTransport(dut)
    await Timer(20 * CLK_NS, "ns")
    c = Campaign(dut, t, p["seed"])
    c.config_hash = CONFIG_HASH
    await c.setup()
    rng = random.Random(p["seed"] + 1)
    n = p["faults"]
    only = [tuple(p["only"])] if p.get("only") else FAULTS
    order = [only[i % len(only)] for i in range(n)]
    rng.shuffle(order)
    for i, (direction, kind) in enumerate(order):
        await c.trial(direction, kind)
        if (i + 1) % 256 == 0 or i + 1 == n:
            await c.readback()
        if (i + 1) % 50 == 0 or i + 1 == n:
            bench_progress({"done": i + 1})
    out = _summary(c)
    out["sim_seconds"] = get_sim_time("ns") * 1e-9
    bench_output(out)


# -- the board slice: the real accelerator behind the link -----------------------------------

#: The board slice's model: the committed digits MLP (64-128-64-10) at 8 lanes, memories
#: sized to it, its weights baked into EBR (as the ULX3S build; the program is loaded over
#: the link).
BOARD_LANES = 8


def _board_model(n_inputs: int):
    """(compiled, int8 inputs (n, 64), golden logits (n, 10)) of the committed digits MLP:
    the first ``n_inputs`` test digits and ``golden.mlp.int_forward``'s logits."""
    from ternac.config import AccelConfig
    from ternac.golden import mlp
    from ternac.golden.digits_data import load_split, quantize_pixels
    from ternac.lower import compile_mlp, load_model
    from ternac.sim.runner import REPO
    _, layers = load_model(REPO / "checkpoints" / "digits.safetensors")
    words = sum(-(-l.trits.shape[0] // BOARD_LANES) * l.trits.shape[1] for l in layers)
    cfg = AccelConfig(lanes=BOARD_LANES, weight_depth=words, scratch_depth=256, out_depth=16,
                      prog_depth=8, max_fan_in=128)
    compiled = compile_mlp(layers, cfg, 64)
    _, _, x_te, _ = load_split()
    x = quantize_pixels(x_te)[:n_inputs]
    return compiled, x, mlp.int_forward(layers, x)


def _call_writes(call, word_bits) -> dict | None:
    """(space, addr) -> word of every host-port write a session call asks for (None: the
    call writes nothing)."""
    from ternac.protocol import Space
    name, args = call[0], call[1:]
    if name == "write_scratch":
        addr, vals = args
        return {(Space.SCRATCH, addr + i): int(v) & 0xFFFF for i, v in enumerate(vals)}
    if name == "load_program":
        (words,) = args
        return {(Space.PROG, 4 * i + s): (int(w) >> (32 * s)) & 0xFFFFFFFF
                for i, w in enumerate(words) for s in range(4)}
    return None


@cocotb.test()
async def board_campaign(dut):
    """The digits session (ternac.session.digits_session) on the real board core with
    faults armed before its driver calls (one an inference at most, with probability
    ``fault_rate``; each set-up call with that probability); every host-port write checked
    against its call, a STATUS probe after each fault; the logits go back to
    :func:`run_board_faults`, which compares every one with the golden model."""
    from cocotb.utils import get_sim_time

    from streams import bench_inputs, bench_output, bench_progress
    from ternac.hostdriver import HostDriver, drive_async
    from ternac.protocol import LinkError
    from ternac.session import digits_session
    p = bench_inputs()
    rng = random.Random(p["seed"])
    t = BenchTransport(dut)
    await Timer(20 * CLK_NS, "ns")
    drv = HostDriver(t, retries=2)
    writes = []

    async def monitor():
        while True:
            await dut.mon_we.rising_edge
            writes.append((int(dut.mon_space.value), int(dut.mon_addr.value),
                           int(dut.mon_wdata.value)))
    cocotb.start_soon(monitor())
    stats = {"injected": 0, "calls": 0, "call_errors": 0, "outside_writes": [], "hung": 0,
             "by_fault": {}}
    probe = HostDriver(t, retries=0)
    resp_len = {"check_identity": 13, "status": 16, "write_scratch": 6, "load_program": 6,
                "run": 14, "read_out": 6 + 4 * p["n_logits"]}
    req_len = {"check_identity": 6, "status": 6, "run": 6, "read_out": 13,
               "write_scratch": 11 + 4 * len(p["inputs"][0]),
               "load_program": 11 + 16 * min(len(p["program"]), 16)}

    # One fault an inference at most (on its write, RUN or read, with probability
    # fault_rate), none in an inference the session repeats; the set-up calls (IDENTIFY,
    # STATUS, the program) each with probability fault_rate.
    plan = {"target": None, "step": 0, "repeat": False}

    def say(msg):
        if "repeated" in msg:
            plan["repeat"] = True

    def wants_fault(name):
        if name == "write_scratch":
            plan["step"] = 0
            plan["target"] = (None if plan["repeat"] or rng.random() >= p["fault_rate"]
                              else rng.randrange(3))
            plan["repeat"] = False
        if name in ("write_scratch", "run", "read_out"):
            hit = plan["target"] == plan["step"]
            plan["step"] += 1
            return hit
        return name in resp_len and rng.random() < p["fault_rate"]

    async def perform(call):
        name = call[0]
        stats["calls"] += 1
        fault = None
        if wants_fault(name):
            direction, kind = rng.choice(FAULTS)
            if kind == "reset_run" and name != "run":
                direction, kind = "h2d", "reset_frame"
            n = req_len[name] if direction != "d2h" else resp_len[name]
            fault = Fault(direction, kind, pos=rng.randrange(1 if kind == "truncate" else 0, n),
                          bit=rng.randrange(10),
                          byte=0xA5 if rng.random() < 0.25 else rng.randrange(256),
                          delay_ns=rng.randrange(BYTE_NS if kind == "reset_frame"
                                                 else 2000 * CLK_NS))
            t.arm(fault, resp_len[name])
            key = f"{direction}/{kind}"
            stats["by_fault"][key] = stats["by_fault"].get(key, 0) + 1
        writes.clear()
        try:
            return await getattr(drv, name)(*call[1:])
        except LinkError:
            stats["call_errors"] += 1
            raise
        finally:
            t.disarm()
            if fault is not None:
                stats["injected"] += int(fault.applied)
                await Timer(RESYNC_NS, "ns")
                t.buf.clear()
                try:
                    await probe.status()
                except LinkError:
                    stats["hung"] += 1
            want = _call_writes(call, p["word_bits"]) or {}
            for space, addr, data in writes:
                if want.get((space, addr)) != data:
                    stats["outside_writes"].append(f"{name}: {data:#x} at space {space} "
                                                   f"[{addr}]")

    done = [0]

    def tick():
        done[0] += 1
        bench_progress({"done": done[0]})
    out = await drive_async(digits_session(p, say, tick), perform, (LinkError,))
    out.update(stats, sim_seconds=get_sim_time("ns") * 1e-9)
    bench_output(out)


def run_board_faults(seed: int = 1, inputs: int = 24, *, fault_rate: float = 0.5,
                     progress: bool = True) -> dict:
    """The board slice: the digits session on the real board core (link + Accelerator,
    :data:`BOARD_LANES` lanes) on ``inputs`` test digits, a fault (kinds as :data:`FAULTS`)
    in an inference with probability ``fault_rate`` (none in a repeated one) and before
    each set-up call with that probability.

    Returns
    -------
    dict: ``injected``, ``by_fault``, ``calls``, ``call_errors`` (calls that raised a
    one-sentence LinkError into the session), ``repeated`` (inferences the session tried
    again), ``logit_mismatches`` (against ``golden.mlp.int_forward``, every element; target
    0), ``outside_writes`` (target none), ``hung`` (probes unanswered; target 0), ``seed``,
    ``wall_s`` (measured, the build included), ``sim_seconds``.
    """
    from ternac.session import digits_session_inputs
    from ternac.sim.runner import build, run_bench
    t0 = time.time()
    compiled, x, golden = _board_model(inputs)
    name = "ternac_faults_board"
    runner, bdir = build(FaultBench("board", cfg=compiled.cfg,
                                    program_words=compiled.program_words,
                                    weight_words=compiled.weight_words),
                         name, clock="hdl", clock_ns=CLK_NS, progress=progress)
    p = digits_session_inputs(compiled, x.tolist(), board="ulx3s")
    p.update(seed=seed, fault_rate=fault_rate, tolerate_link_errors=True)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=inputs, desc="board faults", unit="input")

    def on_progress(rec):
        if bar is not None:
            bar.n = rec["done"]
            bar.refresh()
    try:
        out = run_bench(runner, bdir, name, "faults", testcase="board_campaign", inputs=p,
                        on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    want = golden.tolist()
    mism = sum(a != b for row, ref in zip(out["logits"], want) for a, b in zip(row, ref))
    mism += abs(len(out["logits"]) - len(want)) * len(want[0])
    return {"what": "fault injection on the board core's UART host link, digits MLP "
                    f"(L={BOARD_LANES}), real accelerator",
            "kinds": {"counts": "measured (co-simulation)", "wall_s": "measured"},
            "seed": seed, "inputs": inputs, "fault_rate": fault_rate,
            **{k: out[k] for k in ("injected", "by_fault", "calls", "call_errors",
                                   "repeated", "outside_writes", "hung", "sim_seconds")},
            "logit_mismatches": mism, "logits_compared": len(want) * len(want[0]),
            "wall_s": round(time.time() - t0, 1)}


# -- the host side -----------------------------------------------------------------------------

def run_faults(seed: int = 1, faults: int = 10_000, *, progress: bool = True,
               broken: str | None = None) -> dict:
    """The stub campaign: ``faults`` faults (a fixed order of :data:`FAULTS`, shuffled by
    ``seed``) in one simulator start. Returns the report (see :func:`main`); ``wall_s``
    measured, the build included. ``broken`` (:data:`BROKEN`) runs it with a deliberately
    broken driver."""
    from ternac.sim.runner import run_bench
    t0 = time.time()
    runner, bdir, name = build_fault_bench("stub", progress=progress)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=faults, desc="faults", unit="fault")

    def on_progress(rec):
        if bar is not None:
            bar.n = rec["done"]
            bar.refresh()
    try:
        out = run_bench(runner, bdir, name, "faults", testcase="stub_campaign",
                        inputs={"seed": seed, "faults": faults, "broken": broken},
                        on_progress=on_progress)
    finally:
        if bar is not None:
            bar.close()
    report = {
        "what": "fault injection on the UART host link (sim/faults.py), stub accelerator",
        "kinds": {"counts": "measured (co-simulation)", "wall_s": "measured",
                  "sim_seconds": "measured (simulated time)"},
        "seed": seed, "faults_requested": faults, "broken_driver": broken,
        "line": {"clock_ns": CLK_NS, "divisor": DIVISOR, "device_timeout_cycles": TIMEOUT_CYCLES,
                 "byte_timeout_ns": BYTE_TIMEOUT_NS, "run_timeout_ns": RUN_TIMEOUT_NS,
                 "resync_ns": RESYNC_NS, "max_op_ns": MAX_OP_NS, "retries": 2},
        **out,
        "wall_s": round(time.time() - t0, 1),
    }
    return report


def main(argv=None) -> int:
    """``python -m ternac.sim.faults [--seed N] [--faults N] [--json FILE]``: the campaign;
    prints the totals, writes the report; exit 1 if any fault silently corrupted or hung."""
    ap = argparse.ArgumentParser(prog="python -m ternac.sim.faults", description=__doc__
                                 .split("\n\n")[0])
    from ternac.cliargs import whole
    ap.add_argument("--seed", type=whole("--seed", 0), default=1)
    ap.add_argument("--faults", type=whole("--faults", 1), default=10_000)
    ap.add_argument("--board-inputs", type=whole("--board-inputs", 0, 360,
                                                 why="the digits test split"), default=120,
                    help="test digits of the board slice (the real accelerator; 0: none)")
    ap.add_argument("--json", type=pathlib.Path, default=None)
    ap.add_argument("--quiet", action="store_true")
    a = ap.parse_args(argv)
    if a.json:
        from ternac.errors import InputError, check_output_file
        try:
            check_output_file(a.json, "JSON report", make_folder=True)
        except InputError as e:
            ap.error(str(e))
    rep = run_faults(a.seed, a.faults, progress=not a.quiet)
    t = rep["totals"]
    print(f"seed {a.seed}: {t['injected']} faults injected, {t['detected']} detected, "
          f"{t['recovered']} recovered, {t['failed_clearly']} failed with a clear error, "
          f"{t['masked']} masked, {t['silently_corrupted']} silently corrupted "
          f"({t['readback_mismatches']} of them found by a read-back), "
          f"{t['hung']} hung; {rep['wall_s']} s wall, {rep['sim_seconds'] * 1e3:.1f} ms simulated")
    bad = bool(t["silently_corrupted"] or t["hung"])
    if a.board_inputs:
        b = run_board_faults(a.seed, a.board_inputs, progress=not a.quiet)
        rep["board"] = b
        print(f"board slice (digits, L={BOARD_LANES}, real accelerator): {b['injected']} faults "
              f"in {b['inputs']} inferences, {b['call_errors']} calls failed and "
              f"{b['repeated']} inferences repeated, {b['logit_mismatches']} of "
              f"{b['logits_compared']} logits differ from golden, "
              f"{len(b['outside_writes'])} writes outside a request, {b['hung']} hung; "
              f"{b['wall_s']} s wall")
        bad |= bool(b["logit_mismatches"] or b["outside_writes"] or b["hung"])
    if a.json:
        from ternac.errors import write_json
        write_json(a.json, rep)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
