"""The ternac weight image: a versioned, CRC-checked binary of lane-tiled packed trits.

The compiler writes one image a model; the host loads it into the accelerator's weight
memory word for word, and the interpreter and the RTL read the same words. The loader
checks every field before it trusts any of it.

File layout (all integers little-endian)
-----------------------------------------
Header, :data:`HEADER_BYTES` = 20 bytes (``struct`` format :data:`HEADER_FMT`)::

    offset size field
    0      4    magic          b"TNAC"
    4      2    version        u16, :data:`VERSION` (= 1)
    6      1    format         u8, :class:`Format` (0 = I2 lane-tiled; 1 = T3 lane-tiled)
    7      1    lanes          u8, L: I2 a multiple of 4 from 4 to 128; T3 a multiple of 5
                                   from 5 to 80
    8      2    word_bits      u16, bits of a weight word, must be 2 * L (I2) or 8 * L / 5
                                   (T3)
    10     2    n_tensors      u16
    12     4    n_words        u32, payload length in words
    16     4    reserved       u32, must be 0

Tensor table, ``n_tensors`` entries of :data:`TENSOR_BYTES` = 64 bytes
(``struct`` format :data:`TENSOR_FMT`), in execution order::

    0      32   name           UTF-8, NUL-padded
    32     4    n              u32, rows N (outputs)
    36     4    k              u32, columns K (fan-in)
    40     4    offset         u32, first payload word of the tensor
    44     4    count          u32, payload words, must be ceil(N / L) * K
    48     4    gamma          f32, absmean scale of the float weights (informational)
    52     4    m              u32, dyadic multiplier of the layer's requantization (< 2**16)
    56     1    s              u8, dyadic shift (<= golden.numerics.S_MAX)
    57     1    flags          u8, golden.isa.Flag bits of the layer's MATVEC (RELU, RAW)
    58     6    reserved       must be 0

Payload, ``n_words`` words of ``word_bits / 8`` bytes, each little-endian. Format 0: the
lane-tiled I2 layout of :func:`golden.packing.tile_lanes` (word ``offset + jt * K + i`` holds
trit ``t[jt*L + l, i]`` at bits ``[2l+1:2l]``). Format 1: the lane-tiled T3 layout of
:func:`golden.packing.tile_lanes_t3` (the same words, each of ``L / 5`` bytes: lane ``l`` is
digit ``l % 5`` of byte ``l // 5``, ``byte = sum_d (t_d + 1) * 3**d <= 242``). Tensors do not
overlap; rows past N in the last tile are zero trits.

Trailer, 4 bytes: ``zlib.crc32`` of every byte before it, u32.

Both formats share the header, the tensor table (offsets and counts in words of the
image's format) and the CRC; ``count = ceil(N / L) * K`` in both.

Source: ../shared/DESIGN.md "Weight packing"; CRC-32 of ISO-HDLC (zlib), as in PNG and zip.
"""
from __future__ import annotations

import dataclasses
import enum
import math
import os
import struct
import zlib

import torch

from .errors import ImageError
from .fileio import atomic_write
from .isa import Flag
from .numerics import M_BITS, S_MAX
from .packing import T3_MAX, tile_lanes, tile_lanes_t3, unpack_i2, unpack_t3

__all__ = ["MAGIC", "VERSION", "HEADER_FMT", "HEADER_BYTES", "TENSOR_FMT", "TENSOR_BYTES",
           "NAME_BYTES", "CRC_BYTES", "Format", "ImageError", "TensorEntry", "WeightImage",
           "encode_image", "decode_image", "write_image", "read_image", "words_to_trits",
           "untile_lanes", "image_from_layers", "format_word_bits", "lanes_error"]

MAGIC = b"TNAC"
VERSION = 1
HEADER_FMT = "<4sHBBHHII"
HEADER_BYTES = struct.calcsize(HEADER_FMT)
NAME_BYTES = 32
TENSOR_FMT = f"<{NAME_BYTES}sIIIIfIBB6s"
TENSOR_BYTES = struct.calcsize(TENSOR_FMT)
CRC_BYTES = 4
assert HEADER_BYTES == 20 and TENSOR_BYTES == 64


