"""Packed trit formats: I2 (2 bits a trit, the hardware's native format) and T3 (5 trits a byte).

I2: a trit is two bits, two's complement: ``00 = 0``, ``01 = +1``, ``11 = -1``; ``10`` is
invalid. Bit 0 is *nonzero*, bit 1 is *negate*, so the decoder is two wires. Trit ``j`` of a
word sits at bits ``[2j+1:2j]`` (little-endian inside the word); words are little-endian in
a byte stream.

T3: five trits a byte, ``value = sum_i (t_i + 1) * 3**i`` (0..242), 1.6 bits a trit.

Lane-tiled words (what the PackedWeightStreamer reads): :func:`tile_lanes` (I2, ``2 * lanes``
bits a word) and :func:`tile_lanes_t3` (T3, ``8 * lanes / 5`` bits a word). The word-level
codes, the T3 decode table the RTL ROM is built from (:data:`T3_DECODE`,
:func:`t3_decode_rom`) and the T3 word layout are defined torch-free in
:mod:`golden.tritcode` and re-exported here.

Source: ../shared/DESIGN.md "Weight packing"; the I2 code is BitNet's 2-bit layout with the
sign as the high bit.
"""
from __future__ import annotations

import torch

from .numerics import check_ternary
from .tritcode import (I2_CODE, I2_DECODE, T3_DECODE, T3_ENTRY_BITS, T3_MAX,  # noqa: F401
                       T3_TRITS_PER_BYTE, pack_t3_word, t3_byte_trits, t3_byte_value,
                       t3_decode_rom, t3_word_bits, t3_word_bytes, t3_word_to_i2,
                       unpack_t3_word)

__all__ = ["I2_CODE", "pack_i2_word", "unpack_i2_word", "pack_i2", "unpack_i2",
           "pack_t3", "unpack_t3", "tile_lanes", "tile_lanes_t3", "embedding_words",
           "T3_MAX", "T3_TRITS_PER_BYTE", "T3_DECODE", "T3_ENTRY_BITS", "t3_byte_trits",
           "t3_byte_value", "t3_decode_rom", "t3_word_bytes", "t3_word_bits", "pack_t3_word",
           "unpack_t3_word", "t3_word_to_i2"]

_I2_DECODE = I2_DECODE


def pack_i2_word(trits) -> int:
    """Pack a sequence of trits into one integer word of ``2 * len(trits)`` bits (trit j at
    bits [2j+1:2j]).

    Raises
    ------
    ValueError if a value is not a trit.
    """
    word = 0
    for j, t in enumerate(trits):
        t = int(t)
        if t not in I2_CODE:
            raise ValueError(f"value {t!r} at position {j} is not a trit (-1, 0 or +1)")
        word |= I2_CODE[t] << (2 * j)
    return word


def unpack_i2_word(word: int, n: int) -> list[int]:
    """Unpack ``n`` trits from an I2 word.

    Raises
    ------
    ValueError on the invalid code ``10``, naming the trit position.
    """
    out = []
    for j in range(n):
        code = (word >> (2 * j)) & 0b11
        if code not in _I2_DECODE:
            raise ValueError(f"invalid I2 code 0b10 at trit {j} of word {word:#x}")
        out.append(_I2_DECODE[code])
    return out


def pack_i2(t: torch.Tensor) -> bytes:
    """Pack a flat trit tensor into bytes (4 trits a byte, trit 0 in bits [1:0]).

    The length is padded with zero trits to a multiple of 4.

    Raises
    ------
    ValueError if a value is not a trit.
    """
    t = check_ternary(t.flatten(), "trit tensor").to(torch.int64)
    pad = (-t.numel()) % 4
    if pad:
        t = torch.cat([t, torch.zeros(pad, dtype=torch.int64)])
    codes = torch.where(t < 0, 3, t).view(-1, 4)  # -1 -> 0b11, 0 -> 0b00, 1 -> 0b01
    b = codes[:, 0] | (codes[:, 1] << 2) | (codes[:, 2] << 4) | (codes[:, 3] << 6)
    return bytes(b.to(torch.uint8).tolist())


