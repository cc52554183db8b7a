"""Test-only wrappers that give a unit what it needs to stand alone in a bench."""
from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ternac.hw.memory import WeightMemory
from ternac.hw.streamer import PackedWeightStreamer

__all__ = ["StreamerBench"]


class StreamerBench(wiring.Component):
    """A PackedWeightStreamer (``fmt`` "i2" or "t3", T3 ``decode`` "ebr" or "lut") reading a
    WeightMemory initialised with ``words``."""

    def __init__(self, *, lanes, words, depth, fmt="i2", decode="ebr"):
        self._lanes, self._words, self._depth = lanes, list(words), depth
        self._kw = {"fmt": fmt, "decode": decode}
        proto = PackedWeightStreamer(lanes=lanes, depth=depth, **self._kw)
        self._word_bits = proto.word_bits
        super().__init__({"cmd": proto.signature.members["cmd"],
                          "o": proto.signature.members["o"]})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = WeightMemory(word_bits=self._word_bits, depth=self._depth,
                                              init=self._words)
        m.submodules.streamer = st = PackedWeightStreamer(lanes=self._lanes, depth=self._depth,
                                                          **self._kw)
        m.d.comb += [mem.raddr.eq(st.mem_raddr), st.mem_rdata.eq(mem.rdata), mem.wen.eq(0)]
        wiring.connect(m, wiring.flipped(self.cmd), st.cmd)
        wiring.connect(m, st.o, wiring.flipped(self.o))
        return m
