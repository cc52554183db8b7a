"""Host side of the ternac UART link: one driver that talks to a real board (pyserial) or
to the Verilator-simulated board top (cocotbext-uart), over the wire protocol of
:mod:`ternac.protocol` (re-exported here for the driver's users).

Design: every operation of the driver (identify, write_mem, run, ...) is written once, as a
generator that yields I/O requests (:class:`_Write`, :class:`_Read`, :class:`_Drain`) and
receives their results. :class:`HostDriver` runs these generators over a *transport*: a
synchronous one (:class:`SerialTransport`, pyserial) makes every method return its result;
an asynchronous one (:class:`CosimTransport`, cocotbext-uart inside a cocotb test) makes
every method return a coroutine to ``await``. The framing, retries and checks are the same
code on both. The one trampoline that runs such a generator, :func:`drive_sync` /
:func:`drive_async`, also runs the model sessions of :mod:`ternac.session` (generators of
driver calls) through :meth:`HostDriver.run_session`.

No module-level import of pyserial, cocotb, torch or Amaranth: this file sits below the
RTL, the simulators and the CLI (tests/test_layering.py).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import operator
import time

from ternac.errors import InputError
from ternac.golden.widths import SCRATCH_BITS
from ternac.protocol import (HOST_ADDR_BITS, MAX_WORDS, PROTOCOL_VERSION, RUN_TAG_BITS,
                             RUN_TAG_SHIFT, STATUS_TAG_SHIFT, SYNC_REQUEST,
                             SYNC_RESPONSE, WORD_STRIDE, WRITE_HEADER_BYTES, Command,
                             DeviceError, LinkError, LinkTimeout, Reply, Space, StatusFlag,
                             config_hash, crc16, decode_frame, encode_frame, space_limits)

__all__ = [
    # the protocol (ternac.protocol), re-exported for the driver's users
    "SYNC_REQUEST", "SYNC_RESPONSE", "PROTOCOL_VERSION", "MAX_WORDS", "WRITE_HEADER_BYTES",
    "WORD_STRIDE", "Command", "Reply", "StatusFlag", "Space", "crc16", "encode_frame",
    "decode_frame", "config_hash", "space_limits", "LinkError", "LinkTimeout", "DeviceError",
    # the driver
    "Identity", "Status", "HostDriver", "SerialTransport", "CosimTransport", "open_serial",
    "drive_sync", "drive_async",
]


# -- results ----------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Identity:
    config_hash: int
    protocol_version: int
    max_words: int


@dataclasses.dataclass(frozen=True)
class Status:
    result: int
    cycles: int
    flags: StatusFlag
    rejected: int      # frames rejected since reset, modulo 256

    @property
    def busy(self) -> bool:
        return bool(self.flags & StatusFlag.BUSY)

    @property
    def done(self) -> bool:
        return bool(self.flags & StatusFlag.DONE)

    @property
    def run_tag(self) -> int:
        """The tag of the last RUN the device accepted since its reset (0: none)."""
        return (int(self.flags) >> STATUS_TAG_SHIFT) & ((1 << RUN_TAG_BITS) - 1)


# -- I/O requests yielded by the protocol generators ---------------------------------------

@dataclasses.dataclass(frozen=True)
class _Write:
    data: bytes


@dataclasses.dataclass(frozen=True)
class _Read:
    n: int
    long: bool = False     # waiting for a RUN to finish: use the transport's run timeout


@dataclasses.dataclass(frozen=True)
class _Drain:
    """Wait until the device has dropped any partial frame, and discard pending input."""


def _u32_words(data: bytes) -> list[int]:
    return [int.from_bytes(data[i:i + 4], "little") for i in range(0, len(data), 4)]


def _signed(v: int, bits: int) -> int:
    v &= (1 << bits) - 1
    return v - (1 << bits) if v >> (bits - 1) else v


def _integer(v, what: str) -> int:
    """``v`` as a Python int (ints and numpy integers; never a float or a bool), else
    InputError."""
    if isinstance(v, bool):
        raise InputError(f"{what} must be an integer, not the bool {v!r}")
    try:
        return operator.index(v)
    except TypeError:
        raise InputError(f"{what} must be an integer, not {v!r}") from None


def _words_in(values, lo: int, hi: int, what: str) -> list[int]:
    """Every value as an int in ``lo <= v < hi``, else InputError naming the first one out
    of range and its index."""
    out = []
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InputError(f"the {what}s must be a sequence of integers, not "
                         f"{type(values).__name__}; nothing was sent")
    for i, v in enumerate(values):
        v = _integer(v, f"{what} {i}")
        if not lo <= v < hi:
            raise InputError(f"{what} {i} is {v}, outside the {lo}..{hi - 1} that the "
                             f"memory holds; nothing was sent")
        out.append(v)
    return out


#: Replies that say the device rejected a request the driver built correctly: they come
#: only from a request corrupted on the line (or a stray sync byte in front of it), and a
#: rejected frame has no effect, so the request is sent again (RUN included).
_CORRUPTED_REQUEST = (Reply.BAD_CRC, Reply.BAD_LENGTH, Reply.BAD_COMMAND)


# -- the trampoline ---------------------------------------------------------------------------

async def drive_async(gen, perform, catch: tuple = ()):
    """Run a generator of requests to completion; returns the generator's value.

    Each request it yields goes to ``perform(request)``; the result (awaited if it is
    awaitable) is sent back into the generator. An exception of a type in ``catch`` raised
    by ``perform`` is thrown into the generator instead (where it may be handled, e.g. a
    retry after a timeout). Used for the driver's frame I/O (:class:`HostDriver`, over an
    asynchronous transport inside a cocotb test) and for the model sessions of
    :mod:`ternac.session` (:meth:`HostDriver.run_session`). The one trampoline of the
    package: :func:`drive_sync` runs this same coroutine.
    """
    value, exc = None, None
    while True:
        try:
            op = gen.throw(exc) if exc is not None else gen.send(value)
        except StopIteration as stop:
            return stop.value
        value, exc = None, None
        try:
            value = perform(op)
            if inspect.isawaitable(value):
                value = await value
        except catch as e:
            exc = e


def drive_sync(gen, perform, catch: tuple = ()):
    """:func:`drive_async` for a ``perform`` that returns plain values (a synchronous
    transport): the coroutine then never suspends, so one step runs it to the end, with no
    event loop. Returns the generator's value.

    Raises
    ------
    TypeError if ``perform`` returned an awaitable that suspended (use drive_async).
    """
    coro = drive_async(gen, perform, catch)
    try:
        coro.send(None)
    except StopIteration as stop:
        return stop.value
    coro.close()
    raise TypeError("drive_sync was given a request that needs an event loop; use drive_async")


# -- the driver -----------------------------------------------------------------------------

def _operation(gen_fn):
    """Turn a protocol generator into a driver method: sync or async after the transport."""
    @functools.wraps(gen_fn)
    def method(self, *args, **kwargs):
        return self._drive(gen_fn(self, *args, **kwargs), self._perform, (LinkTimeout,))
    return method


class HostDriver:
    """Drives the device over a transport.

    With a synchronous transport (:class:`SerialTransport`) each method returns its result;
    with an asynchronous one (:class:`CosimTransport`) each returns a coroutine.

    Parameters
    ----------
    transport
        Has ``write(bytes)``, ``read(n, long=False) -> bytes`` (exactly n bytes, or raises
        :class:`LinkTimeout`), ``drain()`` and ``is_async``.
    retries : int
        Retries of a request whose response timed out or was corrupted, or that the device
        answered BAD_CRC, BAD_LENGTH or BAD_COMMAND (a request corrupted on the line; a
        rejected frame has no effect). RUN is retried only after such a reply: a RUN whose
        response is lost may have run, and running twice is not idempotent (the LM's
        state), so that raises :class:`LinkError`.
    word_bits : int or None
        Weight word width (2 * lanes) for :meth:`load_weights`; taken from ``cfg`` if given.
    cfg : AccelConfig or None
        When given, addresses are checked against its memory sizes
        (:func:`ternac.protocol.space_limits`) before anything is sent; without it, against
        the host port's 2**20 addresses.

    Every operation checks its arguments before any byte is sent: an address, a space, a
    word or a value out of range raises :class:`ternac.errors.InputError` (one sentence).
    A link failure raises :class:`LinkError` (one sentence naming the command and the
    attempts), a named error :class:`DeviceError`.
    """

    def __init__(self, transport, *, retries: int = 2, cfg=None, word_bits: int | None = None):
        self.transport = transport
        self.retries = int(retries)
        self.cfg = cfg
        self.word_bits = word_bits if word_bits is not None else (cfg.word_bits if cfg else None)
        # Set when a request failed on the link: the next one first waits out the device's
        # partial-frame timeout and drops what is left of a broken response.
        self._stale = False
        # The device's run tag as last seen (a STATUS, an acknowledged RUN); None: unknown.
        self._run_tag = None

    # runners --------------------------------------------------------------------------
    def _drive(self, gen, perform, catch=()):
        if getattr(self.transport, "is_async", False):
            return drive_async(gen, perform, catch)
        return drive_sync(gen, perform, catch)

    def _perform(self, op):
        """One I/O request on the transport (its result, or a coroutine when async)."""
        t = self.transport
        if isinstance(op, _Write):
            return t.write(op.data)
        if isinstance(op, _Read):
            return t.read(op.n, long=op.long)
        return t.drain()

    def run_session(self, gen):
        """Run a session (:mod:`ternac.session`): a generator that yields driver calls
        ``(method name, *args)`` and receives their results; a call's :class:`LinkError`
        is thrown into it (where it may repeat an idempotent step, or let it out). Returns
        the session's value (a coroutine of it with an asynchronous transport)."""
        return self._drive(gen, lambda call: getattr(self, call[0])(*call[1:]), (LinkError,))

    # framing --------------------------------------------------------------------------
    def _read_response(self, long=False, expect=None):
        """Read one response frame (a generator): returns (code, payload). ``expect``: the
        ACK payload length of the request; a length field that is neither it nor 0 (an
        error reply) is a corrupted response, refused at once instead of waiting for
        bytes that never come."""
        skipped = 0
        while True:     # hunt for the response sync byte
            b = yield _Read(1, long)
            if b[0] == SYNC_RESPONSE:
                break
            skipped += 1
            if skipped > 4096:
                raise LinkError("no response sync byte in 4096 received bytes")
            long = False
        head = yield _Read(3)
        n = int.from_bytes(head[1:3], "little")
        if n > 4 * MAX_WORDS + 16:
            raise LinkError(f"response claims {n} payload bytes")
        if expect is not None and n not in (0, expect):
            raise LinkError(f"response claims {n} payload bytes, not the {expect} expected")
        rest = yield _Read(n + 2)
        frame = bytes([SYNC_RESPONSE]) + bytes(head) + bytes(rest)
        return decode_frame(frame)

    def _exchange(self, cmd: Command, payload: bytes = b"", *, long=False, idempotent=True,
                  expect=None):
        """One request and its response (a generator): returns the ACK payload.

        Retries (``self.retries`` times) after a lost or corrupted response (only if
        ``idempotent``; else that LinkError is raised as it is) and after a reply in
        :data:`_CORRUPTED_REQUEST`; before a retry it waits out the device's partial-frame
        timeout and drops pending input (``_Drain``).

        Raises
        ------
        LinkError (LinkTimeout for silence) naming the command and the attempts;
        DeviceError for a named error (after the attempts, for a corrupted request).
        """
        frame = encode_frame(cmd, payload)
        attempts = self.retries + 1
        if self._stale:
            yield _Drain()
            self._stale = False
        for attempt in range(attempts):
            last = attempt == attempts - 1
            yield _Write(frame)
            try:
                code, data = yield from self._read_response(long, expect)
            except LinkError as e:
                self._stale = True
                if not idempotent:
                    raise           # the caller decides (HostDriver.run: the run tag)
                if last:
                    raise type(e)(f"{cmd.name} got no valid response in {attempts} "
                                  f"attempt{'s' if attempts > 1 else ''} (last: {e})") from None
                yield _Drain()
                continue
            if code == Reply.ACK:
                self._stale = False
                return data
            try:
                reply = Reply(code)
            except ValueError:
                self._stale = True
                raise LinkError(f"unknown response code {code:#04x} to {cmd.name}") from None
            if reply in _CORRUPTED_REQUEST:
                if not last:
                    yield _Drain()
                    continue
                self._stale = True
                raise DeviceError(reply, cmd, f"{attempts} attempt{'s' if attempts > 1 else ''}")
            raise DeviceError(reply, cmd)

    # operations -----------------------------------------------------------------------
    @_operation
    def identify(self):
        """IDENTIFY: the build's configuration hash, protocol version and frame size."""
        return (yield from self._identify())

    def _identify(self):
        data = yield from self._exchange(Command.IDENTIFY, expect=7)
        if len(data) != 7:
            raise LinkError(f"IDENTIFY answered {len(data)} bytes, 7 expected")
        return Identity(int.from_bytes(data[0:4], "little"), data[4],
                        int.from_bytes(data[5:7], "little"))

    @_operation
    def check_identity(self, expected_hash: int):
        """IDENTIFY and compare the hash; raises :class:`LinkError` naming both on mismatch."""
        ident = yield from self._identify()
        if ident.protocol_version != PROTOCOL_VERSION:
            raise LinkError(f"the device speaks host-link protocol {ident.protocol_version}, "
                            f"this driver {PROTOCOL_VERSION}")
        if ident.config_hash != expected_hash:
            raise LinkError(f"the board's bitstream was built for another configuration "
                            f"(hash {ident.config_hash:#010x}, expected {expected_hash:#010x}): "
                            f"rebuild and program it")
        return ident

    @_operation
    def status(self):
        """STATUS: result, cycles, flags and rejected-frame count."""
        return (yield from self._status())

    def _status(self):
        data = yield from self._exchange(Command.STATUS, expect=10)
        if len(data) != 10:
            raise LinkError(f"STATUS answered {len(data)} bytes, 10 expected")
        st = Status(int.from_bytes(data[0:4], "little"), int.from_bytes(data[4:8], "little"),
                    StatusFlag(data[8]), data[9])
        self._run_tag = st.run_tag
        return st

    def _limit(self, space) -> int:
        """Host addresses of ``space`` (InputError for an unknown space)."""
        try:
            space = Space(_integer(space, "the address space"))
        except ValueError:
            raise InputError(f"address space {space!r} is not one of "
                             f"{', '.join(f'{s.value} ({s.name})' for s in Space)}") from None
        if self.cfg is not None:
            return space_limits(self.cfg)[space]
        return 1 << HOST_ADDR_BITS

    def _check_region(self, space, addr, count: int, what: str = "words") -> int:
        """``addr`` as an int with ``0 <= addr`` and ``addr + count`` within the space,
        else InputError."""
        limit = self._limit(space)
        addr = _integer(addr, "the address")
        name = Space(space).name
        if addr < 0 or addr + count > limit:
            raise InputError(f"{count} {what} at address {addr} do not fit the {name} space "
                             f"(addresses 0..{limit - 1}); nothing was sent")
        return addr

    def _write_mem(self, space, addr, words):
        self._limit(space)
        lo, hi = ((-(1 << (SCRATCH_BITS - 1)), 1 << SCRATCH_BITS) if int(space) == Space.SCRATCH
                  else (-(1 << 31), 1 << 32))
        words = [w & 0xFFFFFFFF for w in _words_in(words, lo, hi, f"{Space(space).name} word")]
        addr = self._check_region(space, addr, len(words))
        for i in range(0, len(words), MAX_WORDS):
            chunk = words[i:i + MAX_WORDS]
            payload = (bytes([int(space)]) + int(addr + i).to_bytes(4, "little")
                       + b"".join(w.to_bytes(4, "little") for w in chunk))
            yield from self._exchange(Command.WRITE_MEM, payload, expect=0)

    def _read_mem(self, space, addr, count):
        count = _integer(count, "the word count")
        if count < 0:
            raise InputError(f"cannot read {count} words; the count must be 0 or more")
        addr = self._check_region(space, addr, count)
        out = []
        for i in range(0, count, MAX_WORDS):
            n = min(MAX_WORDS, count - i)
            payload = (bytes([int(space)]) + int(addr + i).to_bytes(4, "little")
                       + n.to_bytes(2, "little"))
            data = yield from self._exchange(Command.READ_MEM, payload, expect=4 * n)
            if len(data) != 4 * n:
                raise LinkError(f"READ_MEM of {n} words answered {len(data)} bytes")
            out += _u32_words(data)
        return out

    @_operation
    def write_mem(self, space: int, addr: int, words):
        """WRITE_MEM: 32-bit ``words`` at host-port ``addr`` of ``space``, in frames of at
        most MAX_WORDS words. Words are -2**31..2**32-1 (SCRATCH: -2**15..2**16-1, its
        16 bits); InputError for a word, a space or an address out of range."""
        yield from self._write_mem(space, addr, words)

    @_operation
    def read_mem(self, space: int, addr: int, count: int):
        """READ_MEM: ``count`` 32-bit words from ``addr`` of ``space`` (unsigned)."""
        return (yield from self._read_mem(space, addr, count))

    @_operation
    def load_program(self, program_words):
        """Write 128-bit instruction words into PROG (4 slices a word, least significant
        slice first). With ``cfg`` given, InputError before anything is sent for a word
        that sets a bit the build's program memory does not store
        (AccelConfig.prog_refusal: it would read back as 0), or for a program the build
        cannot run (:func:`ternac.lower.check_program`: an operation or vector unit it is
        built without, a field, length or address out of its range, no HALT)."""
        program_words = _words_in(program_words, 0, 1 << 128, "instruction word")
        if self.cfg is not None:
            why = self.cfg.prog_refusal(program_words)
            if why:
                raise InputError(why + "; nothing was sent")
            from ternac.errors import CompileError
            from ternac.golden.isa import decode
            from ternac.lower import check_program
            try:
                check_program([decode(w) for w in program_words], self.cfg)
            except (CompileError, ValueError) as exc:
                raise InputError(f"{str(exc).rstrip('.')}; nothing was sent") from None
        slices = [(w >> (32 * s)) & 0xFFFFFFFF for w in program_words for s in range(4)]
        yield from self._write_mem(Space.PROG, 0, slices)

    @_operation
    def load_weights(self, weight_words, base: int = 0):
        """Write packed weight words (``word_bits`` each) into WEIGHTS from word ``base``.

        A word is ceil(word_bits / 32) slices, least significant first, at host addresses
        ``WORD_STRIDE * word + slice``; the unused slice addresses of a word are written
        with zeros (the accelerator writes each real slice into its bits of the word and
        ignores the rest), so every frame carries whole, contiguous words.
        """
        if not self.word_bits:
            raise ValueError("load_weights needs word_bits (or cfg) given to HostDriver")
        per = -(-self.word_bits // 32)
        if per > WORD_STRIDE:
            raise ValueError(f"weight words of {self.word_bits} bits need {per} slices, "
                             f"more than the {WORD_STRIDE} a word has on the host port")
        weight_words = _words_in(weight_words, 0, 1 << self.word_bits,
                                 f"{self.word_bits}-bit weight word")
        base = _integer(base, "the weight base word")
        if base < 0:
            raise InputError(f"the weight base word is {base}; it must be 0 or more")
        slices = [(w >> (32 * s)) & 0xFFFFFFFF if s < per else 0
                  for w in weight_words for s in range(WORD_STRIDE)]
        yield from self._write_mem(Space.WEIGHTS, WORD_STRIDE * base, slices)

    @_operation
    def write_scratch(self, addr: int, values):
        """Write signed scratch words (``SCRATCH_BITS`` = 16 bits, e.g. int8 activations)
        into SCRATCH: values -32768..32767, else InputError before anything is sent."""
        half = 1 << (SCRATCH_BITS - 1)
        values = _words_in(values, -half, half, "scratch value")
        yield from self._write_mem(Space.SCRATCH, addr, [v & (2 * half - 1) for v in values])

    @_operation
    def read_scratch(self, addr: int, count: int):
        """Read SCRATCH as signed ``SCRATCH_BITS``-bit (16) values."""
        words = yield from self._read_mem(Space.SCRATCH, addr, count)
        return [_signed(w, SCRATCH_BITS) for w in words]

    @_operation
    def read_out(self, addr: int, count: int):
        """Read OUT as signed 32-bit values (raw accumulators, logits)."""
        words = yield from self._read_mem(Space.OUT, addr, count)
        return [_signed(w, 32) for w in words]

    @_operation
    def run(self, wait: bool = True):
        """RUN the program. With ``wait`` the device answers when it is done:
        returns (result, cycles); without, it answers at once and returns None.

        Each RUN carries a run tag (1..3, the one after the device's last); when its
        response is lost or corrupted, STATUS tells whether the device accepted it (the
        device keeps the tag across a reset): its tag there and DONE mean the RUN ran (the
        result and cycles are then STATUS's); its tag without BUSY or DONE that a reset cut
        it short or cleared its result (LinkError); the previous tag that it never arrived
        (it is sent again, up to ``retries`` times). When the driver has not seen the
        device's tag yet (no STATUS or RUN on this driver), whether it ran is unknown and
        LinkError says so in one sentence.
        """
        mask = (1 << RUN_TAG_BITS) - 1
        for attempt in range(self.retries + 1):
            before = self._run_tag
            tag = (before or 0) % mask + 1
            payload = bytes([(tag << RUN_TAG_SHIFT) | (0 if wait else 1)])
            try:
                data = yield from self._exchange(Command.RUN, payload, long=wait,
                                                 idempotent=False, expect=8 if wait else 0)
            except DeviceError:
                raise
            except LinkError as e:
                lost = e
            else:
                self._run_tag = tag
                if not wait:
                    return None
                if len(data) != 8:
                    raise LinkError(f"RUN answered {len(data)} bytes, 8 expected")
                return int.from_bytes(data[0:4], "little"), int.from_bytes(data[4:8], "little")
            # The response was lost: did the device take this RUN?
            st = yield from self._status()
            head = f"the response to RUN was lost or corrupted ({lost})"
            if before is None:
                raise type(lost)(f"{head} and this driver has not seen the device's run tag "
                                 f"yet, so whether it ran is unknown") from None
            if st.run_tag == tag:
                if not wait:
                    return None
                if st.busy:
                    raise LinkTimeout(f"{head} and the device is still running it") from None
                if not st.done:
                    raise type(lost)(f"{head} and the device took it but shows it neither "
                                     f"running nor done: a reset cut it short or cleared its "
                                     f"result") from None
                return st.result, st.cycles
            if st.run_tag != before:
                raise type(lost)(f"{head} and the device reports run tag {st.run_tag}, neither "
                                 f"the previous {before} nor this RUN's {tag}, so whether it "
                                 f"ran is unknown") from None
            # the device still shows the previous tag: this RUN did not arrive; send it again
        raise type(lost)(f"RUN got no valid response in {self.retries + 1} attempts "
                         f"(last: {lost})") from None

    @_operation
    def raw(self, frame: bytes, *, expect_response: bool = True):
        """Send raw bytes (tests: corrupt frames, garbage) and read one response frame:
        returns (code, payload), or None without ``expect_response``."""
        yield _Write(bytes(frame))
        if expect_response:
            return (yield from self._read_response())
        return None


# -- transports -----------------------------------------------------------------------------

class SerialTransport:
    """pyserial transport for a real board.

    Parameters
    ----------
    port : str
        e.g. ``/dev/ttyUSB1`` (iCEBreaker: the second FTDI channel) or ``/dev/ttyUSB0``.
    baud : int
    timeout_s : float
        Longest wait for a response byte.
    run_timeout_s : float
        Longest wait for a RUN to finish.
    resync_s : float
        Wait before a retry, longer than the device's partial-frame timeout.

    Raises
    ------
    LinkError (one sentence) if the port cannot be opened.
    """
    is_async = False

    def __init__(self, port: str, baud: int = 115200, *, timeout_s: float = 1.0,
                 run_timeout_s: float = 60.0, resync_s: float = 0.2, serial_obj=None):
        self.timeout_s, self.run_timeout_s, self.resync_s = timeout_s, run_timeout_s, resync_s
        if serial_obj is not None:
            self.ser = serial_obj
        else:
            self.ser = open_serial(port, baud, timeout_s)

    def write(self, data: bytes):
        self.ser.write(data)
        self.ser.flush()

    def read(self, n: int, long: bool = False) -> bytes:
        deadline = time.monotonic() + (self.run_timeout_s if long else self.timeout_s)
        buf = b""
        while len(buf) < n:
            self.ser.timeout = max(0.0, min(self.timeout_s, deadline - time.monotonic()))
            buf += self.ser.read(n - len(buf))
            if len(buf) < n and time.monotonic() >= deadline:
                raise LinkTimeout(f"no response from the board within "
                                  f"{self.run_timeout_s if long else self.timeout_s:g} s "
                                  f"(got {len(buf)} of {n} bytes)")
        return buf

    def drain(self):
        time.sleep(self.resync_s)
        self.ser.reset_input_buffer()

    def close(self):
        self.ser.close()


def open_serial(port: str, baud: int, timeout_s: float = 1.0):
    """Open a serial port with pyserial; raises :class:`LinkError` with one sentence."""
    try:
        import serial
    except ImportError:
        raise LinkError("pyserial is not installed: pip install pyserial") from None
    try:
        return serial.Serial(port, baud, timeout=timeout_s)
    except (serial.SerialException, OSError) as e:
        raise LinkError(f"cannot open serial port {port!r} ({e.__class__.__name__}: "
                        f"{getattr(e, 'strerror', None) or e}); is the board plugged in "
                        f"and is --port right?") from None


class CosimTransport:
    """cocotbext-uart transport for a cocotb test of the simulated board top.

    Parameters
    ----------
    rx_pin, tx_pin
        The DUT's UART input (the transport drives it) and output (the transport samples it).
    baud : int
        Bits a second of *simulated* time; ``1e9 / baud`` must be a whole number of ns.
    byte_timeout_ns : int
        Longest wait for a response byte, in simulated ns.
    run_timeout_ns : int or None
        Longest wait for a RUN to finish (None: no limit).
    resync_ns : int
        Wait before a retry, longer than the device's partial-frame timeout.
    """
    is_async = True

    def __init__(self, rx_pin, tx_pin, baud: int, *, byte_timeout_ns: int = 1_000_000,
                 run_timeout_ns: int | None = None, resync_ns: int = 1_000_000):
        from cocotbext.uart import UartSink, UartSource
        if 1e9 / baud != int(1e9 / baud):
            raise ValueError(f"cocotbext-uart needs a bit time of whole ns; baud {baud} "
                             f"gives {1e9 / baud:g} ns")
        self.source = UartSource(rx_pin, baud=baud)
        self.sink = UartSink(tx_pin, baud=baud)
        self.byte_timeout_ns, self.run_timeout_ns = byte_timeout_ns, run_timeout_ns
        self.resync_ns = resync_ns

    async def write(self, data: bytes):
        await self.source.write(data)
        await self.source.wait()

    async def read(self, n: int, long: bool = False) -> bytes:
        from cocotb.triggers import First, Timer
        timeout = self.run_timeout_ns if long else self.byte_timeout_ns
        while self.sink.count() < n:
            before = self.sink.count()
            self.sink.sync.clear()      # UartSink.wait() returns at once on a partial read
            if timeout is None:
                await self.sink.sync.wait()
            else:
                await First(self.sink.sync.wait(), Timer(timeout, "ns"))
                if self.sink.count() == before:
                    raise LinkTimeout(f"no response byte within {timeout} ns of simulated "
                                      f"time (got {before} of {n} bytes)")
        return bytes(self.sink.read_nowait(n))

    async def drain(self):
        from cocotb.triggers import Timer
        await Timer(self.resync_ns, "ns")
        self.sink.clear()

