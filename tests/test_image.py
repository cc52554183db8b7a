"""golden.image: the weight image format round-trips and its loader rejects every corruption,
for both payload formats (0 = I2 lane-tiled, 1 = T3 lane-tiled)."""
from __future__ import annotations

import os
import struct
import zlib

import pytest
import torch

from ternac.golden.image import (CRC_BYTES, HEADER_BYTES, HEADER_FMT, MAGIC, TENSOR_BYTES, VERSION,
                          Format, ImageError, TensorEntry, WeightImage, decode_image,
                          encode_image, format_word_bits, image_from_layers, read_image,
                          untile_lanes, words_to_trits, write_image)
from ternac.golden.isa import Flag
from ternac.golden.packing import tile_lanes, tile_lanes_t3

I2, T3 = Format.I2_TILED, Format.T3
#: (format, lanes) of the round trips: every I2 and T3 word width from the smallest to the
#: largest the header allows.
SHAPES = [(I2, 4), (I2, 8), (I2, 12), (I2, 32), (I2, 64),
          (T3, 5), (T3, 10), (T3, 20), (T3, 40), (T3, 80)]
#: the small lane count of each format used by the corruption tests (13-row tensor: padding)
SMALL = {I2: 8, T3: 10}
FORMATS = [I2, T3]


class _Layer:
    def __init__(self, trits, m=0, s=0, relu=False, raw=False, gamma=1.0):
        self.trits, self.m, self.s, self.relu, self.raw, self.gamma = trits, m, s, relu, raw, gamma


def _trits(n, k, seed):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-1, 2, (n, k), generator=g).to(torch.int8)


def _image(lanes=8, fmt=I2):
    layers = [_Layer(_trits(13, 7, 1), m=300, s=14, relu=True, gamma=0.0421),
              _Layer(_trits(5, 13, 2), raw=True, gamma=0.5)]
    return image_from_layers(layers, lanes, names=["hidden", "logits"], fmt=fmt), layers


def _payload(img):
    """Byte offset of the payload and bytes a word."""
    return HEADER_BYTES + len(img.tensors) * TENSOR_BYTES, img.word_bits // 8


def _tamper(data: bytes, pos: int, value: bytes, fix_crc: bool = True) -> bytes:
    b = bytearray(data)
    b[pos:pos + len(value)] = value
    if fix_crc:
        b[-CRC_BYTES:] = struct.pack("<I", zlib.crc32(bytes(b[:-CRC_BYTES])))
    return bytes(b)


