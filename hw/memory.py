"""Weight memory: the simulation/EBR model behind the PackedWeightStreamer.

Boards may replace it with a component of the same signature built from device
primitives (iCE40 SB_SPRAM256KA: see ``hw/spram.py``).
"""
from amaranth.hdl import Cat, Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["BankedMemory", "WeightMemory", "weight_memory_signature", "write_slices"]

#: Bits of a host write slice: a weight word is written in 32-bit slices (hw/top.py).
SLICE_BITS = 32


def write_slices(word_bits: int) -> int:
    """The write slices of a ``word_bits`` word: ``ceil(word_bits / 32)``, the width of a
    weight memory's ``wen``."""
    return -(-word_bits // SLICE_BITS)


def weight_memory_signature(word_bits: int, depth: int) -> wiring.Signature:
    """Ports of a weight memory, seen from the memory.

    Members
    -------
    raddr : In(range(depth))   read address, sampled every cycle
    rdata : Out(word_bits)     word at the ``raddr`` of the previous cycle (1-cycle latency)
    waddr : In(range(depth))
    wdata : In(word_bits)
    wen : In(write_slices(word_bits))   bit ``s`` writes the word's bits ``[32 s, 32 s + 32)``
        from ``wdata``'s this cycle (one bit, the whole word, for words of up to 32 bits),
        so the host's 32-bit slices go in as they come, with no staging register
    """
    return wiring.Signature({
        "raddr": In(range(depth)),
        "rdata": Out(word_bits),
        "waddr": In(range(depth)),
        "wdata": In(word_bits),
        "wen": In(write_slices(word_bits)),
    })


class WeightMemory(wiring.Component):
    """Packed weight memory (``depth`` words of ``word_bits``), initialised from a weight image.

    Infers block RAM (iCE40 EBR / ECP5 EBR) in synthesis and a plain array in Verilator.
    Read latency 1 cycle; one read and one write a cycle.

    With ``column_bits``, the word is stored as ``ceil(word_bits / column_bits)`` memories of
    ``column_bits`` bits each (the same contents and ports): synthesis then maps each column on
    block RAMs in a deep, narrow shape of its own, so a word's bits leave the RAMs with no
    depth multiplexer behind them. On the ECP5 a 4,608 x 256 memory (the LM at 128 lanes)
    maps as 8 x 9 DP16KD of 512 x 36 behind a 9:1 multiplexer a bit, which was the ULX3S
    build's critical path (weights.mem -> streamer, 21.1 ns at 47.4 MHz, measured); as 128
    columns of 4,608 x 2 each is one DP16KD in its 8192 x 2 shape (see
    :func:`boards.ulx3s.ebr_column_bits`).

    Parameters
    ----------
    word_bits : int   bits a word (``2 * lanes`` for lane-tiled I2)
    depth : int       words
    init : list[int]  initial words (padded with zeros)
    column_bits : int or None   bits of each column memory (None: one memory of the word)

    Raises
    ------
    ValueError if ``init`` is longer than ``depth`` or ``column_bits`` is not positive.
    """

    def __init__(self, *, word_bits: int, depth: int, init=(), column_bits: int | None = None):
        init = list(init)
        if len(init) > depth:
            raise ValueError(f"weight image of {len(init)} words does not fit a weight memory "
                             f"of {depth} words")
        if column_bits is not None and not (isinstance(column_bits, int) and column_bits >= 1):
            raise ValueError(f"column_bits must be None or a positive integer, not "
                             f"{column_bits!r}")
        self._word_bits = word_bits
        self._depth = depth
        self._init = init
        self._column_bits = min(column_bits or word_bits, word_bits)
        super().__init__(weight_memory_signature(word_bits, depth))

    @property
    def columns(self) -> list[tuple[int, int]]:
        """``(first bit, bits)`` of each column memory, least significant first."""
        c = self._column_bits
        return [(lo, min(c, self._word_bits - lo)) for lo in range(0, self._word_bits, c)]

    def elaborate(self, platform):
        m = Module()
        cols = self.columns
        for i, (lo, bits) in enumerate(cols):
            mask = (1 << bits) - 1
            mem = Memory(shape=bits, depth=self._depth,
                         init=[(w >> lo) & mask for w in self._init])
            m.submodules["mem" if len(cols) == 1 else f"mem{i}"] = mem
            rd = mem.read_port()
            first, last = lo // SLICE_BITS, (lo + bits - 1) // SLICE_BITS
            if first == last:                 # the column lies in one write slice
                wr = mem.write_port()
                en = self.wen[first]
            elif lo % SLICE_BITS == 0 and bits % SLICE_BITS == 0:
                wr = mem.write_port(granularity=SLICE_BITS)
                en = self.wen[first:last + 1]
            else:                             # a bit's enable is its slice's
                wr = mem.write_port(granularity=1)
                en = Cat(*[self.wen[(lo + i) // SLICE_BITS] for i in range(bits)])
            m.d.comb += [
                rd.addr.eq(self.raddr),
                self.rdata[lo:lo + bits].eq(rd.data),
                wr.addr.eq(self.waddr),
                wr.data.eq(self.wdata[lo:lo + bits]),
                wr.en.eq(en),
            ]
        return m


class BankedMemory(wiring.Component):
    """A ``depth`` x ``width`` memory (1-cycle read latency, one read and one write port, no
    initial contents) built as banks of ``bank`` words (a power of two; the last bank holds
    the rest), so that synthesis maps each bank on its own: Yosys (memory_libmap, iCE40)
    maps a 3,840 x 16 memory on 16 SB_RAM40_4K in their 2048 x 2 shape (measured) where 15
    of 256 x 16 suffice; as banks of 1,024 it takes 4 + 4 + 4 + 3 = 15.

    Members
    -------
    raddr : In(range(depth)), rdata : Out(width)   the word at the previous cycle's raddr
    waddr : In(range(depth)), wdata : In(width), wen : In(1)

    Raises
    ------
    ValueError if ``bank`` is not a power of two.
    """

    def __init__(self, *, width: int, depth: int, bank: int = 1024):
        if bank < 1 or bank & (bank - 1):
            raise ValueError(f"bank must be a power of two, not {bank!r}")
        self._width, self._depth, self._bank = width, depth, bank
        super().__init__({"raddr": In(range(depth)), "rdata": Out(width),
                          "waddr": In(range(depth)), "wdata": In(width), "wen": In(1)})

    @property
    def banks(self) -> list[int]:
        """Depths of the banks, in address order."""
        full, rest = divmod(self._depth, self._bank)
        return [self._bank] * full + ([rest] if rest else [])

    def elaborate(self, platform):
        m = Module()
        bits = self._bank.bit_length() - 1
        banks = self.banks
        sel = Signal(range(len(banks)))
        m.d.sync += sel.eq(self.raddr[bits:])
        datas = []
        for i, d in enumerate(banks):
            mem = Memory(shape=self._width, depth=d, init=[])
            m.submodules[f"bank{i}"] = mem
            rd, wr = mem.read_port(), mem.write_port()
            m.d.comb += [rd.addr.eq(self.raddr[:bits]), wr.addr.eq(self.waddr[:bits]),
                         wr.data.eq(self.wdata),
                         wr.en.eq(self.wen & (self.waddr[bits:] == i))]
            datas.append(rd.data)
        if len(datas) == 1:
            m.d.comb += self.rdata.eq(datas[0])
        else:
            with m.Switch(sel):
                for i, d in enumerate(datas):
                    with m.Case(i):
                        m.d.comb += self.rdata.eq(d)
        return m
