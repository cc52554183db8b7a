"""8N1 UART receiver and transmitter with :mod:`amaranth.lib.stream` ports.

Both take ``divisor`` = clock frequency / baud rate (an integer, at least 4), so a 12 MHz
iCEBreaker at 115200 baud uses ``divisor=104`` (0.16 % fast, well inside the +-2 % that an
8N1 receiver sampling at mid-bit tolerates) and a simulation can use ``divisor=8``.

Frame: one start bit (0), eight data bits least significant first, one stop bit (1); the
line idles high.
"""
from __future__ import annotations

from amaranth import C, Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTRx", "UARTTx", "uart_divisor"]


def uart_divisor(clk_hz: float, baud: int, *, tolerance: float = 0.02) -> int:
    """Clock cycles a bit for ``baud`` at ``clk_hz``, rounded to the nearest integer.

    Raises
    ------
    ValueError if the rounded divisor is below 4 or misses the baud rate by more than
    ``tolerance`` (a fraction; 8N1 sampled at mid-bit breaks near 5 % total mismatch).
    """
    if baud <= 0 or clk_hz <= 0:
        raise ValueError(f"clock {clk_hz!r} Hz and baud {baud!r} must be positive")
    divisor = round(clk_hz / baud)
    if divisor < 4:
        raise ValueError(f"a {clk_hz / 1e6:g} MHz clock is too slow for {baud} baud "
                         f"(divisor {clk_hz / baud:.2f}, at least 4 needed)")
    error = abs(clk_hz / divisor - baud) / baud
    if error > tolerance:
        raise ValueError(f"{baud} baud at {clk_hz / 1e6:g} MHz misses by {error:.1%} "
                         f"(divisor {divisor}); pick a baud rate within {tolerance:.0%}")
    return divisor


def _check_divisor(divisor):
    if not isinstance(divisor, int) or divisor < 4:
        raise ValueError(f"divisor must be an integer of at least 4 (clock cycles a bit), "
                         f"not {divisor!r}")


class UARTRx(wiring.Component):
    """UART receiver, 8N1, sampling each bit at its middle.

    The ``rx`` pin passes a two-flip-flop synchroniser (it is asynchronous to the clock).
    A falling edge starts a frame; the start bit is checked again half a bit later, so a
    glitch shorter than half a bit is ignored. Data bits are sampled every ``divisor``
    cycles from there; the receiver is ready for the next start bit at the middle of the
    stop bit, which absorbs a sender that is up to half a bit a frame faster.

    Parameters
    ----------
    divisor : int
        Clock cycles a bit (clock frequency / baud), at least 4.

    Members
    -------
    rx : In(1)
        Serial input (idle high), asynchronous.
    o : Out(stream.Signature(8))
        Received bytes. One byte of buffering: ``o.valid`` stays up until ``o.ready``; a
        byte that completes while the previous one is still waiting is dropped.
    overrun : Out(1)
        One-cycle pulse when a byte was dropped because ``o`` was not taken in time.
    framing_error : Out(1)
        One-cycle pulse when a stop bit was 0 (the byte is dropped; the receiver waits for
        the line to return high).

    Latency: ``o.valid`` rises 2 + 9.5 bit times (+ 2 cycles) after the start edge.
    Throughput: one byte every 10 bit times.

    Raises
    ------
    ValueError if ``divisor`` is not an integer of at least 4.
    """

    def __init__(self, *, divisor: int):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "o": Out(stream.Signature(8)),
            "overrun": Out(1),
            "framing_error": Out(1),
        })

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor

        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)

        timer = Signal(range(div))
        bits = Signal(range(8))
        shreg = Signal(8)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += timer.eq(div // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    m.next = "IDLE"          # a glitch, not a start bit
                with m.Else():
                    m.d.sync += [timer.eq(div - 1), bits.eq(0)]
                    m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Else():
                    m.d.sync += [shreg.eq(Cat(shreg[1:], rx)), timer.eq(div - 1),
                                 bits.eq(bits + 1)]
                    with m.If(bits == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer != 0):
                    m.d.sync += timer.eq(timer - 1)
                with m.Elif(rx):
                    with m.If(self.o.valid & ~self.o.ready):
                        m.d.comb += self.overrun.eq(1)
                    with m.Else():
                        m.d.sync += [self.o.payload.eq(shreg), self.o.valid.eq(1)]
                    m.next = "IDLE"
                with m.Else():
                    m.d.comb += self.framing_error.eq(1)
                    m.next = "BREAK"
            with m.State("BREAK"):
                # A low stop bit: wait for the line to idle so the rest of a break is not
                # taken for more start bits.
                with m.If(rx):
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """UART transmitter, 8N1.

    Parameters
    ----------
    divisor : int
        Clock cycles a bit (clock frequency / baud), at least 4.

    Members
    -------
    i : In(stream.Signature(8))
        Bytes to send. ``i.ready`` is high while the transmitter is idle; a byte is taken
        in one cycle and sent over the next 10 bit times.
    tx : Out(1)
        Serial output (idle high), registered.

    Latency: the start bit appears on ``tx`` 2 cycles after the byte is taken.
    Throughput: one byte every ``10 * divisor`` cycles (back to back, no idle bit between
    frames).

    Raises
    ------
    ValueError if ``divisor`` is not an integer of at least 4.
    """

    def __init__(self, *, divisor: int):
        _check_divisor(divisor)
        self._divisor = divisor
        super().__init__({
            "i": In(stream.Signature(8)),
            "tx": Out(1, init=1),
        })

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform):
        m = Module()
        div = self._divisor

        timer = Signal(range(div))
        bits_left = Signal(range(11))
        shreg = Signal(10, init=0b11_1111_1111)

        m.d.comb += self.i.ready.eq(bits_left == 0)
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [shreg.eq(Cat(C(0, 1), self.i.payload, C(1, 1))),
                         bits_left.eq(10), timer.eq(div - 1)]
        with m.Elif(bits_left != 0):
            with m.If(timer != 0):
                m.d.sync += timer.eq(timer - 1)
            with m.Else():
                m.d.sync += [shreg.eq(Cat(shreg[1:], C(1, 1))), bits_left.eq(bits_left - 1),
                             timer.eq(div - 1)]
        # Registered so the pin never glitches between bits: while a frame is in flight the
        # line shows the low bit of the shift register, otherwise it idles high.
        m.d.sync += self.tx.eq(Mux(bits_left != 0, shreg[0], 1))
        return m
