"""PackedWeightStreamer: packed weight words (I2 or T3) from the weight memory to decoded
trit lanes."""
from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.fifo import SyncFIFO
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ternac.golden.tritcode import T3_ENTRY_BITS, t3_decode_rom, t3_word_bits

__all__ = ["PackedWeightStreamer", "StreamCmd", "trit_layout"]

ADDR_BITS = 20

#: A command: stream ``count`` consecutive words starting at word ``base``.
StreamCmd = data.StructLayout({"base": ADDR_BITS, "count": ADDR_BITS + 1})


def trit_layout(lanes: int) -> data.StructLayout:
    """Decoded trits of one weight word: ``nz[l]`` (bit 0 of the I2 code) and ``neg[l]``
    (bit 1) for each lane ``l``, and ``last`` on the final word of a command."""
    return data.StructLayout({"nz": lanes, "neg": lanes, "last": 1})


class PackedWeightStreamer(wiring.Component):
    """Reads lane-tiled weight words (I2 or T3) and emits ``lanes`` decoded trits a cycle.

    Each accepted command streams ``count`` words from ``base`` upwards. The next command is
    accepted as soon as the current one has issued its last read, so consecutive commands
    (and every tile edge inside one command) stream without a bubble. A buffer behind the
    read pipeline absorbs backpressure at full rate: a read is issued only when the buffer
    has room for it and for every read still in the pipeline (decided from flip-flops, so
    no ``o.ready`` reaches the read address), and ``o`` holds its payload while valid and
    not ready.

    Formats (``fmt``):

    * ``"i2"`` (default): words of ``2 * lanes`` bits, :func:`golden.packing.tile_lanes`.
      Decode is two wires a trit (bit ``2l`` = nz, ``2l+1`` = neg). The buffer is the
      weight memory's own output register and one skid register of ``2 L + 1`` bits:
      ``o`` is the skid register when full, else the memory's word, and a word the sink
      does not take stays on the memory's output by reading its address again (the
      weights are written only while the streamer is idle), so a read is issued whenever
      not both are full. Latency: 1 cycle from command to first word (the memory read).
      This replaced a 3-entry FIFO (the read in flight + 2) whose 3 (2 L + 1) flip-flops,
      fed by the SPRAM, each took an iCE40 logic cell of their own (LM, L = 32: 195).
    * ``"t3"``: words of ``8 * lanes / 5`` bits (``B = lanes / 5`` bytes),
      :func:`golden.packing.tile_lanes_t3`; ``lanes`` a multiple of 5 (40 lanes = 64-bit
      words = the UP5K's four 16-bit SPRAM ports). Each byte addresses a 256 x 10 ROM
      initialised from :func:`golden.tritcode.t3_decode_rom` (entry = the byte's five
      (nz, neg) pairs; the 13 invalid bytes give zero trits, the weight image loader rejects
      them); the ``B`` entries concatenated are the I2 word of the same trits, then decoded
      as I2. The ROM read is a registered stage, so latency is 3 cycles; the FIFO stays at
      4 words, as a FIFO of (pipeline stages + 2) entries never runs dry while the sink is
      ready and words remain (here 2 reads in flight + 2; a fifth entry would also push Yosys to map the
      FIFO into 6 EBR instead of flip-flops; the I2 skid scheme would need the ROM
      stage to hold its word too). The ROMs come in pairs: one ``Memory`` with two read ports serves bytes
      ``2j`` and ``2j+1`` (``ceil(B / 2)`` memories). On ECP5 a pair is one true-dual-port
      EBR (DP16KD); the iCE40 SB_RAM40_4K has one read port, so Yosys builds one EBR a read
      port: ``B`` EBR (8 for 40 lanes). ``decode="lut"`` reads the same table through
      asynchronous ports (logic, no EBR) and registers the result: same latency, no EBR.

    Throughput: one word (``lanes`` trits) a cycle while ``o.ready``, in both formats.

    Parameters
    ----------
    lanes : int
    depth : int   weight memory depth in words
    fmt : str     ``"i2"`` or ``"t3"``
    decode : str  T3 only: ``"ebr"`` (synchronous ROM, block RAM) or ``"lut"`` (logic)

    Members
    -------
    cmd : In(stream.Signature(StreamCmd))
    o : Out(stream.Signature(trit_layout(lanes)))
    mem_raddr : Out(range(depth))         to the weight memory's read address
    mem_rdata : In(word_bits)             from the weight memory (1-cycle latency: the
                                          word at the previous cycle's ``mem_raddr``);
                                          ``2 * lanes`` (I2) or ``8 * lanes / 5`` (T3) bits
    idle : Out(1)                         no command in flight and nothing buffered

    Raises
    ------
    ValueError if ``lanes`` < 1, ``fmt`` or ``decode`` is unknown, or T3 ``lanes`` is not
    a multiple of 5.
    """

    #: FIFO entries (T3); I2 has a skid register instead (:attr:`fifo_depth`).
    FIFO_DEPTH = 4
    #: Cycles from an accepted command to its first word on ``o``, by format.
    LATENCY = {"i2": 1, "t3": 3}
    FORMATS = ("i2", "t3")
    DECODES = ("ebr", "lut")

    def __init__(self, *, lanes: int, depth: int, fmt: str = "i2", decode: str = "ebr"):
        if lanes < 1:
            raise ValueError(f"lanes must be positive, not {lanes!r}")
        if fmt not in self.FORMATS:
            raise ValueError(f"weight format must be one of {', '.join(self.FORMATS)}, "
                             f"not {fmt!r}")
        if decode not in self.DECODES:
            raise ValueError(f"T3 decode must be one of {', '.join(self.DECODES)}, "
                             f"not {decode!r}")
        if fmt == "t3":
            word_bits = t3_word_bits(lanes)      # raises unless lanes is a multiple of 5
        else:
            word_bits = 2 * lanes
        self._lanes = lanes
        self._depth = depth
        self._fmt = fmt
        self._decode = decode
        self._word_bits = word_bits
        super().__init__({
            "cmd": In(stream.Signature(StreamCmd)),
            "o": Out(stream.Signature(trit_layout(lanes))),
            "mem_raddr": Out(range(depth)),
            "mem_rdata": In(word_bits),
            "idle": Out(1),
        })

    @property
    def fmt(self) -> str:
        return self._fmt

    @property
    def word_bits(self) -> int:
        """Bits of a weight word: ``2 * lanes`` (I2) or ``8 * lanes / 5`` (T3)."""
        return self._word_bits

    @property
    def fifo_depth(self) -> int:
        """Buffer entries behind the memory: 1 (I2: the skid register; the memory's
        output register holds a second word), 4 (T3: the reads in flight, 2, + 2): enough
        that ``o`` never runs dry while the sink is ready and words remain (room is
        reserved from registered state, so no ready reaches the read address)."""
        return 1 if self._fmt == "i2" else self.FIFO_DEPTH

    @property
    def latency(self) -> int:
        """Cycles from an accepted command to its first word on ``o``: 1 (I2), 3 (T3)."""
        return self.LATENCY[self._fmt]

    def elaborate(self, platform):
        if self._fmt == "t3":
            return self._elaborate_t3(platform)
        m = Module()
        L = self._lanes

        addr = Signal(ADDR_BITS)
        remaining = Signal(ADDR_BITS + 1)
        # The read pipeline is the weight memory's own output register (``mem_rdata``: the
        # word read last cycle, ``s_valid``) and one skid register behind it (``f``). ``o``
        # shows the skid register when it is full, else the memory's word (so a word is on
        # ``o`` the cycle after its read); a word the sink does not take moves into the
        # skid register if that is free, or stays on the memory's output: the memory then
        # reads the same address again (``last_addr``), which returns the same word (the
        # weights are written only while the streamer is idle).
        s_valid = Signal()            # mem_rdata holds a word not yet taken or moved
        s_last = Signal()
        f = Signal(2 * L + 1)         # the skid register: nz, neg, last
        f_valid = Signal()
        last_addr = Signal(len(self.mem_raddr))   # the address of the word on mem_rdata

        # remaining == 0 and == 1 as registers beside it, so cmd.ready (which the sequencer's
        # command registers hang on) is a few gates from flip-flops: decoded from the
        # counter, it was the iCEBreaker digits build's critical path (31.7 ns at 33 MHz).
        rem_zero = Signal(init=1)
        rem_one = Signal()

        # Issue a read only if the word on the memory's output leaves it this cycle whatever
        # the sink does (there is none, or the skid register is free to take it): decided
        # from flip-flops alone, so no ready reaches the read address. Two words of buffer
        # (the memory's and the skid register) keep one word a cycle under any stalls.
        issue = Signal()
        m.d.comb += issue.eq(~rem_zero & ~(s_valid & f_valid))
        issue_last = issue & rem_one

        # Accept the next command while idle or in the cycle the last read of the current one
        # is issued: that is the double buffering that keeps tile edges bubble-free.
        m.d.comb += self.cmd.ready.eq(rem_zero | issue_last)
        with m.If(self.cmd.valid & self.cmd.ready):
            count = self.cmd.payload.count
            m.d.sync += [addr.eq(self.cmd.payload.base), remaining.eq(count),
                         rem_zero.eq(count == 0), rem_one.eq(count == 1)]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1),
                         rem_zero.eq(rem_one), rem_one.eq(remaining == 2)]

        raddr = Signal.like(self.mem_raddr)
        m.d.comb += [raddr.eq(Mux(issue, addr, last_addr)), self.mem_raddr.eq(raddr)]
        m.d.sync += last_addr.eq(raddr)

        # I2 decode: bit 0 of each trit is "nonzero", bit 1 is "negate".
        word = self.mem_rdata
        s_word = Cat(Cat(word[2 * l] for l in range(L)), Cat(word[2 * l + 1] for l in range(L)),
                     s_last)
        take = self.o.valid & self.o.ready
        m.d.comb += [
            self.o.payload.as_value().eq(Mux(f_valid, f, s_word)),
            self.o.valid.eq(f_valid | s_valid),
            self.idle.eq(rem_zero & ~s_valid & ~f_valid),
        ]
        # The memory's word moves into the skid register when it is not taken from the
        # memory's output (skid register empty, sink not ready) or when the skid register's
        # word is taken (full, sink ready); it stays only while both are full and stalled.
        move = s_valid & Mux(f_valid, take, ~take)
        with m.If(move):
            m.d.sync += f.eq(s_word)
        m.d.sync += [
            f_valid.eq(Mux(f_valid, ~take | s_valid, move)),
            s_valid.eq(issue | (s_valid & f_valid & ~take)),
        ]
        with m.If(issue):
            m.d.sync += s_last.eq(issue_last)
        return m

    def _elaborate_t3(self, platform):
        m = Module()
        L = self._lanes
        B = L // 5
        depth = self.fifo_depth
        m.submodules.fifo = fifo = SyncFIFO(width=2 * L + 1, depth=depth)

        addr = Signal(ADDR_BITS)
        remaining = Signal(ADDR_BITS + 1)
        inflight = Signal()          # a read issued last cycle: its word is on mem_rdata
        inflight_last = Signal()
        decoded = Signal()           # ... two cycles ago: its decoded entries are ready now
        decoded_last = Signal()

        # Reserve FIFO room for every read in the pipeline (memory and ROM stages), so the
        # pipeline needs no enable and backpressure only ever stops new reads. The occupancy
        # level + inflight + decoded is kept in a register (+1 a read issued, -1 a word
        # taken), so the issue decision is one compare, not an adder, ahead of the address
        # counter's enables (the I2 path's adder was its critical path).
        occupancy = Signal(range(depth + 1))
        room = occupancy < depth
        issue = Signal()
        m.d.comb += issue.eq((remaining != 0) & room)
        issue_last = issue & (remaining == 1)

        m.d.comb += self.cmd.ready.eq((remaining == 0) | issue_last)
        with m.If(self.cmd.valid & self.cmd.ready):
            m.d.sync += [addr.eq(self.cmd.payload.base), remaining.eq(self.cmd.payload.count)]
        with m.Elif(issue):
            m.d.sync += [addr.eq(addr + 1), remaining.eq(remaining - 1)]

        m.d.comb += self.mem_raddr.eq(addr)
        m.d.sync += [inflight.eq(issue), inflight_last.eq(issue_last),
                     decoded.eq(inflight), decoded_last.eq(inflight_last)]
        taken = fifo.r_rdy & self.o.ready
        m.d.sync += occupancy.eq(occupancy + issue - taken)

        # T3 decode: each byte of the word addresses the golden table (byte -> five I2
        # codes). One ROM serves two bytes through two read ports: a true-dual-port EBR on
        # ECP5, duplicated into one SB_RAM40_4K a port on iCE40 (one read port a block).
        # decode="lut": Yosys would fold the register after an asynchronous read back into a
        # block RAM read port, so the attribute keeps the table in logic.
        rom_init = t3_decode_rom(256)
        attrs = {"rom_style": "logic"} if self._decode == "lut" else None
        entries = []
        for j in range(0, B, 2):
            rom = Memory(shape=T3_ENTRY_BITS, depth=256, init=rom_init, attrs=attrs)
            m.submodules[f"t3_rom{j // 2}"] = rom
            for b in range(j, min(j + 2, B)):
                port = rom.read_port(domain="sync" if self._decode == "ebr" else "comb")
                m.d.comb += port.addr.eq(self.mem_rdata[8 * b:8 * b + 8])
                if self._decode == "ebr":
                    entries.append(port.data)
                else:
                    reg = Signal(T3_ENTRY_BITS, name=f"t3_entry{b}")
                    m.d.sync += reg.eq(port.data)
                    entries.append(reg)
        word = Cat(*entries)     # the I2 word of the same lanes: lane l at bits [2l+1:2l]
        nz = Cat(word[2 * l] for l in range(L))
        neg = Cat(word[2 * l + 1] for l in range(L))
        m.d.comb += [
            fifo.w_data.eq(Cat(nz, neg, decoded_last)),
            fifo.w_en.eq(decoded),
            self.o.payload.as_value().eq(fifo.r_data),
            self.o.valid.eq(fifo.r_rdy),
            fifo.r_en.eq(self.o.ready),
            self.idle.eq((remaining == 0) & ~inflight & ~decoded & ~fifo.r_rdy),
        ]
        return m
