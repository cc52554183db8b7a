"""PackedWeightStreamer: packed I2 weight words from the weight memory to decoded trit lanes."""
from amaranth.hdl import Module, Signal, Cat
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.wiring import In, Out

__all__ = ["PackedWeightStreamer", "StreamCmd", "trit_layout"]

ADDR_BITS = 20

#: A command: stream ``count`` consecutive words starting at word ``base``.
StreamCmd = data.StructLayout({"base": ADDR_BITS, "count": ADDR_BITS + 1})


def trit_layout(lanes: int) -> data.StructLayout:
    """Decoded trits of one weight word: ``nz[l]`` (bit 0 of the I2 code) and ``neg[l]``
    (bit 1) for each lane ``l``, and ``last`` on the final word of a command."""
    return data.StructLayout({"nz": lanes, "neg": lanes, "last": 1})


class PackedWeightStreamer(wiring.Component):
    """Reads lane-tiled I2 words and emits ``lanes`` decoded trits a cycle.

    Each accepted command streams ``count`` words from ``base`` upwards. The next command is
    accepted as soon as the current one has issued its last read, so consecutive commands
    (and every tile edge inside one command) stream without a bubble. A 4-entry FIFO behind
    the 1-cycle memory absorbs backpressure at full rate.

    Throughput: one word (``lanes`` trits, ``2 * lanes`` bits) a cycle while ``o.ready``.
    Latency: 2 cycles from command to first word.

    Parameters
    ----------
    lanes : int
    depth : int   weight memory depth in words

    Members
    -------
    cmd : In(stream.Signature(StreamCmd))
    o : Out(stream.Signature(trit_layout(lanes)))
    mem_raddr : Out(range(depth))         to the weight memory's read address
    mem_rdata : In(2 * lanes)             from the weight memory (1-cycle latency)
    idle : Out(1)                         no command in flight and nothing buffered

    Raises
    ------
    ValueError if ``lanes`` < 1.
    """

    FIFO_DEPTH = 4

    def __init__(self, *, lanes: int, depth: int):
        if lanes < 1:
            raise ValueError(f"lanes must be positive, not {lanes!r}")
        self._lanes = lanes
        self._depth = depth
        super().__init__({
            "cmd": In(stream.Signature(StreamCmd)),
            "o": Out(stream.Signature(trit_layout(lanes))),
            "mem_raddr": Out(range(depth)),
            "mem_rdata": In(2 * lanes),
            "idle": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        L = self._lanes
        m.submodules.fifo = fifo = SyncFIFO(width=2 * L + 1, depth=self.FIFO_DEPTH)

        addr = Signal(ADDR_BITS)
        remaining = Signal(ADDR_BITS + 1)
        inflight = Signal()          # a read issued last cycle lands in the FIFO this cycle
        inflight_last = Signal()

        # Only issue a read if the FIFO will have room for it even if nothing drains.
        room = (fifo.level + inflight) < self.FIFO_DEPTH
        issue = Signal()
        m.d.comb += issue.eq((remaining != 0) & room)
        issue_last = issue & (remaining == 1)

        # Accept the next command while idle or in the cycle the last read of the current one
        # is issued: that is the double buffering that keeps tile edges bubble-free.
        m.d.comb += self.cmd.ready.eq((remaining == 0) | issue_last)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.base), remaining.eq(self.cmd.payload.count)]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]

        m.d.comb += self.mem_raddr.eq(addr)
        m.d.sync += [inflight.eq(issue), inflight_last.eq(issue_last)]

        # I2 decode: bit 0 of each trit is "nonzero", bit 1 is "negate".
        word = self.mem_rdata
        nz = Cat(word[2 * l] for l in range(L))
        neg = Cat(word[2 * l + 1] for l in range(L))
        m.d.comb += [
            fifo.w_data.eq(Cat(nz, neg, inflight_last)),
            fifo.w_en.eq(inflight),
            self.o.payload.as_value().eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
            self.idle.eq((remaining == 0) & ~inflight & ~fifo.r_rdy),
        ]
        return m
