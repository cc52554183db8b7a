"""iCEBreaker (iCE40 UP5K-SG48) board top.

* Clock: the 12 MHz oscillator on pin 35, straight or through the SB_PLL40_PAD when
  another frequency is asked for.
* Reset: power-on (15 us, covers the iCE40 BRAM start-up), the user button, PLL lock.
* Host link: the FT2232H's second channel (pins 6 = RX, 9 = TX), 115200 baud by default.
* Memories: weights in SB_SPRAM256KA (``hw/spram.py``; not initialised by the bitstream,
  so the weights arrive over the host link), program/scratch/output in EBR, multipliers
  in SB_MAC16 (``synth_ice40 -dsp``).
* LEDs: red = error (a rejected frame or a sequencer error), green = done; on the
  snap-off PMOD (PMOD2): LED2 busy, LED3 rx, LED4 tx, LED5 alive blink.
"""
from __future__ import annotations

from amaranth import Const, Elaboratable, Module, Signal
from amaranth.lib import io

from .clocking import add_sync_domain, ice40_pll, ice40_pll_instance
from .core import LED_NAMES, BoardCore, board_config_hash, pin_in, pin_out
from .facts import BOARDS

__all__ = ["BOARD", "FACTS", "ICEBreakerTop", "platform"]

BOARD = "icebreaker"
#: From boards/facts.py (the one board table).
FACTS = BOARDS[BOARD]


#: Yosys commands run right after reading the design (before ``synth_ice40``): every
#: synchronous block-RAM read port's collision with the write port (same address, same
#: cycle) is declared undefined. Amaranth's read ports are non-transparent (the old word on
#: a collision), which the SB_RAM40_4K does not promise, so Yosys otherwise emulates it on
#: every block RAM: registers of the write address and data, a compare and a mux a read
#: bit (the 128-bit program memory alone ~265 LUT4). No collision's read data is used
#: here: the host port reads and writes in different cycles and only while the sequencer
#: is idle, the sequencer writes program memory never, and no instruction writes over one
#: of its operands (ternac/lower.py; in-place state updates write element j after reading
#: it), so a read in the cycle of a write to the same address is of a word nobody keeps.
#: Measured (digits, L = 8, Yosys): 3,301 -> 2,953 LUT4, 1,819 -> 1,542 FF.
SCRIPT_AFTER_READ = "setparam -set COLLISION_X_MASK 1 t:$memrd_v2 r:CLK_ENABLE=1 %i"


def platform():
    """The amaranth-boards platform with the snap-off PMOD's LEDs added; its Yosys script
    runs :data:`SCRIPT_AFTER_READ` before synthesis (appended to a caller's own
    ``script_after_read``)."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    class Platform(ICEBreakerPlatform):
        def toolchain_prepare(self, fragment, name, **kwargs):
            own = kwargs.get("script_after_read", "")
            kwargs["script_after_read"] = "\n".join(x for x in (own, SCRIPT_AFTER_READ) if x)
            return super().toolchain_prepare(fragment, name, **kwargs)

    p = Platform()
    p.add_resources(p.break_off_pmod)
    return p


class ICEBreakerTop(Elaboratable):
    """Elaboratable board top; see the module docstring.

    Parameters
    ----------
    cfg : AccelConfig
    program_words : list[int]
    freq_mhz : float
        Core clock; other than 12 it comes from the PLL (settings from
        :func:`boards.clocking.ice40_pll`).
    baud : int
    spram : bool
        Weights in SPRAM (default) or in EBR (only for models small enough).

    Raises
    ------
    ValueError if the weights need more SPRAM than the UP5K has, or the PLL or the UART
    cannot make the requested frequency / baud rate.
    """

    board = BOARD

    def __init__(self, cfg, program_words, weight_words=(), *,
                 freq_mhz: float = FACTS.default_mhz, baud: int = FACTS.baud, spram: bool = True):
        from ternac.hw.spram import SPRAMWeightMemory
        from ternac.hw.uart import uart_divisor
        self.cfg = cfg
        osc = FACTS.osc_mhz
        self.pll = None if abs(freq_mhz - osc) < 1e-6 else ice40_pll(osc, freq_mhz)
        self.freq_mhz = self.pll.f_out_mhz if self.pll else osc
        self.baud = baud
        clk_hz = self.freq_mhz * 1e6
        self.config_hash = board_config_hash(cfg, program_words, BOARD)
        wmem = SPRAMWeightMemory(word_bits=cfg.word_bits, depth=cfg.weight_depth) if spram else None
        self.core = BoardCore(cfg, program_words, () if spram else weight_words,
                              divisor=uart_divisor(clk_hz, baud),
                              timeout_cycles=int(0.05 * clk_hz), config_hash=self.config_hash,
                              weight_memory=wmem, blink_cycles=int(0.05 * clk_hz))

    def elaborate(self, platform):
        m = Module()
        clk = Signal()
        platform.add_clock_constraint(clk, self.freq_mhz * 1e6)
        if self.pll:
            pad = platform.request(FACTS.clock, 0, dir="-")
            lock = Signal()
            m.submodules.pll = ice40_pll_instance(self.pll, pad.io, clk, lock)
        else:
            pad = platform.request(FACTS.clock, 0, dir="-")
            m.submodules.clk_buf = buf = io.Buffer("i", pad)
            m.d.comb += clk.eq(buf.i)
            lock = Const(1, 1)
        add_sync_domain(m, clk, reset=pin_in(m, platform, FACTS.button, 0), locked=lock,
                        por_cycles=int(15e-6 * self.freq_mhz * 1e6))

        m.submodules.core = core = self.core
        uart = platform.request("uart", 0, dir="-")
        m.d.comb += [core.uart_rx.eq(pin_in(m, platform, "uart", 0, "rx", port=uart)),
                     pin_out(m, platform, "uart", 0, "tx", port=uart).eq(core.uart_tx)]
        leds = dict(zip(LED_NAMES, core.leds))
        for name, number, what in (("led_r", 0, "error"), ("led_g", 0, "done"), ("led", 2, "busy"),
                                   ("led", 3, "rx"), ("led", 4, "tx"), ("led", 5, "alive")):
            m.d.comb += pin_out(m, platform, name, number).eq(leds[what])
        return m
