"""Weight memory: the simulation/EBR model behind the PackedWeightStreamer.

Boards may replace it with a component of the same signature built from device
primitives (iCE40 SB_SPRAM256KA: see ``hw/spram.py``).
"""
from amaranth.hdl import Elaboratable, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

__all__ = ["WeightMemory", "weight_memory_signature"]


def weight_memory_signature(word_bits: int, depth: int) -> wiring.Signature:
    """Ports of a weight memory, seen from the memory.

    Members
    -------
    raddr : In(range(depth))   read address, sampled every cycle
    rdata : Out(word_bits)     word at the ``raddr`` of the previous cycle (1-cycle latency)
    waddr : In(range(depth))
    wdata : In(word_bits)
    wen : In(1)                write the whole word this cycle
    """
    return wiring.Signature({
        "raddr": In(range(depth)),
        "rdata": Out(word_bits),
        "waddr": In(range(depth)),
        "wdata": In(word_bits),
        "wen": In(1),
    })


class WeightMemory(wiring.Component):
    """Packed weight memory (``depth`` words of ``word_bits``), initialised from a weight image.

    Infers block RAM (iCE40 EBR / ECP5 EBR) in synthesis and a plain array in Verilator.
    Read latency 1 cycle; one read and one write a cycle.

    Parameters
    ----------
    word_bits : int   bits a word (``2 * lanes`` for lane-tiled I2)
    depth : int       words
    init : list[int]  initial words (padded with zeros)

    Raises
    ------
    ValueError if ``init`` is longer than ``depth``.
    """

    def __init__(self, *, word_bits: int, depth: int, init=()):
        init = list(init)
        if len(init) > depth:
            raise ValueError(f"weight image of {len(init)} words does not fit a weight memory "
                             f"of {depth} words")
        self._word_bits = word_bits
        self._depth = depth
        self._init = init
        super().__init__(weight_memory_signature(word_bits, depth))

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = Memory(shape=self._word_bits, depth=self._depth, init=self._init)
        rd = mem.read_port()
        wr = mem.write_port()
        m.d.comb += [
            rd.addr.eq(self.raddr),
            self.rdata.eq(rd.data),
            wr.addr.eq(self.waddr),
            wr.data.eq(self.wdata),
            wr.en.eq(self.wen),
        ]
        return m
