"""The ternac host-link wire protocol: frame format, commands, replies, status flags, the
host address spaces, CRC, and the configuration hash that IDENTIFY returns.

This module is the protocol's single definition (specified in prose in
``docs/hostlink.md``), imported by both ends: the RTL (:mod:`ternac.hw.hostlink`, the
accelerator's host port in :mod:`ternac.hw.top`, :mod:`ternac.boards.core`) and the host
driver (:mod:`ternac.hostdriver`). It is pure Python (standard library only: no torch, no
Amaranth, no pyserial, no cocotb), so every layer may import it.

Frame (both directions)::

    sync u8 | code u8 | length u16 LE | payload (length bytes) | CRC-16 u16 MSB first

``sync`` is :data:`SYNC_REQUEST` host -> device and :data:`SYNC_RESPONSE` back; the CRC is
CRC-16/CCITT-FALSE over code, length and payload (:func:`crc16`).
"""
from __future__ import annotations

import binascii
import enum
import hashlib
import json
from typing import NamedTuple

__all__ = [
    "SYNC_REQUEST", "SYNC_RESPONSE", "PROTOCOL_VERSION", "MAX_WORDS", "WRITE_HEADER_BYTES",
    "WORD_STRIDE", "HOST_ADDR_BITS", "SPACE_BITS", "STATUS_ERROR_FLAGS", "RUN_TAG_SHIFT",
    "STATUS_TAG_SHIFT", "RUN_TAG_BITS",
    "Command", "Reply", "StatusFlag", "Space", "crc16", "encode_frame", "decode_frame",
    "Received", "FrameReceiver", "check_request",
    "space_limits", "config_hash", "board_config_hash",
    "LinkError", "LinkTimeout", "DeviceError",
]

#: First byte of every request (host -> device) and of every response (device -> host).
SYNC_REQUEST = 0xA5
SYNC_RESPONSE = 0x5A
PROTOCOL_VERSION = 1
#: Most 32-bit words one WRITE_MEM or READ_MEM frame carries (the device buffers one
#: WRITE_MEM payload in a 4 * MAX_WORDS-byte EBR before executing it).
MAX_WORDS = 64
#: WRITE_MEM payload bytes before the words: space (u8) and address (u32).
WRITE_HEADER_BYTES = 5
#: Bits of a host-port address (the u32 address field is checked against the space's size,
#: which is capped at 2**HOST_ADDR_BITS) and of a space code (:class:`Space`).
HOST_ADDR_BITS = 20
SPACE_BITS = 2


class Command(enum.IntEnum):
    """Request codes (the byte after the sync byte of a request)."""
    IDENTIFY = 0x01    # payload: none          -> hash u32, version u8, max_words u16
    WRITE_MEM = 0x02   # space u8, addr u32, words u32 x n (1 <= n <= MAX_WORDS) -> none
    READ_MEM = 0x03    # space u8, addr u32, count u16 (1..MAX_WORDS) -> words u32 x count
    RUN = 0x04         # none (wait) or flags u8 (bit 0: do not wait; bits 1-2: run tag)
    #                    -> result u32, cycles u32 (waiting) or none
    STATUS = 0x05      # none -> result u32, cycles u32, flags u8, rejected u8


class Reply(enum.IntEnum):
    """Response codes (the byte after the sync byte of a response)."""
    ACK = 0x00
    BAD_CRC = 0x81       # the CRC over code, length and payload did not check
    BAD_LENGTH = 0x82    # length too long for the device, or wrong for the command
    BAD_COMMAND = 0x83   # unknown command code
    BAD_ADDRESS = 0x84   # space unknown, or addr + count past the end of the space
    BUSY = 0x85          # memory access or RUN while the accelerator runs


class StatusFlag(enum.IntFlag):
    """Bits of the STATUS flags byte. Sticky bits clear when STATUS is answered."""
    BUSY = 0x01          # accelerator running
    DONE = 0x02          # last run finished (until the next RUN)
    RX_OVERRUN = 0x04    # sticky: a received byte was dropped
    RX_FRAMING = 0x08    # sticky: a stop bit was 0
    TIMEOUT = 0x10       # sticky: a partial frame was dropped after the inter-byte timeout
    ERROR = 0x20         # the accelerator stopped on an error (until the next RUN)
    RUN_TAG_LO = 0x40    # bits 6-7: the tag of the last RUN accepted (0: none since power-up)
    RUN_TAG_HI = 0x80


