"""Host link: the frame parser/executor between a UART and the accelerator's host port.

Protocol (sync byte, command, u16 length, payload, CRC-16/CCITT-FALSE): ``docs/hostlink.md``;
constants: :mod:`ternac.protocol`, shared with the host driver. Every request is answered
with ACK or a named error; a rejected frame has no effect, and the parser resynchronises on
the next sync byte (a partial frame is dropped after ``timeout_cycles`` without a byte).
The tag of the last accepted RUN is reported in STATUS, so a host whose RUN response was
lost can tell whether it ran (``ternac.protocol.RUN_TAG_SHIFT``). Fault injection:
``ternac.sim.faults`` (``make faults``).
"""
from __future__ import annotations

from amaranth import Array, C, Cat, Const, Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ternac.protocol import (HOST_ADDR_BITS, MAX_WORDS, PROTOCOL_VERSION, RUN_TAG_BITS,
                             RUN_TAG_SHIFT, SPACE_BITS, STATUS_TAG_SHIFT, SYNC_REQUEST,
                             SYNC_RESPONSE, WRITE_HEADER_BYTES, Command, Reply, space_limits)

from .uart import UARTRx, UARTTx

__all__ = ["HostPortSignature", "Hostlink", "UARTHostlink", "crc16_byte", "connect_accelerator"]


#: The accelerator's host port, seen from the host link (the link drives the ``Out``s).
HostPortSignature = wiring.Signature({
    "addr": Out(HOST_ADDR_BITS),
    "space": Out(SPACE_BITS),
    "wdata": Out(32),
    "we": Out(1),
    "re": Out(1),
    "rdata": In(32),      # valid the cycle after ``re``
    "start": Out(1),      # one-cycle pulse
    "busy": In(1),
    "done": In(1),        # sticky until the next start
    "error": In(1),       # the sequencer stopped on an error
    "result": In(32),
    "cycles": In(32),
})


def crc16_byte(m, crc, byte):
    """CRC-16/CCITT-FALSE (poly 0x1021) of one byte, MSB first: returns a 16-bit signal.

    Combinational, 8 unrolled steps, each a named signal (so the expression stays linear
    in size); Yosys reduces it to an XOR network of ~16 LUTs. Matches
    :func:`binascii.crc_hqx`.
    """
    c = Signal(16)
    m.d.comb += c.eq(crc ^ Cat(C(0, 8), byte))
    for i in range(8):
        nxt = Signal(16, name=f"crc_step{i}")
        shifted = Cat(C(0, 1), c[:15])
        m.d.comb += nxt.eq(Mux(c[15], shifted ^ 0x1021, shifted))
        c = nxt
    return c


