"""The trit codes at the level of one word, free of torch so that hw/ can build its decoders
from the same numbers (golden.packing re-exports everything here next to its torch
functions, as golden.numerics does with golden.widths).

I2: a trit is two bits, two's complement: ``00 = 0``, ``01 = +1``, ``11 = -1``; ``10`` is
invalid. Bit 0 is *nonzero* (nz), bit 1 is *negate* (neg).

T3: five trits a byte, ``value = sum_d (t_d + 1) * 3**d`` for ``d < 5``, so 0..242
(:data:`T3_MAX`); the bytes 243..255 are invalid.

T3 lane-tiled word (what the PackedWeightStreamer reads in T3 mode): a word of ``B`` bytes
carries ``lanes = 5 * B`` trits. Lane ``l`` is digit ``l % 5`` of byte ``l // 5``; byte ``b``
sits at bits ``[8b+7:8b]`` (little-endian), so a word is ``8 * lanes / 5`` bits. Allowed lane
counts: any positive multiple of 5 (B = lanes / 5 bytes a word); the weight image accepts 5
to 80 (words of 8 to 128 bits), e.g. 40 lanes = 8 bytes = the four 16-bit SPRAM ports of the
iCE40 UP5K, 20 lanes = 4 bytes.

T3 decoder: :data:`T3_DECODE`, a 243-entry table a byte. Entry ``v`` is the 10-bit I2 code of
the byte's five trits (digit ``d`` at bits ``[2d+1:2d]``: bit ``2d`` = nz, bit ``2d+1`` = neg),
so a word's ``B`` decoded bytes, concatenated in byte order, are exactly the I2 word of the
same ``lanes`` trits, and the rest of the streamer is the I2 two-wire decode. The RTL ROM is
:func:`t3_decode_rom` (the table padded to 256 entries, the invalid bytes decoding to zero
trits; the weight image loader rejects them before they reach a weight memory).

Source: ../shared/DESIGN.md "Weight packing", "Capacity and speed limits to design against".
"""
from __future__ import annotations

__all__ = ["I2_CODE", "I2_DECODE", "T3_MAX", "T3_TRITS_PER_BYTE", "T3_DECODE", "T3_ENTRY_BITS",
           "t3_byte_trits", "t3_byte_value", "t3_decode_rom", "t3_word_bytes", "t3_word_bits",
           "pack_t3_word", "unpack_t3_word", "t3_word_to_i2"]

#: trit -> 2-bit I2 code.
I2_CODE = {0: 0b00, 1: 0b01, -1: 0b11}
#: 2-bit I2 code -> trit (0b10 is absent: invalid).
I2_DECODE = {0b00: 0, 0b01: 1, 0b11: -1}

#: Largest valid T3 byte, 3**5 - 1.
T3_MAX = 3 ** 5 - 1
#: Trits a T3 byte.
T3_TRITS_PER_BYTE = 5
#: Bits of a T3 decode table entry: five (nz, neg) pairs.
T3_ENTRY_BITS = 2 * T3_TRITS_PER_BYTE


def t3_byte_trits(v: int) -> tuple[int, ...]:
    """The five trits of a T3 byte ``v`` (0..242), digit 0 first: ``t_d = (v // 3**d) % 3 - 1``.

    Raises
    ------
    ValueError if ``v`` is not an integer in 0..242.
    """
    if not isinstance(v, int) or not 0 <= v <= T3_MAX:
        raise ValueError(f"invalid T3 byte {v!r} (must be 0..{T3_MAX})")
    out = []
    for _ in range(T3_TRITS_PER_BYTE):
        out.append(v % 3 - 1)
        v //= 3
    return tuple(out)


def t3_byte_value(trits) -> int:
    """The T3 byte of five trits (digit 0 first): ``sum_d (t_d + 1) * 3**d``, 0..242.

    Raises
    ------
    ValueError if there are not five values or one is not a trit.
    """
    trits = list(trits)
    if len(trits) != T3_TRITS_PER_BYTE:
        raise ValueError(f"a T3 byte holds {T3_TRITS_PER_BYTE} trits, not {len(trits)}")
    v = 0
    for d, t in enumerate(trits):
        if int(t) not in I2_CODE:
            raise ValueError(f"value {t!r} at position {d} is not a trit (-1, 0 or +1)")
        v += (int(t) + 1) * 3 ** d
    return v