#: The STATUS flags that mean something went wrong on the link or in the accelerator.
STATUS_ERROR_FLAGS = (StatusFlag.RX_OVERRUN | StatusFlag.RX_FRAMING | StatusFlag.TIMEOUT
                      | StatusFlag.ERROR)
#: A RUN request's flags byte carries a 2-bit run tag (1..3) in bits RUN_TAG_SHIFT..+1,
#: which the device keeps from the RUN it accepts and reports in the STATUS flags' bits
#: STATUS_TAG_SHIFT..+1 (kept across a reset; 0 only before the first RUN after power-up).
#: A host whose RUN response was lost asks STATUS: its own tag there means the RUN ran
#: (done: finished; neither busy nor done: a reset cut it short), the previous one that it
#: did not.
RUN_TAG_SHIFT = 1
STATUS_TAG_SHIFT = 6
RUN_TAG_BITS = 2


class Space(enum.IntEnum):
    """Address spaces of the accelerator's host port (:data:`SPACE_BITS` bits): the ``space``
    byte of WRITE_MEM / READ_MEM and the ``host_space`` port of
    :class:`ternac.hw.top.Accelerator`.

    Every host-port word is 32 bits; PROG and WEIGHTS words are wider and take
    :data:`WORD_STRIDE` host addresses each (``addr = WORD_STRIDE * word + slice``, 32-bit
    slices, least significant first).
    """
    SCRATCH = 0   # activation scratchpad, signed scratch words (sign-extended on read)
    OUT = 1       # output buffer, 32-bit words
    PROG = 2      # program memory, 128-bit instructions as 4 x 32-bit slices
    WEIGHTS = 3   # weight memory, word_bits-bit words as ceil(word_bits / 32) slices


#: Host addresses a PROG or WEIGHTS word spans: :class:`ternac.hw.top.Accelerator` addresses
#: both as ``4 * word + slice`` (32-bit slices, least significant first), whatever the word
#: width.
WORD_STRIDE = 4