class Format(enum.IntEnum):
    """Payload format of a weight image (u8)."""
    I2_TILED = 0   # 2 bits a trit, lane-tiled words of 2 * lanes bits (golden.packing.tile_lanes)
    T3 = 1         # 5 trits a byte, lane-tiled words of 8 * lanes / 5 bits (tile_lanes_t3)


def lanes_error(fmt: Format, lanes: int) -> str | None:
    """Why ``lanes`` is not valid for payload format ``fmt``, or None if it is.

    I2: a multiple of 4 from 4 to 128 (words of 8 to 256 bits); T3: a multiple of 5 from 5 to
    80 (words of 1 to 16 bytes, 8 to 128 bits).
    """
    if Format(fmt) == Format.T3:
        if not (5 <= lanes <= 80 and lanes % 5 == 0):
            return f"T3 weight image lanes must be a multiple of 5 from 5 to 80, not {lanes}"
        return None
    if not (4 <= lanes <= 128 and lanes % 4 == 0):
        return f"weight image lanes must be a multiple of 4 from 4 to 128, not {lanes}"
    return None


def format_word_bits(fmt: Format, lanes: int) -> int:
    """Bits of a weight word: ``2 * lanes`` (I2) or ``8 * lanes / 5`` (T3)."""
    return 8 * lanes // 5 if Format(fmt) == Format.T3 else 2 * lanes




@dataclasses.dataclass(frozen=True)
class TensorEntry:
    """One row of the tensor table: a BitLinear layer's weights and requantization.

    ``offset`` and ``count`` are in payload words; ``count = ceil(n / lanes) * k``.
    """
    name: str
    n: int
    k: int
    offset: int
    count: int
    gamma: float = 1.0
    m: int = 0
    s: int = 0
    flags: int = 0


@dataclasses.dataclass
class WeightImage:
    """A decoded weight image.

    Attributes
    ----------
    lanes : int
        L; every word is :attr:`word_bits` bits (``2 * L`` for I2, ``8 * L / 5`` for T3).
    tensors : list[TensorEntry]
        In execution order.
    words : list[int]
        The payload, each ``0 <= w < 2**(2*L)``; loaded at weight-memory address 0.
    format : Format
        :attr:`Format.I2_TILED` (default) or :attr:`Format.T3`.
    """
    lanes: int
    tensors: list[TensorEntry]
    words: list[int]
    format: Format = Format.I2_TILED

    @property
    def word_bits(self) -> int:
        return format_word_bits(self.format, self.lanes)

    def trits(self, index: int | str) -> torch.Tensor:
        """The (N, K) int8 trits of a tensor, by position or name, decoded from the payload."""
        e = self.tensor(index)
        return untile_lanes(self.words[e.offset:e.offset + e.count], e.n, e.k, self.lanes,
                            self.format)

    def tensor(self, index: int | str) -> TensorEntry:
        if isinstance(index, str):
            for e in self.tensors:
                if e.name == index:
                    return e
            raise KeyError(f"no tensor named {index!r} in the weight image")
        return self.tensors[index]


def words_to_trits(words: list[int], lanes: int,
                   fmt: Format = Format.I2_TILED) -> torch.Tensor:
    """Decode lane-tiled words into a (len(words), lanes) int8 trit tensor.

    I2 (default): words of ``2 * lanes`` bits, :func:`golden.packing.unpack_i2` on their
    little-endian bytes (trit ``l`` of a word at bits ``[2l+1:2l]``). T3: words of
    ``8 * lanes / 5`` bits, :func:`golden.packing.unpack_t3` on their bytes (lane ``l`` =
    digit ``l % 5`` of byte ``l // 5``).

    Raises
    ------
    ValueError on a word that does not fit its width, an I2 word holding the invalid code
    0b10 (the message names the word and the lane), or a T3 byte above 242 (the message
    names the word and the byte).
    """
    bits = format_word_bits(fmt, lanes)
    nbytes = bits // 8
    try:
        data = b"".join(int(w).to_bytes(nbytes, "little") for w in words)
    except OverflowError:
        bad = next(i for i, w in enumerate(words) if not 0 <= int(w) < (1 << bits))
        raise ValueError(f"weight word {bad} ({int(words[bad]):#x}) does not fit "
                         f"{bits} bits") from None
    if Format(fmt) == Format.T3:
        if any(b > T3_MAX for b in data):
            pos = next(i for i, b in enumerate(data) if b > T3_MAX)
            raise ValueError(f"invalid T3 byte {data[pos]} (must be <= {T3_MAX}) in weight "
                             f"word {pos // nbytes}, byte {pos % nbytes}")
        return unpack_t3(data, len(words) * lanes).view(len(words), lanes)
    try:
        t = unpack_i2(data, len(words) * lanes)
    except ValueError:
        codes = torch.tensor(list(data), dtype=torch.int64)
        codes = torch.stack([(codes >> (2 * j)) & 3 for j in range(4)], dim=1).flatten()
        pos = int(torch.nonzero(codes == 2)[0])
        raise ValueError(f"invalid I2 code 0b10 in weight word {pos // lanes}, "
                         f"lane {pos % lanes}") from None
    return t.view(len(words), lanes)