def unpack_i2(data: bytes, n: int) -> torch.Tensor:
    """Unpack ``n`` trits from I2 bytes; returns an int8 tensor of shape (n,).

    Raises
    ------
    ValueError if ``data`` is too short or holds the invalid code ``10``.
    """
    if len(data) * 4 < n:
        raise ValueError(f"I2 data holds {len(data) * 4} trits, fewer than the {n} expected")
    b = torch.tensor(list(data[: (n + 3) // 4]), dtype=torch.int64)
    codes = torch.stack([(b >> (2 * j)) & 3 for j in range(4)], dim=1).flatten()[:n]
    if bool((codes == 2).any()):
        pos = int(torch.nonzero(codes == 2)[0])
        raise ValueError(f"invalid I2 code 0b10 at trit {pos}")
    return torch.where(codes == 3, -1, codes).to(torch.int8)


def pack_t3(t: torch.Tensor) -> bytes:
    """Pack a flat trit tensor densely, 5 trits a byte: ``sum_i (t_i + 1) * 3**i``.

    Padded with zero trits to a multiple of 5.
    """
    t = check_ternary(t.flatten(), "trit tensor").to(torch.int64) + 1
    pad = (-t.numel()) % 5
    if pad:
        t = torch.cat([t, torch.ones(pad, dtype=torch.int64)])
    t = t.view(-1, 5)
    w = torch.tensor([1, 3, 9, 27, 81], dtype=torch.int64)
    return bytes((t * w).sum(dim=1).to(torch.uint8).tolist())


def unpack_t3(data: bytes, n: int) -> torch.Tensor:
    """Unpack ``n`` trits from T3 bytes; returns int8 (n,).

    Raises
    ------
    ValueError if a byte exceeds 242 or ``data`` is too short.
    """
    if len(data) * 5 < n:
        raise ValueError(f"T3 data holds {len(data) * 5} trits, fewer than the {n} expected")
    b = torch.tensor(list(data[: (n + 4) // 5]), dtype=torch.int64)
    if bool((b > 242).any()):
        pos = int(torch.nonzero(b > 242)[0])
        raise ValueError(f"invalid T3 byte {int(b[pos])} at byte {pos} (must be <= 242)")
    digits = []
    for _ in range(5):
        digits.append(b % 3)
        b = b // 3
    return (torch.stack(digits, dim=1).flatten()[:n] - 1).to(torch.int8)


def tile_lanes(t: torch.Tensor, lanes: int) -> list[int]:
    """Lay out an (N, K) trit matrix as the engine streams it: lane-tiled I2 words.

    Rows are padded with zero trits to a multiple of ``lanes``. Word ``jt * K + i`` holds the
    trits ``t[jt*lanes + l, i]`` for ``l < lanes``, trit ``l`` at bits [2l+1:2l], so each word
    is ``2 * lanes`` bits and feeds every lane for one input ``i``.

    Returns
    -------
    list of ``ceil(N / lanes) * K`` ints, each ``< 2**(2*lanes)``.
    """
    t = check_ternary(t, "weight matrix")
    n, k = t.shape
    tiles = -(-n // lanes)
    pad = tiles * lanes - n
    if pad:
        t = torch.cat([t, torch.zeros(pad, k, dtype=torch.int8)])
    codes = torch.where(t < 0, 3, t).to(torch.int64)  # (tiles*lanes, K)
    codes = codes.view(tiles, lanes, k)
    words = []
    for jt in range(tiles):
        for i in range(k):
            w = 0
            for l, c in enumerate(codes[jt, :, i].tolist()):
                w |= c << (2 * l)
            words.append(w)
    return words


def tile_lanes_t3(t: torch.Tensor, lanes: int) -> list[int]:
    """Lay out an (N, K) trit matrix as the engine streams it in T3: lane-tiled T3 words.

    The same tiling as :func:`tile_lanes`, in T3 words: rows are padded with zero trits to a
    multiple of ``lanes``; word ``jt * K + i`` carries the trits ``t[jt*lanes + l, i]`` for
    ``l < lanes``, lane ``l`` as digit ``l % 5`` of byte ``l // 5`` (``byte b = sum_d
    (t[jt*lanes + 5b + d, i] + 1) * 3**d``), byte ``b`` at bits ``[8b+7:8b]``. A word is
    ``B = lanes / 5`` bytes (``8 * lanes / 5`` bits) and feeds every lane for one input ``i``;
    its bytes are :func:`pack_t3` of that lane column. 40 lanes: 64-bit words.

    Returns
    -------
    list of ``ceil(N / lanes) * K`` ints, each ``< 2**(8*lanes/5)``, every byte <= 242.

    Raises
    ------
    ValueError if ``lanes`` is not a positive multiple of 5 or a value is not a trit.
    """
    nbytes = t3_word_bytes(lanes)
    t = check_ternary(t, "weight matrix")
    n, k = t.shape
    tiles = -(-n // lanes)
    pad = tiles * lanes - n
    if pad:
        t = torch.cat([t, torch.zeros(pad, k, dtype=torch.int8)])
    d = (t.to(torch.int64) + 1).view(tiles, nbytes, T3_TRITS_PER_BYTE, k)
    pw = torch.tensor([3 ** j for j in range(T3_TRITS_PER_BYTE)], dtype=torch.int64)
    byts = (d * pw.view(1, 1, -1, 1)).sum(dim=2)                 # (tiles, B, K), 0..242
    # Python ints: a word may be up to 128 bits, wider than int64.
    words = []
    for jt in range(tiles):
        cols = byts[jt].T.tolist()                                # K lists of B bytes
        words.extend(int.from_bytes(bytes(c), "little") for c in cols)
    return words


def embedding_words(table: torch.Tensor, lanes: int) -> tuple[list[int], int]:
    """Lay out an int8 table (V, d) (e.g. an embedding) as raw bytes in weight words.

    Each row starts on a word boundary and takes ``k = ceil(d / (2*lanes/8))`` words of
    ``2 * lanes`` bits; byte i of a word sits at bits [8i+7:8i] (two's complement int8).
    This is the layout the EMBED instruction reads (golden/isa.py).

    Returns
    -------
    (words, k) : the ``V * k`` words, and the words a row.

    Raises
    ------
    ValueError if a value is outside [-128, 127] or ``lanes`` is not a multiple of 4.
    """
    if lanes % 4:
        raise ValueError(f"lanes must be a multiple of 4 for byte-aligned words, not {lanes!r}")
    t = table.to(torch.int64)
    if bool(((t < -128) | (t > 127)).any()):
        raise ValueError("embedding table values must fit int8 [-128, 127]")
    v, d = t.shape
    bpw = 2 * lanes // 8
    k = -(-d // bpw)
    words = []
    for row in (t & 0xFF).tolist():
        row = row + [0] * (k * bpw - d)
        for w in range(k):
            words.append(int.from_bytes(bytes(row[w * bpw:(w + 1) * bpw]), "little"))
    return words, k