@pytest.mark.parametrize("fmt,lanes", SHAPES)
def test_round_trip(tmp_path, fmt, lanes):
    img, layers = _image(lanes, fmt)
    path = tmp_path / "w.tnac"
    write_image(img, path)
    back = read_image(path)
    assert back == img
    assert back.format == fmt
    assert back.word_bits == (2 * lanes if fmt == I2 else 8 * lanes // 5)
    for i, layer in enumerate(layers):
        assert torch.equal(back.trits(i), layer.trits)
    assert back.tensor("hidden").flags == Flag.RELU
    assert back.tensor("logits").flags == Flag.RAW
    assert back.tensor("hidden").m == 300 and back.tensor("hidden").s == 14
    assert back.tensor("hidden").gamma == pytest.approx(0.0421, rel=1e-6)
    size = HEADER_BYTES + 2 * TENSOR_BYTES + len(img.words) * back.word_bits // 8 + CRC_BYTES
    assert os.path.getsize(path) == size


@pytest.mark.parametrize("fmt", FORMATS)
def test_layout_matches_tile_lanes(fmt):
    lanes = SMALL[fmt]
    tile = tile_lanes if fmt == I2 else tile_lanes_t3
    img, layers = _image(lanes, fmt)
    assert img.words == tile(layers[0].trits, lanes) + tile(layers[1].trits, lanes)
    assert img.tensors[1].offset == 2 * 7 and img.tensors[1].count == 1 * 13


@pytest.mark.parametrize("fmt,lanes,word_bits", [(I2, 8, 16), (T3, 10, 16), (T3, 40, 64)])
def test_header_fields(fmt, lanes, word_bits):
    img, _ = _image(lanes, fmt)
    data = encode_image(img)
    magic, version, f, l, wb, n_tensors, n_words, rsvd = struct.unpack_from(HEADER_FMT, data)
    assert (magic, version, f, l, wb, n_tensors, n_words, rsvd) == (
        MAGIC, VERSION, int(fmt), lanes, word_bits, 2, len(img.words), 0)
    assert format_word_bits(fmt, lanes) == word_bits
    assert struct.unpack("<I", data[-4:])[0] == zlib.crc32(data[:-4])


def _boundaries(img):
    """Every field boundary of the header, the tensor table, the payload and the CRC."""
    data = encode_image(img)
    cuts = {0, 4, 6, 7, 8, 10, 12, 16, HEADER_BYTES}
    pos = HEADER_BYTES
    for _ in img.tensors:
        cuts |= {pos + d for d in (32, 36, 40, 44, 48, 52, 56, 57, 58)}
        pos += TENSOR_BYTES
        cuts.add(pos)
    cuts |= {pos + 1, len(data) - CRC_BYTES - 1, len(data) - CRC_BYTES, len(data) - 1}
    return data, sorted(c for c in cuts if c < len(data))


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncation_at_every_boundary(fmt):
    img, _ = _image(SMALL[fmt], fmt)
    data, cuts = _boundaries(img)
    for cut in cuts:
        with pytest.raises(ImageError, match="truncated") as e:
            decode_image(data[:cut], "w.tnac")
        assert "\n" not in str(e.value)


@pytest.mark.parametrize("fmt", FORMATS)
def test_truncated_file(tmp_path, fmt):
    img, _ = _image(SMALL[fmt], fmt)
    path = tmp_path / "w.tnac"
    write_image(img, path)
    data = path.read_bytes()
    path.write_bytes(data[:HEADER_BYTES + 3])
    with pytest.raises(ImageError, match=r"w\.tnac: truncated: 23 bytes, but the header "
                                         r"describes \d+"):
        read_image(path)


@pytest.mark.parametrize("fmt", FORMATS)
def test_trailing_bytes(fmt):
    img, _ = _image(SMALL[fmt], fmt)
    with pytest.raises(ImageError, match="unexpected bytes after the end"):
        decode_image(encode_image(img) + b"\0")


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("where", ["payload", "table", "crc"])
def test_flipped_byte_is_a_crc_error(where, fmt):
    img, _ = _image(SMALL[fmt], fmt)
    data = encode_image(img)
    pos = {"payload": len(data) - CRC_BYTES - 3, "table": HEADER_BYTES + 33,
           "crc": len(data) - 1}[where]
    bad = _tamper(data, pos, bytes([data[pos] ^ 0x01]), fix_crc=False)
    got = struct.unpack("<I", bad[-4:])[0]
    exp = zlib.crc32(bad[:-4])
    with pytest.raises(ImageError, match=f"CRC mismatch: the file says {got:#010x} but its "
                                         f"contents give {exp:#010x}"):
        decode_image(bad)


def test_bad_magic():
    img, _ = _image(8)
    with pytest.raises(ImageError, match=r"bad magic b'PK.*', expected b'TNAC'; this is not a ternac weight image"):
        decode_image(_tamper(encode_image(img), 0, b"PK\x03\x04"))


def test_bad_version():
    img, _ = _image(8)
    with pytest.raises(ImageError, match="unsupported version 2; this loader reads version 1"):
        decode_image(_tamper(encode_image(img), 4, struct.pack("<H", 2)))


@pytest.mark.parametrize("fmt", FORMATS)
def test_unknown_format(fmt):
    img, _ = _image(SMALL[fmt], fmt)
    with pytest.raises(ImageError, match="unknown payload format 7; known formats are 0"):
        decode_image(_tamper(encode_image(img), 6, bytes([7])))
    with pytest.raises(ImageError, match="unknown weight image format 7"):
        encode_image(WeightImage(lanes=8, tensors=[], words=[], format=7))


def test_format_flip_is_caught_by_the_word_width():
    # A T3 image relabelled I2 (or back) no longer matches its word width.
    t3, _ = _image(40, T3)
    with pytest.raises(ImageError, match="word_bits 64 does not match 2 \\* lanes = 80"):
        decode_image(_tamper(encode_image(t3), 6, bytes([I2])))
    i2, _ = _image(20, I2)
    with pytest.raises(ImageError, match="word_bits 40 does not match 8 \\* lanes / 5 = 32"):
        decode_image(_tamper(encode_image(i2), 6, bytes([T3])))
    i2, _ = _image(8, I2)
    with pytest.raises(ImageError, match="lanes 8 is not a multiple of 5 from 5 to 80"):
        decode_image(_tamper(encode_image(i2), 6, bytes([T3])))


def test_bad_lanes_and_word_bits():
    img, _ = _image(8)
    data = encode_image(img)
    with pytest.raises(ImageError, match="lanes 6 is not a multiple of 4"):
        decode_image(_tamper(data, 7, bytes([6])))
    with pytest.raises(ImageError, match="word_bits 32 does not match 2 \\* lanes = 16"):
        decode_image(_tamper(data, 8, struct.pack("<H", 32)))


def test_bad_lanes_and_word_bits_t3():
    img, _ = _image(10, T3)
    data = encode_image(img)
    for bad in (4, 12, 85, 0):
        with pytest.raises(ImageError, match=f"lanes {bad} is not a multiple of 5 from 5 to 80"):
            decode_image(_tamper(data, 7, bytes([bad])))
    with pytest.raises(ImageError, match="word_bits 20 does not match 8 \\* lanes / 5 = 16"):
        decode_image(_tamper(data, 8, struct.pack("<H", 20)))
    # the writer checks the same rule, and the tiling refuses lanes that are not 5k
    with pytest.raises(ImageError, match="T3 weight image lanes must be a multiple of 5 from "
                                         "5 to 80, not 8"):
        encode_image(WeightImage(lanes=8, tensors=[], words=[], format=T3))
    with pytest.raises(ValueError, match="positive multiple of 5"):
        _image(8, T3)


@pytest.mark.parametrize("fmt", FORMATS)
def test_table_inconsistencies(fmt):
    lanes = SMALL[fmt]
    img, _ = _image(lanes, fmt)
    data = encode_image(img)
    t1 = HEADER_BYTES + TENSOR_BYTES  # second tensor entry
    # word count that does not match the shape
    with pytest.raises(ImageError, match=f"needs 13 words at {lanes} lanes, but its table "
                                         f"entry says 12"):
        decode_image(_tamper(data, t1 + 44, struct.pack("<I", 12)))
    # offset past the payload
    with pytest.raises(ImageError, match="past the end of the 27-word payload"):
        decode_image(_tamper(data, t1 + 40, struct.pack("<I", 20)))
    # overlapping tensors
    with pytest.raises(ImageError, match="overlap"):
        decode_image(_tamper(data, t1 + 40, struct.pack("<I", 10)))
    # unknown flag bits, shift out of range, nonzero reserved bytes
    with pytest.raises(ImageError, match="unknown flag bits 0x8"):
        decode_image(_tamper(data, t1 + 57, bytes([8])))
    with pytest.raises(ImageError, match="s=64"):
        decode_image(_tamper(data, t1 + 56, bytes([64])))
    with pytest.raises(ImageError, match="reserved bytes"):
        decode_image(_tamper(data, t1 + 60, b"\x01"))


def test_code_0b10_rejected():
    img, _ = _image(8)
    data = encode_image(img)
    # word 3 of the payload, lane 2 (bits 5:4 -> byte 0 of the word, bits 5:4)
    pos = HEADER_BYTES + 2 * TENSOR_BYTES + 3 * 2
    b = (data[pos] & ~0x30) | 0x20
    with pytest.raises(ImageError, match="invalid I2 code 0b10 in weight word 3, lane 2"):
        decode_image(_tamper(data, pos, bytes([b])))
    with pytest.raises(ValueError, match="0b10"):
        words_to_trits([0b10], 4)


@pytest.mark.parametrize("bad", [243, 250, 255])
def test_t3_byte_over_242_rejected(bad):
    img, _ = _image(10, T3)
    data = encode_image(img)
    base, nbytes = _payload(img)
    assert nbytes == 2
    pos = base + 3 * nbytes + 1   # word 3, byte 1 (lanes 5..9)
    with pytest.raises(ImageError, match=f"invalid T3 byte {bad} \\(must be <= 242\\) in "
                                         f"weight word 3, byte 1"):
        decode_image(_tamper(data, pos, bytes([bad])))
    # the same word written by hand is refused by the writer
    words = list(img.words)
    words[3] = (words[3] & 0x00FF) | bad << 8
    with pytest.raises(ImageError, match=f"cannot encode the weight image: invalid T3 byte "
                                         f"{bad}"):
        encode_image(WeightImage(lanes=10, tensors=img.tensors, words=words, format=T3))
    with pytest.raises(ValueError, match=f"invalid T3 byte {bad} .* word 0, byte 0"):
        words_to_trits([bad], 5, T3)
    # a byte of 242 (all +1) is valid
    assert words_to_trits([242], 5, T3).tolist() == [[1] * 5]


def test_t3_nonzero_padding_rejected():
    img, _ = _image(10, T3)  # tensor 0 has 13 rows: rows 13..19 of tile 1 are padding
    data = encode_image(img)
    base, nbytes = _payload(img)
    word = 1 * 7 + 2                      # tile 1, column 2
    pos = base + word * nbytes            # byte 0: lanes 0..4 = rows 10..14
    assert (data[pos] // 81) % 3 == 1     # row 14 (digit 4) is a zero trit
    with pytest.raises(ImageError, match="padding row 14 \\(the tensor has 13 rows\\) holds a "
                                         "nonzero trit at column 2"):
        decode_image(_tamper(data, pos, bytes([data[pos] + 81])))   # row 14 -> +1


def test_nonzero_padding_rejected():
    img, _ = _image(8)  # tensor 0 has 13 rows: rows 13..15 of tile 1 are padding
    data = encode_image(img)
    word = 1 * 7 + 2  # tile 1, column 2
    pos = HEADER_BYTES + 2 * TENSOR_BYTES + word * 2 + 1  # high byte: lanes 4..7
    b = data[pos] | 0b01 << 2 * (6 - 4)  # lane 6 = row 14 -> +1
    with pytest.raises(ImageError, match="padding row 14 \\(the tensor has 13 rows\\)"):
        decode_image(_tamper(data, pos, bytes([b])))


def test_missing_and_directory(tmp_path):
    with pytest.raises(ImageError, match=r"weight image .*nope\.tnac does not exist"):
        read_image(tmp_path / "nope.tnac")
    with pytest.raises(ImageError, match="is a directory"):
        read_image(tmp_path)


def test_write_does_not_clobber_on_error(tmp_path):
    img, _ = _image(8)
    path = tmp_path / "w.tnac"
    write_image(img, path)
    before = path.read_bytes()
    bad = WeightImage(lanes=8, tensors=[TensorEntry("x", 3, 2, 0, 5)], words=[0, 0])
    with pytest.raises(ImageError, match="needs 2 words at 8 lanes, but its table entry says 5"):
        write_image(bad, path)
    worse = WeightImage(lanes=8, tensors=[], words=[1 << 16])
    with pytest.raises(ImageError, match="does not fit 16 bits"):
        write_image(worse, path)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["w.tnac"]  # no temporary file left behind


def test_untile_is_inverse_of_tile_lanes():
    for lanes in (4, 8, 32):
        for n, k in ((1, 1), (lanes, 3), (lanes + 1, 5), (37, 11)):
            t = _trits(n, k, n * 100 + k)
            assert torch.equal(untile_lanes(tile_lanes(t, lanes), n, k, lanes), t)


def test_untile_is_inverse_of_tile_lanes_t3():
    for lanes in (5, 20, 40, 80):
        for n, k in ((1, 1), (lanes, 3), (lanes + 1, 5), (37, 11)):
            t = _trits(n, k, n * 100 + k)
            assert torch.equal(untile_lanes(tile_lanes_t3(t, lanes), n, k, lanes, T3), t)
    with pytest.raises(ValueError, match="takes 2 words, not 3"):
        untile_lanes([121] * 3, 6, 1, 5, T3)
    with pytest.raises(ValueError, match="does not fit 8 bits"):
        words_to_trits([256], 5, T3)