def untile_lanes(words: list[int], n: int, k: int, lanes: int,
                 fmt: Format = Format.I2_TILED) -> torch.Tensor:
    """Inverse of :func:`golden.packing.tile_lanes` (I2, default) and
    :func:`golden.packing.tile_lanes_t3` (``fmt=Format.T3``): lane-tiled words -> (N, K) int8
    trits.

    Raises
    ------
    ValueError if ``len(words) != ceil(n / lanes) * k``, on an invalid code (I2 0b10, T3 byte
    > 242), or if a padding row (``>= n`` in the last tile) holds a nonzero trit.
    """
    tiles = -(-n // lanes)
    if len(words) != tiles * k:
        raise ValueError(f"a {n}x{k} tensor at {lanes} lanes takes {tiles * k} words, "
                         f"not {len(words)}")
    t = words_to_trits(words, lanes, fmt).view(tiles, k, lanes).permute(0, 2, 1)
    t = t.reshape(tiles * lanes, k)
    if bool(t[n:].any()):
        row, col = (int(v) for v in torch.nonzero(t[n:])[0])
        raise ValueError(f"padding row {n + row} (the tensor has {n} rows) holds a nonzero "
                         f"trit at column {col}")
    return t[:n].contiguous()


# ----------------------------------------------------------------------------- encoding

def _check_image(img: WeightImage) -> None:
    """Structural checks shared by the writer and the reader; raises ImageError."""
    if img.format not in Format.__members__.values():
        raise ImageError(f"unknown weight image format {img.format!r}; known formats are "
                         f"0 (I2 lane-tiled) and 1 (T3 lane-tiled)")
    err = lanes_error(img.format, img.lanes)
    if err:
        raise ImageError(err)
    n_words = len(img.words)
    spans = []
    for i, e in enumerate(img.tensors):
        what = f"tensor {i} ({e.name!r})"
        if len(e.name.encode("utf-8")) > NAME_BYTES:
            raise ImageError(f"{what} has a name longer than {NAME_BYTES} bytes")
        if e.n < 1 or e.k < 1:
            raise ImageError(f"{what} has shape {e.n}x{e.k}; both sizes must be at least 1")
        need = -(-e.n // img.lanes) * e.k
        if e.count != need:
            raise ImageError(f"{what} is {e.n}x{e.k} and needs {need} words at {img.lanes} "
                             f"lanes, but its table entry says {e.count}")
        if e.offset + e.count > n_words:
            raise ImageError(f"{what} spans words {e.offset}..{e.offset + e.count - 1}, past "
                             f"the end of the {n_words}-word payload")
        if not (0 <= e.m < (1 << M_BITS)) or not (0 <= e.s <= S_MAX):
            raise ImageError(f"{what} has requantization m={e.m}, s={e.s}, outside "
                             f"m < 2**{M_BITS}, s <= {S_MAX}")
        if e.flags & ~int(Flag.RELU | Flag.RAW):
            raise ImageError(f"{what} has unknown flag bits {e.flags:#x}")
        if not math.isfinite(e.gamma):
            raise ImageError(f"{what} has a non-finite gamma {e.gamma!r}")
        spans.append((e.offset, e.offset + e.count, what))
    spans.sort()
    for (a0, a1, wa), (b0, b1, wb) in zip(spans, spans[1:]):
        if b0 < a1:
            raise ImageError(f"{wa} and {wb} overlap in the payload (words {b0}..{a1 - 1})")


def encode_image(img: WeightImage) -> bytes:
    """Serialize a :class:`WeightImage` to bytes (header, table, payload, CRC32).

    Raises
    ------
    ImageError if the image is not consistent (see :func:`read_image` for the checks) or a
    word does not fit :attr:`WeightImage.word_bits` bits, holds the invalid I2 code 0b10 or
    a T3 byte above 242.
    """
    _check_image(img)
    try:
        for e in img.tensors:
            untile_lanes(img.words[e.offset:e.offset + e.count], e.n, e.k, img.lanes,
                         img.format)
        words_to_trits(img.words, img.lanes, img.format)
    except ValueError as exc:
        raise ImageError(f"cannot encode the weight image: {exc}") from None
    out = bytearray(struct.pack(HEADER_FMT, MAGIC, VERSION, int(img.format), img.lanes,
                                img.word_bits, len(img.tensors), len(img.words), 0))
    for e in img.tensors:
        out += struct.pack(TENSOR_FMT, e.name.encode("utf-8"), e.n, e.k, e.offset, e.count,
                           e.gamma, e.m, e.s, e.flags, bytes(6))
    nbytes = img.word_bits // 8
    out += b"".join(w.to_bytes(nbytes, "little") for w in img.words)
    out += struct.pack("<I", zlib.crc32(out))
    return bytes(out)


def decode_image(data: bytes, source: str = "weight image") -> WeightImage:
    """Parse and check the bytes of a weight image; see :func:`read_image`."""
    def fail(msg: str):
        raise ImageError(f"{source}: {msg}")

    size = len(data)
    if size < HEADER_BYTES:
        fail(f"truncated: {size} bytes, shorter than the {HEADER_BYTES}-byte header")
    magic, version, fmt, lanes, word_bits, n_tensors, n_words, rsvd = struct.unpack_from(
        HEADER_FMT, data, 0)
    if magic != MAGIC:
        fail(f"bad magic {magic!r}, expected {MAGIC!r}; this is not a ternac weight image")
    if version != VERSION:
        fail(f"unsupported version {version}; this loader reads version {VERSION}")
    if fmt not in Format.__members__.values():
        fail(f"unknown payload format {fmt}; known formats are 0 (I2 lane-tiled) and 1 (T3)")
    fmt = Format(fmt)
    if fmt == Format.T3:
        if not (5 <= lanes <= 80 and lanes % 5 == 0):
            fail(f"lanes {lanes} is not a multiple of 5 from 5 to 80, as a T3 image needs")
        if word_bits != format_word_bits(fmt, lanes):
            fail(f"word_bits {word_bits} does not match 8 * lanes / 5 = "
                 f"{format_word_bits(fmt, lanes)} of a T3 image")
    else:
        if not (4 <= lanes <= 128 and lanes % 4 == 0):
            fail(f"lanes {lanes} is not a multiple of 4 from 4 to 128")
        if word_bits != 2 * lanes:
            fail(f"word_bits {word_bits} does not match 2 * lanes = {2 * lanes}")
    if rsvd != 0:
        fail(f"reserved header field is {rsvd:#x}, not 0")
    nbytes = word_bits // 8
    expect = HEADER_BYTES + n_tensors * TENSOR_BYTES + n_words * nbytes + CRC_BYTES
    if size < expect:
        fail(f"truncated: {size} bytes, but the header describes {expect}")
    if size > expect:
        fail(f"{size - expect} unexpected bytes after the end ({expect} bytes expected)")
    (crc_got,) = struct.unpack_from("<I", data, size - CRC_BYTES)
    crc_exp = zlib.crc32(data[:size - CRC_BYTES])
    if crc_got != crc_exp:
        fail(f"CRC mismatch: the file says {crc_got:#010x} but its contents give "
             f"{crc_exp:#010x}, so it is corrupt")
    tensors = []
    pos = HEADER_BYTES
    for i in range(n_tensors):
        (name, n, k, offset, count, gamma, m, s, flags,
         trsvd) = struct.unpack_from(TENSOR_FMT, data, pos)
        pos += TENSOR_BYTES
        if any(trsvd):
            fail(f"tensor {i} has nonzero reserved bytes")
        try:
            name = name.rstrip(b"\0").decode("utf-8")
        except UnicodeDecodeError:
            fail(f"tensor {i} has a name that is not UTF-8")
        tensors.append(TensorEntry(name, n, k, offset, count, gamma, m, s, flags))
    payload = data[pos:size - CRC_BYTES]
    words = [int.from_bytes(payload[j:j + nbytes], "little")
             for j in range(0, len(payload), nbytes)]
    img = WeightImage(lanes=lanes, tensors=tensors, words=words, format=fmt)
    try:
        _check_image(img)
    except ImageError as exc:
        fail(str(exc))
    try:
        words_to_trits(words, lanes, fmt)
        for e in tensors:
            untile_lanes(words[e.offset:e.offset + e.count], e.n, e.k, lanes, fmt)
    except ValueError as exc:
        fail(str(exc))
    return img


def read_image(path: str | os.PathLike) -> WeightImage:
    """Read and check a weight image file.

    Checks, in order: the file exists, is a regular file (not a device or FIFO, checked
    before it is opened) and is readable; the header is complete; magic, version, format,
    lanes and word width; the file length against the header; the CRC32;
    every tensor's word count against its shape and its span within the payload (no
    overlap); m, s and flags ranges; every payload word decodes (no I2 code 0b10, no T3 byte
    above 242) and padding rows are zero.

    Returns
    -------
    WeightImage

    Raises
    ------
    ImageError (a ValueError) with one sentence naming the file and the first failed check.
    """
    import stat
    try:
        # Before open(): a FIFO blocks in open, a device (/dev/zero) reads for ever.
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
            raise ImageError(f"weight image {os.fspath(path)} is not a file (a device, FIFO "
                             f"or socket)")
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(f"weight image {os.fspath(path)} does not exist") from None
    except IsADirectoryError:
        raise ImageError(f"weight image {os.fspath(path)} is a directory, not a file") from None
    except OSError as exc:
        raise ImageError(f"weight image {os.fspath(path)} cannot be read: "
                         f"{exc.strerror or exc}") from None
    return decode_image(data, f"weight image {os.fspath(path)}")


def write_image(img: WeightImage, path: str | os.PathLike) -> None:
    """Write a weight image atomically (:func:`golden.fileio.atomic_write`: a temporary
    file in the same folder, then a rename).

    An existing file at ``path`` is replaced only once the new image is complete; on any
    error it is left as it was.

    Raises
    ------
    ImageError if the image is not consistent; OSError if the folder is not writable.
    """
    atomic_write(path, encode_image(img))


def image_from_layers(layers, lanes: int, names=None,
                      fmt: Format = Format.I2_TILED) -> WeightImage:
    """Build a :class:`WeightImage` from BitLinear layers laid out back to back.

    Parameters
    ----------
    layers : sequence of objects with ``trits`` ((N, K) int8), ``m``, ``s``, ``relu``,
        ``raw`` and optionally ``gamma`` (e.g. ``golden.mlp.IntBitLinear``)
    lanes : int
    names : optional sequence of tensor names (default ``layer{i}``)
    fmt : Format
        :attr:`Format.I2_TILED` (default, :func:`golden.packing.tile_lanes`) or
        :attr:`Format.T3` (:func:`golden.packing.tile_lanes_t3`, lanes a multiple of 5).

    Raises
    ------
    ValueError if a weight is not ternary, or ``lanes`` does not suit the format (from the
    tiling functions).
    """
    fmt = Format(fmt)
    tile = tile_lanes_t3 if fmt == Format.T3 else tile_lanes
    tensors, words = [], []
    for i, layer in enumerate(layers):
        t = layer.trits
        n, k = (int(v) for v in t.shape)
        w = tile(t, lanes)
        flags = (Flag.RELU if layer.relu else 0) | (Flag.RAW if layer.raw else 0)
        name = names[i] if names is not None else f"layer{i}"
        # gamma is stored as float32; round it here so a read-back image compares equal.
        gamma = struct.unpack("<f", struct.pack("<f", float(getattr(layer, "gamma", 1.0))))[0]
        tensors.append(TensorEntry(name, n, k, len(words), len(w), gamma, int(layer.m),
                                   int(layer.s), int(flags)))
        words.extend(w)
    return WeightImage(lanes=lanes, tensors=tensors, words=words, format=fmt)