def crc16(data: bytes, crc: int = 0xFFFF) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no final xor), as
    :func:`binascii.crc_hqx`. Appending the CRC most significant byte first makes the CRC
    of the whole (code .. CRC) zero, which is what the RTL checks."""
    return binascii.crc_hqx(bytes(data), crc)


def encode_frame(code: int, payload: bytes = b"", *, sync: int = SYNC_REQUEST) -> bytes:
    """One frame: sync, code, length (u16 LE), payload, CRC-16 (MSB first) over code..payload.

    Raises
    ------
    ValueError if the payload is longer than 65535 bytes or the code is not a byte.
    """
    payload = bytes(payload)
    if len(payload) > 0xFFFF:
        raise ValueError(f"a frame payload holds at most 65535 bytes, not {len(payload)}")
    if not 0 <= int(code) <= 0xFF:
        raise ValueError(f"frame code must be a byte, not {code!r}")
    body = bytes([int(code)]) + len(payload).to_bytes(2, "little") + payload
    return bytes([sync]) + body + crc16(body).to_bytes(2, "big")


def _head(data: bytes, n: int = 16) -> str:
    """The first ``n`` bytes of ``data`` in hex, for an error message of bounded length."""
    return data[:n].hex() + ("..." if len(data) > n else "")


def decode_frame(frame: bytes, *, sync: int = SYNC_RESPONSE) -> tuple[int, bytes]:
    """Inverse of :func:`encode_frame` for one complete frame: returns (code, payload).

    Raises
    ------
    LinkError (one sentence; at most the first 16 bytes are quoted) if the frame is shorter
    than the 6 bytes of an empty frame, or its sync byte, length or CRC is wrong.
    """
    frame = bytes(frame)
    if len(frame) < 6:
        raise LinkError(f"a frame has at least 6 bytes, but {len(frame)} arrived "
                        f"({_head(frame) or 'none'})")
    if frame[0] != sync:
        raise LinkError(f"a frame starts with the sync byte {sync:#04x}, not {frame[0]:#04x} "
                        f"(received {_head(frame)})")
    n = int.from_bytes(frame[2:4], "little")
    if len(frame) != 6 + n:
        raise LinkError(f"the frame's length field says {n} payload bytes, but the frame has "
                        f"{len(frame) - 6}")
    if crc16(frame[1:]) != 0:
        raise LinkError(f"the frame's CRC does not check (received {_head(frame)})")
    return frame[1], frame[4:4 + n]


class Received(NamedTuple):
    """One frame (or frame header) that :class:`FrameReceiver` has taken off the line.

    ``kind`` is ``"frame"`` (CRC checks), ``"bad_crc"`` (the CRC over code, length and
    payload does not check) or ``"too_long"`` (the length field exceeds the receiver's
    buffer; reported straight after the header, with no payload); ``code`` the code byte,
    ``length`` the length field (u16), ``payload`` the payload bytes (``b""`` for
    ``too_long``).
    """
    kind: str
    code: int
    length: int
    payload: bytes


class FrameReceiver:
    """The device's request parser as a pure-Python reference model: bytes in, frames out.

    It is the receive half of :class:`ternac.hw.hostlink.Hostlink` (states HUNT, CMD, LEN0,
    LEN1, PAYLOAD, CRC0, CRC1), byte for byte, for a byte stream the device reads without
    losing a byte (the RTL holds ``rx.ready`` low while it executes and answers):

    * outside a frame, every byte but ``sync`` is skipped;
    * after ``sync``: the code byte, the length (u16 little-endian); a length above
      ``max_length`` is reported as ``too_long`` at once and the receiver hunts again (the
      rest of that frame is skipped as noise, a sync byte in it starting a new frame);
    * then ``length`` payload bytes and the 2 CRC bytes: ``frame`` if the CRC-16 over code,
      length, payload and CRC is zero, else ``bad_crc``; then it hunts again. A bad frame's
      bytes are consumed, never re-scanned for a sync byte;
    * :meth:`timeout` (no byte for the device's inter-byte timeout) drops a partial frame.

    Parameters
    ----------
    sync : int
        The byte that starts a frame (:data:`SYNC_REQUEST` for the device's receiver).
    max_length : int
        The longest payload accepted (bytes); the device's is ``WRITE_HEADER_BYTES + 4 *
        max_words``.

    Never raises on any input byte; ``feed`` raises ValueError only for a value that is not
    a byte.
    """

    _HUNT, _CMD, _LEN0, _LEN1, _PAYLOAD, _CRC0, _CRC1 = range(7)

    def __init__(self, *, sync: int = SYNC_REQUEST,
                 max_length: int = WRITE_HEADER_BYTES + 4 * MAX_WORDS):
        if not 0 <= int(sync) <= 0xFF:
            raise ValueError(f"sync must be a byte, not {sync!r}")
        if not 0 <= int(max_length) <= 0xFFFF:
            raise ValueError(f"max_length must be 0 to 65535 bytes, not {max_length!r}")
        self.sync, self.max_length = int(sync), int(max_length)
        self._state = self._HUNT
        self._body = bytearray()      # code, length, payload, CRC of the frame being received
        self._length = 0

    @property
    def idle(self) -> bool:
        """True while no frame is partly received (the device's HUNT state)."""
        return self._state == self._HUNT

    def timeout(self) -> bool:
        """The inter-byte timeout: drop a partial frame. Returns whether one was dropped
        (the device then sets the sticky STATUS flag TIMEOUT)."""
        dropped = self._state != self._HUNT
        self._state = self._HUNT
        self._body.clear()
        return dropped

    def feed(self, data) -> list[Received]:
        """Take bytes off the line; returns the frames (and too-long headers) they complete,
        in order."""
        out = []
        for b in bytes(data):
            got = self._byte(b)
            if got is not None:
                out.append(got)
        return out

    def _byte(self, b: int) -> Received | None:
        st = self._state
        if st == self._HUNT:
            if b == self.sync:
                self._body.clear()
                self._state = self._CMD
            return None
        self._body.append(b)
        if st == self._CMD:
            self._state = self._LEN0
        elif st == self._LEN0:
            self._state = self._LEN1
        elif st == self._LEN1:
            self._length = n = self._body[1] | (b << 8)
            if n > self.max_length:
                self._state = self._HUNT
                return Received("too_long", self._body[0], n, b"")
            self._state = self._PAYLOAD if n else self._CRC0
        elif st == self._PAYLOAD:
            if len(self._body) == 3 + self._length:
                self._state = self._CRC0
        elif st == self._CRC0:
            self._state = self._CRC1
        else:   # CRC1: the frame is complete
            self._state = self._HUNT
            body = bytes(self._body)
            kind = "frame" if crc16(body) == 0 else "bad_crc"
            return Received(kind, body[0], self._length, body[3:3 + self._length])
        return None


def check_request(code: int, payload: bytes, limits: dict, *, max_words: int = MAX_WORDS,
                  busy: bool = False) -> Reply:
    """The device's verdict on a request whose CRC checked: ACK or the first named error.

    The checks of :class:`ternac.hw.hostlink.Hostlink` (state CHECK), in its order:
    BAD_COMMAND (not a :class:`Command`), BAD_LENGTH (IDENTIFY and STATUS: no payload; RUN:
    0 or 1 byte; WRITE_MEM: the 5 header bytes and 1 to ``max_words`` whole words; READ_MEM:
    exactly 7 bytes with a count of 1 to ``max_words``), BAD_ADDRESS (WRITE_MEM / READ_MEM:
    a space byte of 0..3 and ``addr + words <= limits[space]``, every address below
    2**:data:`HOST_ADDR_BITS`), BUSY (memory access or RUN while ``busy``).

    Parameters
    ----------
    limits : dict[int, int]
        Host addresses of each space (:func:`space_limits`); a space missing from it has 0.
    """
    payload = bytes(payload)
    n = len(payload)
    try:
        cmd = Command(code)
    except ValueError:
        return Reply.BAD_COMMAND
    if cmd in (Command.IDENTIFY, Command.STATUS):
        ok = n == 0
    elif cmd == Command.RUN:
        ok = n <= 1
    elif cmd == Command.WRITE_MEM:
        ok = (WRITE_HEADER_BYTES + 4 <= n <= WRITE_HEADER_BYTES + 4 * max_words
              and (n - WRITE_HEADER_BYTES) % 4 == 0)
    else:
        ok = n == 7 and 1 <= int.from_bytes(payload[5:7], "little") <= max_words
    if not ok:
        return Reply.BAD_LENGTH
    if cmd in (Command.WRITE_MEM, Command.READ_MEM):
        space, addr = payload[0], int.from_bytes(payload[1:5], "little")
        words = ((n - WRITE_HEADER_BYTES) // 4 if cmd == Command.WRITE_MEM
                 else int.from_bytes(payload[5:7], "little"))
        if space >= (1 << SPACE_BITS) or addr + words > int(limits.get(space, 0)) \
                or addr >= (1 << HOST_ADDR_BITS):
            return Reply.BAD_ADDRESS
    if busy and cmd in (Command.WRITE_MEM, Command.READ_MEM, Command.RUN):
        return Reply.BUSY
    return Reply.ACK


def space_limits(cfg) -> dict[int, int]:
    """Host-port addresses of each :class:`Space` for an :class:`ternac.config.AccelConfig`
    (``WORD_STRIDE`` a word for PROG and WEIGHTS), capped at 2**HOST_ADDR_BITS."""
    cap = 1 << HOST_ADDR_BITS
    return {
        Space.SCRATCH: min(cfg.scratch_depth, cap),
        Space.OUT: min(cfg.out_depth, cap),
        Space.PROG: min(cfg.prog_depth * WORD_STRIDE, cap),
        Space.WEIGHTS: min(cfg.weight_depth * WORD_STRIDE, cap),
    }


def config_hash(cfg, program_words=(), *, weight_format: str = "I2", **extra) -> int:
    """32-bit hash of a build: protocol version, every AccelConfig size, the program baked
    into the bitstream, the weight format and any ``extra`` keys (board, clock, ...).

    The RTL returns it in IDENTIFY; the driver compares it with the one it computes for the
    model it is about to load, so a stale bitstream is caught before any data moves.
    Definition: the first 4 bytes (little-endian) of SHA-256 over canonical JSON.
    """
    doc = {
        "protocol": PROTOCOL_VERSION,
        "config": cfg.to_dict() if hasattr(cfg, "to_dict") else dict(cfg),
        "program": [f"{int(w):032x}" for w in program_words],
        "weight_format": weight_format,
        **{k: extra[k] for k in sorted(extra)},
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return int.from_bytes(hashlib.sha256(blob).digest()[:4], "little")


def board_config_hash(cfg, program_words, board: str) -> int:
    """The configuration hash a board build reports in IDENTIFY: :func:`config_hash` of
    the configuration and the baked-in program, I2 weights, with the board's name."""
    return config_hash(cfg, program_words, weight_format="I2", board=board)


# -- errors ---------------------------------------------------------------------------------

class LinkError(Exception):
    """The link misbehaved: a corrupt or unexpected response."""


class LinkTimeout(LinkError):
    """No (complete) response arrived in time."""


class DeviceError(LinkError):
    """The device answered a request with a named error (:class:`Reply`)."""

    def __init__(self, reply: Reply, command: Command, detail: str = ""):
        self.reply, self.command = reply, command
        super().__init__(f"the device answered {Command(command).name} with "
                         f"{reply.name}{': ' + detail if detail else ''}")
