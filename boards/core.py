"""The board-independent core of every board top: UART host link + Accelerator + status
LEDs. Board tops (``boards/icebreaker.py``, ``boards/ulx3s.py``) add clock, reset and pins;
the co-simulation (``sim/board_cosim.py``) runs this core in Verilator with the same memory
mapping as the board (iCEBreaker: weights in SB_SPRAM256KA through its simulation model).
"""
from __future__ import annotations

from amaranth import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ternac.hw.hostlink import UARTHostlink, connect_accelerator
from ternac.protocol import MAX_WORDS, board_config_hash, space_limits

__all__ = ["BoardCore", "LED_NAMES", "board_config_hash", "pin_in", "pin_out"]

#: Status LEDs of ``BoardCore.leds``, least significant first.
LED_NAMES = ("busy", "done", "error", "rx", "tx", "alive")


def pin_in(m, platform, name, number=0, sub=None, *, port=None):
    """The input value of a board pin (through an ``io.Buffer``, inversion applied)."""
    from amaranth.lib import io
    port = port if port is not None else platform.request(name, number, dir="-")
    buf = io.Buffer("i", getattr(port, sub) if sub else port)
    m.submodules[f"pin_{name}{number}{'_' + sub if sub else ''}"] = buf
    return buf.i


def pin_out(m, platform, name, number=0, sub=None, *, port=None):
    """The output value of a board pin (through an ``io.Buffer``, inversion applied)."""
    from amaranth.lib import io
    port = port if port is not None else platform.request(name, number, dir="-")
    buf = io.Buffer("o", getattr(port, sub) if sub else port)
    m.submodules[f"pin_{name}{number}{'_' + sub if sub else ''}"] = buf
    return buf.o


class BoardCore(wiring.Component):
    """UART host link in front of the Accelerator, with status LEDs.

    Parameters
    ----------
    cfg : AccelConfig
    program_words : list[int]
        128-bit instructions baked into the program memory (EBR is initialised by the
        bitstream; the host may load another program over the link).
    weight_words : list[int]
        Weight image baked into the weight memory where the memory can be initialised
        (EBR); ignored with a ``weight_memory`` that cannot (SPRAM).
    divisor : int
        Clock cycles a UART bit.
    timeout_cycles : int
        Host-link partial-frame timeout.
    config_hash : int
        32-bit IDENTIFY hash (:func:`board_config_hash`).
    weight_memory : Component or None
        Passed to ``Accelerator`` (e.g. :class:`hw.spram.SPRAMWeightMemory`).
    blink_cycles : int
        Sets P, the power of two at or below it: an activity LED stays lit for P to 2P
        cycles after a byte, and P is the half period of the ``alive`` blink (boards:
        ~50 ms).

    Members
    -------
    uart_rx : In(1)
        From the host's UART TX (asynchronous, idle high).
    uart_tx : Out(1)
        To the host's UART RX.
    leds : Out(6)
        ``LED_NAMES``: accelerator busy, done, error (a rejected frame or a sequencer
        error, lit until the next acknowledged request), rx and tx activity, alive blink.
    """

    def __init__(self, cfg, program_words, weight_words=(), *, divisor: int,
                 timeout_cycles: int, config_hash: int, weight_memory=None,
                 blink_cycles: int = 1 << 20):
        from ternac.hw.top import Accelerator
        self.cfg = cfg
        self._accel = Accelerator(cfg, weight_words=weight_words, program_words=program_words,
                                  weight_memory=weight_memory)
        self._link = UARTHostlink(divisor=divisor, limits=space_limits(cfg),
                                  config_hash=config_hash, timeout_cycles=timeout_cycles,
                                  max_words=MAX_WORDS)
        self._blink = max(2, int(blink_cycles))
        super().__init__({
            "uart_rx": In(1, init=1),
            "uart_tx": Out(1, init=1),
            "leds": Out(len(LED_NAMES)),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = link = self._link
        m.submodules.accel = accel = self._accel
        connect_accelerator(m, link.host, accel)
        m.d.comb += [link.rx.eq(self.uart_rx), self.uart_tx.eq(link.tx)]

        # One free-running counter times every LED: ``alive`` is its top bit (half period
        # 2^(n-1), between blink_cycles / 2 and blink_cycles), and ``strobe`` marks each
        # wrap of the bits below it. A stretched pulse stays lit for two strobes, between
        # 2^(n-1) and 2^n cycles. (One wide down-counter an LED cost two 21-bit carry chains
        # and was the iCEBreaker build's critical path.)
        n = max(2, self._blink.bit_length())
        tick = Signal(n)
        m.d.sync += tick.eq(tick + 1)
        strobe = Signal()
        m.d.sync += strobe.eq(tick[:n - 1] == (1 << (n - 1)) - 1)
        alive = tick[n - 1]

        def stretch(name, pulse):
            # Hold a short pulse for about ``blink_cycles`` so it is visible.
            count = Signal(2, name=f"{name}_hold")
            with m.If(pulse):
                m.d.sync += count.eq(2)
            with m.Elif(strobe & (count != 0)):
                m.d.sync += count.eq(count - 1)
            return count != 0

        link_error = Signal()
        with m.If(link.frame_error):
            m.d.sync += link_error.eq(1)
        with m.Elif(link.frame_ok):
            m.d.sync += link_error.eq(0)

        bits = {"busy": accel.busy, "done": accel.done, "error": link_error | accel.error,
                "rx": stretch("rx", link.rx_activity), "tx": stretch("tx", link.tx_activity),
                "alive": alive}
        m.d.comb += self.leds.eq(Cat(*(bits[name] for name in LED_NAMES)))
        return m