def _i2_code(trits) -> int:
    return sum(I2_CODE[t] << (2 * d) for d, t in enumerate(trits))


#: The T3 decoder, one entry a valid byte (243): entry v = the I2 code of t3_byte_trits(v),
#: trit d at bits [2d+1:2d] (bit 2d nz, bit 2d+1 neg); 10 bits an entry.
T3_DECODE = tuple(_i2_code(t3_byte_trits(v)) for v in range(T3_MAX + 1))


def t3_decode_rom(depth: int = 256) -> list[int]:
    """The RTL's T3 decode ROM: :data:`T3_DECODE` padded with 0 (five zero trits) to ``depth``
    entries of :data:`T3_ENTRY_BITS` bits, addressed by the byte.

    Raises
    ------
    ValueError if ``depth`` < 243.
    """
    if depth < len(T3_DECODE):
        raise ValueError(f"a T3 decode ROM needs at least {len(T3_DECODE)} entries, not {depth!r}")
    return list(T3_DECODE) + [0] * (depth - len(T3_DECODE))


def t3_word_bytes(lanes: int) -> int:
    """Bytes of a T3 lane-tiled word of ``lanes`` trits: ``lanes / 5``.

    Raises
    ------
    ValueError if ``lanes`` is not a positive multiple of 5.
    """
    if not isinstance(lanes, int) or lanes < T3_TRITS_PER_BYTE or lanes % T3_TRITS_PER_BYTE:
        raise ValueError(f"T3 lanes must be a positive multiple of 5 (5 trits a byte), "
                         f"not {lanes!r}")
    return lanes // T3_TRITS_PER_BYTE


def t3_word_bits(lanes: int) -> int:
    """Bits of a T3 lane-tiled word of ``lanes`` trits: ``8 * lanes / 5`` (40 lanes: 64)."""
    return 8 * t3_word_bytes(lanes)


def pack_t3_word(trits) -> int:
    """Pack ``lanes`` trits (a multiple of 5) into one T3 word: lane ``l`` is digit ``l % 5``
    of byte ``l // 5``, byte ``b`` at bits ``[8b+7:8b]``.

    Raises
    ------
    ValueError if the count is not a positive multiple of 5 or a value is not a trit.
    """
    trits = list(trits)
    nbytes = t3_word_bytes(len(trits))
    word = 0
    for b in range(nbytes):
        group = trits[5 * b:5 * b + 5]
        try:
            word |= t3_byte_value(group) << (8 * b)
        except ValueError as exc:
            raise ValueError(f"lanes {5 * b}..{5 * b + 4}: {exc}") from None
    return word


def unpack_t3_word(word: int, lanes: int) -> list[int]:
    """Unpack the ``lanes`` trits of a T3 word (lane ``l`` = digit ``l % 5`` of byte ``l // 5``).

    Raises
    ------
    ValueError if ``lanes`` is not a positive multiple of 5, the word does not fit
    ``8 * lanes / 5`` bits, or a byte exceeds 242 (the message names the byte).
    """
    nbytes = t3_word_bytes(lanes)
    if not 0 <= word < 1 << (8 * nbytes):
        raise ValueError(f"T3 word {word:#x} does not fit {8 * nbytes} bits")
    out = []
    for b in range(nbytes):
        v = (word >> (8 * b)) & 0xFF
        if v > T3_MAX:
            raise ValueError(f"invalid T3 byte {v} at byte {b} of word {word:#x} "
                             f"(must be <= {T3_MAX})")
        out.extend(t3_byte_trits(v))
    return out


def t3_word_to_i2(word: int, lanes: int) -> int:
    """The T3 decoder on a word, as the RTL computes it: each byte through
    :func:`t3_decode_rom` (invalid bytes give zero trits), the entries concatenated in byte
    order; the result is the ``2 * lanes``-bit I2 word of the same trits.

    Raises
    ------
    ValueError if ``lanes`` is not a positive multiple of 5 or the word is too wide.
    """
    nbytes = t3_word_bytes(lanes)
    if not 0 <= word < 1 << (8 * nbytes):
        raise ValueError(f"T3 word {word:#x} does not fit {8 * nbytes} bits")
    rom = t3_decode_rom()
    return sum(rom[(word >> (8 * b)) & 0xFF] << (T3_ENTRY_BITS * b) for b in range(nbytes))