class Hostlink(wiring.Component):
    """Frame parser and executor of the host link (byte streams in and out).

    Parameters
    ----------
    limits : dict[int, int]
        Host-port addresses in each space (0..3); an access past it is BAD_ADDRESS. Use
        :func:`ternac.protocol.space_limits` on an AccelConfig.
    config_hash : int
        32-bit build hash returned by IDENTIFY (:func:`ternac.protocol.config_hash`).
    timeout_cycles : int
        Cycles without a byte after which a partial frame is dropped (boards: tens of ms).
    max_words : int
        32-bit words a WRITE_MEM/READ_MEM frame may carry; WRITE_MEM payloads are buffered
        in a ``4 * max_words``-byte memory (one EBR at 64) and executed only after the CRC
        checks, so a rejected frame never writes.

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the UART receiver.
    tx : Out(stream.Signature(8))
        Bytes to the UART transmitter.
    host : Out(HostPortSignature)
        The accelerator's host port and run control.
    rx_overrun, rx_framing_error : In(1)
        Pulses from the UART receiver, latched into the STATUS flags.
    frame_ok, frame_error : Out(1)
        One-cycle pulses when a request is acknowledged / rejected (for LEDs).

    Cost: one request at a time; memory writes take 9 cycles a word, reads 2 cycles a word
    plus the UART time (10 bit times a byte), which dominates.

    Raises
    ------
    ValueError for a limit outside 0..2**20, a hash wider than 32 bits, or a bad timeout.
    """

    def __init__(self, *, limits: dict, config_hash: int, timeout_cycles: int,
                 max_words: int = MAX_WORDS):
        limits = {int(k): int(v) for k, v in dict(limits).items()}
        for space, lim in limits.items():
            if space not in range(1 << SPACE_BITS) or not 0 <= lim <= (1 << HOST_ADDR_BITS):
                raise ValueError(f"space limit {space!r}: {lim!r} is not a space 0..3 with "
                                 f"0..2**{HOST_ADDR_BITS} addresses")
        if not (isinstance(config_hash, int) and 0 <= config_hash < (1 << 32)):
            raise ValueError(f"config_hash must be an unsigned 32-bit integer, not {config_hash!r}")
        if not (isinstance(timeout_cycles, int) and timeout_cycles >= 16):
            raise ValueError(f"timeout_cycles must be an integer of at least 16, not {timeout_cycles!r}")
        if not (isinstance(max_words, int) and 1 <= max_words <= 1024):
            raise ValueError(f"max_words must be an integer from 1 to 1024, not {max_words!r}")
        self._limits = [limits.get(s, 0) for s in range(1 << SPACE_BITS)]
        self._hash = config_hash
        self._timeout = timeout_cycles
        self._max_words = max_words
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "host": Out(HostPortSignature),
            "rx_overrun": In(1),
            "rx_framing_error": In(1),
            "frame_ok": Out(1),
            "frame_error": Out(1),
        })

    @classmethod
    def for_config(cls, cfg, config_hash: int, *, timeout_cycles: int, max_words: int = MAX_WORDS):
        """A host link sized for an :class:`ternac.config.AccelConfig`."""
        return cls(limits=space_limits(cfg), config_hash=config_hash,
                   timeout_cycles=timeout_cycles, max_words=max_words)

    def elaborate(self, platform):
        m = Module()
        nmax = self._max_words
        max_len = WRITE_HEADER_BYTES + 4 * nmax
        host = self.host

        m.submodules.buf = buf = memory.Memory(shape=8, depth=4 * nmax, init=[])
        bw = buf.write_port()
        br = buf.read_port()

        # Request registers. A frame longer than max_len is answered in LEN1 and never
        # reaches PAYLOAD or VALIDATE, so the length and the payload position need only
        # max_len's bits (9 at 64 words) past LEN1, not the protocol's 16.
        lb = max(max_len.bit_length(), 9)
        cmd = Signal(8)
        length = Signal(lb)
        # The payload position less WRITE_MEM's 5-byte header: -5 .. -1 over the header (top
        # bit set), then the buffer address itself, so no subtractor in front of the buffer
        # and no compares against 5 and 7 (one bit more than lb: -5 and max_len - 6 stay
        # apart). args takes payload bytes 0..6: the header and pos 0, 1.
        assert WRITE_HEADER_BYTES == 5
        pos = Signal(lb + 1)
        in_header = pos[-1]
        in_args = in_header | (pos[1:] == 0)
        # First 7 payload bytes (space, addr, count), shifted in from the top a byte at a
        # time: no byte-select write decode, each flip-flop's input is its neighbour's.
        # A RUN's flag byte (its only payload byte) is the last shifted in, args[48:56].
        args = Signal(56)
        space_b, addr, count = args[0:8], args[8:40], args[40:56]
        run_flags = args[48:56]
        crc = Signal(16, init=0xFFFF)
        idle = Signal(range(self._timeout + 1))

        # Execution registers.
        nwords = Signal(range(nmax + 1))
        widx = Signal(range(nmax + 1))
        bidx = Signal(2)
        guard = Signal(2)
        w_last = Signal()           # the word being written is the request's last

        # Response registers.
        rcode = Signal(8)
        # Payload bytes still to send; also the length sent in R_LEN0/R_LEN1 (nothing
        # changes it before R_PAY). A response carries at most 4 max_words bytes.
        rleft = Signal(max((4 * nmax).bit_length(), 8))
        rsh = Signal(80)            # payload, sent least significant byte first
        # The word a WRITE_MEM writes is assembled in rsh's low 32 bits (the link is half
        # duplex: no response is under way while it writes, and the ACK that ends the
        # request sends no payload). Its bytes shift in from the top, as R_PAY shifts rsh
        # out, so 24 of its 32 flip-flops keep their one input; a register of its own was 32
        # flip-flops fed by flip-flops or the buffer's read port, a logic cell each.
        word = rsh[:32]
        reading = Signal()          # payload comes from host-port reads (READ_MEM)

        # Status.
        sticky = Signal(3)          # TIMEOUT, RX_FRAMING, RX_OVERRUN
        rejected = Signal(8)
        # The tag of the last RUN accepted (0: none since power-up). Kept across a reset,
        # so a host can tell a RUN that never arrived (the previous tag) from one that a
        # reset cut short (its tag, neither busy nor done).
        run_tag = Signal(RUN_TAG_BITS, reset_less=True)
        m.d.sync += sticky.eq(sticky | Cat(self.rx_overrun, self.rx_framing_error, 0))

        # One CRC register serves the request (checked) and the response (generated): the
        # link is half duplex, one request at a time.
        tx_phase = Signal()
        crc_byte = Mux(tx_phase, self.tx.payload, self.rx.payload)
        crc_next = crc16_byte(m, crc, crc_byte)

        assert STATUS_TAG_SHIFT == 6 and RUN_TAG_BITS == 2
        host_status = Cat(host.result, host.cycles, host.busy, host.done, sticky, host.error,
                          run_tag, rejected)
        identity = Const(self._hash | (PROTOCOL_VERSION << 32) | (nmax << 40), 80)

        m.d.comb += [
            host.space.eq(space_b[:SPACE_BITS]),
            host.addr.eq(addr[:HOST_ADDR_BITS] + widx),
            host.wdata.eq(word),
            br.addr.eq(Cat(bidx, widx)),
            bw.addr.eq(pos),
            bw.data.eq(self.rx.payload),
        ]

        def respond(code, nbytes=0, payload=None, read=False):
            stmts = [rcode.eq(code), rleft.eq(nbytes), reading.eq(read),
                     widx.eq(0), bidx.eq(0)]
            if payload is not None:
                stmts.append(rsh.eq(payload))
            m.d.sync += stmts
            m.d.comb += (self.frame_ok if code == Reply.ACK else self.frame_error).eq(1)
            if code != Reply.ACK:
                m.d.sync += rejected.eq(rejected + 1)
            m.next = "R_SYNC"

        got = self.rx.valid & self.rx.ready

        # A partial frame is dropped when no byte arrives for ``timeout_cycles``.
        receiving = Signal()
        with m.If(got | ~receiving):
            m.d.sync += idle.eq(0)
        with m.Elif(idle == self._timeout):
            m.d.sync += idle.eq(0)
        with m.Else():
            m.d.sync += idle.eq(idle + 1)
        timed_out = receiving & ~self.rx.valid & (idle == self._timeout)
        with m.If(timed_out):
            m.d.sync += sticky[2].eq(1)

        # Request checks, all on registered fields (evaluated in VALIDATE).
        bad_crc, bad_cmd, bad_len, bad_addr, mem_or_run = (
            Signal(name=n) for n in ("bad_crc", "bad_cmd", "bad_len", "bad_addr", "mem_or_run"))
        is_mem = (cmd == Command.WRITE_MEM) | (cmd == Command.READ_MEM)
        known = Cat(cmd == c for c in Command).any()
        # WRITE_MEM's words: (length - 5) / 4 = length[2:] - 1 when length[:2] == 1 (len_ok
        # demands it; for other lengths n_mem is never used): a 7-bit subtract, not 9.
        n_mem = Mux(cmd == Command.WRITE_MEM, length[2:] - (WRITE_HEADER_BYTES >> 2), count)
        # n_mem registered in CRC1 (cmd, length and count are complete there), so VALIDATE's
        # address check is one add and one compare (with n_mem's subtract in front it was
        # the iCEBreaker build's critical path at 36 MHz: 30.6 ns, 23 levels).
        n_req = Signal(len(n_mem))
        # Registered compares of the length: its low byte (LEN0) against max_len's and 0,
        # the whole length against 1 (VALIDATE, for RUN in CHECK).
        lo_gt, lo_zero, len_is1 = Signal(), Signal(), Signal()
        len_m1 = Signal(lb + 1)     # length - 6 (pos at the last byte), registered in LEN1
        # RUN's start pulse, registered (CHECK sets it, it reaches the accelerator the next
        # cycle; RUN_WAIT's guard covers the extra cycle): from CHECK's decision straight
        # to the sequencer's enables it was the iCEBreaker build's critical path (29 ns).
        start = Signal()
        m.d.sync += start.eq(0)
        m.d.comb += host.start.eq(start)
        len_ok = Signal()
        with m.Switch(cmd):
            with m.Case(Command.IDENTIFY, Command.STATUS):
                m.d.comb += len_ok.eq(length == 0)
            with m.Case(Command.RUN):
                m.d.comb += len_ok.eq(length <= 1)
            with m.Case(Command.WRITE_MEM):
                m.d.comb += len_ok.eq((length >= WRITE_HEADER_BYTES + 4) &
                                      (length[:2] == (WRITE_HEADER_BYTES & 3)))
            with m.Case(Command.READ_MEM):
                m.d.comb += len_ok.eq((length == 7) & (count >= 1) & (count <= nmax))
        limit = Array(C(lim, HOST_ADDR_BITS + 1) for lim in self._limits)[space_b[:SPACE_BITS]]
        end = addr[:HOST_ADDR_BITS] + n_req[:max(nmax.bit_length(), 1) + 1]
        addr_ok = ((space_b < (1 << SPACE_BITS)) & (addr[HOST_ADDR_BITS:] == 0)
                   & (end <= limit))

        with m.FSM():
            # -- receive a request ---------------------------------------------------
            with m.State("HUNT"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(got & (self.rx.payload == SYNC_REQUEST)):
                    m.d.sync += crc.eq(0xFFFF)
                    m.next = "CMD"
            with m.State("CMD"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.If(got):
                    m.d.sync += [cmd.eq(self.rx.payload), crc.eq(crc_next)]
                    m.next = "LEN0"
            with m.State("LEN0"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.If(got):
                    m.d.sync += [length[:8].eq(self.rx.payload), crc.eq(crc_next),
                                 lo_gt.eq(self.rx.payload > (max_len & 0xFF)),
                                 lo_zero.eq(self.rx.payload == 0)]
                    m.next = "LEN1"
            with m.State("LEN1"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(timed_out):
                    m.next = "HUNT"
                # full = Cat(length[:8], rx.payload) > max_len and == 0, from the low byte's
                # compares registered in LEN0 and 8-bit compares of the high byte (the 16-bit
                # compare, in front of every response register's enable, was the iCEBreaker
                # build's critical path at 36 MHz).
                hi = self.rx.payload
                too_long = (hi > (max_len >> 8)) | ((hi == (max_len >> 8)) & lo_gt)
                with m.If(got):
                    m.d.sync += [length[8:].eq(self.rx.payload), crc.eq(crc_next),
                                 pos.eq(-WRITE_HEADER_BYTES),
                                 len_m1.eq(Cat(length[:8], self.rx.payload)[:lb]
                                           - (WRITE_HEADER_BYTES + 1))]
                    with m.If(too_long):
                        # Too long to buffer: answer now; the rest of the frame is hunted
                        # through as noise.
                        respond(Reply.BAD_LENGTH)
                    with m.Elif(lo_zero & (hi == 0)):
                        m.next = "CRC0"
                    with m.Else():
                        m.next = "PAYLOAD"
            with m.State("PAYLOAD"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.If(got):
                    m.d.sync += [crc.eq(crc_next), pos.eq(pos + 1)]
                    with m.If(in_args):
                        m.d.sync += args.eq(Cat(args[8:], self.rx.payload))
                    with m.If(~in_header):
                        m.d.comb += bw.en.eq(1)
                    with m.If(pos == len_m1):
                        m.next = "CRC0"
            with m.State("CRC0"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.If(got):
                    m.d.sync += crc.eq(crc_next)
                    m.next = "CRC1"
            with m.State("CRC1"):
                m.d.comb += [self.rx.ready.eq(1), receiving.eq(1)]
                with m.If(timed_out):
                    m.next = "HUNT"
                with m.If(got):
                    m.d.sync += [crc.eq(crc_next), n_req.eq(n_mem)]
                    m.next = "VALIDATE"
            with m.State("VALIDATE"):
                # The checks are registered here and acted on in CHECK: one cycle more, and
                # the CRC, length and address logic stays off the response path (Fmax).
                m.d.sync += [bad_crc.eq(crc != 0), bad_cmd.eq(~known), bad_len.eq(~len_ok),
                             bad_addr.eq(is_mem & ~addr_ok), nwords.eq(n_req),
                             mem_or_run.eq(is_mem | (cmd == Command.RUN)), len_is1.eq(length == 1)]
                m.next = "CHECK"
            with m.State("CHECK"):
                # rsh loaded whatever the answer (only IDENTIFY and STATUS send it from
                # here; others send no payload or load it again before R_PAY): its enables
                # stay off the decision chain below, the digits build's critical path.
                m.d.sync += [widx.eq(0), bidx.eq(0),
                             rsh.eq(Mux(cmd == Command.IDENTIFY, identity, host_status))]
                with m.If(bad_crc):
                    respond(Reply.BAD_CRC)
                with m.Elif(bad_cmd):
                    respond(Reply.BAD_COMMAND)
                with m.Elif(bad_len):
                    respond(Reply.BAD_LENGTH)
                with m.Elif(bad_addr):
                    respond(Reply.BAD_ADDRESS)
                with m.Elif(mem_or_run & host.busy):
                    respond(Reply.BUSY)
                with m.Elif(cmd == Command.IDENTIFY):
                    respond(Reply.ACK, 7)
                with m.Elif(cmd == Command.STATUS):
                    respond(Reply.ACK, 10)
                    m.d.sync += sticky.eq(0)
                with m.Elif(cmd == Command.READ_MEM):
                    respond(Reply.ACK, Cat(C(0, 2), count), read=True)
                with m.Elif(cmd == Command.WRITE_MEM):
                    m.next = "W_FETCH"
                with m.Else():      # RUN
                    m.d.sync += start.eq(1)
                    m.d.sync += [guard.eq(3), run_tag.eq(Mux(
                        len_is1, run_flags[RUN_TAG_SHIFT:RUN_TAG_SHIFT + RUN_TAG_BITS], 0))]
                    with m.If(run_flags[0] & len_is1):
                        respond(Reply.ACK)
                    with m.Else():
                        m.next = "RUN_WAIT"

            # -- execute ---------------------------------------------------------------
            with m.State("W_FETCH"):
                m.next = "W_LATCH"      # buffer read latency: one cycle
            with m.State("W_LATCH"):
                # w_last registered here (widx is steady until W_WRITE): the compare stays
                # off the path to the response registers' enables (the iCEBreaker's critical
                # path, 32.5 ns, when W_WRITE compared widx + 1 itself).
                m.d.sync += [rsh[:32].eq(Cat(rsh[8:32], br.data)), bidx.eq(bidx + 1),
                             w_last.eq(widx + 1 == nwords)]
                with m.If(bidx == 3):
                    m.next = "W_WRITE"
                with m.Else():
                    m.next = "W_FETCH"
            with m.State("W_WRITE"):
                m.d.comb += host.we.eq(1)
                m.d.sync += widx.eq(widx + 1)
                with m.If(w_last):
                    respond(Reply.ACK)
                with m.Else():
                    m.next = "W_FETCH"
            with m.State("RUN_WAIT"):
                # ``done`` of the previous run is cleared by ``start``; the guard keeps it
                # from being read before that takes effect. rsh follows result and cycles
                # every cycle here (host_status starts with them; its flag bytes are not
                # sent), so it holds them as they were when the ACK below is decided.
                m.d.sync += rsh.eq(host_status)
                with m.If(guard != 0):
                    m.d.sync += guard.eq(guard - 1)
                with m.Elif(host.done & ~host.busy):
                    respond(Reply.ACK, 8)

            # -- send the response ----------------------------------------------------
            with m.State("R_SYNC"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(SYNC_RESPONSE)]
                with m.If(self.tx.ready):
                    m.d.sync += crc.eq(0xFFFF)
                    m.next = "R_CODE"
            with m.State("R_CODE"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(rcode), tx_phase.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += crc.eq(crc_next)
                    m.next = "R_LEN0"
            with m.State("R_LEN0"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(rleft[:8]), tx_phase.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += crc.eq(crc_next)
                    m.next = "R_LEN1"
            with m.State("R_LEN1"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(rleft[8:]), tx_phase.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += crc.eq(crc_next)
                    with m.If(rleft == 0):
                        m.next = "R_CRC0"
                    with m.Elif(reading):
                        m.next = "R_READ"
                    with m.Else():
                        m.next = "R_PAY"
            with m.State("R_READ"):
                m.d.comb += host.re.eq(1)
                m.next = "R_READ_LATCH"
            with m.State("R_READ_LATCH"):
                m.d.sync += [rsh[:32].eq(host.rdata), widx.eq(widx + 1)]
                m.next = "R_PAY"
            with m.State("R_PAY"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(rsh[:8]), tx_phase.eq(1)]
                with m.If(self.tx.ready):
                    m.d.sync += [crc.eq(crc_next), rsh.eq(rsh[8:]), rleft.eq(rleft - 1),
                                 bidx.eq(bidx + 1)]
                    with m.If(rleft == 1):
                        m.next = "R_CRC0"
                    with m.Elif(reading & (bidx == 3)):
                        m.next = "R_READ"
            with m.State("R_CRC0"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(crc[8:])]
                with m.If(self.tx.ready):
                    m.next = "R_CRC1"
            with m.State("R_CRC1"):
                m.d.comb += [self.tx.valid.eq(1), self.tx.payload.eq(crc[:8])]
                with m.If(self.tx.ready):
                    m.next = "HUNT"

        return m


class UARTHostlink(wiring.Component):
    """UART receiver + transmitter + :class:`Hostlink`, with the serial pins as ports.

    Parameters
    ----------
    divisor : int
        Clock cycles a bit (clock / baud).
    limits, config_hash, timeout_cycles, max_words
        As :class:`Hostlink`.

    Members
    -------
    rx : In(1)
        Serial input from the host (asynchronous, idle high).
    tx : Out(1)
        Serial output to the host.
    host : Out(HostPortSignature)
    rx_activity, tx_activity : Out(1)
        High while a byte is being received / sent (for LEDs).
    frame_ok, frame_error : Out(1)
        Pulses per acknowledged / rejected request.
    """

    def __init__(self, *, divisor: int, limits: dict, config_hash: int, timeout_cycles: int,
                 max_words: int = MAX_WORDS):
        self._uart_rx = UARTRx(divisor=divisor)
        self._uart_tx = UARTTx(divisor=divisor)
        self._link = Hostlink(limits=limits, config_hash=config_hash,
                              timeout_cycles=timeout_cycles, max_words=max_words)
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "host": Out(HostPortSignature),
            "rx_activity": Out(1),
            "tx_activity": Out(1),
            "frame_ok": Out(1),
            "frame_error": Out(1),
        })

    def elaborate(self, platform):
        m = Module()
        m.submodules.uart_rx = urx = self._uart_rx
        m.submodules.uart_tx = utx = self._uart_tx
        m.submodules.link = link = self._link
        wiring.connect(m, urx.o, link.rx)
        wiring.connect(m, link.tx, utx.i)
        wiring.connect(m, link.host, wiring.flipped(self.host))
        m.d.comb += [
            urx.rx.eq(self.rx),
            self.tx.eq(utx.tx),
            link.rx_overrun.eq(urx.overrun),
            link.rx_framing_error.eq(urx.framing_error),
            self.rx_activity.eq(~self.rx),
            self.tx_activity.eq(~utx.i.ready),
            self.frame_ok.eq(link.frame_ok),
            self.frame_error.eq(link.frame_error),
        ]
        return m


def connect_accelerator(m, host, accel):
    """Wire a host port (``HostPortSignature``, link side) to an ``hw.top.Accelerator``'s
    flat ``host_*``/``start``/``busy``/``done``/``result``/``cycles`` ports."""
    m.d.comb += [
        accel.host_addr.eq(host.addr),
        accel.host_space.eq(host.space),
        accel.host_wdata.eq(host.wdata),
        accel.host_we.eq(host.we),
        accel.host_re.eq(host.re),
        host.rdata.eq(accel.host_rdata),
        accel.start.eq(host.start),
        host.busy.eq(accel.busy),
        host.done.eq(accel.done),
        host.error.eq(getattr(accel, "error", 0)),
        host.result.eq(accel.result),
        host.cycles.eq(accel.cycles),
    ]
