"""ULX3S (ECP5 LFE5U-85F) board top.

* Clock: the 25 MHz oscillator (G2) through an EHXPLLL, 40 MHz by default (the L=8 digits
  build reaches 54-59 MHz, measured); ``freq_mhz=25`` bypasses the PLL.
* Reset: power-on, the FIRE 1 button (R1), PLL lock.
* Host link: the FT231X USB-UART (M1 = RX, L4 = TX), 115200 baud by default.
* Memories: everything in EBR (DP16KD), weights included, so they are baked into the
  bitstream (and may still be rewritten over the host link); the weight memory is built as
  columns of :func:`ebr_column_bits` bits, one DP16KD shape each, so no depth multiplexer
  stands between the RAMs and the streamer; multipliers in MULT18X18D.
* LEDs: 0 busy, 1 done, 2 error, 3 rx, 4 tx, 7 alive blink.
"""
from __future__ import annotations

from amaranth import Const, Elaboratable, Module, Signal
from amaranth.lib import io

from .clocking import add_sync_domain, ecp5_pll, ecp5_pll_instance
from .core import LED_NAMES, BoardCore, board_config_hash, pin_in, pin_out
from .facts import BOARDS

__all__ = ["BOARD", "FACTS", "ULX3STop", "ebr_column_bits", "platform"]

BOARD = "ulx3s"
#: From boards/facts.py (the one board table).
FACTS = BOARDS[BOARD]


def ebr_column_bits(depth: int) -> int:
    """Bits of each column of the ULX3S's weight memory (:class:`hw.memory.WeightMemory`
    ``column_bits``): the widest DP16KD width whose depth holds ``depth`` words
    (:func:`boards.resources.weight_column_bits`), so each column takes one DP16KD shape
    and no depth multiplexer stands behind the RAMs: 4,608 words (the LM at 128 lanes) -> 2
    bits; 16,384 (at 32 lanes) -> 1."""
    from .resources import weight_column_bits
    return weight_column_bits(depth, FACTS.family)


def platform():
    """The amaranth-boards ULX3S 85F platform."""
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


class ULX3STop(Elaboratable):
    """Elaboratable board top; see the module docstring.

    Parameters
    ----------
    cfg : AccelConfig
    program_words, weight_words : list[int]
        Baked into EBR.
    freq_mhz : float
        Core clock; other than 25 it comes from the PLL (:func:`boards.clocking.ecp5_pll`).
    baud : int

    Raises
    ------
    ValueError if the PLL or the UART cannot make the requested frequency / baud rate.
    """

    board = BOARD

    def __init__(self, cfg, program_words, weight_words=(), *,
                 freq_mhz: float = FACTS.default_mhz, baud: int = FACTS.baud, spram: bool = False):
        from ternac.hw.uart import uart_divisor
        if spram:
            raise ValueError("the ECP5 has no SPRAM; ULX3S keeps the weights in EBR")
        self.cfg = cfg
        osc = FACTS.osc_mhz
        self.pll = None if abs(freq_mhz - osc) < 1e-6 else ecp5_pll(osc, freq_mhz)
        self.freq_mhz = self.pll.f_out_mhz if self.pll else osc
        self.baud = baud
        clk_hz = self.freq_mhz * 1e6
        self.config_hash = board_config_hash(cfg, program_words, BOARD)
        from ternac.hw.memory import WeightMemory
        wmem = WeightMemory(word_bits=cfg.word_bits, depth=cfg.weight_depth, init=weight_words,
                            column_bits=ebr_column_bits(cfg.weight_depth))
        self.core = BoardCore(cfg, program_words, weight_words,
                              divisor=uart_divisor(clk_hz, baud),
                              timeout_cycles=int(0.05 * clk_hz), config_hash=self.config_hash,
                              weight_memory=wmem, blink_cycles=int(0.05 * clk_hz))

    def elaborate(self, platform):
        m = Module()
        clk = Signal()
        # No clock constraint on clk: nextpnr-ecp5 derives the PLL output's from the
        # oscillator pad's (the platform's FREQUENCY PORT, 25 MHz) and the PLL's dividers
        # ("Derived frequency constraint of 50.0 MHz for net clk"), and without a PLL clk is
        # the pad. A FREQUENCY NET line named a net Yosys renames, so nextpnr warned that it
        # did not exist and ignored it.
        pad = platform.request(FACTS.clock, 0, dir="-")
        m.submodules.clk_buf = buf = io.Buffer("i", pad)
        if self.pll:
            lock = Signal()
            m.submodules.pll = ecp5_pll_instance(self.pll, FACTS.osc_mhz, buf.i, clk, lock)
        else:
            m.d.comb += clk.eq(buf.i)
            lock = Const(1, 1)
        add_sync_domain(m, clk, reset=pin_in(m, platform, FACTS.button, 0), locked=lock,
                        por_cycles=int(15e-6 * self.freq_mhz * 1e6))

        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [core.uart_rx.eq(pin_in(m, platform, "uart", 0, "rx", port=uart)),
                     pin_out(m, platform, "uart", 0, "tx", port=uart).eq(core.uart_tx)]
        leds = dict(zip(LED_NAMES, core.leds))
        for idx, name in ((0, "busy"), (1, "done"), (2, "error"), (3, "rx"), (4, "tx"),
                          (7, "alive")):
            m.d.comb += pin_out(m, platform, "led", idx).eq(leds[name])
        return m
